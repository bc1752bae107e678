/// SafeChatKeys: the keys that never leave users' devices, on OpenSSL's EVP API: X25519 key
/// agreement and HPKE (RFC 9180) to wrap session keys for each member. Client side only: the
/// gateway does not link this module.
import COpenSSL
import SealedStream

/// An X25519 private key (32 bytes, RFC 7748), held in an OpenSSL EVP_PKEY.
public final class X25519PrivateKey: @unchecked Sendable {
    // The EVP_PKEY is immutable after creation; OpenSSL allows sharing it between threads.
    let pkey: OpaquePointer

    /// A fresh key from OpenSSL's random generator.
    public convenience init() {
        var raw = Secrets.randomBytes(32)
        defer { Secrets.cleanse(&raw) }
        try! self.init(rawRepresentation: raw)  // 32 random bytes are always a valid X25519 key
    }

    public init(rawRepresentation raw: [UInt8]) throws(KeyError) {
        guard raw.count == 32, let pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nil, raw, 32) else {
            throw .invalidKey("an X25519 private key is 32 bytes")
        }
        self.pkey = pkey
    }

    deinit { EVP_PKEY_free(pkey) }

    public var publicKey: X25519PublicKey {
        var raw = [UInt8](repeating: 0, count: 32)
        var length = 32
        precondition(EVP_PKEY_get_raw_public_key(pkey, &raw, &length) == 1 && length == 32, "X25519 public key")
        return try! X25519PublicKey(rawRepresentation: raw)  // OpenSSL just made it
    }

    /// The private scalar's 32 bytes (for the identity file; wipe copies after use).
    public var rawRepresentation: [UInt8] {
        var raw = [UInt8](repeating: 0, count: 32)
        var length = 32
        precondition(EVP_PKEY_get_raw_private_key(pkey, &raw, &length) == 1 && length == 32, "X25519 private key")
        return raw
    }

    /// X25519(self, peer). An all-zero result (a low-order peer key) is refused, as RFC 9180
    /// section 7.1.4 requires; OpenSSL's derive fails for it.
    public func sharedSecret(with peer: X25519PublicKey) throws(KeyError) -> [UInt8] {
        guard let ctx = EVP_PKEY_CTX_new(pkey, nil) else { fatalError("EVP_PKEY_CTX_new: out of memory") }
        defer { EVP_PKEY_CTX_free(ctx) }
        var out = [UInt8](repeating: 0, count: 32)
        var length = 32
        guard EVP_PKEY_derive_init(ctx) == 1, EVP_PKEY_derive_set_peer(ctx, peer.pkey) == 1,
              EVP_PKEY_derive(ctx, &out, &length) == 1, length == 32, out.contains(where: { $0 != 0 })
        else { throw .invalidKey("X25519 agreement failed (a low-order or malformed public key)") }
        return out
    }
}

/// An X25519 public key (32 bytes).
public final class X25519PublicKey: @unchecked Sendable, Equatable {
    let pkey: OpaquePointer
    public let rawRepresentation: [UInt8]

    public init(rawRepresentation raw: [UInt8]) throws(KeyError) {
        guard raw.count == 32, let pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nil, raw, 32) else {
            throw .invalidKey("an X25519 public key is 32 bytes")
        }
        self.pkey = pkey
        rawRepresentation = raw
    }

    deinit { EVP_PKEY_free(pkey) }

    public static func == (a: X25519PublicKey, b: X25519PublicKey) -> Bool { a.rawRepresentation == b.rawRepresentation }
}

/// What key handling reports.
public enum KeyError: Error, Equatable, CustomStringConvertible {
    case invalidKey(String)
    /// An HPKE ciphertext that does not open: tampered, or for another recipient or context.
    case openFailed
    /// An identity export that does not open: the wrong passphrase, or a changed file.
    case wrongPassphrase

    public var description: String {
        switch self {
        case .invalidKey(let why): why
        case .openFailed: "the wrapped key does not open: tampered, or made for another recipient, session or epoch"
        case .wrongPassphrase: "the export does not open: wrong passphrase, or the file was changed"
        }
    }
}
