import COpenSSL
import Foundation
import SealedStream

/// The identity as it is kept on a device (a 0600 file) and as it moves to another one
/// (`safechat keys export`, sealed under a passphrase). docs/KEYS.md, "Identity file" and "Export".
public enum IdentityFile {
    struct Stored: Codable {
        let version: Int
        let user_id: String
        let signing_seed: String
        let agreement_private: String
        let history_key: String
    }

    /// The identity file's bytes (JSON). They hold private keys: write them 0600 and nowhere else.
    public static func encode(_ identity: Identity) -> [UInt8] {
        var seed = identity.signingKey.seed, agreement = identity.agreementKey.rawRepresentation
        defer { Secrets.cleanse(&seed); Secrets.cleanse(&agreement) }
        return Array(("{\"version\":1,\"user_id\":\"\(Secrets.hex(identity.userID))\",\"signing_seed\":\"\(Secrets.hex(seed))\","
            + "\"agreement_private\":\"\(Secrets.hex(agreement))\",\"history_key\":\"\(Secrets.hex(identity.historyKey))\"}\n").utf8)
    }

    public static func decode(_ bytes: [UInt8]) throws(KeyError) -> Identity {
        guard bytes.count <= 4096, let stored = try? JSONDecoder().decode(Stored.self, from: Data(bytes)), stored.version == 1,
              let userID = hexBytes(stored.user_id, count: 16), let seed = hexBytes(stored.signing_seed, count: 32),
              let agreement = hexBytes(stored.agreement_private, count: 32), let history = hexBytes(stored.history_key, count: 32)
        else { throw .invalidKey("not a SafeChat identity file (version 1)") }
        return Identity(userID: userID, signingKey: try Ed25519PrivateKey(seed: seed),
                        agreementKey: try X25519PrivateKey(rawRepresentation: agreement), historyKey: history)
    }

    // MARK: export

    /// PBKDF2-HMAC-SHA256 iterations for new exports (OWASP's 2023 figure); imports accept
    /// 600 000 to 10 000 000, so a hostile file cannot make an import run for hours.
    public static let exportIterations = 600_000
    static let maxIterations = 10_000_000
    static let exportAAD = Array("SafeChat identity export v1".utf8)

    struct Export: Codable {
        let version: Int
        let kdf: String
        let iterations: Int
        let salt: String
        let nonce: String
        let ciphertext: String
    }

    /// The identity sealed under `passphrase`: AES-256-GCM with a key from PBKDF2-HMAC-SHA256.
    public static func export(_ identity: Identity, passphrase: String, iterations: Int = exportIterations,
                              salt: [UInt8] = Secrets.randomBytes(16), nonce: [UInt8] = Secrets.randomBytes(12)) throws(KeyError) -> [UInt8] {
        guard (exportIterations...maxIterations).contains(iterations), salt.count == 16, nonce.count == 12 else {
            throw .invalidKey("export parameters out of range")
        }
        var key = pbkdf2(passphrase, salt: salt, iterations: iterations)
        defer { Secrets.cleanse(&key) }
        var plaintext = encode(identity)
        defer { Secrets.cleanse(&plaintext) }
        let sealed = OpenSSL.gcmSeal(plaintext, key: key, nonce: nonce, aad: exportAAD)
        return Array(("{\"version\":1,\"kdf\":\"pbkdf2-hmac-sha256\",\"iterations\":\(iterations),\"salt\":\"\(Secrets.hex(salt))\","
            + "\"nonce\":\"\(Secrets.hex(nonce))\",\"ciphertext\":\"\(Secrets.hex(sealed))\"}\n").utf8)
    }

    /// Opens an export; a wrong passphrase or any changed byte is ``KeyError/wrongPassphrase``.
    public static func `import`(_ bytes: [UInt8], passphrase: String) throws(KeyError) -> Identity {
        guard bytes.count <= 16_384, let export = try? JSONDecoder().decode(Export.self, from: Data(bytes)), export.version == 1,
              export.kdf == "pbkdf2-hmac-sha256", (exportIterations...maxIterations).contains(export.iterations),
              let salt = hexBytes(export.salt, count: 16), let nonce = hexBytes(export.nonce, count: 12),
              export.ciphertext.utf8.count.isMultiple(of: 2), export.ciphertext.utf8.count >= 34,
              let sealed = hexBytes(export.ciphertext, count: export.ciphertext.utf8.count / 2)
        else { throw .invalidKey("not a SafeChat identity export (version 1, PBKDF2 600 000 to 10 000 000 iterations)") }
        var key = pbkdf2(passphrase, salt: salt, iterations: export.iterations)
        defer { Secrets.cleanse(&key) }
        guard var plaintext = OpenSSL.gcmOpen(sealed, key: key, nonce: nonce, aad: exportAAD) else { throw .wrongPassphrase }
        defer { Secrets.cleanse(&plaintext) }
        return try decode(plaintext)
    }

    static func pbkdf2(_ passphrase: String, salt: [UInt8], iterations: Int) -> [UInt8] {
        var key = [UInt8](repeating: 0, count: 32)
        let password = Array(passphrase.utf8)
        let ok = password.withUnsafeBufferPointer { pw in
            PKCS5_PBKDF2_HMAC(pw.baseAddress.map { UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self) }, Int32(pw.count),
                              salt, Int32(salt.count), Int32(iterations), EVP_sha256(), 32, &key)
        }
        precondition(ok == 1, "PBKDF2 failed inside OpenSSL")
        return key
    }
}
