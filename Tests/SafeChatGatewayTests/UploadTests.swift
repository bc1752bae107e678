import Foundation
import Testing
@testable import SafeChatGateway
import SafeChatAPI
import SafeChatTestSupport
import SealedStream

@Suite struct UploadTests {
    @Test(arguments: TestStore.allCases)
    func postUploadStoresAStreamThatDownloadsAndOpens(store: TestStore) async throws {
        let server = try await TestGateway.start(store: store)
        defer { server.removeData() }
        let client = try await HTTP.login(server.base)
        let (key, plaintext, sealed) = try await sealedStream(plaintextSize: 300_000)
        let reply = try await client.send(.POST, "/upload", body: sealed)
        #expect(reply.status == 201)
        let id = try #require(reply.json["file_id"] as? String)
        #expect(FileID(id) != nil)
        let download = try await client.send(.GET, "/download/\(id)")
        #expect(download.status == 200)
        #expect(fingerprint(download.body) == fingerprint(sealed))
        #expect(fingerprint(try await openStream(download.body, key: key)) == fingerprint(plaintext))
        let manifest = try await client.send(.GET, "/files/\(id)").json
        #expect(manifest["size"] as? Int == sealed.count)
        #expect(manifest["plaintextSize"] as? Int == plaintext.count)
        #expect(manifest["digest"] as? String == streamDigest(sealed))
        #expect(download.header("ETag") == "\"\(streamDigest(sealed))\"")
        #expect((manifest["records"] as? [Any])?.count == 5)
        #expect(try await client.send(.POST, "/upload", body: sealed, authorized: false).status == 401)
        await server.stop()
    }

    @Test(arguments: TestStore.allCases)
    func malformedOrIncompleteStreamsAreRefusedAndNothingIsKept(store: TestStore) async throws {
        let server = try await TestGateway.start(store: store)
        defer { server.removeData() }
        let client = try await HTTP.login(server.base)
        let (_, _, sealed) = try await sealedStream(plaintextSize: 200_000)
        var badMiddle = sealed
        // Corrupt the length field of the second record header: framing breaks mid-stream.
        let second = 92 + 16 + 65536 + 16
        badMiddle[second + 12] = 0xFF
        let cases: [(String, [UInt8], String)] = [
            ("bad framing mid-stream", badMiddle, "malformed_stream"),
            ("not a sealed stream", Array("hello world".utf8), "malformed_stream"),
            ("truncated", Array(sealed.prefix(sealed.count - 10)), "incomplete_stream"),
            ("trailing bytes", sealed + [1, 2, 3], "malformed_stream"),
        ]
        for (name, body, code) in cases {
            let reply = try await client.send(.POST, "/upload", body: body)
            #expect(reply.status == 422, "\(name): \(reply.status) \(reply.text)")
            #expect(reply.json["error"] as? String == code, "\(name): \(reply.text)")
        }
        #expect((try await client.send(.GET, "/files").json["files"] as? [Any])?.isEmpty == true)
        let stored = try await server.storedBlobs()
        #expect(stored.files.isEmpty && stored.uploads.isEmpty, "\(stored)")
        await server.stop()
    }

    @Test(arguments: TestStore.allCases)
    func tusUploadInPiecesWithEveryDiscoveryHeader(store: TestStore) async throws {
        let server = try await TestGateway.start(store: store)
        defer { server.removeData() }
        let client = try await HTTP.login(server.base)
        let options = try await client.send(.OPTIONS, "/uploads", authorized: false)
        #expect(options.status == 204)
        #expect(options.header("Tus-Version") == "1.0.0")
        #expect(options.header("Tus-Extension")?.contains("checksum") == true)
        #expect(options.header("Tus-Checksum-Algorithm") == "sha1,sha256")
        let (key, plaintext, sealed) = try await sealedStream(plaintextSize: 250_000)
        let name = Data("secret name, encrypted by the client".utf8).base64EncodedString()
        let path = try await client.createUpload(length: sealed.count, metadata: "filename \(name),flag")
        let id = String(path.split(separator: "/").last!)
        var head = try await client.send(.HEAD, path, headers: [("Tus-Resumable", "1.0.0")])
        #expect(head.status == 200 && head.header("Upload-Offset") == "0" && head.header("Upload-Length") == "\(sealed.count)")
        #expect(head.header("Cache-Control") == "no-store")
        #expect(head.header("Upload-Metadata")?.contains("filename \(name)") == true)
        // Pieces that cut records anywhere.
        var offset = 0
        for size in [50, 70_000, 1, 100_000] {
            let reply = try await client.patch(path, offset: offset, sealed[offset..<(offset + size)])
            #expect(reply.status == 204, "\(reply.text)")
            offset += size
            #expect(reply.header("Upload-Offset") == "\(offset)")
            #expect(reply.header("Upload-Expires") != nil)
        }
        head = try await client.send(.HEAD, path, headers: [("Tus-Resumable", "1.0.0")])
        #expect(head.header("Upload-Offset") == "\(offset)")
        let last = try await client.patch(path, offset: offset, sealed[offset...])
        #expect(last.status == 204 && last.header("Upload-Offset") == "\(sealed.count)")
        let download = try await client.send(.GET, "/download/\(id)")
        #expect(fingerprint(try await openStream(download.body, key: key)) == fingerprint(plaintext))
        let manifest = try await client.send(.GET, "/files/\(id)").json
        #expect((manifest["metadata"] as? [String: String])?["filename"] == name)
        await server.stop()
    }

