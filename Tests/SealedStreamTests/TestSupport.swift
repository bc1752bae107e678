import Foundation
@_spi(Testing) @testable import SealedStream

func hexBytes(_ text: String) -> [UInt8] {
    var out = [UInt8]()
    var chars = Array(text.utf8)
    if chars.count % 2 == 1 { chars.insert(0x30, at: 0) }
    for i in stride(from: 0, to: chars.count, by: 2) {
        out.append(UInt8(String(decoding: chars[i..<i + 2], as: UTF8.self), radix: 16)!)
    }
    return out
}

func hexString(_ bytes: [UInt8]) -> String {
    bytes.map { String(format: "%02x", $0) }.joined()
}

/// Deterministic pseudo-random bytes (SplitMix64), so failures reproduce.
func pseudoRandomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var state = seed
    var out = [UInt8](repeating: 0, count: count)
    var i = 0
    while i < count {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        for b in 0..<8 where i < count {
            out[i] = UInt8(truncatingIfNeeded: z >> (8 * UInt64(b)))
            i += 1
        }
    }
    return out
}

/// Text-like bytes that LZ4 compresses well.
func textLikeBytes(_ count: Int) -> [UInt8] {
    var out = [UInt8]()
    out.reserveCapacity(count + 64)
    var line = 0
    while out.count < count {
        out += Array("line \(line): the quick brown fox jumps over the lazy dog \(line % 97)\n".utf8)
        line += 1
    }
    return Array(out.prefix(count))
}

/// The whole sealed stream of `plaintext` as one array.
func seal(_ plaintext: [UInt8], key: SessionKey, chunkSize: Int = 1 << 16, compress: Bool = true, salt: [UInt8]? = nil) async throws -> [UInt8] {
    let options = SealOptions(chunkSize: chunkSize, compress: compress)
    let sealer = try salt.map { try Sealer(key: key, options: options, salt: $0) } ?? Sealer(key: key, options: options)
    var out = [UInt8]()
    for try await piece in sealer.seal(ArrayByteSource(plaintext)) { out += piece }
    return out
}

/// Opens a whole sealed stream; returns the plaintext released before any error, and the error.
func open(_ sealed: [UInt8], key: SessionKey) async -> (plaintext: [UInt8], error: (any Error)?) {
    var out = [UInt8]()
    do {
        for try await piece in Opener(key: key).open(ArrayByteSource(sealed)) { out += piece }
        return (out, nil)
    } catch {
        return (out, error)
    }
}

/// Offsets and lengths of every record of a valid sealed stream (via the keyless validator).
func recordTable(_ sealed: [UInt8]) throws -> [FramingValidator.Record] {
    var validator = FramingValidator()
    let records = try validator.consume(sealed)
    try validator.finish()
    return records
}

let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// A short fingerprint (length and SHA-256) for comparing large byte arrays in expectations
/// without dumping megabytes into the log on failure.
func fingerprint(_ bytes: some Sequence<UInt8>) -> String {
    let array = Array(bytes)
    return "\(array.count) bytes sha256:\(hexString(SHA256Hasher.hash(array)).prefix(16))"
}
