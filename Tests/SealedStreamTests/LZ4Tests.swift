import Foundation
import Testing
@testable import SealedStream

/// SafeChat's chunks are LZ4 blocks. The `lz4` command speaks the LZ4 frame format, whose payload
/// is a sequence of such blocks, so interop is checked in both directions through frames with
/// independent 64 KiB blocks and no checksums.
@Suite struct LZ4Tests {
    static let blockSize = 64 * 1024
    /// lz4 frame header for: version 01, independent blocks, no checksums, 64 KiB max block
    /// (FLG 0x60, BD 0x40, header checksum 0x82), as `lz4 -B4 --no-frame-crc` writes it.
    static let frameHeader: [UInt8] = [0x04, 0x22, 0x4D, 0x18, 0x60, 0x40, 0x82]

    static func runLZ4(_ arguments: [String], input: [UInt8]) throws -> [UInt8] {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lz4-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let inPath = dir.appendingPathComponent("in").path, outPath = dir.appendingPathComponent("out").path
        try Data(input).write(to: URL(fileURLWithPath: inPath))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["lz4", "-q", "-f"] + arguments + [inPath, outPath]
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw CocoaError(.fileWriteUnknown) }
        return Array(try Data(contentsOf: URL(fileURLWithPath: outPath)))
    }

    static func compress(_ chunk: [UInt8]) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: chunk.count)
        let n = chunk.withUnsafeBytes { src in out.withUnsafeMutableBytes { LZ4Block.compressIfSmaller(src, into: $0) } }
        return n.map { Array(out.prefix($0)) }
    }

    static func decompress(_ block: [UInt8], length: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: length)
        let ok = block.withUnsafeBytes { src in out.withUnsafeMutableBytes { LZ4Block.decompress(src, into: $0) } }
        return ok ? out : nil
    }

    static let inputs: [(String, [UInt8])] = [
        ("text", textLikeBytes(300_000)),
        ("random", pseudoRandomBytes(200_000, seed: 7)),
        ("mixed", textLikeBytes(100_000) + pseudoRandomBytes(100_000, seed: 8) + [UInt8](repeating: 0, count: 70_000)),
    ]

    @Test func ourBlocksDecodeWithTheLZ4Command() throws {
        for (name, input) in Self.inputs {
            var frame = Self.frameHeader
            for start in stride(from: 0, to: input.count, by: Self.blockSize) {
                let chunk = Array(input[start..<min(input.count, start + Self.blockSize)])
                if let block = Self.compress(chunk) {
                    frame += withUnsafeBytes(of: UInt32(block.count).littleEndian, Array.init) + block
                } else {
                    // High bit: the block is stored uncompressed, as SafeChat stores such chunks.
                    frame += withUnsafeBytes(of: (UInt32(chunk.count) | 0x8000_0000).littleEndian, Array.init) + chunk
                }
            }
            frame += [0, 0, 0, 0]
            let decoded = try Self.runLZ4(["-d"], input: frame)
            #expect(fingerprint(decoded) == fingerprint(input), "lz4 -d must reproduce the \(name) input")
        }
    }

    @Test func blocksFromTheLZ4CommandDecodeWithOurs() throws {
        for (name, input) in Self.inputs {
            let frame = try Self.runLZ4(["-B4", "--no-frame-crc"], input: input)
            #expect(Array(frame.prefix(7)) == Self.frameHeader)
            var position = 7, produced = [UInt8]()
            while true {
                let word = frame[position..<position + 4].withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) }
                position += 4
                if word == 0 { break }
                let size = Int(word & 0x7FFF_FFFF)
                let block = Array(frame[position..<position + size])
                position += size
                let expectedLength = min(Self.blockSize, input.count - produced.count)
                if word & 0x8000_0000 != 0 {
                    produced += block
                } else {
                    let decoded = try #require(Self.decompress(block, length: expectedLength), "\(name): block at \(position)")
                    produced += decoded
                }
            }
            #expect(position == frame.count)
            #expect(fingerprint(produced) == fingerprint(input), "\(name) must round-trip through lz4's blocks")
        }
    }

    @Test func incompressibleChunksAreNotCompressed() {
        #expect(Self.compress(pseudoRandomBytes(65536, seed: 1)) == nil)
        #expect(Self.compress([42]) == nil)
        #expect(Self.compress([]) == nil)
    }

    @Test func highlyCompressibleChunksShrinkAndRoundTrip() throws {
        let zeros = [UInt8](repeating: 0, count: 1 << 20)
        let block = try #require(Self.compress(zeros))
        #expect(block.count < 5000)
        #expect(fingerprint(Self.decompress(block, length: zeros.count) ?? []) == fingerprint(zeros))
    }

    @Test func malformedAndBombBlocksAreRejected() throws {
        let text = textLikeBytes(65536)
        let block = try #require(Self.compress(text))
        // Asking for the wrong size fails either way: a block must decode to exactly its recorded length.
        #expect(Self.decompress(block, length: text.count - 1) == nil)
        #expect(Self.decompress(block, length: text.count + 1) == nil)
        // A block claiming a huge run (a "bomb") cannot write past the buffer it is given.
        let bomb: [UInt8] = [0x1F, 0x00, 0x01, 0x00] + [UInt8](repeating: 0xFF, count: 2000) + [0x00]
        #expect(Self.decompress(bomb, length: 65536) == nil)
        // Garbage and a truncated block.
        #expect(Self.decompress(pseudoRandomBytes(1000, seed: 3), length: 65536) == nil)
        #expect(Self.decompress(Array(block.prefix(block.count / 2)), length: text.count) == nil)
    }
}
