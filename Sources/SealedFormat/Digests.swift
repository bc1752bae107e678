import COpenSSL

/// SHA-256, incrementally or in one call.
public struct SHA256Hasher: ~Copyable {
    private var digest = StreamingDigest(.sha256)

    public init() {}

    public mutating func update(_ bytes: UnsafeRawBufferPointer) { digest.update(bytes) }

    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// The 32-byte digest; the hasher cannot be used afterwards.
    public consuming func finalize() -> [UInt8] { digest.finalize() }

    /// SHA-256 of `bytes` in one call.
    public static func hash(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var hasher = SHA256Hasher()
        hasher.update(bytes)
        return hasher.finalize()
    }

    public static func hash(_ bytes: [UInt8]) -> [UInt8] {
        bytes.withUnsafeBytes { hash($0) }
    }
}

/// Hash functions offered through ``StreamingDigest`` (the gateway's tus checksums use both).
public enum DigestKind: String, Sendable, CaseIterable {
    case sha1, sha256

    /// Fetched once per algorithm and shared: fetched algorithm objects are immutable.
    nonisolated(unsafe) fileprivate static let sha1Method: OpaquePointer = fetch("SHA1")
    nonisolated(unsafe) fileprivate static let sha256Method: OpaquePointer = fetch("SHA256")

    fileprivate var method: OpaquePointer { self == .sha1 ? Self.sha1Method : Self.sha256Method }

    private static func fetch(_ name: String) -> OpaquePointer {
        guard let md = EVP_MD_fetch(nil, name, nil) else { fatalError("OpenSSL has no \(name) implementation; is libcrypto 3 installed?") }
        return md
    }
}

/// An incremental digest (SHA-1 or SHA-256) from OpenSSL.
public struct StreamingDigest: ~Copyable {
    private let ctx: OpaquePointer

    public init(_ algorithm: DigestKind) {
        guard let ctx = EVP_MD_CTX_new() else { fatalError("EVP_MD_CTX_new: out of memory") }
        precondition(EVP_DigestInit_ex2(ctx, algorithm.method, nil) == 1, "digest init failed inside OpenSSL")
        self.ctx = ctx
    }

    deinit { EVP_MD_CTX_free(ctx) }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        precondition(EVP_DigestUpdate(ctx, bytes.baseAddress, bytes.count) == 1, "digest update failed inside OpenSSL")
    }

    public consuming func finalize() -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let ok = digest.withUnsafeMutableBufferPointer { EVP_DigestFinal_ex(ctx, $0.baseAddress, &length) }
        precondition(ok == 1, "digest final failed inside OpenSSL")
        return Array(digest.prefix(Int(length)))
    }
}

