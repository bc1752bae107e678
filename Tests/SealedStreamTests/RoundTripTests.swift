import PropertyBased
import Testing
@_spi(Testing) @testable import SealedStream

@Suite struct RoundTripTests {
    static let chunk = 1 << 16

    @Test(arguments: [0, 1, chunk - 1, chunk, chunk + 1, 5 * chunk, 5 * chunk + 7])
    func sizesAroundChunkBoundaries(size: Int) async throws {
        let key = SessionKey.random()
        for plaintext in [pseudoRandomBytes(size, seed: UInt64(size)), textLikeBytes(size)] {
            let sealed = try await seal(plaintext, key: key, chunkSize: Self.chunk)
            let records = try recordTable(sealed)
            #expect(records.count == max(1, (size + Self.chunk - 1) / Self.chunk), "one record per chunk, one for the empty file")
            #expect(records.last?.isFinal == true && records.dropLast().allSatisfy { !$0.isFinal })
            let (opened, error) = await open(sealed, key: key)
            #expect(error == nil)
            #expect(fingerprint(opened) == fingerprint(plaintext))
        }
    }

    @Test func compressibleDataIsStoredSmallerAndRandomDataRaw() async throws {
        let key = SessionKey.random()
        let text = textLikeBytes(4 * Self.chunk)
        let sealedText = try await seal(text, key: key, chunkSize: Self.chunk)
        #expect(sealedText.count < text.count / 2)
        #expect(try recordTable(sealedText).allSatisfy(\.isCompressed))
        let random = pseudoRandomBytes(4 * Self.chunk, seed: 9)
        let sealedRandom = try await seal(random, key: key, chunkSize: Self.chunk)
        #expect(try recordTable(sealedRandom).allSatisfy { !$0.isCompressed })
        // Overhead of a stored stream: the header plus 32 bytes per chunk, nothing more.
        #expect(sealedRandom.count == StreamHeader.encodedLength + random.count + 4 * 32)
        let uncompressed = try await seal(text, key: key, chunkSize: Self.chunk, compress: false)
        #expect(try recordTable(uncompressed).allSatisfy { !$0.isCompressed })
        #expect(try StreamHeader.parse(uncompressed).codec == CompressionCodec.none)
        #expect(fingerprint(await open(uncompressed, key: key).plaintext) == fingerprint(text))
    }

    @Test func sealingTheSameFileTwiceGivesUnrelatedStreams() async throws {
        let key = SessionKey.random()
        let plaintext = textLikeBytes(100_000)
        let a = try await seal(plaintext, key: key), b = try await seal(plaintext, key: key)
        #expect(try StreamHeader.parse(a).salt != StreamHeader.parse(b).salt)
        #expect(a[StreamHeader.encodedLength...].elementsEqual(b[StreamHeader.encodedLength...]) == false)
    }

    @Test func everyAllowedChunkSizeWorksAndOthersAreRefused() async throws {
        let key = SessionKey.random()
        let plaintext = pseudoRandomBytes(70_000, seed: 5)
        for log2 in 16...24 {
            let sealed = try await seal(plaintext, key: key, chunkSize: 1 << log2)
            #expect(try StreamHeader.parse(sealed).chunkSize == 1 << log2)
            #expect(fingerprint(await open(sealed, key: key).plaintext) == fingerprint(plaintext))
        }
        for bad in [0, 1, 4096, 1 << 15, (1 << 16) + 1, 3 << 16, 1 << 25] {
            #expect(throws: SealedStreamError.self) { try Sealer(key: key, options: SealOptions(chunkSize: bad)) }
        }
    }

