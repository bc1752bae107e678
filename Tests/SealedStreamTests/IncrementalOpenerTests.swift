import Testing
@testable import SealedStream

/// The opener the download client runs on each connection: bytes in pieces of any size, plaintext
/// out only once each chunk verifies.
@Suite struct IncrementalOpenerTests {
    static let chunk = 1 << 16

    struct Fixture {
        let key = SessionKey.random()
        let plaintext: [UInt8]
        let sealed: [UInt8]
        let header: StreamHeader
        let records: [FramingValidator.Record]

        init() async throws {
            // Compressible chunks (LZ4 records) and random ones (stored records), and a short last one.
            plaintext = textLikeBytes(3 * IncrementalOpenerTests.chunk) + pseudoRandomBytes(2 * IncrementalOpenerTests.chunk + 100, seed: 4)
            sealed = try await seal(plaintext, key: key, chunkSize: IncrementalOpenerTests.chunk)
            header = try StreamHeader.parse(sealed.prefix(StreamHeader.encodedLength))
            records = try recordTable(sealed)
        }

        /// The bytes of records `first..<end`.
        func run(_ first: Int, _ end: Int) -> [UInt8] {
            let start = Int(records[first].offset)
            let stop = end == records.count ? sealed.count : Int(records[end].offset)
            return Array(sealed[start..<stop])
        }

        func chunks(_ first: Int, _ end: Int) -> [UInt8] {
            Array(plaintext[(first * IncrementalOpenerTests.chunk)..<min(plaintext.count, end * IncrementalOpenerTests.chunk)])
        }
    }

    /// Feeds `bytes` in pieces of the given sizes (cycled); returns the plaintext released and the
    /// first error, from `consume` or `finish`.
    static func feed(_ opener: IncrementalOpener, _ bytes: [UInt8], sizes: [Int]) -> (plaintext: [UInt8], indices: [UInt32], error: SealedStreamError?) {
        var plaintext: [UInt8] = []
        var indices: [UInt32] = []
        var position = 0
        var turn = 0
        do {
            while position < bytes.count {
                let end = min(bytes.count, position + sizes[turn % sizes.count])
                turn += 1
                let opened = try bytes[position..<end].withUnsafeBytes { try opener.consume($0) }
                for chunk in opened { plaintext += chunk.plaintext; indices.append(chunk.index) }
                position = end
            }
            try opener.finish()
            return (plaintext, indices, nil)
        } catch let error as SealedStreamError {
            return (plaintext, indices, error)
        } catch {
            Issue.record("unexpected error \(error)")
            return (plaintext, indices, nil)
        }
    }

    @Test(arguments: [[1], [7, 16, 1, 5], [65_536], [1 << 20], [3, 100_000, 17, 40_000]])
    func piecesOfAnySizeOpenExactly(sizes: [Int]) async throws {
        let f = try await Fixture()
        let opener = try IncrementalOpener(key: f.key, header: f.header, firstIndex: 0, endIndex: nil)
        let result = Self.feed(opener, f.run(0, f.records.count), sizes: sizes)
        #expect(result.error == nil)
        #expect(result.indices == Array(0..<UInt32(f.records.count)))
        #expect(fingerprint(result.plaintext) == fingerprint(f.plaintext))
        #expect(opener.isComplete)
    }

