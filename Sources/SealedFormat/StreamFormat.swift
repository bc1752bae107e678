/// SealedFormat: the keyless half of the sealed-stream format (docs/FORMAT.md): the stream header,
/// record headers, their structural rules and ``FramingValidator``, plus the digests, randomness and
/// atomic file writing both sides use. The gateway imports this and not SealedStream, so the
/// compiler checks that the gateway never links code that holds a key.
///
/// Byte layouts and structural rules of sealed-stream format version 1 (docs/FORMAT.md).
///
/// Everything here is keyless: the gateway validates a stream's framing with these types alone,
/// and the opener applies the same rules before it touches a key.

/// The compression applied to chunks, as declared in the stream header.
public enum CompressionCodec: UInt8, Sendable, CaseIterable {
    /// Every chunk is stored raw.
    case none = 0
    /// Each chunk is LZ4-compressed when that makes it smaller, else stored raw.
    case lz4 = 1
}

/// The AEAD used for chunks. Version 1 knows one.
public enum AEADAlgorithm: UInt8, Sendable {
    case aes256GCM = 1
}

/// The 92-byte header that starts every sealed stream.
///
/// Layout (all multi-byte integers big-endian):
/// `magic "SAFECHAT" (8) | version (1) | algorithm (1) | codec (1) | log2(chunk size) (1) |
/// salt (32) | key commitment (32) | header check = SHA-256(bytes 0..<76)[0..<16] (16)`.
public struct StreamHeader: Sendable, Equatable {
    public static let encodedLength = 92
    public static let magic: [UInt8] = Array("SAFECHAT".utf8)
    public static let currentVersion: UInt8 = 1
    public static let saltLength = 32
    public static let commitmentLength = 32
    static let checkLength = 16
    /// Bytes 0..<12: the part of the header bound into the key derivation.
    static let parametersLength = 12
    /// Bytes 0..<76: what the header check covers.
    static let checkedLength = 76

    public let version: UInt8
    public let algorithm: AEADAlgorithm
    public let codec: CompressionCodec
    /// log2 of the chunk size, 16...24.
    public let chunkSizeLog2: UInt8
    public let salt: [UInt8]
    public let commitment: [UInt8]

    /// Plaintext bytes per chunk; every chunk but the final one holds exactly this many.
    public var chunkSize: Int { 1 << Int(chunkSizeLog2) }

    package init(codec: CompressionCodec, chunkSizeLog2: UInt8, salt: [UInt8], commitment: [UInt8]) {
        precondition(salt.count == Self.saltLength && commitment.count == Self.commitmentLength)
        precondition(ChunkSize.allowedLog2.contains(chunkSizeLog2))
        self.version = Self.currentVersion
        self.algorithm = .aes256GCM
        self.codec = codec
        self.chunkSizeLog2 = chunkSizeLog2
        self.salt = salt
        self.commitment = commitment
    }

    /// The 12 bytes (magic, version, algorithm, codec, chunk size) bound into the key derivation.
    package static func parameterBytes(codec: CompressionCodec, chunkSizeLog2: UInt8) -> [UInt8] {
        magic + [currentVersion, AEADAlgorithm.aes256GCM.rawValue, codec.rawValue, chunkSizeLog2]
    }

    package var parameterBytes: [UInt8] { Self.parameterBytes(codec: codec, chunkSizeLog2: chunkSizeLog2) }

    /// The header as it appears on the wire.
    public func encoded() -> [UInt8] {
        var bytes = parameterBytes + salt + commitment
        bytes += SHA256Hasher.hash(bytes).prefix(Self.checkLength)
        return bytes
    }

    /// Parses and structurally validates a header, in the order docs/FORMAT.md gives.
    /// Checking the commitment needs the key; see ``StreamKeys``.
    public static func parse(_ bytes: some Collection<UInt8>) throws(SealedStreamError) -> StreamHeader {
        let b = Array(bytes.prefix(encodedLength))
        guard !b.isEmpty else { throw .emptyInput }
        // A short input is reported as truncation only if what is there could be a header's start.
        guard b.starts(with: magic.prefix(min(b.count, magic.count))) else { throw .notASealedStream }
        guard b.count >= encodedLength else { throw .truncatedHeader(bytes: b.count) }
        guard b[8] == currentVersion else { throw .unsupportedVersion(b[8]) }
        guard let algorithm = AEADAlgorithm(rawValue: b[9]) else { throw .unsupportedAlgorithm(b[9]) }
        guard let codec = CompressionCodec(rawValue: b[10]) else { throw .unsupportedCodec(b[10]) }
        guard ChunkSize.allowedLog2.contains(b[11]) else { throw .invalidChunkSize(log2: b[11]) }
        let expectedCheck = SHA256Hasher.hash(Array(b[0..<checkedLength])).prefix(checkLength)
        guard expectedCheck.elementsEqual(b[checkedLength..<encodedLength]) else { throw .headerCorrupted }
        precondition(algorithm == .aes256GCM)
        return StreamHeader(
            codec: codec, chunkSizeLog2: b[11],
            salt: Array(b[parametersLength..<(parametersLength + saltLength)]),
            commitment: Array(b[(parametersLength + saltLength)..<checkedLength]))
    }
}

/// Allowed chunk sizes: powers of two from 64 KiB to 16 MiB.
public enum ChunkSize {
    public static let allowedLog2: ClosedRange<UInt8> = 16...24
    public static let `default` = 1 << 20
    public static let minimum = 1 << 16
    public static let maximum = 1 << 24