    /// Random sizes, chunk sizes, content and compression: the plaintext always comes back.
    @Test func randomStreamsRoundTrip() async {
        await propertyCheck(
            count: 40, input: Gen.int(in: 0...400_000), Gen.int(in: 16...18), Gen.bool, Gen.int(in: 0...2)
        ) { size, log2, compress, kind in
            let plaintext: [UInt8] = switch kind {
            case 0: pseudoRandomBytes(size, seed: UInt64(size))
            case 1: textLikeBytes(size)
            default: textLikeBytes(size / 2) + pseudoRandomBytes(size - size / 2, seed: 3)
            }
            let key = SessionKey.random()
            let sealed = try await seal(plaintext, key: key, chunkSize: 1 << log2, compress: compress)
            let (opened, error) = await open(sealed, key: key)
            #expect(error == nil)
            #expect(fingerprint(opened) == fingerprint(plaintext), "size \(size), chunk 2^\(log2), compress \(compress)")
        }
    }

    /// A byte source that hands over odd-sized pieces, like a network body.
    @Test func piecesOfAnySizeAreReassembled() async throws {
        let key = SessionKey.random()
        let plaintext = textLikeBytes(300_000)
        let sealed = try await seal(plaintext, key: key)
        var sizes = [1, 7, 92, 15, 16, 17, 4096, 65_555, 3]
        let pieces = AsyncStream<ByteChunk> { continuation in
            var position = 0
            while position < sealed.count {
                let size = sizes.removeFirst(); sizes.append(size)
                continuation.yield(ByteChunk(Array(sealed[position..<min(sealed.count, position + size)])))
                position += size
            }
            continuation.finish()
        }
        var out = [UInt8]()
        for try await piece in Opener(key: key).open(AsyncSequenceByteSource(pieces)) { out += piece }
        #expect(fingerprint(out) == fingerprint(plaintext))
    }

    @Test func randomAccessOpensAnyChunkOnItsOwn() async throws {
        let key = SessionKey.random()
        let plaintext = textLikeBytes(3 * Self.chunk) + pseudoRandomBytes(2 * Self.chunk + 100, seed: 11)
        let sealed = try await seal(plaintext, key: key, chunkSize: Self.chunk)
        let header = try StreamHeader.parse(sealed)
        let opener = try ChunkOpener(key: key, header: header)
        let records = try recordTable(sealed)
        for record in records.reversed() {
            let bytes = Array(sealed[Int(record.offset)..<(Int(record.offset) + record.length)])
            let chunk = try opener.open(record: bytes, index: record.index)
            let start = Int(record.index) * Self.chunk
            #expect(fingerprint(chunk.plaintext) == fingerprint(plaintext[start..<min(plaintext.count, start + Self.chunk)]))
            #expect(chunk.isFinal == record.isFinal)
        }
        let second = Array(sealed[Int(records[1].offset)..<(Int(records[1].offset) + records[1].length)])
        #expect(throws: SealedStreamError.unexpectedIndex(expected: 2, found: 1)) { try opener.open(record: second, index: 2) }
        #expect(throws: SealedStreamError.truncatedRecord(index: 1)) { try opener.open(record: Array(second.dropLast()), index: 1) }
        #expect(throws: SealedStreamError.trailingData(afterIndex: 1)) { try opener.open(record: second + [0], index: 1) }
        #expect(throws: SealedStreamError.wrongKey) { try ChunkOpener(key: SessionKey.random(), header: header) }
    }

    @Test func sessionKeyTextFormRoundTripsAndIsNeverPrinted() throws {
        let key = SessionKey.random()
        let text = key.hexEncoded()
        #expect(text.count == 65 && text.hasSuffix("\n"))
        let again = try SessionKey(hexEncoded: text)
        #expect(again.hexEncoded() == text)
        #expect("\(key)" == "SessionKey(<redacted>)")
        #expect(!"\(key)".contains(text.prefix(8)))
        #expect(throws: SealedStreamError.self) { try SessionKey(hexEncoded: String(text.dropFirst(2))) }
        #expect(throws: SealedStreamError.self) { try SessionKey(hexEncoded: "zz" + String(text.dropFirst(2))) }
    }
}
