import COpenSSL

/// Secret bytes that are wiped when released and never printed.
final class SecretBytes: @unchecked Sendable {
    // Immutable after init, so sharing between threads is safe.
    private let storage: UnsafeMutableRawBufferPointer

    init(count: Int, initializer: (UnsafeMutableRawBufferPointer) -> Void) {
        storage = .allocate(byteCount: count, alignment: 16)
        storage.initializeMemory(as: UInt8.self, repeating: 0)
        initializer(storage)
    }

    deinit {
        OpenSSL.cleanse(storage)
        storage.deallocate()
    }

    var count: Int { storage.count }

    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(storage))
    }
}

/// A 256-bit session key: the secret that people share to exchange files.
///
/// The session key never encrypts a chunk itself; each stream derives its own key from it and a
/// fresh random salt (``StreamKeys``). Its description is redacted so it cannot end up in a log.
public struct SessionKey: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    public static let byteCount = 32
    let secret: SecretBytes

    /// A new key from OpenSSL's CSPRNG.
    public static func random() -> SessionKey {
        SessionKey(secret: SecretBytes(count: byteCount) { Secrets.fillRandom($0) })
    }

    private init(secret: SecretBytes) { self.secret = secret }

    /// A key from its 32 raw bytes.
    public init(bytes: some Collection<UInt8>) throws(SealedStreamError) {
        guard bytes.count == Self.byteCount else {
            throw .invalidKey("a session key is \(Self.byteCount) bytes, got \(bytes.count)")
        }
        secret = SecretBytes(count: Self.byteCount) { $0.copyBytes(from: bytes) }
    }

    /// A key from the key-file text form: 64 hexadecimal digits, surrounding whitespace ignored.
    public init(hexEncoded text: some StringProtocol) throws(SealedStreamError) {
        let digits = Array(text.utf8).filter { !($0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09) }
        guard digits.count == Self.byteCount * 2 else {
            throw .invalidKey("a key file holds \(Self.byteCount * 2) hexadecimal digits, found \(digits.count) characters")
        }
        var bytes = [UInt8](repeating: 0, count: Self.byteCount)
        defer { bytes.withUnsafeMutableBytes { OpenSSL.cleanse($0) } }
        for i in 0..<Self.byteCount {
            guard let hi = Self.hexValue(digits[2 * i]), let lo = Self.hexValue(digits[2 * i + 1]) else {
                throw .invalidKey("a key file holds only hexadecimal digits")
            }
            bytes[i] = hi << 4 | lo
        }
        try self.init(bytes: bytes)
    }

    /// The key-file text form: 64 lowercase hexadecimal digits and a newline.
    public func hexEncoded() -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(Self.byteCount * 2 + 1)
        secret.withUnsafeBytes { raw in
            for b in raw { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 0x0F)]) }
        }
        out.append(0x0A)
        return String(decoding: out, as: UTF8.self)
    }

    /// The raw key, for wrapping it to a member (SafeChatKeys); callers wipe the copy.
    package var rawBytes: [UInt8] { secret.withUnsafeBytes { Array($0) } }

    public var description: String { "SessionKey(<redacted>)" }
    public var debugDescription: String { description }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: c - 0x30
        case 0x61...0x66: c - 0x61 + 10
        case 0x41...0x46: c - 0x41 + 10
        default: nil
        }
    }
}

/// The per-stream secrets derived from a session key and a stream header (docs/FORMAT.md, "Key
/// schedule"): `HKDF-SHA256(ikm: session key, salt: header salt, info: "SafeChat sealed stream v1" ||
/// header bytes 0..<12, length: 76)` split into the stream key (32), base nonce (12) and key
/// commitment (32).
struct StreamKeys: Sendable {
    static let info = Array("SafeChat sealed stream v1".utf8)
    static let derivedLength = 32 + 12 + 32

    let streamKey: SecretBytes
    let baseNonce: [UInt8]
    let commitment: [UInt8]

    init(sessionKey: SessionKey, salt: [UInt8], parameters: [UInt8]) {
        var okm = [UInt8](repeating: 0, count: Self.derivedLength)
        defer { okm.withUnsafeMutableBytes { OpenSSL.cleanse($0) } }
        let info = Self.info + parameters
        sessionKey.secret.withUnsafeBytes { ikm in
            salt.withUnsafeBytes { salt in
                info.withUnsafeBytes { info in
                    okm.withUnsafeMutableBytes { out in
                        OpenSSL.hkdfSHA256(inputKey: ikm, salt: salt, info: info, output: out)
                    }
                }
            }
        }
        streamKey = SecretBytes(count: 32) { $0.copyBytes(from: okm[0..<32]) }
        baseNonce = Array(okm[32..<44])
        commitment = Array(okm[44..<76])
    }

    init(sessionKey: SessionKey, header: StreamHeader) {
        self.init(sessionKey: sessionKey, salt: header.salt, parameters: header.parameterBytes)
    }

    /// Whether these keys belong to the header's commitment, compared in constant time.
    func matchesCommitment(of header: StreamHeader) -> Bool {
        commitment.withUnsafeBytes { a in header.commitment.withUnsafeBytes { b in Secrets.constantTimeEqual(a, b) } }
    }

    /// The nonce for chunk `index`: the base nonce with its last four bytes XORed with the
    /// big-endian index. Indices never repeat within a stream and every stream has its own key.
    func withNonce<R>(for index: UInt32, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 12) { nonce in
            for i in 0..<12 { nonce[i] = baseNonce[i] }
            nonce[8] ^= UInt8(truncatingIfNeeded: index >> 24)
            nonce[9] ^= UInt8(truncatingIfNeeded: index >> 16)
            nonce[10] ^= UInt8(truncatingIfNeeded: index >> 8)
            nonce[11] ^= UInt8(truncatingIfNeeded: index)
            return body(UnsafeRawBufferPointer(nonce))
        }
    }
}
