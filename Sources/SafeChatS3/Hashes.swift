import COpenSSL
import SealedFormat

/// The hashes S3 needs beyond SealedFormat's SHA-256, from OpenSSL: HMAC-SHA256 for request
/// signatures, and MD5 for the `Content-MD5` of every part and object (S3 checks it on arrival)
/// and for the ETags S3 answers with.
enum Hashes {
    /// HMAC-SHA256 of `data` under `key`.
    static func hmacSHA256(key: [UInt8], _ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var length = 0
        let result = key.withUnsafeBytes { k in
            data.withUnsafeBytes { d in
                out.withUnsafeMutableBytes { o in
                    EVP_Q_mac(nil, "HMAC", nil, "SHA256", nil, k.baseAddress, k.count,
                              d.baseAddress?.assumingMemoryBound(to: UInt8.self), d.count,
                              o.baseAddress?.assumingMemoryBound(to: UInt8.self), 32, &length)
                }
            }
        }
        precondition(result != nil && length == 32, "HMAC-SHA256 failed inside OpenSSL")
        return out
    }

    static func hmacSHA256(key: [UInt8], _ text: String) -> [UInt8] { hmacSHA256(key: key, Array(text.utf8)) }

    static func sha256Hex(_ data: [UInt8]) -> String { Secrets.hex(SHA256Hasher.hash(data)) }
}

/// MD5, incrementally.
struct MD5: ~Copyable {
    private let ctx: OpaquePointer

    nonisolated(unsafe) private static let method: OpaquePointer = {
        guard let md = EVP_MD_fetch(nil, "MD5", nil) else { fatalError("OpenSSL has no MD5 implementation; is libcrypto 3 installed?") }
        return md
    }()

    init() {
        guard let ctx = EVP_MD_CTX_new() else { fatalError("EVP_MD_CTX_new: out of memory") }
        precondition(EVP_DigestInit_ex2(ctx, Self.method, nil) == 1, "MD5 init failed inside OpenSSL")
        self.ctx = ctx
    }

    deinit { EVP_MD_CTX_free(ctx) }

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        precondition(EVP_DigestUpdate(ctx, bytes.baseAddress, bytes.count) == 1, "MD5 update failed inside OpenSSL")
    }

    consuming func finalize() -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 16)
        var length: UInt32 = 0
        let ok = digest.withUnsafeMutableBufferPointer { EVP_DigestFinal_ex(ctx, $0.baseAddress, &length) }
        precondition(ok == 1 && length == 16, "MD5 final failed inside OpenSSL")
        return digest
    }

    static func hash(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var md5 = MD5()
        md5.update(bytes)
        return md5.finalize()
    }
}
