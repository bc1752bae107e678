import Foundation
import Testing
@testable import SealedStream

/// The zero-copy file input: reads of every size, from any starting position, give the file's
/// bytes, across the 2 MiB-aligned mapping windows and the file's end.
@Suite struct MappedFileSourceTests {
    @Test func readsOfMixedSizesReturnTheFileBytes() async throws {
        let bytes = pseudoRandomBytes((21 << 20) + 12_345, seed: 11)
        let path = NSTemporaryDirectory() + "mapped-\(UUID().uuidString)"
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        defer { try? FileManager.default.removeItem(atPath: path) }

        // Record-like sizes (not multiples of the page size), small reads served by pread, reads
        // larger than a window, and a start in the middle of the file.
        let sizes = [92, 16, (1 << 20) + 16, 16, (1 << 20) + 16, 70_000, 9 << 20, 1, 65_535, 3 << 20]
        for start in [0, 4_097, (2 << 20) - 5] {
            let fd = open(path, O_RDONLY)
            #expect(fd >= 0)
            defer { close(fd) }
            lseek(fd, off_t(start), SEEK_SET)
            var source = try #require(MappedFileSource(descriptor: fd, path: path))
            var position = start
            var i = 0
            while true {
                let chunk = try await source.read(exactly: sizes[i % sizes.count])
                if chunk.isEmpty { break }
                let expected = Array(bytes[position..<min(bytes.count, position + sizes[i % sizes.count])])
                // Compared outside #expect, which would print both megabyte arrays on a failure.
                let same = chunk.array == expected
                #expect(same, "read \(i) of \(chunk.count) bytes at \(position) differs from the file")
                position += chunk.count
                i += 1
            }
            #expect(position == bytes.count)
        }
    }
}
