/// How a stream is sealed.
public struct SealOptions: Sendable {
    /// Plaintext bytes per chunk: a power of two from 64 KiB to 16 MiB (default 1 MiB).
    public var chunkSize: Int
    /// Whether chunks are LZ4-compressed when that shrinks them. Turn it off when secrets and
    /// attacker-chosen data share a file: compressed sizes can leak content.
    public var compress: Bool

    public init(chunkSize: Int = ChunkSize.default, compress: Bool = true) {
        self.chunkSize = chunkSize
        self.compress = compress
    }
}

/// Seals a plaintext stream under a session key into the sealed-stream format.
///
/// ```swift
/// let sealer = try Sealer(key: key)
/// for try await piece in sealer.seal(FileByteSource(descriptor: fd, path: path)) {
///     try output.write(piece)   // the header first, then one record per chunk
/// }
/// ```
/// Every `Sealer` draws a fresh random salt, so the derived stream key (and with it every nonce)
/// is new: sealing two files, or the same file twice, never reuses a (key, nonce) pair.
public struct Sealer: Sendable {
    let chunkSealer: ChunkSealer
    /// Chunks sealed concurrently at most; bounds memory to about this many chunks in and out.
    public var windowCapacity: Int

    /// The header of the stream this sealer produces.
    public var header: StreamHeader { chunkSealer.header }

    public init(key: SessionKey, options: SealOptions = SealOptions()) throws(SealedStreamError) {
        var salt = [UInt8](repeating: 0, count: StreamHeader.saltLength)
        salt.withUnsafeMutableBytes { Secrets.fillRandom($0) }
        try self.init(key: key, options: options, salt: salt)
    }

    /// A sealer that produces the stream of `header` again, to resume sending it after an
    /// interruption. Sealing is deterministic given the key, the header and the plaintext, so the
    /// same plaintext gives the same bytes. The caller must make sure the plaintext is unchanged
    /// (e.g. by comparing each re-sealed record's tag with the one sent before): different plaintext
    /// under the same header reuses GCM nonces. Throws ``SealedStreamError/wrongKey`` if `header`
    /// was not made with `key`.
    public init(key: SessionKey, resuming header: StreamHeader) throws(SealedStreamError) {
        let options = SealOptions(chunkSize: header.chunkSize, compress: header.codec == .lz4)
        try self.init(key: key, options: options, salt: header.salt)
        guard chunkSealer.header == header else { throw .wrongKey }
    }

    /// A sealer with a chosen salt. Only for reproducing fixed test vectors: sealing different
    /// plaintext under the same key and salt reuses GCM nonces.
    @_spi(Testing)
    public init(key: SessionKey, options: SealOptions, salt: [UInt8]) throws(SealedStreamError) {
        guard let log2 = ChunkSize.log2(of: options.chunkSize) else {
            throw .invalidChunkSize(log2: UInt8(clamping: max(0, Int.bitWidth - options.chunkSize.leadingZeroBitCount - 1)))
        }
        precondition(salt.count == StreamHeader.saltLength)
        chunkSealer = ChunkSealer(
            sessionKey: key, codec: options.compress ? .lz4 : .none, chunkSizeLog2: log2, salt: salt)
        windowCapacity = OrderedWindow<[UInt8]>.defaultCapacity(chunkSize: options.chunkSize)
    }

    /// The sealed stream of `source`'s bytes, as an async sequence of byte arrays: the header,
    /// then one record per chunk. It reads `source` only as fast as the sequence is consumed.
    public func seal<Source: ByteSource>(_ source: Source) -> SealedPieces<Source> {
        SealedPieces(sealer: chunkSealer, source: source, windowCapacity: windowCapacity)
    }
}

/// The output of ``Sealer/seal(_:)``.
public struct SealedPieces<Source: ByteSource>: AsyncSequence {
    public typealias Element = [UInt8]
    let sealer: ChunkSealer
    let source: Source
    let windowCapacity: Int

    public func makeAsyncIterator() -> Iterator {
        Iterator(sealer: sealer, source: source, window: OrderedWindow(capacity: windowCapacity))
    }

    public struct Iterator: AsyncIteratorProtocol {
        let sealer: ChunkSealer
        var source: Source
        var window: OrderedWindow<[UInt8]>
        var headerSent = false
        var inputEnded = false
        var nextIndex: UInt32 = 0
        /// The chunk read ahead, to learn whether the current one is the last.
        var lookahead: ByteChunk?

        public mutating func next() async throws -> [UInt8]? {
            if !headerSent {
                headerSent = true
                return sealer.header.encoded()
            }
            do {
                while !inputEnded && !window.isFull {
                    try await submitNextChunk()
                }
                return try await window.next()
            } catch {
                window.cancelAll()
                inputEnded = true
                throw error
            }
        }

        private mutating func submitNextChunk() async throws {
            let chunkSize = sealer.header.chunkSize
            let current: ByteChunk
            if let lookahead { current = lookahead } else { current = try await source.read(exactly: chunkSize) }
            // A full chunk is final only if nothing follows it; a short one always is.
            let following = current.count == chunkSize ? try await source.read(exactly: chunkSize) : .empty
            let isFinal = following.isEmpty
            if !isFinal && nextIndex == RecordHeader.maxIndex { throw SealedStreamError.tooManyChunks }
            let index = nextIndex
            let sealer = self.sealer
            window.submit { current.withUnsafeBytes { sealer.seal($0, index: index, isFinal: isFinal) } }
            lookahead = following
            if isFinal { inputEnded = true } else { nextIndex += 1 }
        }
    }
}

extension SealedPieces: Sendable where Source: Sendable {}
