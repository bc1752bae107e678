import Testing
@_spi(Testing) @testable import SealedStream

/// Every way of tampering with a stream is detected, with its own error, and no plaintext from a
/// chunk that did not verify is ever released.
@Suite struct AttackTests {
    static let chunk = 1 << 16
    let key = SessionKey.random()
    /// Four chunks: two compressible, two random (stored), the last one short.
    let plaintext = textLikeBytes(2 * (1 << 16)) + pseudoRandomBytes((1 << 16) + 5000, seed: 21)
    let sealed: [UInt8]
    let records: [FramingValidator.Record]

    init() async throws {
        sealed = try await seal(plaintext, key: key, chunkSize: Self.chunk)
        records = try recordTable(sealed)
    }

    func record(_ i: Int) -> ArraySlice<UInt8> {
        sealed[Int(records[i].offset)..<(Int(records[i].offset) + records[i].length)]
    }

    /// Opens `tampered` and checks the error and that only chunks before `firstBadChunk` came out.
    func expectRejected(_ tampered: [UInt8], _ expected: SealedStreamError, releasing chunks: Int = 0,
                        sourceLocation: SourceLocation = #_sourceLocation) async {
        let (opened, error) = await open(tampered, key: key)
        #expect(error as? SealedStreamError == expected, sourceLocation: sourceLocation)
        let releasedOnlyVerified = opened[...] == plaintext.prefix(chunks * Self.chunk)
        #expect(releasedOnlyVerified, "released \(opened.count) bytes; only \(chunks) verified chunk(s) may be", sourceLocation: sourceLocation)
    }

    @Test func wrongKey() async {
        let (opened, error) = await open(sealed, key: SessionKey.random())
        #expect(error as? SealedStreamError == .wrongKey)
        #expect(opened.isEmpty)
    }

    @Test func everyHeaderBitFlipIsDetectedBeforeAnyChunk() async {
        for byte in 0..<StreamHeader.encodedLength {
            for bit in [0, 3, 7] {
                var tampered = sealed
                tampered[byte] ^= 1 << bit
                let (opened, anyError) = await open(tampered, key: key)
                #expect(opened.isEmpty, "byte \(byte) bit \(bit)")
                let error = anyError as? SealedStreamError
                switch byte {
                case 0..<8: #expect(error == .notASealedStream)
                case 8: #expect(error == .unsupportedVersion(1 ^ (1 << bit)))
                case 9: #expect(error == .unsupportedAlgorithm(1 ^ (1 << bit)))
                case 10: #expect(error == .unsupportedCodec(1 ^ (1 << bit)) || error == .headerCorrupted)
                case 11: #expect(error == .invalidChunkSize(log2: 16 ^ (1 << bit)) || error == .headerCorrupted)
                default: #expect(error == .headerCorrupted, "salt, commitment and check bytes: byte \(byte)")
                }
            }
        }
    }

    /// An attacker who also recomputes the keyless header check still cannot swap the salt or
    /// the commitment: the key commitment fails.
    @Test func forgedHeaderWithValidCheckIsAWrongKey() async {
        for byte in [12, 43, 44, 75] {
            var tampered = sealed
            tampered[byte] ^= 0x80
            let check = SHA256Hasher.hash(Array(tampered[0..<76])).prefix(16)
            tampered.replaceSubrange(76..<92, with: check)
            await expectRejected(tampered, .wrongKey)
        }
    }

    @Test func everyRecordHeaderBitFlipIsDetected() async {
        let start = Int(records[1].offset)
        for byte in 0..<RecordHeader.encodedLength {
            for bit in 0..<8 {
                var tampered = sealed
                tampered[start + byte] ^= 1 << bit
                let (opened, error) = await open(tampered, key: key)
                #expect(error != nil, "record header byte \(byte) bit \(bit)")
                let releasedOnlyVerified = opened[...] == plaintext.prefix(Self.chunk)
                #expect(releasedOnlyVerified, "only chunk 0 may be released")
            }
        }
    }

