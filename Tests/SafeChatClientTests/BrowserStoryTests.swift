import Foundation
import Testing
@testable import SafeChatGateway
import SafeChatTestSupport
import SealedStream

/// The browser client and the CLI on the same gateway (Tests/Browser/story_test.py in Chromium):
/// user1 uploads into a session with `safechat upload`; user2 imports their exported identity in
/// the page and downloads the file byte-identical; a tampered chunk on disk is refused by the page;
/// a file sealed and uploaded in the page downloads byte-identical with `safechat download`.
@Suite struct BrowserStoryTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test func chatAndFilesGoBothWaysBetweenTheCLIAndThePageVerified() async throws {
        try await TestGateway.with { server in
            let (one, two, _, session) = try await ChatTests.pair(server)
            defer { one.remove(); two.remove() }
            let hostile = #"<img src=x onerror="window.pwned=1">"#
            #expect(try await one.run(["session", "create", hostile, "--with", "user2"]).status == 0)
            let secret = Secrets.randomBytes(3_000_000) + Array(repeating: 0x41, count: 2_000_000)
            try Data(secret).write(to: URL(fileURLWithPath: one.path("report.iso")))
            let upload = try await one.run(["upload", "-q", "--session", session, "report.iso"])
            #expect(upload.status == 0, "\(upload.output)")
            let file = upload.output.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(try await one.run(["send", session, "here it is: \(file)"]).status == 0)
            #expect(try await one.run(["send", session, hostile]).status == 0)
            let passphrase = "user two's long passphrase"
            let exported = try await two.run(["keys", "export", two.path("identity.export")], stdin: passphrase)
            #expect(exported.status == 0, "\(exported.output)")
            let digest = Secrets.hex(SHA256Hasher.hash(secret))
            // Another file of the session, whose bytes a lying gateway serves under report.iso's id.
            try Data(Secrets.randomBytes(6_000_000)).write(to: URL(fileURLWithPath: one.path("other.bin")))
            let other = try await one.run(["upload", "-q", "--session", session, "other.bin"])
            #expect(other.status == 0, "\(other.output)")
            // What user2 will send from the page: text-like and random, over several chunks.
            let fromPage = Array(String(repeating: "a page upload, compressible. ", count: 60_000).utf8) + Secrets.randomBytes(1_500_000)
            try Data(fromPage).write(to: URL(fileURLWithPath: two.path("from-the-page.bin")))
            let result = try await runProcess(["python3", Self.root.appendingPathComponent("Tests/Browser/story_test.py").path, server.base,
                                               two.path("identity.export"), passphrase, digest, "report.iso", "Chat",
                                               server.dataDirectory + "/data/blobs/\(file)", hostile, two.path("from-the-page.bin"),
                                               other.output.trimmingCharacters(in: .whitespacesAndNewlines)],
                                              in: Self.root)
            #expect(result.status == 0, "\(result.output)")
            #expect(result.output.contains("browser story passed"), "\(result.output)")

            // The page's chat message reaches the CLI, verified.
            let received = try await one.run(["recv", session])
            #expect(received.output.contains("user2 ✓: hello from the page"), "\(received.output)")
            #expect(!received.output.contains("WARNING"), "\(received.output)")

            // user1 finds the page's upload by its name and downloads it with the CLI: byte-identical.
            let listing = try await one.run(["files", "--session", session])
            let line = try #require(listing.output.split(separator: "\n").first { $0.contains("from-the-page.bin") }, "\(listing.output)")
            let id = String(line.split(separator: " ").first!)
            let got = try await one.run(["download", "-q", id, "-o", "got.bin"])
            #expect(got.status == 0, "\(got.output)")
            #expect(try one.fingerprintOf("got.bin") == fingerprint(fromPage))
        }
    }

    @Test func thePrototypesStoryEntirelyInThePage() async throws {
        try await TestGateway.with { server in
            let users = try UserStore(path: Gateway.usersPath(dataDirectory: server.dataDirectory))
            try await users.add("user2", password: "password-two")
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("page-story-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let file = directory.appendingPathComponent("dataset.csv")
            try Data(Array(String(repeating: "id,value,label\n1,2.5,alpha\n", count: 80_000).utf8) + Secrets.randomBytes(1_000_000)).write(to: file)
            let export = directory.appendingPathComponent("user1.export").path
            let result = try await runProcess(["python3", Self.root.appendingPathComponent("Tests/Browser/page_story_test.py").path, server.base,
                                               file.path, export], in: Self.root)
            #expect(result.status == 0, "\(result.output)")
            #expect(result.output.contains("page story passed"), "\(result.output)")

            // The identity made in the page, exported there, works in the CLI: same safety number,
            // and it opens the session's keys to download the file user1 uploaded from the page.
            let cli = try ClientCommandTests.Workspace()
            defer { cli.remove() }
            #expect(try await cli.run(["login", "--server", server.base, "--user", "user1"], stdin: "password123").status == 0)
            #expect(try await cli.run(["keys", "import", export], stdin: "not the passphrase").status != 0)
            let imported = try await cli.run(["keys", "import", export], stdin: "an export passphrase")
            #expect(imported.status == 0, "\(imported.output)")
            let number = try #require(result.output.split(separator: "\n").first { $0.hasPrefix("user1's safety number in the page: ") })
            #expect(imported.output.contains(String(number.split(separator: ": ").last!)), "\(imported.output) vs \(number)")
            let sessions = try await cli.run(["sessions"])
            let session = try #require(sessions.output.split(separator: "\n").first { $0.hasSuffix("Report") }?.split(separator: " ").first, "\(sessions.output)")
            let listing = try await cli.run(["files", "--session", String(session)])
            let line = try #require(listing.output.split(separator: "\n").first { $0.contains("dataset.csv") }, "\(listing.output)")
            let got = try await cli.run(["download", "-q", String(line.split(separator: " ").first!), "-o", "got.csv"])
            #expect(got.status == 0, "\(got.output)")
            #expect(try cli.fingerprintOf("got.csv") == fingerprint(try Data(contentsOf: file)))
        }
    }
}