    @Test func aRunOfRecordsOpensOnItsOwnAndEndsWhereItShould() async throws {
        let f = try await Fixture()
        let opener = try IncrementalOpener(key: f.key, header: f.header, firstIndex: 2, endIndex: 4)
        let result = Self.feed(opener, f.run(2, 4), sizes: [4000])
        #expect(result.error == nil)
        #expect(result.indices == [2, 3])
        #expect(result.plaintext == f.chunks(2, 4))
        // One byte more than the run is refused.
        #expect(throws: SealedStreamError.trailingData(afterIndex: 3)) {
            _ = try [UInt8(0)].withUnsafeBytes { try opener.consume($0) }
        }
        // The tail of the stream, from record 4 through FINAL.
        let tail = try IncrementalOpener(key: f.key, header: f.header, firstIndex: 4, endIndex: nil)
        let rest = Self.feed(tail, f.run(4, f.records.count), sizes: [999])
        #expect(rest.error == nil && rest.plaintext == f.chunks(4, f.records.count))
    }

    @Test func aFlippedBitAnywhereStopsAtItsChunk() async throws {
        let f = try await Fixture()
        // (record, offset inside the record, error): the index field, a length, the body, the tag.
        let cases: [(Int, Int, SealedStreamError)] = [
            (1, 3, .unexpectedIndex(expected: 1, found: 0)),
            (2, 4, .malformedRecord(index: 2, reason: "reserved bits are set")),
            (3, 40, .authenticationFailed(index: 3)),
            (4, f.records[4].length - 3, .authenticationFailed(index: 4)),
            (0, RecordHeader.encodedLength, .authenticationFailed(index: 0)),
        ]
        for (record, offset, expected) in cases {
            var bytes = f.run(0, f.records.count)
            let at = Int(f.records[record].offset) - Int(f.records[0].offset) + offset
            bytes[at] ^= offset == 4 ? 0x80 : 0x01
            let opener = try IncrementalOpener(key: f.key, header: f.header, firstIndex: 0, endIndex: nil)
            let result = Self.feed(opener, bytes, sizes: [5000, 3])
            #expect(result.error == expected, "record \(record) offset \(offset)")
            #expect(result.indices == Array(0..<UInt32(record)), "only the chunks before the damaged one are released")
            // Once failed, always failed.
            #expect(throws: expected) { _ = try f.run(0, 1).withUnsafeBytes { try opener.consume($0) } }
        }
    }

    @Test func truncationAndTrailingBytesAreCaught() async throws {
        let f = try await Fixture()
        let all = f.run(0, f.records.count)
        let cutInRecord3 = Int(f.records[3].offset) - Int(f.records[0].offset) + 100
        let cutAfterRecord3 = Int(f.records[4].offset) - Int(f.records[0].offset)
        let cases: [([UInt8], SealedStreamError)] = [
            (Array(all.prefix(cutInRecord3)), .truncatedRecord(index: 3)),
            (Array(all.prefix(cutAfterRecord3)), .missingFinalChunk(afterChunks: 4)),
            (Array(all.dropLast(1)), .truncatedRecord(index: UInt32(f.records.count - 1))),
            ([], .missingFinalChunk(afterChunks: 0)),
            (all + [0], .trailingData(afterIndex: UInt32(f.records.count - 1))),
        ]
        for (bytes, expected) in cases {
            let opener = try IncrementalOpener(key: f.key, header: f.header, firstIndex: 0, endIndex: nil)
            #expect(Self.feed(opener, bytes, sizes: [7777]).error == expected)
        }
        // A run said to go on past the FINAL chunk: the bytes it expects cannot exist.
        let last = f.records.count - 1
        let opener = try IncrementalOpener(key: f.key, header: f.header, firstIndex: UInt32(last), endIndex: UInt32(last + 2))
        #expect(Self.feed(opener, f.run(last, last + 1), sizes: [100]).error == .trailingData(afterIndex: UInt32(last)))
    }

    @Test func aWrongKeyOrAChunkFromAnotherFileIsRefused() async throws {
        let f = try await Fixture()
        #expect(throws: SealedStreamError.wrongKey) {
            _ = try IncrementalOpener(key: SessionKey.random(), header: f.header, firstIndex: 0, endIndex: nil)
        }
        // Same key, same chunk position, another file (another salt).
        let other = try await seal(f.plaintext, key: f.key, chunkSize: Self.chunk)
        let otherRecords = try recordTable(other)
        let spliced = Array(other[Int(otherRecords[0].offset)..<Int(otherRecords[1].offset)])
        let opener = try IncrementalOpener(key: f.key, header: f.header, firstIndex: 0, endIndex: 1)
        #expect(Self.feed(opener, spliced, sizes: [100_000]).error == .authenticationFailed(index: 0))
    }
}
