import Foundation
import Testing
@testable import SafeChatGateway
import SafeChatAPI
import SafeChatTestSupport
import SealedStream

/// Independent clients against the real gateway: curl resuming a download, and the tus client
/// tuspy (PyPI) uploading a file made by `safechat seal`.
@Suite struct InteropTests {
    static let safechat = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("safechat").path

    static func run(_ arguments: [String], in directory: URL) async throws -> (status: Int32, output: String) {
        try await runProcess(arguments, in: directory)
    }

    static func scratch() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("interop-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    @Test(arguments: TestStore.allCases)
    func curlResumesADownloadByteForByte(store: TestStore) async throws {
        let server = try await TestGateway.start(store: store)
        defer { server.removeData() }
        let client = try await HTTP.login(server.base)
        let (_, _, sealed) = try await sealedStream(plaintextSize: 2_000_000)
        let id = try #require(try await client.send(.POST, "/upload", body: sealed).json["file_id"] as? String)
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        // A download that stopped partway, resumed with `curl -C -`.
        try Data(sealed.prefix(777_777)).write(to: dir.appendingPathComponent("partial"))
        let result = try await Self.run(["curl", "-sS", "-f", "-C", "-", "-H", "Authorization: Bearer \(client.token!)",
                                   "-o", "partial", "\(server.base)/download/\(id)"], in: dir)
        #expect(result.status == 0, "\(result.output)")
        #expect(fingerprint(try Data(contentsOf: dir.appendingPathComponent("partial"))) == fingerprint(sealed))
        await server.stop()
    }

    @Test(arguments: TestStore.allCases)
    func tuspyUploadsASealedFileThatThenDownloadsAndOpens(store: TestStore) async throws {
        let server = try await TestGateway.start(store: store)
        defer { server.removeData() }
        let client = try await HTTP.login(server.base)
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let plaintext = Secrets.randomBytes(1_500_000) + Array(repeating: 65, count: 500_000)
        try Data(plaintext).write(to: dir.appendingPathComponent("plain"))
        #expect(try await Self.run([Self.safechat, "keygen", "key"], in: dir).status == 0)
        #expect(try await Self.run([Self.safechat, "seal", "--key", "key", "--chunk-size", "64K", "plain", "sealed"], in: dir).status == 0)
        let script = """
            import sys
            from tusclient import client
            c = client.TusClient(sys.argv[1] + "/uploads", headers={"Authorization": "Bearer " + sys.argv[2]})
            u = c.uploader("sealed", chunk_size=300000, metadata={"filename": "encrypted-name"}, upload_checksum=True)
            u.upload()
            print(u.url)
            """
        let result = try await Self.run(["python3", "-c", script, server.base, client.token!], in: dir)
        #expect(result.status == 0, "\(result.output)")
        let url = result.output.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").last.map(String.init) ?? ""
        let id = try #require(url.split(separator: "/").last.map(String.init))
        #expect(FileID(id) != nil, "\(result.output)")
        let download = try await client.send(.GET, "/download/\(id)")
        #expect(download.status == 200)
        try Data(download.body).write(to: dir.appendingPathComponent("downloaded"))
        #expect(try await Self.run([Self.safechat, "open", "--key", "key", "downloaded", "opened"], in: dir).status == 0)
        #expect(fingerprint(try Data(contentsOf: dir.appendingPathComponent("opened"))) == fingerprint(plaintext))
        await server.stop()
    }
}
