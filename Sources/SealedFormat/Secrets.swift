import COpenSSL

/// Randomness, password hashing and secret comparison for the layers above, from OpenSSL.
public enum Secrets {
    /// `count` bytes from OpenSSL's CSPRNG.
    public static func randomBytes(_ count: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        bytes.withUnsafeMutableBytes { fillRandom($0) }
        return bytes
    }

    /// Fills `buffer` from OpenSSL's CSPRNG.
    public static func fillRandom(_ buffer: UnsafeMutableRawBufferPointer) {
        guard buffer.count > 0 else { return }
        let ok = RAND_bytes(buffer.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(buffer.count)) == 1
        // Continuing without randomness would mean predictable keys and salts.
        precondition(ok, "OpenSSL's random generator failed")
    }

    /// Lowercase hex of `count` random bytes (identifiers, file names).
    public static func randomHex(_ count: Int) -> String { hex(randomBytes(count)) }

    /// Compares two secrets in time that depends only on their lengths.
    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.withUnsafeBytes { a in b.withUnsafeBytes { b in constantTimeEqual(a, b) } }
    }

    /// Compares two equal-length secrets in time independent of their contents.
    public static func constantTimeEqual(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        guard a.count == b.count else { return false }
        guard a.count > 0 else { return true }
        return CRYPTO_memcmp(a.baseAddress, b.baseAddress, a.count) == 0
    }

    /// scrypt (RFC 7914) through OpenSSL's EVP_PBE_scrypt.
    public static func scrypt(password: [UInt8], salt: [UInt8], n: UInt64, r: UInt64, p: UInt64, length: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: length)
        // N=2^15, r=8 needs 32 MiB; allow up to 4x that so stronger parameters still work.
        let maxMemory: UInt64 = 128 << 20
        let ok = password.withUnsafeBytes { pw in
            salt.withUnsafeBytes { s in
                out.withUnsafeMutableBytes { o in
                    EVP_PBE_scrypt(
                        pw.baseAddress?.assumingMemoryBound(to: CChar.self), pw.count,
                        s.baseAddress?.assumingMemoryBound(to: UInt8.self), s.count,
                        n, r, p, maxMemory, o.baseAddress?.assumingMemoryBound(to: UInt8.self), length)
                }
            }
        }
        return ok == 1 ? out : nil
    }

    /// Overwrites secret bytes in a way the compiler may not optimise away.
    public static func cleanse(_ bytes: inout [UInt8]) {
        bytes.withUnsafeMutableBytes { if let base = $0.baseAddress, $0.count > 0 { OPENSSL_cleanse(base, $0.count) } }
    }

    /// The bytes of lowercase hex `text`; nil if it is not hex, or not `count` bytes when given.
    public static func bytes(fromHex text: String, count: Int? = nil) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 2 == 0, count.map({ chars.count == $0 * 2 }) ?? true else { return nil }
        func value(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: c - 0x30
            case 0x61...0x66: c - 0x61 + 10
            default: nil
            }
        }
        var out = [UInt8]()
        out.reserveCapacity(chars.count / 2)
        for i in stride(from: 0, to: chars.count, by: 2) {
            guard let high = value(chars[i]), let low = value(chars[i + 1]) else { return nil }
            out.append(high << 4 | low)
        }
        return out
    }

    public static func hex(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 0x0F)]) }
        return String(decoding: out, as: UTF8.self)
    }
}