    @Test func flippedBodyOrTagBitsFailAuthentication() async {
        for i in records.indices {
            let r = records[i]
            for position in [16, 17, r.length / 2, r.length - 17, r.length - 16, r.length - 1] {
                var tampered = sealed
                tampered[Int(r.offset) + position] ^= 0x10
                await expectRejected(tampered, .authenticationFailed(index: r.index), releasing: i)
            }
        }
    }

    @Test func truncationAnywhereIsDetected() async {
        await expectRejected([], .emptyInput)
        await expectRejected(Array(sealed.prefix(40)), .truncatedHeader(bytes: 40))
        await expectRejected(Array(sealed.prefix(92)), .missingFinalChunk(afterChunks: 0))
        for i in records.indices {
            let r = records[i]
            // Cut cleanly before record i, inside its header, and inside its body.
            await expectRejected(Array(sealed.prefix(Int(r.offset))), i == 0 ? .missingFinalChunk(afterChunks: 0) : .missingFinalChunk(afterChunks: UInt32(i)), releasing: i)
            await expectRejected(Array(sealed.prefix(Int(r.offset) + 9)), .truncatedRecord(index: r.index), releasing: i)
            await expectRejected(Array(sealed.prefix(Int(r.offset) + r.length - 1)), .truncatedRecord(index: r.index), releasing: i)
        }
    }

    @Test func bytesAfterTheFinalChunkAreRejected() async {
        await expectRejected(sealed + [0], .trailingData(afterIndex: 3), releasing: 3)
        await expectRejected(sealed + Array(record(1)), .trailingData(afterIndex: 3), releasing: 3)
    }

    @Test func reorderedDuplicatedAndDroppedChunksAreRejected() async {
        let head = Array(sealed.prefix(92))
        await expectRejected(head + record(0) + record(2) + record(1) + record(3), .unexpectedIndex(expected: 1, found: 2), releasing: 1)
        await expectRejected(head + record(0) + record(1) + record(1) + record(2) + record(3), .unexpectedIndex(expected: 2, found: 1), releasing: 2)
        await expectRejected(head + record(0) + record(2) + record(3), .unexpectedIndex(expected: 1, found: 2), releasing: 1)
        await expectRejected(head + record(1) + record(2) + record(3), .unexpectedIndex(expected: 0, found: 1))
    }

    @Test func aChunkSplicedFromAnotherFileUnderTheSameKeyFails() async throws {
        let other = try await seal(plaintext, key: key, chunkSize: Self.chunk)
        let otherRecords = try recordTable(other)
        let r = otherRecords[1]
        let spliced = Array(sealed.prefix(Int(records[1].offset))) + other[Int(r.offset)..<(Int(r.offset) + r.length)]
            + sealed[Int(records[2].offset)...]
        await expectRejected(spliced, .authenticationFailed(index: 1), releasing: 1)
        // Even the whole body of the other file under this header fails at its first chunk.
        await expectRejected(Array(sealed.prefix(92)) + other[92...], .authenticationFailed(index: 0))
    }

    @Test func finalFlagOnTheWrongChunkFails() async {
        // FINAL set on chunk 1 and the stream cut after it: the flag is authenticated.
        var early = Array(sealed.prefix(Int(records[1].offset) + records[1].length))
        early[Int(records[1].offset) + 4] |= RecordHeader.finalFlag
        await expectRejected(early, .authenticationFailed(index: 1), releasing: 1)
        // FINAL cleared on the last chunk: a short chunk cannot be non-final.
        var late = sealed
        late[Int(records[3].offset) + 4] &= ~RecordHeader.finalFlag
        await expectRejected(late, .malformedRecord(index: 3, reason: "chunk is not final but holds 5000 bytes instead of 65536"), releasing: 3)
    }