    @Test(arguments: TestStore.allCases)
    func tusErrorsHaveTheirStatusCodes(store: TestStore) async throws {
        let server = try await TestGateway.start(store: store) { $0.maxFileSize = 1 << 20 }
        defer { server.removeData() }
        let client = try await HTTP.login(server.base)
        let (_, _, sealed) = try await sealedStream(plaintextSize: 100_000)
        let path = try await client.createUpload(length: sealed.count)
        let tus = ("Tus-Resumable", "1.0.0")
        // Version, content type, offsets.
        #expect(try await client.send(.POST, "/uploads", headers: [("Upload-Length", "10")]).status == 412)
        #expect(try await client.send(.PATCH, path, headers: [tus, ("Upload-Offset", "0"), ("Content-Type", "text/plain")], body: [1]).status == 415)
        #expect(try await client.send(.PATCH, path, headers: [tus, ("Content-Type", "application/offset+octet-stream")], body: [1]).status == 400)
        #expect(try await client.patch(path, offset: 5, sealed.prefix(10)).status == 409)
        #expect(try await client.patch(path, offset: -1, sealed.prefix(10)).status == 400)
        // Bad Upload-Length and metadata.
        for length in ["-1", "abc", ""] {
            #expect(try await client.send(.POST, "/uploads", headers: [tus, ("Upload-Length", length)]).status == 400, "length \(length)")
        }
        #expect(try await client.send(.POST, "/uploads", headers: [tus]).status == 400)
        #expect(try await client.send(.POST, "/uploads", headers: [tus, ("Upload-Length", "2000000")]).status == 413)
        for metadata in ["key not-base64!", "a b c", "k\u{e9} YQ==", "dup YQ==,dup YQ==", String(repeating: "k", count: 5000)] {
            #expect(try await client.send(.POST, "/uploads", headers: [tus, ("Upload-Length", "10"), ("Upload-Metadata", metadata)]).status == 400, "\(metadata.prefix(20))")
        }
        // Checksums: a mismatch is 460 and stores nothing; sha1 and sha256 both work.
        let piece = Array(sealed.prefix(1000))
        let wrong = try await client.patch(path, offset: 0, piece, extraHeaders: [("Upload-Checksum", "sha1 \(Data(repeating: 0, count: 20).base64EncodedString())")])
        #expect(wrong.status == 460)
        #expect(try await client.send(.HEAD, path, headers: [tus]).header("Upload-Offset") == "0")
        #expect(try await client.patch(path, offset: 0, piece, extraHeaders: [("Upload-Checksum", "md5 AAAA")]).status == 400)
        let sha1 = Data(SHA1.digest(piece)).base64EncodedString()
        #expect(try await client.patch(path, offset: 0, piece, extraHeaders: [("Upload-Checksum", "sha1 \(sha1)")]).status == 204)
        let next = Array(sealed[1000..<5000])
        let sha256 = Data(SHA256Hasher.hash(next)).base64EncodedString()
        #expect(try await client.patch(path, offset: 1000, next, extraHeaders: [("Upload-Checksum", "sha256 \(sha256)")]).status == 204)
        // Malformed framing in the middle of a PATCH: 422, offset unchanged.
        var garbage = Array(sealed[5000..<9000]); garbage[0...3] = [0xFF, 0xFF, 0xFF, 0xFF]
        let framing = try await client.patch(path, offset: 5000, Array(sealed[5000..<(92 + 16 + 65536 + 16)]) + [0xFF, 0xFF, 0xFF, 0xFF] + Array(repeating: 0, count: 12))
        #expect(framing.status == 422, "\(framing.text)")
        #expect(try await client.send(.HEAD, path, headers: [tus]).header("Upload-Offset") == "5000")
        // Past the declared length.
        let over = try await client.patch(path, offset: 5000, Array(sealed[5000...]) + [0])
        #expect(over.status == 413 || over.status == 422, "\(over.text)")
        // X-HTTP-Method-Override: a POST acting as PATCH finishes the upload.
        let overridden = try await client.send(.POST, path, headers: [tus, ("X-HTTP-Method-Override", "PATCH"), ("Upload-Offset", "5000"),
                                                                       ("Content-Type", "application/offset+octet-stream")], body: Array(sealed[5000...]))
        #expect(overridden.status == 204, "\(overridden.text)")
        #expect(overridden.header("Upload-Offset") == "\(sealed.count)")
        // Termination.
        let doomed = try await client.createUpload(length: 500)
        #expect(try await client.send(.DELETE, doomed, headers: [tus]).status == 204)
        #expect(try await client.send(.HEAD, doomed, headers: [tus]).status == 404)
        await server.stop()
    }

