/// Sealing and opening of single chunk records. The streaming ``Sealer`` and ``Opener`` run these
/// on all cores; ``ChunkOpener`` is also the random-access API (open chunk n from a manifest offset).

/// Seals the chunks of one stream. Created by ``Sealer``; each instance has its own salt, so its
/// (key, nonce) pairs are fresh.
struct ChunkSealer: Sendable {
    let header: StreamHeader
    private let keys: StreamKeys

    init(sessionKey: SessionKey, codec: CompressionCodec, chunkSizeLog2: UInt8, salt: [UInt8]) {
        let parameters = StreamHeader.parameterBytes(codec: codec, chunkSizeLog2: chunkSizeLog2)
        keys = StreamKeys(sessionKey: sessionKey, salt: salt, parameters: parameters)
        header = StreamHeader(codec: codec, chunkSizeLog2: chunkSizeLog2, salt: salt, commitment: keys.commitment)
    }

    /// One complete record (header, body, tag) for `plaintext`, which is at most one chunk.
    func seal(_ plaintext: UnsafeRawBufferPointer, index: UInt32, isFinal: Bool) -> [UInt8] {
        precondition(plaintext.count <= header.chunkSize)
        let headerLength = RecordHeader.encodedLength
        let capacity = headerLength + plaintext.count + RecordHeader.tagLength
        return [UInt8](unsafeUninitializedCapacity: capacity) { buffer, count in
            let record = UnsafeMutableRawBufferPointer(buffer)
            let bodyArea = UnsafeMutableRawBufferPointer(rebasing: record[headerLength..<(headerLength + plaintext.count)])
            let compressedLength = header.codec == .lz4 ? LZ4Block.compressIfSmaller(plaintext, into: bodyArea) : nil
            let bodyLength = compressedLength ?? plaintext.count
            let recordHeader = RecordHeader(
                index: index, isFinal: isFinal, isCompressed: compressedLength != nil,
                plaintextLength: plaintext.count, bodyLength: bodyLength)
            recordHeader.encode(into: record)
            // A compressed body is encrypted in place; a stored one straight from the plaintext.
            let source = compressedLength != nil
                ? UnsafeRawBufferPointer(rebasing: bodyArea[0..<bodyLength]) : plaintext
            keys.streamKey.withUnsafeBytes { key in
                keys.withNonce(for: index) { nonce in
                    OpenSSL.aesGCMSeal(
                        key: key, nonce: nonce,
                        aad: UnsafeRawBufferPointer(rebasing: record[0..<headerLength]),
                        plaintext: source, ciphertext: record.baseAddress! + headerLength,
                        tag: record.baseAddress! + headerLength + bodyLength)
                }
            }
            count = recordHeader.recordLength
        }
    }
}

/// A chunk opened and authenticated.
public struct OpenedChunk: Sendable {
    public let index: UInt32
    public let isFinal: Bool
    public let plaintext: [UInt8]
    /// The record's header and tag (16 + 16 bytes): what it adds to the stream digest
    /// (docs/FORMAT.md section 10), so a reader can check the digest of what it opened.
    public let digestInput: [UInt8]
}

/// Opens single records of one stream: the random-access API.
///
/// ```swift
/// let opener = try ChunkOpener(key: key, header: try StreamHeader.parse(headerBytes))
/// let chunk = try opener.open(record: recordBytes, index: 7)
/// ```
/// Creating it checks the key commitment, so a wrong key fails before any chunk is touched.
public struct ChunkOpener: Sendable {
    public let header: StreamHeader
    private let keys: StreamKeys

    public init(key: SessionKey, header: StreamHeader) throws(SealedStreamError) {
        let keys = StreamKeys(sessionKey: key, header: header)
        guard keys.matchesCommitment(of: header) else { throw .wrongKey }
        self.header = header
        self.keys = keys
    }

