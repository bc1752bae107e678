import Foundation
import Testing
import SealedStream

/// Streams 4 GiB through seal and open in one pipeline and checks that the bytes come back and
/// that peak memory does not grow with the stream: the proof that nothing buffers a whole file.
@Suite struct BoundedMemoryTests {
    /// A plaintext source that makes `total` bytes on the fly: alternating random-like and
    /// text-like chunks, each stamped with its number so no two are alike.
    struct GeneratedSource: ByteSource {
        let total: Int64
        var produced: Int64 = 0
        static let randomBlock: [UInt8] = (0..<(1 << 20)).map { _ in UInt8.random(in: 0...255) }
        static let textBlock: [UInt8] = {
            var out = [UInt8]()
            var i = 0
            while out.count < 1 << 20 { out += Array("record \(i) status=ok user=\(i % 71)\n".utf8); i += 1 }
            return Array(out.prefix(1 << 20))
        }()

        mutating func read(exactly count: Int) async throws -> ByteChunk {
            let n = Int(min(Int64(count), total - produced))
            guard n > 0 else { return .empty }
            let block = (produced >> 20) % 2 == 0 ? Self.randomBlock : Self.textBlock
            var out = [UInt8](unsafeUninitializedCapacity: n) { buffer, filled in
                var at = 0
                while at < n {
                    let offset = Int((produced + Int64(at)) & ((1 << 20) - 1))
                    let take = min(n - at, block.count - offset)
                    block.withUnsafeBufferPointer { src in
                        (buffer.baseAddress! + at).update(from: src.baseAddress! + offset, count: take)
                    }
                    at += take
                }
                filled = n
            }
            withUnsafeBytes(of: produced.littleEndian) { stamp in
                for i in 0..<min(8, out.count) { out[i] ^= stamp[i] }
            }
            produced += Int64(n)
            return ByteChunk(out)
        }
    }

    static func peakResidentBytes() throws -> Int64 {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") }!
        return Int64(line.split(separator: " ")[1])! * 1024
    }

    @Test func fourGiBThroughSealAndOpenInBoundedMemory() async throws {
        let total: Int64 = 4 << 30
        _ = GeneratedSource.randomBlock.count + GeneratedSource.textBlock.count
        let peakBefore = try Self.peakResidentBytes()
        let key = SessionKey.random()
        let sealer = try Sealer(key: key)

        // The opener pulls from the sealer, which pulls from the generator: one back-pressured chain,
        // as when a download is opened while the upload is still being sealed.
        let sealedCount = ByteCounter()
        let sealedPieces = sealer.seal(GeneratedSource(total: total)).map { piece in
            sealedCount.add(piece.count)
            return ByteChunk(piece)
        }
        var opened: Int64 = 0
        var outputHash = SHA256Hasher()
        for try await plaintext in Opener(key: key).open(AsyncSequenceByteSource(sealedPieces)) {
            opened += Int64(plaintext.count)
            outputHash.update(plaintext)
        }
        let peakAfter = try Self.peakResidentBytes()

        #expect(opened == total)
        #expect(sealedCount.value > total / 2 && sealedCount.value < total)
        // The generator is deterministic: run it again to get the digest of what went in.
        var reference = GeneratedSource(total: total)
        var expected = SHA256Hasher()
        while true {
            let chunk = try await reference.read(exactly: 1 << 20).array
            if chunk.isEmpty { break }
            expected.update(chunk)
        }
        let outputDigest = outputHash.finalize(), inputDigest = expected.finalize()
        #expect(outputDigest == inputDigest, "4 GiB came back byte for byte")
        let growth = peakAfter - peakBefore
        print("peak RSS before \(peakBefore >> 20) MiB, after \(peakAfter >> 20) MiB, growth \(growth >> 20) MiB")
        #expect(growth < 96 << 20, "peak RSS grew by \(growth >> 20) MiB while streaming 4 GiB")
    }
}


final class ByteCounter: @unchecked Sendable {
    // Only touched from the one task that drives the pipeline.
    private(set) var value: Int64 = 0
    func add(_ n: Int) { value += Int64(n) }
}
