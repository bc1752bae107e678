import COpenSSL
import SealedStream

/// An Ed25519 signing key (RFC 8032), from its 32-byte seed, held in an OpenSSL EVP_PKEY.
public final class Ed25519PrivateKey: @unchecked Sendable {
    // Immutable after creation; OpenSSL allows sharing it between threads.
    let pkey: OpaquePointer

    public convenience init() {
        var seed = Secrets.randomBytes(32)
        defer { Secrets.cleanse(&seed) }
        try! self.init(seed: seed)  // any 32 bytes are a valid seed
    }

    public init(seed: [UInt8]) throws(KeyError) {
        guard seed.count == 32, let pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nil, seed, 32) else {
            throw .invalidKey("an Ed25519 seed is 32 bytes")
        }
        self.pkey = pkey
    }

    deinit { EVP_PKEY_free(pkey) }

    /// The 32-byte seed (for the identity file; wipe copies after use).
    public var seed: [UInt8] {
        var raw = [UInt8](repeating: 0, count: 32)
        var length = 32
        precondition(EVP_PKEY_get_raw_private_key(pkey, &raw, &length) == 1 && length == 32, "Ed25519 seed")
        return raw
    }

    public var publicKey: Ed25519PublicKey {
        var raw = [UInt8](repeating: 0, count: 32)
        var length = 32
        precondition(EVP_PKEY_get_raw_public_key(pkey, &raw, &length) == 1 && length == 32, "Ed25519 public key")
        return try! Ed25519PublicKey(rawRepresentation: raw)  // OpenSSL just made it
    }

    /// The 64-byte signature of `message` (pure Ed25519, no prehash, no context).
    public func signature(for message: [UInt8]) -> [UInt8] {
        guard let ctx = EVP_MD_CTX_new() else { fatalError("EVP_MD_CTX_new: out of memory") }
        defer { EVP_MD_CTX_free(ctx) }
        var signature = [UInt8](repeating: 0, count: 64)
        var length = 64
        let ok = EVP_DigestSignInit(ctx, nil, nil, nil, pkey) == 1
            && EVP_DigestSign(ctx, &signature, &length, message, message.count) == 1 && length == 64
        precondition(ok, "Ed25519 signing failed inside OpenSSL")
        return signature
    }
}

/// An Ed25519 public key (32 bytes).
public final class Ed25519PublicKey: @unchecked Sendable, Equatable {
    let pkey: OpaquePointer
    public let rawRepresentation: [UInt8]

    public init(rawRepresentation raw: [UInt8]) throws(KeyError) {
        guard raw.count == 32, let pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nil, raw, 32) else {
            throw .invalidKey("an Ed25519 public key is 32 bytes")
        }
        self.pkey = pkey
        rawRepresentation = raw
    }

    deinit { EVP_PKEY_free(pkey) }

    /// Whether `signature` is this key's signature of `message` (OpenSSL's verification, which
    /// refuses non-canonical encodings).
    public func isValidSignature(_ signature: [UInt8], for message: [UInt8]) -> Bool {
        guard signature.count == 64, let ctx = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(ctx) }
        return EVP_DigestVerifyInit(ctx, nil, nil, nil, pkey) == 1
            && EVP_DigestVerify(ctx, signature, 64, message, message.count) == 1
    }

    public static func == (a: Ed25519PublicKey, b: Ed25519PublicKey) -> Bool { a.rawRepresentation == b.rawRepresentation }
}
