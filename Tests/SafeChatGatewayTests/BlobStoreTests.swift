import Foundation
import NIOCore
import Testing
@testable import SafeChatGateway
import SafeChatAPI
import SafeChatTestSupport
import SealedFormat

/// The blob store's files, with direct I/O and through the page cache: whatever the sizes of the
/// appends, syncs, roll-backs and re-opens, the file holds exactly the bytes kept, and reads of any
/// range return exactly them.
@Suite struct BlobStoreTests {
    /// A deterministic byte pattern, so that a misplaced block shows as a mismatch.
    static func pattern(_ count: Int, seed: Int) -> [UInt8] {
        var state = UInt64(truncatingIfNeeded: seed) &* 0x9E37_79B9_7F4A_7C15 | 1
        var words = [UInt64](repeating: 0, count: (count + 7) / 8)
        for i in words.indices {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            words[i] = state
        }
        return Array(words.withUnsafeBytes { $0.prefix(count) })
    }

    static func contents(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }

    @Test(arguments: [true, false])
    func appendsSyncsRollbacksAndReopensKeepExactlyTheKeptBytes(directIO: Bool) async throws {
        let root = NSTemporaryDirectory() + "safechat-blobs-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }  // scratch space; a leftover is harmless
        do {
            let store = try LocalBlobStore(root: root, directIO: directIO)
            let id = FileID.random()
            let path = root + "/partial/\(id)"
            var expected: [UInt8] = []
            var blob = try await store.openPartial(id, at: 0, checkpoint: nil, sizeLimit: 1 << 40)
            #expect((blob is DirectPartialBlob) == directIO)
            // Appends of many sizes, across several 2 MiB write buffers, with syncs in between.
            let sizes = [1, 4095, 4097, 65_536, 3_000_000, 7, 2 << 20, 123_457, 1, 5_000_000]
            for (n, size) in sizes.enumerated() {
                let bytes = Self.pattern(size, seed: n)
                try await blob.append(ByteBuffer(bytes: bytes))
                expected += bytes
                #expect(blob.length == Int64(expected.count))
                if n % 3 == 2 {
                    _ = try await blob.makeDurable(final: false)
                    #expect(try Self.contents(path) == expected)
                }
            }
            _ = try await blob.makeDurable(final: false)
            #expect(try Self.contents(path) == expected)

            // A roll-back into bytes written long ago, then more appends.
            let cut = 1_234_567
            try await blob.truncate(to: Int64(cut))
            expected.removeLast(expected.count - cut)
            #expect(blob.length == Int64(cut))
            #expect(try Self.contents(path) == expected)
            let more = Self.pattern(2_500_001, seed: 99)
            try await blob.append(ByteBuffer(bytes: more))
            expected += more
            // A roll-back inside what is still staged.
            try await blob.truncate(to: Int64(expected.count - 10))
            expected.removeLast(10)
            _ = try await blob.makeDurable(final: false)
            await blob.close()
            #expect(try Self.contents(path) == expected)

            // Re-opened at an unaligned offset (bytes past it were never acknowledged), then appended to.
            let resumeAt = expected.count - 4_321
            blob = try await store.openPartial(id, at: Int64(resumeAt), checkpoint: nil, sizeLimit: 1 << 40)
            expected.removeLast(4_321)
            #expect(blob.length == Int64(resumeAt))
            let tail = Self.pattern(10_000, seed: 7)
            try await blob.append(ByteBuffer(bytes: tail))
            expected += tail
            _ = try await blob.makeDurable(final: false)
            await blob.close()
            #expect(try Self.contents(path) == expected)

            // A partial shorter than its acknowledged offset is an error, not a silent gap.
            await #expect(throws: FileError.self) { try await store.openPartial(id, at: Int64(expected.count + 1), checkpoint: nil, sizeLimit: 1 << 40) }

            // Read back as a finished blob: any range, aligned or not, up to the last byte.
            try await store.promote(id, size: Int64(expected.count), checkpoint: nil)
            let reader = try await store.openBlob(id, size: Int64(expected.count))
            defer { reader.close() }
            #expect(reader.size == Int64(expected.count))
            let ranges = [(0, 1), (1, 4095), (4095, 2), (4096, 4096), (1_000_001, 2 << 20), (expected.count - 1, 1),
                          (expected.count - 5000, 5000), (0, expected.count)]
            for (offset, count) in ranges {
                var buffer = ByteBuffer()
                try await reader.read(at: Int64(offset), count: count, into: &buffer)
                #expect(buffer.readableBytesView.elementsEqual(expected[offset..<(offset + count)]), "range \(offset) + \(count)")
            }
            var past = ByteBuffer()
            await #expect(throws: FileError.self) { try await reader.read(at: Int64(expected.count - 10), count: 11, into: &past) }
        }
    }
}
