import Foundation
import Testing
@testable import SafeChatGateway
import SafeChatAPI
import SafeChatTestSupport
import SealedStream

@Suite struct AuthTests {
    @Test func loginIssuesATokenThatOpensTheAPI() async throws {
        let server = try await TestGateway.start()
        defer { server.removeData() }
        let client = try await HTTP.login(server.base)
        #expect(try await client.send(.GET, "/files").status == 200)
        #expect(try await client.send(.GET, "/files", authorized: false).status == 401)
        let reply = try await HTTP(base: server.base).send(.POST, "/login", body: Array(#"{"username":"user1","password":"password123"}"#.utf8))
        #expect(reply.json["expires_at"] is String)
        await server.stop()
    }

    @Test func wrongUserAndWrongPasswordGetTheSameAnswer() async throws {
        let server = try await TestGateway.start()
        defer { server.removeData() }
        let anonymous = HTTP(base: server.base)
        func attempt(_ user: String, _ password: String) async throws -> (Reply, Double) {
            let start = Date()
            let reply = try await anonymous.send(.POST, "/login", body: Array("{\"username\":\"\(user)\",\"password\":\"\(password)\"}".utf8))
            return (reply, Date().timeIntervalSince(start))
        }
        var passwordTimes: [Double] = [], userTimes: [Double] = []
        // Two rounds: a fifth failure from one address would be throttled.
        for _ in 0..<2 {
            let (wrongPassword, t1) = try await attempt("user1", "not-the-password")
            let (wrongUser, t2) = try await attempt("nobody", "not-the-password")
            #expect(wrongPassword.status == 401 && wrongUser.status == 401)
            #expect(wrongPassword.text == wrongUser.text)
            passwordTimes.append(t1)
            userTimes.append(t2)
        }
        // A lookup that skipped scrypt for an unknown name would answer in about 1 ms; both pay for
        // one scrypt (tens of ms). The times are not compared with each other: with the rest of the
        // suite logging in at once, each waits behind a different queue of scrypts in the thread pool.
        #expect(passwordTimes.min()! > 0.02 && userTimes.min()! > 0.02, "\(passwordTimes) \(userTimes)")
        // The work itself is the same: an unknown name is checked against a decoy of the same cost.
        let users = try UserStore(path: server.dataDirectory + "/users.json")
        let decoy = await users.decoy
        #expect((decoy.n, decoy.r, decoy.p) == UserStore.cost)
        #expect(try await anonymous.send(.POST, "/login", body: Array("not json".utf8)).status == 400)
        await server.stop()
    }

    @Test func repeatedFailuresAreThrottledWithRetryAfter() async throws {
        // The clock stands still unless the test moves it, so a slow machine cannot outlast a lock.
        let clock = TestClock()
        try await TestGateway.with(configure: { $0.clock = clock.now }) { server in
            let anonymous = HTTP(base: server.base)
            func attempt(_ password: String) async throws -> Reply {
                try await anonymous.send(.POST, "/login", body: Array("{\"username\":\"user1\",\"password\":\"\(password)\"}".utf8))
            }
            var statuses: [Int] = []
            for _ in 0..<7 {
                let reply = try await attempt("wrong-guess")
                statuses.append(reply.status)
                if reply.status == 429 { #expect(Int(reply.header("Retry-After") ?? "") ?? 0 >= 1) }
            }
            #expect(statuses == [401, 401, 401, 401, 401, 429, 429], "\(statuses)")
            // Even the right password waits out the lock.
            #expect(try await attempt("password123").status == 429)
            // Once the 1 s lock has passed, one more guess is admitted, and it doubles the lock.
            clock.advance(by: 1.1)
            #expect(try await attempt("wrong-guess").status == 401)
            #expect(try await attempt("password123").status == 429)
            clock.advance(by: 1.5)
            #expect(try await attempt("password123").status == 429, "locked for 2 s now")
            clock.advance(by: 0.6)
            #expect(try await attempt("password123").status == 200)
        }
    }

    @Test func forgedExpiredWrongAudienceAndUnsignedTokensAreRefused() async throws {
        let server = try await TestGateway.start()
        defer { server.removeData() }
        let keyPath = server.dataDirectory + "/signing.key"
        let good = try await HTTP.login(server.base)
        var refused: [String: String] = [:]
        let user1 = try #require(try await server.gateway.users.id(of: "user1"))
        // Same key, same account, a generation that is not the account's.
        refused["stale generation"] = try await server.gateway.tokens.issue(for: user1, generation: 7).token
        // Same key, an account that does not exist.
        refused["unknown account"] = try await server.gateway.tokens.issue(for: UserID.random(), generation: 0).token
        // Same key, but already expired.
        let expiredIssuer = try await TokenService(signingKeyPath: keyPath, issuer: "safechat-gateway", audience: "safechat", lifetime: -60)
        refused["expired"] = try await expiredIssuer.issue(for: user1, generation: 0).token
        // Same key, another audience / another issuer.
        refused["wrong audience"] = try await TokenService(signingKeyPath: keyPath, issuer: "safechat-gateway", audience: "elsewhere", lifetime: 600).issue(for: user1, generation: 0).token
        refused["wrong issuer"] = try await TokenService(signingKeyPath: keyPath, issuer: "someone", audience: "safechat", lifetime: 600).issue(for: user1, generation: 0).token
        // Another key.
        let otherKey = FileManager.default.temporaryDirectory.appendingPathComponent("other-\(UUID().uuidString).key").path
        refused["foreign key"] = try await TokenService(signingKeyPath: otherKey, issuer: "safechat-gateway", audience: "safechat", lifetime: 600).issue(for: user1, generation: 0).token
        try? FileManager.default.removeItem(atPath: otherKey)
        // A valid token with its signature or payload changed.
        let parts = good.token!.split(separator: ".").map(String.init)
        var signature = Array(parts[2].utf8); signature[3] = signature[3] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        refused["forged signature"] = parts[0] + "." + parts[1] + "." + String(decoding: signature, as: UTF8.self)
        let payload = try JSONSerialization.jsonObject(with: TokenService.base64URLDecode(parts[1])!) as! [String: Any]
        var admin = payload; admin["sub"] = "admin"
        refused["changed payload"] = parts[0] + "." + base64URL(try JSONSerialization.data(withJSONObject: admin)) + "." + parts[2]
        // alg=none and other algorithms.
        refused["alg none"] = base64URL(Data(#"{"alg":"none","typ":"JWT"}"#.utf8)) + "." + parts[1] + "."
        refused["alg HS512"] = base64URL(Data(#"{"alg":"HS512","typ":"JWT"}"#.utf8)) + "." + parts[1] + "." + parts[2]
        refused["garbage"] = "not.a.token"
        for (name, token) in refused {
            let reply = try await HTTP(base: server.base, token: token).send(.GET, "/files")
            #expect(reply.status == 401, "\(name) token: \(reply.status)")
            #expect(reply.json["error"] as? String == "unauthorized")
        }
        #expect(try await good.send(.GET, "/files").status == 200)
        await server.stop()
    }

    @Test func removedUsersLoseAccessAndUsersCanBeAddedWhileRunning() async throws {
        let server = try await TestGateway.start()
        defer { server.removeData() }
        // A second store over the same file, as `safechat user add` would open it.
        let cli = try UserStore(path: Gateway.usersPath(dataDirectory: server.dataDirectory))
        try await cli.add("alice", password: "correct horse battery")
        let alice = try await HTTP.login(server.base, user: "alice", password: "correct horse battery")
        #expect(try await alice.send(.GET, "/files").status == 200)
        try await cli.remove("alice")
        #expect(try await alice.send(.GET, "/files").status == 401)
        await #expect(throws: UserStoreError.self) { try await cli.add("bad name!", password: "whatever123") }
        await #expect(throws: UserStoreError.self) { try await cli.add("bob", password: "short") }
        // `me` is what /keys/me means: no account can have that name, by `safechat user add` either.
        await #expect(throws: UserStoreError.reservedName("me")) { try await cli.add("me", password: "correct horse battery") }
        let added = try await runProcess(["sh", "-c", "printf 'correct horse battery\\n' | \"$0\" user add me --data-dir \"$1\"",
                                          URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("safechat").path,
                                          server.dataDirectory], in: URL(fileURLWithPath: server.dataDirectory))
        #expect(added.status != 0 && added.output.contains("'me' is reserved"), "\(added.output)")
        var info = stat()
        stat(Gateway.usersPath(dataDirectory: server.dataDirectory), &info)
        #expect(info.st_mode & 0o777 == 0o600)
        stat(server.dataDirectory + "/signing.key", &info)
        #expect(info.st_mode & 0o777 == 0o600)
        await server.stop()
    }

    @Test func thePrototypesKeyEndpointNeedsASessionAndALogin() async throws {
        try await TestGateway.with { server in
            #expect(try await HTTP(base: server.base).send(.GET, "/get_chat_key?session=0123456789abcdef0123456789abcdef").status == 401)
            let client = try await HTTP.login(server.base)
            #expect(try await client.send(.GET, "/get_chat_key").status == 400)
            #expect(try await client.send(.GET, "/get_chat_key?session=0123456789abcdef0123456789abcdef").status == 404)
        }
    }
}

func base64URL(_ data: Data) -> String {
    data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
}
