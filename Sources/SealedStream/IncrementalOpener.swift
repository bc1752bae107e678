/// Opens a run of consecutive records whose bytes arrive in pieces of any size — a download as it
/// comes off the socket — decrypting each piece as it is given and releasing a chunk's plaintext
/// only once its tag verifies.
///
/// Unlike ``Opener``, it keeps nothing of the input: each piece can be reused by the caller as soon
/// as ``consume(_:)`` returns, so a receive buffer stays hot in cache. It works on one thread; run
/// one per connection to use several cores.
///
/// ```swift
/// let opener = try IncrementalOpener(key: key, header: header, firstIndex: 0, endIndex: nil)
/// for piece in received { for chunk in try opener.consume(piece) { write(chunk.plaintext) } }
/// try opener.finish()
/// ```
/// It throws a ``SealedStreamError`` at the first problem, and the same error on every later call.
public final class IncrementalOpener {
    /// The index of the next record expected.
    public private(set) var nextIndex: UInt32
    /// Whether the run is complete: its last record (or the FINAL one) verified.
    public private(set) var isComplete = false

    private let opener: ChunkOpener
    private let endIndex: UInt32?
    private let decryption = GCMDecryption()
    private var phase = Phase.recordHeader
    private var headerBytes: [UInt8] = []
    private var tagBytes: [UInt8] = []
    private var record: RecordHeader?
    /// Where the body decrypts to: the plaintext itself for a stored chunk, or the compressed bytes.
    private var decrypted: [UInt8] = []
    private var bodyDone = 0
    private var failure: SealedStreamError?

    private enum Phase { case recordHeader, body, tag }

    /// - Parameters:
    ///   - header: the stream's header (from its manifest); the key commitment is checked here.
    ///   - firstIndex: the index of the first record given.
    ///   - endIndex: the run ends before this record, none of whose records may be FINAL; nil if
    ///     the run goes on to the stream's FINAL record.
    public init(key: SessionKey, header: StreamHeader, firstIndex: UInt32, endIndex: UInt32?) throws(SealedStreamError) {
        precondition(endIndex.map { $0 > firstIndex } ?? true, "an empty run of records")
        opener = try ChunkOpener(key: key, header: header)
        nextIndex = firstIndex
        self.endIndex = endIndex
        headerBytes.reserveCapacity(RecordHeader.encodedLength)
        tagBytes.reserveCapacity(RecordHeader.tagLength)
    }

    /// Takes the next bytes of the run and returns the chunks they completed, verified.
    ///
    /// If these bytes complete some chunks and then break a rule, the verified chunks are returned
    /// and the error is thrown by the next call (``finish()`` included).
    public func consume(_ bytes: UnsafeRawBufferPointer) throws(SealedStreamError) -> [OpenedChunk] {
        if let failure { throw failure }
        var opened: [OpenedChunk] = []
        do {
            try consume(bytes, into: &opened)
        } catch {
            failure = error
            decrypted = []
            if opened.isEmpty { throw error }
        }
        return opened
    }

    /// The input ended: throws unless the run is complete.
    public func finish() throws(SealedStreamError) {
        if let failure { throw failure }
        guard !isComplete else { return }
        let error: SealedStreamError = phase == .recordHeader && headerBytes.isEmpty
            ? .missingFinalChunk(afterChunks: nextIndex) : .truncatedRecord(index: nextIndex)
        failure = error
        throw error
    }

    private func consume(_ bytes: UnsafeRawBufferPointer, into opened: inout [OpenedChunk]) throws(SealedStreamError) {
        var rest = bytes[...]
        while !rest.isEmpty {
            guard !isComplete else { throw .trailingData(afterIndex: nextIndex &- 1) }
            switch phase {
            case .recordHeader:
                let take = min(RecordHeader.encodedLength - headerBytes.count, rest.count)
                headerBytes += rest.prefix(take)
                rest = rest.dropFirst(take)
                if headerBytes.count == RecordHeader.encodedLength { try startBody() }
            case .body:
                let record = record!
                let take = min(record.bodyLength - bodyDone, rest.count)
                let ok = decrypted.withUnsafeMutableBytes { out in
                    decryption.update(UnsafeRawBufferPointer(rebasing: rest.prefix(take)), into: out.baseAddress! + bodyDone)
                }
                guard ok else { throw .authenticationFailed(index: record.index) }
                bodyDone += take
                rest = rest.dropFirst(take)
                if bodyDone == record.bodyLength { phase = .tag }
            case .tag:
                let take = min(RecordHeader.tagLength - tagBytes.count, rest.count)
                tagBytes += rest.prefix(take)
                rest = rest.dropFirst(take)
                if tagBytes.count == RecordHeader.tagLength { opened.append(try finishRecord()) }
            }
        }
    }

    private func startBody() throws(SealedStreamError) {
        let parsed = headerBytes.withUnsafeBytes { raw in
            Result { () throws(SealedStreamError) in try RecordHeader.parse(raw, in: opener.header, expectedIndex: nextIndex) }
        }
        let record = try parsed.get()
        let started = headerBytes.withUnsafeBytes { aad in opener.begin(record, aad: aad, with: decryption) }
        guard started else { throw .authenticationFailed(index: record.index) }
        self.record = record
        // The length is bounded by the chunk size (checked in parse). The bytes are all written by
        // the decryption before anything reads them.
        decrypted = [UInt8](unsafeUninitializedCapacity: max(record.bodyLength, 1)) { _, count in count = record.bodyLength }
        bodyDone = 0
        phase = record.bodyLength == 0 ? .tag : .body
    }

    private func finishRecord() throws(SealedStreamError) -> OpenedChunk {
        let record = record!
        let verified = tagBytes.withUnsafeBytes { decryption.finish(tag: $0) }
        guard verified else { throw .authenticationFailed(index: record.index) }
        var plaintext: [UInt8] = []
        swap(&plaintext, &decrypted)
        if record.isCompressed {
            var ok = false
            let compressed = plaintext
            plaintext = [UInt8](unsafeUninitializedCapacity: record.plaintextLength) { out, count in
                ok = compressed.withUnsafeBytes { LZ4Block.decompress($0, into: UnsafeMutableRawBufferPointer(out)) }
                count = ok ? record.plaintextLength : 0
            }
            guard ok else { throw .decompressionFailed(index: record.index) }
        }
        let digestInput = headerBytes + tagBytes
        headerBytes.removeAll(keepingCapacity: true)
        tagBytes.removeAll(keepingCapacity: true)
        phase = .recordHeader
        nextIndex = record.index &+ 1
        if record.isFinal {
            // A FINAL chunk inside a run that should go on means the stream ended before the bytes
            // that are said to follow it.
            if endIndex != nil { throw .trailingData(afterIndex: record.index) }
            isComplete = true
        } else if nextIndex == endIndex {
            isComplete = true
        }
        return OpenedChunk(index: record.index, isFinal: record.isFinal, plaintext: plaintext, digestInput: digestInput)
    }
}