    @Test(arguments: TestStore.allCases)
    func creationWithUploadAndQuota(store: TestStore) async throws {
        let server = try await TestGateway.start(store: store) { $0.userQuota = 300_000 }
        defer { server.removeData() }
        let client = try await HTTP.login(server.base)
        let (_, _, sealed) = try await sealedStream(plaintextSize: 200_000)
        let reply = try await client.send(.POST, "/uploads", headers: [("Tus-Resumable", "1.0.0"), ("Upload-Length", "\(sealed.count)"),
                                                                        ("Content-Type", "application/offset+octet-stream")], body: sealed)
        #expect(reply.status == 201 && reply.header("Upload-Offset") == "\(sealed.count)")
        // 200 KB stored, quota 300 KB: another 200 KB does not fit, declared or not.
        #expect(try await client.send(.POST, "/uploads", headers: [("Tus-Resumable", "1.0.0"), ("Upload-Length", "\(sealed.count)")]).status == 413)
        let (_, _, another) = try await sealedStream(plaintextSize: 200_000)
        let post = try await client.send(.POST, "/upload", body: another)
        #expect(post.status == 413, "\(post.text)")
        await server.stop()
    }

    @Test(arguments: TestStore.allCases)
    func anotherUsersUploadsAndFilesDoNotExistForYou(store: TestStore) async throws {
        let server = try await TestGateway.start(store: store)
        defer { server.removeData() }
        try await server.gateway.users.add("mallory", password: "mallory-password")
        let owner = try await HTTP.login(server.base)
        let other = try await HTTP.login(server.base, user: "mallory", password: "mallory-password")
        let (_, _, sealed) = try await sealedStream(plaintextSize: 10_000)
        let path = try await owner.createUpload(length: sealed.count)
        let tus = ("Tus-Resumable", "1.0.0")
        #expect(try await other.send(.HEAD, path, headers: [tus]).status == 404)
        #expect(try await other.patch(path, offset: 0, sealed).status == 404)
        #expect(try await other.send(.DELETE, path, headers: [tus]).status == 404)
        #expect(try await owner.patch(path, offset: 0, sealed).status == 204)
        let id = String(path.split(separator: "/").last!)
        for path in ["/download/\(id)", "/files/\(id)", "/files/\(id)/chunks/0"] {
            #expect(try await other.send(.GET, path).status == 404, "\(path)")
        }
        #expect(try await other.send(.DELETE, "/files/\(id)").status == 404)
        #expect((try await other.send(.GET, "/files").json["files"] as? [Any])?.isEmpty == true)
        #expect(try await owner.send(.GET, "/download/\(id)").status == 200)
        await server.stop()
    }

    @Test(arguments: TestStore.allCases)
    func concurrentPatchesToOneUploadDoNotCorruptIt(store: TestStore) async throws {
        let server = try await TestGateway.start(store: store)
        defer { server.removeData() }
        let client = try await HTTP.login(server.base)
        let (key, plaintext, sealed) = try await sealedStream(plaintextSize: 2_000_000)
        let path = try await client.createUpload(length: sealed.count)
        let replies = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<4 { group.addTask { try await client.patch(path, offset: 0, sealed.prefix(1_000_000)).status } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(replies.filter { $0 == 204 }.count >= 1)
        #expect(replies.allSatisfy { [204, 409, 423].contains($0) }, "\(replies)")
        let offset = Int(try await client.send(.HEAD, path, headers: [("Tus-Resumable", "1.0.0")]).header("Upload-Offset")!)!
        #expect(offset == 1_000_000)
        #expect(try await client.patch(path, offset: offset, sealed[offset...]).status == 204)
        let id = String(path.split(separator: "/").last!)
        #expect(fingerprint(try await openStream(try await client.send(.GET, "/download/\(id)").body, key: key)) == fingerprint(plaintext))
        await server.stop()
    }

    @Test(arguments: TestStore.allCases)
    func abandonedUploadsAreRemovedPastTheirExpiry(store: TestStore) async throws {
        let server = try await TestGateway.start(store: store) { $0.uploadExpiry = 3600 }
        defer { server.removeData() }
        let client = try await HTTP.login(server.base)
        let (_, _, sealed) = try await sealedStream(plaintextSize: 100_000)
        let path = try await client.createUpload(length: sealed.count)
        #expect(try await client.patch(path, offset: 0, sealed.prefix(50_000)).status == 204)
        let expires = try #require(try await client.send(.HEAD, path, headers: [("Tus-Resumable", "1.0.0")]).header("Upload-Expires"))
        #expect(expires.hasSuffix("GMT"))
        #expect(try await server.gateway.uploads.sweep(now: Date()) == 0, "not expired yet")
        // An hour later (the clock is passed in, so the test does not wait for it).
        #expect(try await server.gateway.uploads.sweep(now: Date().addingTimeInterval(3601)) == 1)
        #expect(try await client.send(.HEAD, path, headers: [("Tus-Resumable", "1.0.0")]).status == 404)
        #expect(try await server.storedBlobs().uploads.isEmpty)
        #expect(try await server.recordedRegistry().uploads.isEmpty)
        await server.stop()
    }
}
