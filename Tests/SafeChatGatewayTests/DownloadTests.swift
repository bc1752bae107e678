import Foundation
import Testing
@testable import SafeChatGateway
import SafeChatAPI
import SafeChatTestSupport
import SealedStream

@Suite struct DownloadTests {
    /// Uploaded with direct I/O or through the page cache, and on S3 (read with ranged GETs).
    @Test(arguments: [(TestStore.local, true), (TestStore.local, false), (TestStore.s3, true)])
    func rangesETagsAndHead(store: TestStore, directIO: Bool) async throws {
        let server = try await TestGateway.start(store: store) { $0.directIO = directIO }
        defer { server.removeData() }
        let client = try await HTTP.login(server.base)
        let (_, _, sealed) = try await sealedStream(plaintextSize: 5_000_000)
        let id = try #require(try await client.send(.POST, "/upload", body: sealed).json["file_id"] as? String)
        let n = sealed.count
        let whole = try await client.send(.GET, "/download/\(id)")
        #expect(whole.status == 200 && whole.header("Accept-Ranges") == "bytes")
        let etag = try #require(whole.header("ETag"))
        #expect(etag == "\"\(streamDigest(sealed))\"")
        #expect(whole.body == sealed)
        let cases: [(String, Range<Int>)] = [("bytes=0-99", 0..<100), ("bytes=100-", 100..<n), ("bytes=-10", (n - 10)..<n),
                                             ("bytes=4095-4200000", 4095..<4_200_001),
                                             ("bytes=\(n - 5)-\(n + 100)", (n - 5)..<n), ("bytes=-\(n + 50)", 0..<n)]
        for (header, range) in cases {
            let reply = try await client.send(.GET, "/download/\(id)", headers: [("Range", header)])
            #expect(reply.status == 206, "\(header)")
            #expect(reply.header("Content-Range") == "bytes \(range.lowerBound)-\(range.upperBound - 1)/\(n)", "\(header)")
            #expect(reply.body == Array(sealed[range]), "\(header)")
        }
        for header in ["bytes=\(n)-", "bytes=\(n + 10)-\(n + 20)", "bytes=-0"] {
            let reply = try await client.send(.GET, "/download/\(id)", headers: [("Range", header)])
            #expect(reply.status == 416, "\(header)")
            #expect(reply.header("Content-Range") == "bytes */\(n)")
        }
        // Several ranges or nonsense: the whole file.
        #expect(try await client.send(.GET, "/download/\(id)", headers: [("Range", "bytes=0-1,5-6")]).status == 200)
        #expect(try await client.send(.GET, "/download/\(id)", headers: [("Range", "items=0-1")]).status == 200)
        // If-Range: the range only if the ETag still matches.
        let matching = try await client.send(.GET, "/download/\(id)", headers: [("Range", "bytes=10-19"), ("If-Range", etag)])
        #expect(matching.status == 206 && matching.body.count == 10)
        let stale = try await client.send(.GET, "/download/\(id)", headers: [("Range", "bytes=10-19"), ("If-Range", "\"old\"")])
        #expect(stale.status == 200 && stale.body.count == n)
        let head = try await client.send(.HEAD, "/download/\(id)")
        #expect(head.status == 200 && head.header("Content-Length") == "\(n)" && head.header("ETag") == etag)
        await server.stop()
    }

    @Test(arguments: TestStore.allCases)
    func chunksManifestsListingAndDeletion(store: TestStore) async throws {
        let server = try await TestGateway.start(store: store)
        defer { server.removeData() }
        let client = try await HTTP.login(server.base)
        let (key, plaintext, sealed) = try await sealedStream(plaintextSize: 200_000)
        let id = try #require(try await client.send(.POST, "/upload", body: sealed).json["file_id"] as? String)
        let manifest = try await client.send(.GET, "/files/\(id)").json
        let records = try #require(manifest["records"] as? [[String: Any]])
        #expect(records.count == 4)
        // Random access: the header from the manifest and one chunk from the gateway open chunk 2 alone.
        let header = try StreamHeader.parse((manifest["header"] as? [Int])!.map { UInt8($0) })
        let chunk = try await client.send(.GET, "/files/\(id)/chunks/2")
        #expect(chunk.status == 200 && chunk.body.count == records[2]["length"] as? Int)
        let opened = try ChunkOpener(key: key, header: header).open(record: chunk.body, index: 2)
        #expect(opened.plaintext == Array(plaintext[131_072..<196_608]))
        #expect(try await client.send(.GET, "/files/\(id)/chunks/4").status == 404)
        #expect(try await client.send(.GET, "/files/\(id)/chunks/-1").status == 404)
        #expect(try await client.send(.GET, "/files/\(id)/chunks/x").status == 404)
        let listing = try #require(try await client.send(.GET, "/files").json["files"] as? [[String: Any]])
        #expect(listing.map { $0["file_id"] as? String } == [id])
        #expect(try await client.send(.DELETE, "/files/\(id)").status == 204)
        #expect(try await client.send(.GET, "/download/\(id)").status == 404)
        #expect(try await client.send(.DELETE, "/files/\(id)").status == 404)
        #expect(try await server.storedBlobs().files.isEmpty)
        await server.stop()
    }

    @Test func malformedIdsAndTraversalNeverReachTheDisk() async throws {
        let server = try await TestGateway.start()
        defer { server.removeData() }
        let client = try await HTTP.login(server.base)
        for id in ["..", "..%2F..%2Fsigning.key", "%2e%2e", "ABCDEF0123456789ABCDEF0123456789", "123", String(repeating: "a", count: 33),
                   "0123456789abcdef0123456789abcdeg", "users.json"] {
            let reply = try await client.send(.GET, "/download/\(id)")
            #expect(reply.status == 400 || reply.status == 404, "\(id): \(reply.status)")
            #expect(!reply.text.contains("password"), "\(id)")
        }
        #expect(try await client.send(.GET, "/download/../signing.key").status == 404)
        #expect(try await client.send(.GET, "/download/0123456789abcdef0123456789abcdef").status == 404)
        #expect(try await client.send(.GET, "/download/zz").json["error"] as? String == "invalid_id")
        await server.stop()
    }
}
