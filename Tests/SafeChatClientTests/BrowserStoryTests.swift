import Foundation
import Testing
import SafeChatTestSupport
import SealedStream

/// The browser client and the CLI on the same gateway (Tests/Browser/story_test.py in Chromium):
/// user1 uploads into a session with `safechat upload`; user2 imports their exported identity in
/// the page and downloads the file byte-identical; a tampered chunk on disk is refused by the page.
@Suite struct BrowserStoryTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test func aFileFromTheCLIDownloadsVerifiedInThePage() async throws {
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
            let passphrase = "user two's long passphrase"
            let exported = try await two.run(["keys", "export", two.path("identity.export")], stdin: passphrase)
            #expect(exported.status == 0, "\(exported.output)")
            let digest = Secrets.hex(SHA256Hasher.hash(secret))
            let result = try await runProcess(["python3", Self.root.appendingPathComponent("Tests/Browser/story_test.py").path, server.base,
                                               two.path("identity.export"), passphrase, digest, "report.iso", "Chat",
                                               server.dataDirectory + "/data/blobs/\(file)", hostile], in: Self.root)
            #expect(result.status == 0, "\(result.output)")
            #expect(result.output.contains("browser story passed"), "\(result.output)")
        }
    }
}
