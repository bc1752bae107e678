import Foundation
import Testing
@testable import SafeChatGateway
import SafeChatAPI
import SafeChatTestSupport
import SealedStream

/// tus and HTTP edge cases: overrides, expiry, HEAD, OPTIONS, error bodies, timeouts.
@Suite struct ProtocolEdgeTests {
    @Test func methodOverrideHonoursOnlyPatchAndDeleteOnUploadURLs() async throws {
        try await TestGateway.with { server in
            let client = try await HTTP.login(server.base)
            let (_, _, sealed) = try await sealedStream(plaintextSize: 100_000)
            let path = try await client.createUpload(length: sealed.count)
            for (route, value) in [(path, "HEAD"), (path, "GET"), (path, "OPTIONS"), (path, "bogus"), ("/files", "DELETE"), ("/upload", "PATCH")] {
                let reply = try await client.send(.POST, route, headers: [("X-HTTP-Method-Override", value), ("Tus-Resumable", "1.0.0")])
                #expect(reply.status == 400, "\(route) \(value): \(reply.status)")
                #expect(reply.json["error"] as? String == "bad_request", "\(route) \(value): \(reply.text)")
                #expect(reply.header("Content-Length") == "\(reply.body.count)")
            }
            let patched = try await client.send(.POST, path, headers: [
                ("X-HTTP-Method-Override", "PATCH"), ("Tus-Resumable", "1.0.0"), ("Upload-Offset", "0"),
                ("Content-Type", "application/offset+octet-stream"),
            ], body: sealed)
            #expect(patched.status == 204)
        }
    }

    @Test func anExpiredUploadIsRefusedAtOnce() async throws {
        let clock = TestClock()
        try await TestGateway.with(configure: { $0.uploadExpiry = 3600; $0.clock = clock.now }) { server in
            let client = try await HTTP.login(server.base)
            let (_, _, sealed) = try await sealedStream(plaintextSize: 100_000)
            let path = try await client.createUpload(length: sealed.count)
            #expect(try await client.patch(path, offset: 0, sealed.prefix(1000)).status == 204)
            clock.advance(by: 3601)
            // No sweep has run (it runs once a minute); the upload is refused all the same.
            let patch = try await client.patch(path, offset: 1000, sealed[1000...])
            #expect(patch.status == 410, "\(patch.text)")
            #expect(patch.json["error"] as? String == "upload_expired")
            #expect([404, 410].contains(try await client.send(.HEAD, path, headers: [("Tus-Resumable", "1.0.0")]).status))
            #expect(try await server.gateway.registry.uploads().isEmpty, "refused and removed without waiting for the sweep")
            #expect(try FileManager.default.contentsOfDirectory(atPath: server.dataDirectory + "/data/partial").isEmpty)
        }
    }

    @Test func headReturnsTheStoredMetadataAndNeedsTusResumable() async throws {
        try await TestGateway.with { server in
            let client = try await HTTP.login(server.base)
            let path = try await client.createUpload(length: 1000, metadata: "name c2VjcmV0,kind YQ==")
            let head = try await client.send(.HEAD, path, headers: [("Tus-Resumable", "1.0.0"), ("Upload-Metadata", "name ZXZpbA==")])
            #expect(head.status == 200)
            #expect(head.header("Upload-Metadata") == "kind YQ==,name c2VjcmV0")
            #expect(try await client.send(.HEAD, path).status == 412)
        }
    }

    @Test func optionsCarriesTheTusHeadersWithAndWithoutOrigin() async throws {
        try await TestGateway.with { server in
            let anonymous = HTTP(base: server.base)
            for headers in [[], [("Origin", "https://example.org"), ("Access-Control-Request-Method", "PATCH")]] {
                for path in ["/uploads", "/uploads/0123456789abcdef0123456789abcdef"] {
                    let reply = try await anonymous.send(.OPTIONS, path, headers: headers)
                    #expect([200, 204].contains(reply.status), "\(path) \(headers)")
                    #expect(reply.header("Tus-Version") == "1.0.0", "\(path) \(headers)")
                    #expect(reply.header("Tus-Resumable") == "1.0.0", "\(path) \(headers)")
                    #expect(reply.header("Tus-Extension")?.contains("creation-defer-length") == true, "\(path) \(headers)")
                    #expect(reply.header("Tus-Max-Size") != nil, "\(path) \(headers)")
                }
            }
        }
    }

