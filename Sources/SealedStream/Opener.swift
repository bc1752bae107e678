/// Opens a sealed stream: checks its header and key commitment, then authenticates, decrypts and
/// decompresses every chunk on all cores, releasing plaintext in order and only once verified.
///
/// ```swift
/// let opener = Opener(key: key)
/// for try await plaintext in opener.open(FileByteSource(descriptor: fd, path: path)) {
///     try output.write(plaintext)
/// }
/// ```
/// The sequence throws a ``SealedStreamError`` at the first problem, after yielding every chunk
/// that verified before it, and keeps throwing the same error if asked again. It ends normally
/// only when the FINAL chunk verified and no byte follows it.
public struct Opener: Sendable {
    public let key: SessionKey
    /// Chunks opened concurrently at most; bounds memory to about this many chunks in and out.
    public var windowCapacity: Int?

    public init(key: SessionKey) {
        self.key = key
    }

    public func open<Source: ByteSource>(_ source: Source) -> OpenedPieces<Source> {
        OpenedPieces(key: key, source: source, windowCapacity: windowCapacity, resume: nil)
    }

    /// Opens the records of a stream from record `index` on, for resuming a download: `source`
    /// starts at that record's first byte, and `header` is the stream's header (from its manifest).
    /// The key commitment is checked before anything is read.
    public func open<Source: ByteSource>(_ source: Source, resumingAt index: UInt32, header: StreamHeader) -> OpenedPieces<Source> {
        OpenedPieces(key: key, source: source, windowCapacity: windowCapacity, resume: (header, index))
    }
}

/// The output of ``Opener/open(_:)``: plaintext chunks in order.
public struct OpenedPieces<Source: ByteSource>: AsyncSequence {
    public typealias Element = [UInt8]
    let key: SessionKey
    let source: Source
    let windowCapacity: Int?
    let resume: (header: StreamHeader, index: UInt32)?

    public func makeAsyncIterator() -> Iterator {
        var iterator = Iterator(key: key, source: source, windowCapacity: windowCapacity)
        if let resume {
            iterator.resumeHeader = resume.header
            iterator.nextIndex = resume.index
        }
        return iterator
    }

    public struct Iterator: AsyncIteratorProtocol {
        let key: SessionKey
        var source: Source
        let windowCapacity: Int?
        var opener: ChunkOpener?
        var window: OrderedWindow<[UInt8]>?
        var nextIndex: UInt32 = 0
        var inputEnded = false
        /// A framing error found while reading ahead; thrown once the chunks before it are out.
        var pendingError: (any Error)?
        /// Once failed, always failed.
        var failure: (any Error)?
        /// Set when resuming mid-stream: the header comes from elsewhere, not from `source`.
        var resumeHeader: StreamHeader?

        /// The stream header, available after the first call to `next()`.
        public var header: StreamHeader? { opener?.header }

        init(key: SessionKey, source: Source, windowCapacity: Int?) {
            self.key = key
            self.source = source
            self.windowCapacity = windowCapacity
        }

        public mutating func next() async throws -> [UInt8]? {
            if let failure { throw failure }
            do {
                if opener == nil { try await readHeader() }
                while !inputEnded && pendingError == nil && !window!.isFull {
                    do { try await submitNextRecord() } catch let error as SealedStreamError { pendingError = error }
                }
                if let plaintext = try await window!.next() { return plaintext }
                if let pendingError { throw pendingError }
                return nil
            } catch {
                failure = error
                window?.cancelAll()
                throw error
            }
        }

        private mutating func readHeader() async throws {
            let header: StreamHeader
            if let resumeHeader {
                header = resumeHeader
            } else {
                let bytes = try await source.read(exactly: StreamHeader.encodedLength)
                header = try bytes.withUnsafeBytes { try StreamHeader.parse($0) }
            }
            opener = try ChunkOpener(key: key, header: header)
            window = OrderedWindow(capacity: windowCapacity ?? OrderedWindow<[UInt8]>.defaultCapacity(chunkSize: header.chunkSize))
        }

        private mutating func submitNextRecord() async throws {
            let opener = self.opener!
            let headerBytes = try await source.read(exactly: RecordHeader.encodedLength).array
            guard !headerBytes.isEmpty else { throw SealedStreamError.missingFinalChunk(afterChunks: nextIndex) }
            guard headerBytes.count == RecordHeader.encodedLength else { throw SealedStreamError.truncatedRecord(index: nextIndex) }
            let recordHeader = try headerBytes.withUnsafeBytes { raw in
                try RecordHeader.parse(raw, in: opener.header, expectedIndex: nextIndex)
            }
            // The length was bounded by the chunk size in parse, so this allocation is bounded too.
            let sealed = try await source.read(exactly: recordHeader.sealedLength)
            guard sealed.count == recordHeader.sealedLength else { throw SealedStreamError.truncatedRecord(index: nextIndex) }
            // Nothing may follow the final chunk; checked before it is released.
            if recordHeader.isFinal, !(try await source.read(exactly: 1)).isEmpty {
                inputEnded = true
                throw SealedStreamError.trailingData(afterIndex: nextIndex)
            }
            window!.submit {
                try headerBytes.withUnsafeBytes { aad in
                    try sealed.withUnsafeBytes { sealed in try opener.open(recordHeader, aad: aad, sealed: sealed) }
                }
            }
            if recordHeader.isFinal { inputEnded = true } else { nextIndex += 1 }
        }
    }
}