    /// Opens one complete record (record header, body and tag, nothing more) that must carry
    /// `index`. Plaintext is returned only if the tag verifies.
    /// - Throws: ``SealedStreamError``.
    public func open(record: [UInt8], index: UInt32) throws -> OpenedChunk {
        guard record.count >= RecordHeader.encodedLength else { throw SealedStreamError.truncatedRecord(index: index) }
        let recordHeader = try record.withUnsafeBytes { raw in
            try RecordHeader.parse(raw, in: header, expectedIndex: index)
        }
        guard record.count >= recordHeader.recordLength else { throw SealedStreamError.truncatedRecord(index: index) }
        guard record.count == recordHeader.recordLength else { throw SealedStreamError.trailingData(afterIndex: index) }
        let plaintext = try record.withUnsafeBytes { raw in
            try open(
                recordHeader,
                aad: UnsafeRawBufferPointer(rebasing: raw[0..<RecordHeader.encodedLength]),
                sealed: UnsafeRawBufferPointer(rebasing: raw[RecordHeader.encodedLength...]))
        }
        return OpenedChunk(index: index, isFinal: recordHeader.isFinal, plaintext: plaintext,
                           digestInput: Array(record.prefix(RecordHeader.encodedLength) + record.suffix(RecordHeader.tagLength)))
    }

    /// Starts decrypting the body of `recordHeader` (whose encoded bytes are `aad`) with `decryption`.
    func begin(_ recordHeader: RecordHeader, aad: UnsafeRawBufferPointer, with decryption: GCMDecryption) -> Bool {
        keys.streamKey.withUnsafeBytes { key in
            keys.withNonce(for: recordHeader.index) { nonce in decryption.begin(key: key, nonce: nonce, aad: aad) }
        }
    }

    /// Authenticates and decrypts `sealed` (body then tag) of an already parsed record, then
    /// decompresses it if it is LZ4. Nothing is decompressed before the tag verifies.
    func open(
        _ recordHeader: RecordHeader, aad: UnsafeRawBufferPointer, sealed: UnsafeRawBufferPointer
    ) throws(SealedStreamError) -> [UInt8] {
        precondition(aad.count == RecordHeader.encodedLength)
        precondition(sealed.count == recordHeader.sealedLength, "the record's length was checked when it was read")
        let body = UnsafeRawBufferPointer(rebasing: sealed[..<recordHeader.bodyLength])
        let tag = UnsafeRawBufferPointer(rebasing: sealed[recordHeader.bodyLength...])
        let index = recordHeader.index

        func decrypt(into out: UnsafeMutableRawPointer) -> Bool {
            keys.streamKey.withUnsafeBytes { key in
                keys.withNonce(for: index) { nonce in
                    OpenSSL.aesGCMOpen(key: key, nonce: nonce, aad: aad, ciphertext: body, tag: tag, plaintext: out)
                }
            }
        }

        var failure: SealedStreamError?
        let plaintext = [UInt8](unsafeUninitializedCapacity: recordHeader.plaintextLength) { buffer, count in
            count = 0
            let out = UnsafeMutableRawBufferPointer(buffer)
            if !recordHeader.isCompressed {
                // Empty chunks still run through GCM so their tag is checked.
                withUnsafeTemporaryAllocation(byteCount: 1, alignment: 1) { scratch in
                    if decrypt(into: out.baseAddress ?? scratch.baseAddress!) {
                        count = recordHeader.plaintextLength
                    } else {
                        failure = .authenticationFailed(index: index)
                    }
                }
                return
            }
            let compressed = UnsafeMutableRawBufferPointer.allocate(byteCount: recordHeader.bodyLength, alignment: 16)
            defer { compressed.deallocate() }
            guard decrypt(into: compressed.baseAddress!) else {
                failure = .authenticationFailed(index: index)
                return
            }
            guard LZ4Block.decompress(UnsafeRawBufferPointer(compressed), into: out) else {
                failure = .decompressionFailed(index: index)
                return
            }
            count = recordHeader.plaintextLength
        }
        if let failure { throw failure }
        return plaintext
    }
}
