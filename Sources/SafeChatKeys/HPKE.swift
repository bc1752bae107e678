import SealedStream
import COpenSSL

/// HPKE (RFC 9180), base mode, with DHKEM(X25519, HKDF-SHA256) and HKDF-SHA256, single-shot: what
/// SafeChat needs to wrap one session key for one member. Every primitive is OpenSSL's; this file
/// only composes them as RFC 9180 sections 4, 5.1 and 7.1 say.
public enum HPKE {
    /// The AEADs SafeChat knows: AES-256-GCM for its wraps, AES-128-GCM for RFC 9180's vectors.
    public enum AEAD: UInt16, Sendable {
        case aes128GCM = 0x0001
        case aes256GCM = 0x0002

        var keyLength: Int { self == .aes128GCM ? 16 : 32 }
        var cipher: OpaquePointer { self == .aes128GCM ? OpenSSL.aes128gcm : OpenSSL.aes256gcm }
    }

    static let kemID: UInt16 = 0x0020  // DHKEM(X25519, HKDF-SHA256)
    static let kdfID: UInt16 = 0x0001  // HKDF-SHA256
    static let nonceLength = 12
    static let tagLength = 16
    static let encapsulatedKeyLength = 32

    /// What a sender produces: the encapsulated key `enc` and the AEAD ciphertext (with its tag).
    public struct Sealed: Sendable, Equatable {
        public let encapsulatedKey: [UInt8]
        public let ciphertext: [UInt8]
        public init(encapsulatedKey: [UInt8], ciphertext: [UInt8]) {
            self.encapsulatedKey = encapsulatedKey
            self.ciphertext = ciphertext
        }
    }

    /// The key schedule's outputs (exposed for known-answer tests).
    public struct Context: Sendable {
        public let sharedSecret: [UInt8]
        public let key: [UInt8]
        public let baseNonce: [UInt8]
        public let exporterSecret: [UInt8]
    }

    /// SealBase (RFC 9180 section 6.1) of `plaintext` for `recipient`.
    /// - Parameter ephemeralSeed: derives the ephemeral key (DeriveKeyPair) instead of drawing it at
    ///   random; only for known-answer tests.
    public static func seal(_ plaintext: [UInt8], for recipient: X25519PublicKey, info: [UInt8], aad: [UInt8],
                            aead: AEAD = .aes256GCM, ephemeralSeed: [UInt8]? = nil) throws(KeyError) -> Sealed {
        let ephemeral = try ephemeralSeed.map { seed throws(KeyError) in try deriveKeyPair(ikm: seed) } ?? X25519PrivateKey()
        let enc = ephemeral.publicKey.rawRepresentation
        let dh = try ephemeral.sharedSecret(with: recipient)
        let context = keySchedule(sharedSecret: extractAndExpand(dh: dh, kemContext: enc + recipient.rawRepresentation),
                                  info: info, aead: aead)
        let ciphertext = OpenSSL.gcmSeal(plaintext, key: context.key, nonce: context.baseNonce, aad: aad, cipher: aead.cipher)
        return Sealed(encapsulatedKey: enc, ciphertext: ciphertext)
    }

    /// OpenBase (RFC 9180 section 6.1): the plaintext, or ``KeyError/openFailed`` if the ciphertext,
    /// `enc`, `info` or `aad` is not what the sender used, or `recipient` is not the key it was for.
    public static func open(_ sealed: Sealed, with recipient: X25519PrivateKey, info: [UInt8], aad: [UInt8],
                            aead: AEAD = .aes256GCM) throws(KeyError) -> [UInt8] {
        guard sealed.encapsulatedKey.count == encapsulatedKeyLength, sealed.ciphertext.count >= tagLength else { throw .openFailed }
        let context = try receiverContext(sealed.encapsulatedKey, recipient: recipient, info: info, aead: aead)
        guard let plaintext = OpenSSL.gcmOpen(sealed.ciphertext, key: context.key, nonce: context.baseNonce, aad: aad, cipher: aead.cipher) else {
            throw .openFailed
        }
        return plaintext
    }

    /// The receiver's key schedule for `enc` (exposed for known-answer tests).
    public static func receiverContext(_ enc: [UInt8], recipient: X25519PrivateKey, info: [UInt8], aead: AEAD) throws(KeyError) -> Context {
        let ephemeral: X25519PublicKey
        do { ephemeral = try X25519PublicKey(rawRepresentation: enc) } catch { throw .openFailed }
        let dh: [UInt8]
        do { dh = try recipient.sharedSecret(with: ephemeral) } catch { throw .openFailed }
        return keySchedule(sharedSecret: extractAndExpand(dh: dh, kemContext: enc + recipient.publicKey.rawRepresentation),
                           info: info, aead: aead)
    }

    /// DeriveKeyPair for X25519 (RFC 9180 section 7.1.3).
    public static func deriveKeyPair(ikm: [UInt8]) throws(KeyError) -> X25519PrivateKey {
        let prk = labeledExtract(salt: [], label: "dkp_prk", ikm: ikm, suite: kemSuite)
        return try X25519PrivateKey(rawRepresentation: labeledExpand(prk: prk, label: "sk", info: [], length: 32, suite: kemSuite))
    }

    // MARK: RFC 9180 sections 4 and 5.1

    static var kemSuite: [UInt8] { Array("KEM".utf8) + be16(kemID) }
    static func hpkeSuite(_ aead: AEAD) -> [UInt8] { Array("HPKE".utf8) + be16(kemID) + be16(kdfID) + be16(aead.rawValue) }

    static func extractAndExpand(dh: [UInt8], kemContext: [UInt8]) -> [UInt8] {
        let prk = labeledExtract(salt: [], label: "eae_prk", ikm: dh, suite: kemSuite)
        return labeledExpand(prk: prk, label: "shared_secret", info: kemContext, length: 32, suite: kemSuite)
    }

    static func keySchedule(sharedSecret: [UInt8], info: [UInt8], aead: AEAD) -> Context {
        let suite = hpkeSuite(aead)
        let pskIDHash = labeledExtract(salt: [], label: "psk_id_hash", ikm: [], suite: suite)
        let infoHash = labeledExtract(salt: [], label: "info_hash", ikm: info, suite: suite)
        let keyScheduleContext = [0x00] + pskIDHash + infoHash  // mode_base
        let secret = labeledExtract(salt: sharedSecret, label: "secret", ikm: [], suite: suite)
        return Context(
            sharedSecret: sharedSecret,
            key: labeledExpand(prk: secret, label: "key", info: keyScheduleContext, length: aead.keyLength, suite: suite),
            baseNonce: labeledExpand(prk: secret, label: "base_nonce", info: keyScheduleContext, length: nonceLength, suite: suite),
            exporterSecret: labeledExpand(prk: secret, label: "exp", info: keyScheduleContext, length: 32, suite: suite))
    }

    static func labeledExtract(salt: [UInt8], label: String, ikm: [UInt8], suite: [UInt8]) -> [UInt8] {
        OpenSSL.hkdfExtract(salt: salt, inputKey: Array("HPKE-v1".utf8) + suite + Array(label.utf8) + ikm)
    }

    static func labeledExpand(prk: [UInt8], label: String, info: [UInt8], length: Int, suite: [UInt8]) -> [UInt8] {
        OpenSSL.hkdfExpand(prk: prk, info: be16(UInt16(length)) + Array("HPKE-v1".utf8) + suite + Array(label.utf8) + info, length: length)
    }

    static func be16(_ value: UInt16) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xFF)] }
}