    @Test func lengthsBeyondTheLimitsAreRejectedBeforeAllocating() async {
        func withLengths(plaintext: UInt32, body: UInt32) -> [UInt8] {
            var tampered = sealed
            let at = Int(records[0].offset)
            withUnsafeBytes(of: plaintext.bigEndian) { tampered.replaceSubrange(at + 8..<at + 12, with: $0) }
            withUnsafeBytes(of: body.bigEndian) { tampered.replaceSubrange(at + 12..<at + 16, with: $0) }
            return tampered
        }
        let (opened, error) = await open(withLengths(plaintext: .max, body: .max), key: key)
        #expect(opened.isEmpty)
        guard case .malformedRecord(0, let reason)? = error as? SealedStreamError else {
            Issue.record("expected a malformed record, got \(String(describing: error))"); return
        }
        #expect(reason.contains("exceeds the chunk size"))
        let (_, error2) = await open(withLengths(plaintext: UInt32(Self.chunk), body: .max), key: key)
        guard case .malformedRecord(0, _)? = error2 as? SealedStreamError else {
            Issue.record("expected a malformed record, got \(String(describing: error2))"); return
        }
    }

    /// Only a writer holding the key can produce an authenticated record whose LZ4 body is bad;
    /// the reader still refuses it (after the tag verifies) instead of crashing or over-allocating.
    @Test func authenticatedButMalformedOrBombLZ4BodiesAreRejected() async throws {
        let header = try StreamHeader.parse(sealed)
        let keys = StreamKeys(sessionKey: key, header: header)
        func forgedRecord(body: [UInt8], plaintextLength: Int) -> [UInt8] {
            let recordHeader = RecordHeader(index: 0, isFinal: true, isCompressed: true, plaintextLength: plaintextLength, bodyLength: body.count)
            var record = [UInt8](repeating: 0, count: recordHeader.recordLength)
            record.withUnsafeMutableBytes { out in
                recordHeader.encode(into: out)
                keys.streamKey.withUnsafeBytes { k in keys.withNonce(for: 0) { nonce in
                    body.withUnsafeBytes { plain in
                        OpenSSL.aesGCMSeal(key: k, nonce: nonce, aad: UnsafeRawBufferPointer(rebasing: out[0..<16]),
                                           plaintext: plain, ciphertext: out.baseAddress! + 16, tag: out.baseAddress! + 16 + body.count)
                    }
                } }
            }
            return record
        }
        let bomb: [UInt8] = [0x1F, 0x00, 0x01, 0x00] + [UInt8](repeating: 0xFF, count: 300) + [0x00]
        await expectRejected(Array(sealed.prefix(92)) + forgedRecord(body: bomb, plaintextLength: 2000), .decompressionFailed(index: 0))
        await expectRejected(Array(sealed.prefix(92)) + forgedRecord(body: pseudoRandomBytes(500, seed: 1), plaintextLength: 1000), .decompressionFailed(index: 0))
        // Valid LZ4 that decodes to fewer bytes than the record claims.
        var block = [UInt8](repeating: 0, count: 1000)
        let text = textLikeBytes(1000)
        let n = text.withUnsafeBytes { src in block.withUnsafeMutableBytes { LZ4Block.compressIfSmaller(src, into: $0) } }!
        await expectRejected(Array(sealed.prefix(92)) + forgedRecord(body: Array(block.prefix(n)), plaintextLength: 1001), .decompressionFailed(index: 0))
    }

    @Test func aFailedOpenerKeepsFailing() async throws {
        var tampered = sealed
        tampered[Int(records[1].offset) + 100] ^= 1
        var iterator = Opener(key: key).open(ArrayByteSource(tampered)).makeAsyncIterator()
        #expect(try await iterator.next()?.count == Self.chunk)
        await #expect(throws: SealedStreamError.authenticationFailed(index: 1)) { _ = try await iterator.next() }
        await #expect(throws: SealedStreamError.authenticationFailed(index: 1)) { _ = try await iterator.next() }
    }
}
