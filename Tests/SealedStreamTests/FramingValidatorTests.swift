import Testing
@testable import SealedStream

/// The keyless validator the gateway runs on uploads: same verdicts as the opener on structure,
/// byte by byte or in one piece.
@Suite struct FramingValidatorTests {
    @Test func validatesAStreamFedInAnyPieceSizes() async throws {
        let key = SessionKey.random()
        let plaintext = textLikeBytes(200_000) + pseudoRandomBytes(100_000, seed: 2)
        let sealed = try await seal(plaintext, key: key)
        for pieceSize in [1, 15, 16, 92, 1000, sealed.count] {
            var validator = FramingValidator()
            var records = [FramingValidator.Record]()
            var position = 0
            while position < sealed.count {
                let end = min(sealed.count, position + pieceSize)
                records += try validator.consume(Array(sealed[position..<end]))
                position = end
                // The resume point is always a record boundary at or before what has arrived.
                #expect(validator.completeOffset <= validator.consumedOffset)
                #expect(validator.completeOffset == 0 || validator.completeOffset == 92 || records.contains { $0.offset + Int64($0.length) == validator.completeOffset })
            }
            try validator.finish()
            #expect(records.count == 5)
            #expect(records.first?.offset == 92)
            #expect(validator.completeOffset == Int64(sealed.count))
            #expect(validator.plaintextLength == Int64(plaintext.count))
            #expect(validator.isComplete)
        }
    }

    @Test func refusesForeignBytesAtTheFirstWrongByte() {
        var validator = FramingValidator()
        #expect(throws: SealedStreamError.notASealedStream) { _ = try validator.consume(Array("SAFEX".utf8)) }
        #expect(throws: SealedStreamError.notASealedStream) { _ = try validator.consume(Array("more".utf8)) }
    }

    @Test func reportsTruncationAndTrailingBytesLikeTheOpener() async throws {
        let sealed = try await seal(textLikeBytes(100_000), key: SessionKey.random())
        for (cut, expected) in [(0, SealedStreamError.emptyInput), (50, .truncatedHeader(bytes: 50)),
                                (92, .missingFinalChunk(afterChunks: 0)), (100, .truncatedRecord(index: 0))] {
            var validator = FramingValidator()
            _ = try validator.consume(Array(sealed.prefix(cut)))
            #expect(throws: expected) { try validator.finish() }
        }
        var validator = FramingValidator()
        #expect(throws: SealedStreamError.trailingData(afterIndex: 1)) { _ = try validator.consume(sealed + [1]) }
        #expect(throws: SealedStreamError.trailingData(afterIndex: 1)) { try validator.finish() }
    }

    @Test func resumesAtARecordBoundary() async throws {
        let sealed = try await seal(pseudoRandomBytes(300_000, seed: 4), key: SessionKey.random())
        let records = try recordTable(sealed)
        let boundary = records[2].offset
        var whole = FramingValidator()
        _ = try whole.consume(Array(sealed[..<Int(boundary)]))
        var resumed = FramingValidator(resumingAfter: try StreamHeader.parse(sealed), completeOffset: boundary,
                                       nextIndex: 2, plaintextLength: 2 * 65536, digest: whole.digest)
        let rest = try resumed.consume(Array(sealed[Int(boundary)...]))
        try resumed.finish()
        #expect(rest == Array(records[2...]))
        #expect(resumed.plaintextLength == 300_000)
        _ = try whole.consume(Array(sealed[Int(boundary)...]))
        #expect(resumed.digestHex == whole.digestHex)
    }

    /// docs/FORMAT.md's stream digest, recomputed here from the record table alone.
    @Test func theDigestChainsTheHeaderAndEachRecordsHeaderAndTag() async throws {
        let sealed = try await seal(pseudoRandomBytes(200_000, seed: 9), key: SessionKey.random())
        var expected = SHA256Hasher.hash(Array(sealed[0..<92]))
        for record in try recordTable(sealed) {
            let start = Int(record.offset), end = start + record.length
            expected = SHA256Hasher.hash(expected + Array(sealed[start..<(start + 16)]) + Array(sealed[(end - 16)..<end]))
        }
        for pieceSize in [1, 7, 16, 17, 4096, sealed.count] {
            var validator = FramingValidator()
            var position = 0
            while position < sealed.count {
                _ = try validator.consume(Array(sealed[position..<min(sealed.count, position + pieceSize)]))
                position += pieceSize
            }
            #expect(validator.digest == expected, "pieces of \(pieceSize)")
        }
        // A flipped tag bit changes it; the framing stays valid.
        var flipped = sealed
        flipped[sealed.count - 1] ^= 1
        var validator = FramingValidator()
        _ = try validator.consume(flipped)
        #expect(validator.isComplete && validator.digest != expected)
    }

    /// A record header with reserved bits set is reported at its position in the stream, not by the
    /// index the bad header carries (which is whatever bytes are there).
    @Test func reservedFlagBitsAreReportedByPosition() async throws {
        let sealed = try await seal(pseudoRandomBytes(100_000, seed: 3), key: SessionKey.random())
        // The stream header pasted where the first record header belongs: its bytes 4..<8 are not zero.
        let pasted = Array(sealed[0..<92]) + Array(sealed[0..<92]) + Array(sealed[92...])
        var validator = FramingValidator()
        #expect(throws: SealedStreamError.malformedRecord(index: 0, reason: "reserved bits are set")) { _ = try validator.consume(pasted) }
        var second = sealed
        let records = try recordTable(sealed)
        second[Int(records[1].offset) + 4] |= 0x04
        second.replaceSubrange(Int(records[1].offset)..<Int(records[1].offset) + 4, with: [0x53, 0x41, 0x46, 0x45])
        var validator2 = FramingValidator()
        #expect(throws: SealedStreamError.malformedRecord(index: 1, reason: "reserved bits are set")) { _ = try validator2.consume(second) }
    }
}