    /// log2 of `bytes` if it is an allowed chunk size.
    public static func log2(of bytes: Int) -> UInt8? {
        guard bytes > 0, bytes & (bytes - 1) == 0 else { return nil }
        let log2 = UInt8(bytes.trailingZeroBitCount)
        return allowedLog2.contains(log2) ? log2 : nil
    }
}

/// The 16-byte header in front of every chunk record; it is the record's AEAD associated data.
///
/// Layout: `index u32 | flags u8 (bit 0 FINAL, bit 1 LZ4) | reserved 3 zero bytes |
/// plaintext length u32 | body length u32`, all big-endian. The record is this header, then the
/// body (ciphertext, `bodyLength` bytes), then the 16-byte GCM tag.
public struct RecordHeader: Sendable, Equatable, Codable {
    public static let encodedLength = 16
    public static let tagLength = 16
    /// Chunk indices are u32, so a stream holds at most 2^32 chunks and no counter can wrap.
    public static let maxIndex = UInt32.max

    package static let finalFlag: UInt8 = 0x01
    package static let lz4Flag: UInt8 = 0x02

    public let index: UInt32
    public let isFinal: Bool
    public let isCompressed: Bool
    public let plaintextLength: Int
    public let bodyLength: Int

    /// Body plus tag: the bytes that follow this header.
    public var sealedLength: Int { bodyLength + Self.tagLength }
    /// Header, body and tag.
    public var recordLength: Int { Self.encodedLength + sealedLength }

    package init(index: UInt32, isFinal: Bool, isCompressed: Bool, plaintextLength: Int, bodyLength: Int) {
        self.index = index
        self.isFinal = isFinal
        self.isCompressed = isCompressed
        self.plaintextLength = plaintextLength
        self.bodyLength = bodyLength
    }

    package func encode(into out: UnsafeMutableRawBufferPointer) {
        precondition(out.count >= Self.encodedLength)
        out.storeBytes(of: index.bigEndian, toByteOffset: 0, as: UInt32.self)
        out[4] = (isFinal ? Self.finalFlag : 0) | (isCompressed ? Self.lz4Flag : 0)
        out[5] = 0; out[6] = 0; out[7] = 0
        out.storeBytes(of: UInt32(plaintextLength).bigEndian, toByteOffset: 8, as: UInt32.self)
        out.storeBytes(of: UInt32(bodyLength).bigEndian, toByteOffset: 12, as: UInt32.self)
    }

    /// Parses a record header and applies every structural rule that needs no key, in the order
    /// docs/FORMAT.md gives. The lengths it returns are bounded by the stream's chunk size, so a
    /// reader can allocate from them.
    ///
    /// - Parameter expectedIndex: the index this record must carry, or nil for a record read on
    ///   its own whose position the caller checks.
    public static func parse(
        _ bytes: UnsafeRawBufferPointer, in stream: StreamHeader, expectedIndex: UInt32?
    ) throws(SealedStreamError) -> RecordHeader {
        precondition(bytes.count >= encodedLength)
        let index = UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
        let flags = bytes[4]
        let plaintextLength = Int(UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
        let bodyLength = Int(UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 12, as: UInt32.self)))
        // Reported by position when the caller knows it: an index read from a bad header says nothing.
        func malformed(_ reason: String) -> SealedStreamError { .malformedRecord(index: expectedIndex ?? index, reason: reason) }

        guard flags & ~(finalFlag | lz4Flag) == 0, bytes[5] == 0, bytes[6] == 0, bytes[7] == 0 else {
            throw malformed("reserved bits are set")
        }
        if let expectedIndex, index != expectedIndex {
            throw .unexpectedIndex(expected: expectedIndex, found: index)
        }
        let isFinal = flags & finalFlag != 0
        let isCompressed = flags & lz4Flag != 0
        guard plaintextLength <= stream.chunkSize else {
            throw malformed("plaintext length \(plaintextLength) exceeds the chunk size \(stream.chunkSize)")
        }
        if isCompressed {
            guard stream.codec == .lz4 else { throw malformed("LZ4 flag set but the stream declares no compression") }
            guard bodyLength >= 1, bodyLength < plaintextLength else {
                throw malformed("compressed length \(bodyLength) is not between 1 and plaintext length \(plaintextLength) - 1")
            }
        } else {
            guard bodyLength == plaintextLength else {
                throw malformed("stored chunk has body length \(bodyLength) but plaintext length \(plaintextLength)")
            }
        }
        if isFinal {
            guard plaintextLength > 0 || index == 0 else { throw malformed("final chunk is empty") }
        } else {
            guard index < maxIndex else { throw malformed("chunk \(maxIndex) is the last possible one but is not final") }
            guard plaintextLength == stream.chunkSize else {
                throw malformed("chunk is not final but holds \(plaintextLength) bytes instead of \(stream.chunkSize)")
            }
        }
        return RecordHeader(
            index: index, isFinal: isFinal, isCompressed: isCompressed,
            plaintextLength: plaintextLength, bodyLength: bodyLength)
    }
}

extension StreamHeader: Codable {
    /// Encoded as the 92 header bytes, so a decoded header passes the same validation as one read
    /// from a stream.
    public init(from decoder: any Decoder) throws {
        let bytes = try decoder.singleValueContainer().decode([UInt8].self)
        self = try StreamHeader.parse(bytes)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(encoded())
    }
}
