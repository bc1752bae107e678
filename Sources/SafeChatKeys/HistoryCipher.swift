import SealedStream

/// Seals local chat history records at rest (docs/PROTOCOL.md section 4) under a key derived from
/// the identity's history key, so a copied history file alone reveals nothing.
///
///     key    = HKDF-SHA256(ikm = history_key, salt = file salt (16), info = "SafeChat history v1" || 0x00 || session_id (16), L = 32)
///     record = nonce (12, random) || AES-256-GCM(key, nonce, aad = "SafeChat history v1" || 0x00 || session_id, plaintext) || tag (16)
///
/// Each history file has its own random salt, hence its own key; random nonces stay far below
/// the 2^32 records per key that random nonces allow.
public struct HistoryCipher: Sendable {
    private let key: [UInt8]
    private let aad: [UInt8]

    public init(historyKey: [UInt8], salt: [UInt8], sessionID: [UInt8]) {
        let label = Array("SafeChat history v1".utf8) + [0] + sessionID
        key = OpenSSL.hkdfExpand(prk: OpenSSL.hkdfExtract(salt: salt, inputKey: historyKey), info: label, length: 32)
        aad = label
    }

    public func seal(_ plaintext: [UInt8]) -> [UInt8] {
        let nonce = Secrets.randomBytes(12)
        return nonce + OpenSSL.gcmSeal(plaintext, key: key, nonce: nonce, aad: aad)
    }

    /// The plaintext, or nil if the record was not sealed under this key or was altered.
    public func open(_ record: [UInt8]) -> [UInt8]? {
        guard record.count >= 28 else { return nil }
        return OpenSSL.gcmOpen(Array(record.dropFirst(12)), key: key, nonce: Array(record.prefix(12)), aad: aad)
    }
}