    @Test func unknownRoutesAndWrongMethodsAnswerTheJSONErrorBody() async throws {
        try await TestGateway.with { server in
            let client = try await HTTP.login(server.base)
            let unknown = try await client.send(.GET, "/no/such/route")
            #expect(unknown.status == 404)
            #expect(unknown.json["error"] as? String == "not_found")
            #expect(unknown.header("Content-Type")?.hasPrefix("application/json") == true)
            let wrongMethod = try await client.send(.PUT, "/files")
            #expect(wrongMethod.status == 405)
            #expect(wrongMethod.json["error"] as? String == "method_not_allowed")
            #expect(wrongMethod.header("Allow")?.contains("GET") == true)
            let wrongLogin = try await client.send(.GET, "/login")
            #expect(wrongLogin.status == 405)
            #expect(wrongLogin.header("Allow") == "POST")
            let oversized = try await client.send(.POST, "/login", body: Array(repeating: 0x20, count: 70_000))
            #expect([400, 413].contains(oversized.status))
            #expect(oversized.json["error"] is String, "\(oversized.text)")
        }
    }

    @Test func aStalledPatchReleasesItsUploadAfterTheTimeout() async throws {
        try await TestGateway.with(configure: { $0.bodyStallTimeout = .seconds(1) }) { server in
            let client = try await HTTP.login(server.base)
            let (_, _, sealed) = try await sealedStream(plaintextSize: 300_000)
            let path = try await client.createUpload(length: sealed.count)
            // A client that sends half its body and then goes silent, without closing.
            let socket = try RawConnection(port: server.port)
            defer { socket.close() }
            try socket.send(Array("PATCH \(path) HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(client.token!)\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: \(sealed.count)\r\n\r\n".utf8))
            try socket.send(Array(sealed.prefix(100_000)))
            // While the body is live the upload is held: another PATCH gets 423. (Probed once the
            // stalled request holds it; a probe racing its arrival could take the upload first.)
            let id = try #require(FileID(String(path.split(separator: "/").last!)))
            let arrival = ContinuousClock.now + .seconds(5)
            while await !server.gateway.uploads.isBeingAppended(id), ContinuousClock.now < arrival {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(try await client.patch(path, offset: 0, [0x00]).status == 423, "held while the body is live")
            // Past the stall timeout the connection is closed and the bytes that arrived are kept.
            // (Each try is bounded: under the whole suite's load one hung attempt once outlasted
            // the deadline on its own.)
            let deadline = ContinuousClock.now + .seconds(40)
            var offset = -1
            while ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(250))
                // A refusal may come while the body is still being sent, and the server then closes
                // the connection: the client sees that instead of the answer. Either way, try again.
                // Resume as a client does: from the offset the gateway reports.
                guard let head = try? await client.send(.HEAD, path, headers: [("Tus-Resumable", "1.0.0")], timeout: .seconds(5)),
                      let from = Int(head.header("Upload-Offset") ?? ""), from > 0, from <= sealed.count,
                      let reply = try? await client.patch(path, offset: from, sealed[from...], timeout: .seconds(10)) else { continue }
                if reply.status == 204 { offset = Int(reply.header("Upload-Offset") ?? "") ?? -1; break }
                #expect([409, 423].contains(reply.status), "\(reply.status) \(reply.text)")
            }
            #expect(offset == sealed.count)
            #expect(socket.isClosedByPeer(within: .seconds(2)))
        }
    }

    /// The gateway joins small body parts before an upload sees them (RequestBodyCoalescer): a body
    /// trickled in small pieces still arrives whole, and one cut off keeps every byte that came,
    /// including those not yet joined into a full part.
    @Test func aBodyTrickledInSmallPiecesArrivesWholeAndACutOneKeepsEveryByte() async throws {
        try await TestGateway.with { server in
            let client = try await HTTP.login(server.base)
            let (key, plaintext, sealed) = try await sealedStream(plaintextSize: 700_000)
            let path = try await client.createUpload(length: sealed.count)
            let head = "PATCH \(path) HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(client.token!)\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: \(sealed.count)\r\n\r\n"
            // 150 000 bytes in 1 000-byte writes, some paused, then the connection closes.
            let cut = 150_000
            let socket = try RawConnection(port: server.port)
            try socket.send(Array(head.utf8))
            for start in stride(from: 0, to: cut, by: 1_000) {
                try socket.send(Array(sealed[start..<start + 1_000]))
                if start % 50_000 == 0 { try await Task.sleep(for: .milliseconds(30)) }
            }
            socket.close()
            var offset = -1
            for _ in 0..<100 {
                let reply = try await client.send(.HEAD, path, headers: [("Tus-Resumable", "1.0.0")])
                offset = Int(reply.header("Upload-Offset") ?? "") ?? -1
                if offset == cut { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(offset == cut, "the gateway kept \(offset) of the \(cut) bytes that arrived")
            // The rest, trickled too, completes the file.
            let rest = try RawConnection(port: server.port)
            defer { rest.close() }
            try rest.send(Array(head.replacingOccurrences(of: "Upload-Offset: 0", with: "Upload-Offset: \(cut)")
                .replacingOccurrences(of: "Content-Length: \(sealed.count)", with: "Content-Length: \(sealed.count - cut)").utf8))
            for start in stride(from: cut, to: sealed.count, by: 1_000) {
                try rest.send(Array(sealed[start..<min(start + 1_000, sealed.count)]))
            }
            let id = String(path.split(separator: "/").last!)
            var body: [UInt8] = []
            for _ in 0..<100 {
                let reply = try await client.send(.GET, "/download/\(id)")
                if reply.status == 200 { body = reply.body; break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(fingerprint(try await openStream(body, key: key)) == fingerprint(plaintext))
        }
    }

    @Test func aConnectionThatNeverFinishesItsHeadIsClosed() async throws {
        try await TestGateway.with(configure: { $0.idleTimeout = .seconds(1) }) { server in
            let socket = try RawConnection(port: server.port)
            defer { socket.close() }
            try socket.send(Array("GET /files HTTP/1.1\r\nHost: x\r\n".utf8))
            let start = ContinuousClock.now
            #expect(socket.isClosedByPeer(within: .seconds(20)))
            #expect(ContinuousClock.now - start >= .milliseconds(800))
            // An idle keep-alive connection likewise.
            let idle = try RawConnection(port: server.port)
            defer { idle.close() }
            try idle.send(Array("OPTIONS /uploads HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
            // A generous bound: with the whole suite running on two cores the event loops can be
            // busy for seconds; a connection the timeout did not cover would stay open for good.
            #expect(idle.isClosedByPeer(within: .seconds(20)))
        }
    }

    /// HEAD works wherever GET does (issue 24): the same status and headers, and no body.
    @Test func headWorksWhereverGetDoes() async throws {
        try await TestGateway.with { server in
            let client = try await HTTP.login(server.base)
            let (_, _, sealed) = try await sealedStream(plaintextSize: 100_000)
            let file = try #require(try await client.send(.POST, "/upload", body: sealed).json["file_id"] as? String)
            let asset = try #require(String(decoding: try await client.send(.GET, "/").body, as: UTF8.self)
                .firstMatch(of: /src="(\/assets\/[^"]+)"/).map { String($0.1) })
            for path in ["/", asset, "/files", "/files/\(file)", "/files/\(file)/chunks/0", "/download/\(file)", "/keys/user1", "/sessions",
                         "/files/\(String(repeating: "0", count: 32))", "/get_chat_key?session=\(String(repeating: "0", count: 32))"] {
                let get = try await client.send(.GET, path), head = try await client.send(.HEAD, path)
                #expect(head.status == get.status, "\(path): HEAD \(head.status), GET \(get.status)")
                #expect(head.header("Content-Type") == get.header("Content-Type"), "\(path)")
                if let length = get.header("Content-Length") { #expect(head.header("Content-Length") == length, "\(path)") }
                #expect(head.body.isEmpty)
            }
        }
    }
}
