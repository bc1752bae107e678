import Foundation
import Testing
import SafeChatTestSupport

/// The browser client in Debian's Chromium, driven by Playwright (Tests/Browser/page_test.py)
/// against the real gateway on loopback: the page and its security headers, the login form, and
/// the page's crypto modules against Fixtures/ and liblz4.
@Suite struct BrowserTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test func thePageLogsInAndItsCryptoPassesTheKnownAnswerVectors() async throws {
        try await TestGateway.with { server in
            let result = try await runProcess(["python3", Self.root.appendingPathComponent("Tests/Browser/page_test.py").path, server.base,
                                               Self.root.appendingPathComponent("Fixtures").path], in: Self.root)
            #expect(result.status == 0, "\(result.output)")
            #expect(result.output.contains("browser checks passed"), "\(result.output)")
        }
    }
}
