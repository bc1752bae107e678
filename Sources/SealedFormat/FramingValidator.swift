/// Checks a sealed stream's structure as its bytes arrive, without a key.
///
/// The gateway runs every upload through this: it refuses a malformed stream at the first bad
/// byte, learns where each record starts (the manifest's offsets), and knows the offset of the
/// last complete record, which is where an interrupted upload resumes. It buffers at most one
/// header (92 bytes) and skips record bodies, so it costs almost nothing per byte.
///
/// It also computes the stream digest (docs/FORMAT.md, "Stream digest"): a SHA-256 chain over the
/// stream header and each record's header and tag, which names the stream's exact bytes for the
/// cost of one small hash per record instead of hashing every byte.
///
/// It is `Codable`, so a server can checkpoint it next to the bytes it has acknowledged and resume
/// validation mid-record after a restart.
public struct FramingValidator: Sendable, Codable {
    /// A record whose bytes have all arrived.
    public struct Record: Sendable, Equatable, Codable {
        public let index: UInt32
        /// Offset of the record's first byte in the stream.
        public let offset: Int64
        /// Header, body and tag.
        public let length: Int
        public let plaintextLength: Int
        public let isCompressed: Bool
        public let isFinal: Bool
    }

    private enum Phase: Sendable, Codable {
        case streamHeader
        case recordHeader
        case body(RecordHeader, headerBytes: [UInt8], remaining: Int)
        case done
    }

    public private(set) var header: StreamHeader?
    /// Offset just past the last complete unit (stream header or record).
    public private(set) var completeOffset: Int64 = 0
    /// Every byte consumed so far.
    public private(set) var consumedOffset: Int64 = 0
    /// Plaintext bytes in the complete records.
    public private(set) var plaintextLength: Int64 = 0
    /// Index the next record must carry.
    public private(set) var nextIndex: UInt32 = 0
    public var isComplete: Bool { if case .done = phase { true } else { false } }
    /// The stream digest so far (the chain value after the last complete record); final once
    /// ``isComplete``.
    public private(set) var digest: [UInt8] = []
    /// The stream digest as lowercase hex; meaningful once ``isComplete``.
    public var digestHex: String { Secrets.hex(digest) }

    private var phase = Phase.streamHeader
    private var pending: [UInt8] = []
    /// The tag of the record being read, as its bytes arrive.
    private var tag: [UInt8] = []
    private var failure: SealedStreamError?

    public init() {}

    /// Resumes validation at a record boundary of a stream whose header is known, e.g. after a
    /// restart, from what was recorded when that boundary was reached.
    public init(resumingAfter header: StreamHeader, completeOffset: Int64, nextIndex: UInt32, plaintextLength: Int64, digest: [UInt8]) {
        self.header = header
        self.digest = digest
        self.completeOffset = completeOffset
        self.consumedOffset = completeOffset
        self.nextIndex = nextIndex
        self.plaintextLength = plaintextLength
        self.phase = .recordHeader
    }

    /// Consumes the next bytes of the stream and returns the records they completed.
    /// After a failure every call throws the same error.
    public mutating func consume(_ bytes: UnsafeRawBufferPointer) throws(SealedStreamError) -> [Record] {
        if let failure { throw failure }
        do {
            return try consumeUnchecked(bytes)
        } catch {
            failure = error
            throw error
        }
    }

    public mutating func consume(_ bytes: [UInt8]) throws(SealedStreamError) -> [Record] {
        if let failure { throw failure }
        let result = bytes.withUnsafeBytes { raw in Result { () throws(SealedStreamError) in try consumeUnchecked(raw) } }
        switch result {
        case .success(let records): return records
        case .failure(let error): failure = error; throw error
        }
    }

    /// Declares the end of input: throws unless the FINAL record has fully arrived.
    public mutating func finish() throws(SealedStreamError) {
        if let failure { throw failure }
        let error: SealedStreamError
        switch phase {
        case .done: return
        case .streamHeader: error = pending.isEmpty ? .emptyInput : .truncatedHeader(bytes: pending.count)
        case .recordHeader: error = pending.isEmpty ? .missingFinalChunk(afterChunks: nextIndex) : .truncatedRecord(index: nextIndex)
        case .body: error = .truncatedRecord(index: nextIndex)
        }
        failure = error
        throw error
    }

    private mutating func consumeUnchecked(_ bytes: UnsafeRawBufferPointer) throws(SealedStreamError) -> [Record] {
        var records: [Record] = []
        var position = 0
        while position < bytes.count {
            switch phase {
            case .streamHeader:
                let take = min(StreamHeader.encodedLength - pending.count, bytes.count - position)
                pending += bytes[position..<(position + take)]
                position += take
                consumedOffset += Int64(take)
                // Refuse a stream that is not ours at its first wrong byte, not after 92.
                let magicPart = min(pending.count, StreamHeader.magic.count)
                guard pending.prefix(magicPart).elementsEqual(StreamHeader.magic.prefix(magicPart)) else {
                    throw .notASealedStream
                }
                if pending.count == StreamHeader.encodedLength {
                    header = try StreamHeader.parse(pending)
                    digest = StreamIdentity.digestStart(header: pending)
                    pending.removeAll(keepingCapacity: true)
                    completeOffset = consumedOffset
                    phase = .recordHeader
                }
            case .recordHeader:
                let take = min(RecordHeader.encodedLength - pending.count, bytes.count - position)
                pending += bytes[position..<(position + take)]
                position += take
                consumedOffset += Int64(take)
                if pending.count == RecordHeader.encodedLength {
                    let parsed = pending.withUnsafeBytes { [header, nextIndex] raw in
                        Result { () throws(SealedStreamError) in try RecordHeader.parse(raw, in: header!, expectedIndex: nextIndex) }
                    }
                    let recordHeader = try parsed.get()
                    phase = .body(recordHeader, headerBytes: pending, remaining: recordHeader.sealedLength)
                    pending.removeAll(keepingCapacity: true)
                }
            case .body(let recordHeader, let headerBytes, let remaining):
                let take = min(remaining, bytes.count - position)
                // The last 16 bytes of the record are its tag, which the digest covers.
                let tagStart = max(position, position + remaining - RecordHeader.tagLength)
                if tagStart < position + take { tag += bytes[tagStart..<(position + take)] }
                position += take
                consumedOffset += Int64(take)
                if take < remaining {
                    phase = .body(recordHeader, headerBytes: headerBytes, remaining: remaining - take)
                    break
                }
                digest = StreamIdentity.digestStep(digest, recordHeader: headerBytes, tag: tag)
                tag.removeAll(keepingCapacity: true)
                records.append(Record(
                    index: recordHeader.index, offset: completeOffset, length: recordHeader.recordLength,
                    plaintextLength: recordHeader.plaintextLength, isCompressed: recordHeader.isCompressed,
                    isFinal: recordHeader.isFinal))
                completeOffset = consumedOffset
                plaintextLength += Int64(recordHeader.plaintextLength)
                if recordHeader.isFinal {
                    phase = .done
                } else {
                    nextIndex += 1
                    phase = .recordHeader
                }
            case .done:
                throw .trailingData(afterIndex: nextIndex)
            }
        }
        return records
    }
}
