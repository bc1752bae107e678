/// Why a sealed stream could not be produced or opened.
///
/// Every attack on a stream maps to exactly one case, so a caller (and a user reading the CLI's
/// message) can tell a wrong key from a corrupted header, a truncation, or a tampered chunk.
public enum SealedStreamError: Error, Equatable, Sendable, Codable {
    /// The input held no bytes at all.
    case emptyInput
    /// The input ended inside the 92-byte stream header.
    case truncatedHeader(bytes: Int)
    /// The first bytes are not the sealed-stream magic.
    case notASealedStream
    case unsupportedVersion(UInt8)
    case unsupportedAlgorithm(UInt8)
    case unsupportedCodec(UInt8)
    /// The header's chunk size is not a power of two from 64 KiB to 16 MiB.
    case invalidChunkSize(log2: UInt8)
    /// The header's checksum does not match: a header byte, the salt or the commitment changed.
    case headerCorrupted
    /// The key commitment does not match: the stream was sealed under another session key.
    case wrongKey
    /// A record header breaks a structural rule (reserved bits set, lengths beyond the limits,
    /// a short chunk that is not final). Detected before anything is allocated from its lengths.
    case malformedRecord(index: UInt32, reason: String)
    /// A record carries another index than the next one expected: chunks were reordered,
    /// duplicated or dropped.
    case unexpectedIndex(expected: UInt32, found: UInt32)
    /// The input ended inside a record.
    case truncatedRecord(index: UInt32)
    /// The input ended cleanly between records but before the chunk marked FINAL.
    case missingFinalChunk(afterChunks: UInt32)
    /// A chunk's tag does not verify: its header, body or tag was modified, it was moved from
    /// another position or another file, or FINAL was set on the wrong chunk.
    case authenticationFailed(index: UInt32)
    /// A chunk authenticated but its LZ4 body is malformed or does not decompress to the
    /// recorded size (only a writer holding the key can produce this).
    case decompressionFailed(index: UInt32)
    /// Bytes follow the chunk marked FINAL.
    case trailingData(afterIndex: UInt32)
    /// The plaintext needs more chunks than the format's cap of 2^32.
    case tooManyChunks
    /// A key has the wrong length or encoding.
    case invalidKey(String)
}

extension SealedStreamError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .emptyInput:
            "input is empty, not a sealed stream"
        case .truncatedHeader(let bytes):
            "input is truncated: it ends inside the stream header (\(bytes) of \(StreamHeader.encodedLength) bytes)"
        case .notASealedStream:
            "input is not a SafeChat sealed stream (bad magic)"
        case .unsupportedVersion(let v):
            "unsupported sealed-stream version \(v) (this build reads version \(StreamHeader.currentVersion))"
        case .unsupportedAlgorithm(let a):
            "unsupported encryption algorithm id \(a)"
        case .unsupportedCodec(let c):
            "unsupported compression codec id \(c)"
        case .invalidChunkSize(let log2):
            "invalid chunk size 2^\(log2) in header (allowed: 2^16 to 2^24 bytes)"
        case .headerCorrupted:
            "stream header is corrupted (header checksum mismatch)"
        case .wrongKey:
            "wrong key: the stream was sealed under a different session key (key commitment mismatch)"
        case .malformedRecord(let index, let reason):
            "chunk \(index): malformed record: \(reason)"
        case .unexpectedIndex(let expected, let found):
            "chunk \(expected): found chunk \(found) instead (chunks reordered, duplicated or dropped)"
        case .truncatedRecord(let index):
            "chunk \(index): input is truncated inside the chunk"
        case .missingFinalChunk(let count):
            "input is truncated: it ends after \(count) chunk(s) without the final chunk"
        case .authenticationFailed(let index):
            "chunk \(index): authentication failed (chunk modified, moved, or from another file)"
        case .decompressionFailed(let index):
            "chunk \(index): authenticated but its LZ4 body is invalid"
        case .trailingData(let index):
            "unexpected data after the final chunk \(index)"
        case .tooManyChunks:
            "input is too large: it would need more than 2^32 chunks"
        case .invalidKey(let reason):
            "invalid key: \(reason)"
        }
    }
}
