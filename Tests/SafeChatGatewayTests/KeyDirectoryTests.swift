import Foundation
import Testing
@testable import SafeChatGateway
import SafeChatAPI
import SafeChatKeys
import SafeChatTestSupport
import SealedStream

/// PUT /keys/me and GET /keys/{user} on the real gateway.
@Suite struct KeyDirectoryTests {
    @Test func anAccountPublishesItsOwnBundleAndAnyoneFetchesIt() async throws {
        try await TestGateway.with { server in
            let cli = try UserStore(path: Gateway.usersPath(dataDirectory: server.dataDirectory))
            try await cli.add("user2", password: "password-two")
            let user1 = try await HTTP.login(server.base)
            let user2 = try await HTTP.login(server.base, user: "user2", password: "password-two")
            let id1 = try #require(try await server.gateway.users.id(of: "user1"))
            #expect(try await user2.send(.GET, "/keys/user1").status == 404, "nothing published yet")

            let identity = try Identity.generate(userID: bytes(id1.value))
            let published = try await user1.send(.PUT, "/keys/me", headers: [("Content-Type", "application/json")], body: identity.publicBundle.encoded())
            #expect(published.status == 200, "\(published.text)")
            let fetched = try await user2.send(.GET, "/keys/user1")
            #expect(fetched.status == 200)
            let entry = try WireCoding.decoder.decode(KeyDirectoryEntry.self, from: Data(fetched.body))
            #expect(entry.user == "user1" && entry.userID == id1.value)
            // What comes back verifies as the identity that was published.
            let bundle = try PublicIdentity(decoding: Array(try WireCoding.encoder.encode(entry.bundle)))
            #expect(bundle == identity.publicBundle)
            #expect(bundle.fingerprint == identity.publicBundle.fingerprint)

            // A bundle that names another account is refused, and changes nothing.
            let other = try Identity.generate(userID: bytes(id1.value))
            let forUser1 = try await user2.send(.PUT, "/keys/me", body: other.publicBundle.encoded())
            #expect(forUser1.status == 403 && forUser1.json["error"] as? String == "forbidden")
            #expect(try await user2.send(.GET, "/keys/user1").body == fetched.body)
            // Garbage, oversized bodies, no token, unknown users.
            #expect(try await user1.send(.PUT, "/keys/me", body: Array("{\"version\":1}".utf8)).status == 400)
            #expect([400, 413].contains(try await user1.send(.PUT, "/keys/me", body: Array(repeating: 0x20, count: 5000)).status))
            #expect(try await user1.send(.PUT, "/keys/me", body: identity.publicBundle.encoded(), authorized: false).status == 401)
            #expect(try await user1.send(.GET, "/keys/user1", authorized: false).status == 401)
            #expect(try await user1.send(.GET, "/keys/nobody").status == 404)
            #expect(try await user1.send(.GET, "/keys/..%2Fusers").status == 404)

            // Survives a restart.
            let reopened = try JSONFileRegistry(directory: server.dataDirectory + "/registry")
            #expect(await reopened.identity(of: id1)?.bundle == entry.bundle)
        }
    }
}

private func bytes(_ hex: String) -> [UInt8] {
    stride(from: 0, to: hex.count, by: 2).map { i in
        UInt8(hex[hex.index(hex.startIndex, offsetBy: i)..<hex.index(hex.startIndex, offsetBy: i + 2)], radix: 16)!
    }
}
