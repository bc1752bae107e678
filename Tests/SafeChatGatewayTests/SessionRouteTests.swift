import Foundation
import Testing
@testable import SafeChatGateway
import SafeChatAPI
import SafeChatKeys
import SafeChatTestSupport
import SealedStream

/// The session routes on the real gateway, with clients made of SafeChatKeys as the CLI uses it.
@Suite struct SessionRouteTests {
    struct Account {
        let name: String
        let http: HTTP
        let identity: Identity
        var entry: (member: EpochDocument.Member, agreementKey: X25519PublicKey) {
            (.init(userID: identity.userID, name: name, signingKey: identity.signingKey.publicKey.rawRepresentation), identity.agreementKey.publicKey)
        }
    }

    func accounts(_ server: TestGateway) async throws -> [Account] {
        let cli = try UserStore(path: Gateway.usersPath(dataDirectory: server.dataDirectory))
        var out: [Account] = []
        for name in ["alice", "bob", "carol"] {
            try await cli.add(name, password: "password-\(name)")
            let http = try await HTTP.login(server.base, user: name, password: "password-\(name)")
            let id = try #require(try await server.gateway.users.id(of: name))
            out.append(Account(name: name, http: http, identity: try Identity.generate(userID: Secrets.bytes(fromHex: id.value)!)))
        }
        return out
    }

    func post(_ http: HTTP, _ path: String, _ epoch: EpochDocument) async throws -> Reply {
        try await http.send(.POST, path, headers: [("Content-Type", "application/json")], body: Array(try WireCoding.encoder.encode(epoch.wire)))
    }

    @Test func membersSeeTheSessionAndTheirKeysEveryoneElseGets404() async throws {
        try await TestGateway.with { server in
            let users = try await accounts(server)
            let (alice, bob, carol) = (users[0], users[1], users[2])
            let sessionID = Secrets.randomBytes(16)
            let id = Secrets.hex(sessionID)
            let key0 = SessionKey.random(), key1 = SessionKey.random()
            let e0 = try EpochDocument.make(sessionID: sessionID, epoch: 0, previous: nil, signer: alice.identity,
                                            members: [alice.entry, bob.entry], key: key0)
            let created = try await post(alice.http, "/sessions", e0)
            #expect(created.status == 201, "\(created.text)")
            #expect(try await post(alice.http, "/sessions", e0).status == 409, "ids are not reused")

            // bob fetches the chain, verifies it, and opens his key from get_chat_key.
            let chain = try WireCoding.decoder.decode(SessionChain.self, from: Data(try await bob.http.send(.GET, "/sessions/\(id)").body))
            let verified = try EpochChain.verify(try chain.epochs.map(EpochDocument.init), sessionID: sessionID) { _ in true }
            #expect(verified == [e0])
            let reply = try await bob.http.send(.GET, "/get_chat_key?session=\(id)")
            #expect(reply.status == 200)
            let wrap = try WireCoding.decoder.decode(WrappedKeyReply.self, from: Data(reply.body))
            #expect(wrap.epoch == 0 && wrap.wrap.userID == Secrets.hex(bob.identity.userID))
            #expect(try e0.openKey(epoch: 0, for: bob.identity).rawBytes == key0.rawBytes)
            let listing = try WireCoding.decoder.decode(SessionListing.self, from: Data(try await bob.http.send(.GET, "/sessions").body))
            #expect(listing.sessions.map(\.sessionID) == [id])

            // carol is no member: 404 everywhere, and she cannot append.
            for path in ["/sessions/\(id)", "/get_chat_key?session=\(id)", "/get_chat_key?session=\(id)&epoch=0"] {
                #expect(try await carol.http.send(.GET, path).status == 404, "\(path)")
            }
            #expect((try WireCoding.decoder.decode(SessionListing.self, from: Data(try await carol.http.send(.GET, "/sessions").body))).sessions.isEmpty)
            let carolsEpoch = try EpochDocument.make(sessionID: sessionID, epoch: 1, previous: e0, signer: carol.identity,
                                                     members: [alice.entry, bob.entry, carol.entry], key: key1)
            #expect(try await post(carol.http, "/sessions/\(id)/epochs", carolsEpoch).status == 404)

            // Two members append epoch 1 at once: exactly one wins. The loser gets 409, or 404 when
            // it is bob and alice's epoch, which removes him, won before his request was checked.
            let byAlice = try EpochDocument.make(sessionID: sessionID, epoch: 1, previous: e0, signer: alice.identity,
                                                 members: [alice.entry, carol.entry], key: key1)
            let byBob = try EpochDocument.make(sessionID: sessionID, epoch: 1, previous: e0, signer: bob.identity,
                                               members: [alice.entry, bob.entry, carol.entry], key: SessionKey.random())
            async let aliceStatus = post(alice.http, "/sessions/\(id)/epochs", byAlice).status
            async let bobStatus = post(bob.http, "/sessions/\(id)/epochs", byBob).status
            let statuses = (alice: try await aliceStatus, bob: try await bobStatus)
            #expect((statuses.alice == 201 && [404, 409].contains(statuses.bob)) || (statuses.alice == 409 && statuses.bob == 201), "\(statuses)")
            let stored = try #require(try await server.gateway.sessions.chain(SessionID(id)!))
            #expect(stored.count == 2)
            // Whichever won, the log the members get verifies.
            let after = try WireCoding.decoder.decode(SessionChain.self, from: Data(try await alice.http.send(.GET, "/sessions/\(id)").body))
            _ = try EpochChain.verify(try after.epochs.map(EpochDocument.init), sessionID: sessionID) { _ in true }
            let part = try WireCoding.decoder.decode(SessionChain.self, from: Data(try await alice.http.send(.GET, "/sessions/\(id)?after=0").body))
            #expect(part.epochs.count == 1 && part.epochs[0].epoch == 1)

            // Refused: a stale number.
            #expect(try await post(alice.http, "/sessions/\(id)/epochs", byAlice).status == 409)
            // alice removes bob (if the epoch that won kept him): from then on he sees nothing of it.
            var log = try after.epochs.map(EpochDocument.init)
            if log.last!.member(bob.identity.userID) != nil {
                let removal = try EpochDocument.make(sessionID: sessionID, epoch: UInt32(log.count), previous: log.last!, signer: alice.identity,
                                                     members: [alice.entry, carol.entry], key: SessionKey.random())
                #expect(try await post(alice.http, "/sessions/\(id)/epochs", removal).status == 201)
                log.append(removal)
            }
            #expect(try await bob.http.send(.GET, "/sessions/\(id)").status == 404)
            #expect(try await bob.http.send(.GET, "/get_chat_key?session=\(id)&epoch=0").status == 404)
            #expect(try await carol.http.send(.GET, "/get_chat_key?session=\(id)").status == 200)
            // Someone else's signature, and garbage.
            let byCarol = try EpochDocument.make(sessionID: sessionID, epoch: UInt32(log.count), previous: log.last!, signer: carol.identity,
                                                 members: [alice.entry, carol.entry], key: SessionKey.random())
            #expect(try await post(alice.http, "/sessions/\(id)/epochs", byCarol).status == 403, "alice posting carol's epoch")
            #expect(try await alice.http.send(.POST, "/sessions", body: Array("{}".utf8)).status == 400)
            #expect(try await alice.http.send(.GET, "/sessions/nope").status == 400)
            let final = try #require(try await server.gateway.sessions.chain(SessionID(id)!))

            // No session key is anywhere on the gateway's disk, raw or in hex.
            let enumerator = FileManager.default.enumerator(atPath: server.dataDirectory)!
            while let relative = enumerator.nextObject() as? String {
                guard let data = FileManager.default.contents(atPath: server.dataDirectory + "/" + relative) else { continue }
                for key in [key0, key1] {
                    #expect([UInt8](data).firstRange(of: key.rawBytes) == nil, "a session key in \(relative)")
                    #expect([UInt8](data).firstRange(of: Array(Secrets.hex(key.rawBytes).utf8)) == nil, "a session key in \(relative)")
                }
            }

            // Survives a restart.
            let reopened = try SessionStore(directory: server.dataDirectory + "/registry/sessions")
            #expect(try await reopened.chain(SessionID(id)!) == final)
        }
    }

    @Test func aSessionsFilesAreReadByItsMembersAndNoOneElse() async throws {
        try await TestGateway.with { server in
            let users = try await accounts(server)
            let (alice, bob, carol) = (users[0], users[1], users[2])
            let sessionID = Secrets.randomBytes(16)
            let id = Secrets.hex(sessionID)
            let e0 = try EpochDocument.make(sessionID: sessionID, epoch: 0, previous: nil, signer: alice.identity,
                                            members: [alice.entry, bob.entry], key: SessionKey.random())
            #expect(try await post(alice.http, "/sessions", e0).status == 201)
            let (_, _, sealed) = try await sealedStream(plaintextSize: 200_000)
            #expect(try await carol.http.send(.POST, "/upload?session=\(id)&epoch=0", body: sealed).status == 404, "non-members cannot send")
            #expect(try await alice.http.send(.POST, "/upload?session=\(id)&epoch=7", body: sealed).status == 409, "not the current epoch")
            let uploaded = try await alice.http.send(.POST, "/upload?session=\(id)&epoch=0", body: sealed)
            let file = try #require(uploaded.json["file_id"] as? String)
            // tus, naming the session in Upload-Metadata.
            let meta = "session \(Data(id.utf8).base64EncodedString()),epoch \(Data("0".utf8).base64EncodedString())"
            let tus = try await bob.http.createUpload(length: sealed.count, metadata: meta)
            #expect(try await bob.http.patch(tus, offset: 0, sealed).status == 204)
            let paths = ["/files/\(file)", "/download/\(file)", "/files/\(file)/chunks/0"]
            for path in paths {
                #expect(try await bob.http.send(.GET, path).status == 200, "member: \(path)")
                #expect(try await carol.http.send(.GET, path).status == 404, "outsider: \(path)")
            }
            let listing = try await bob.http.send(.GET, "/files?session=\(id)")
            #expect((listing.json["files"] as? [Any])?.count == 2)
            #expect(try await carol.http.send(.GET, "/files?session=\(id)").status == 404)
            #expect(try await bob.http.send(.DELETE, "/files/\(file)").status == 403, "only the uploader deletes")

            // alice removes bob: at once he gets 404 for the session's files (all but his own upload).
            let e1 = try EpochDocument.make(sessionID: sessionID, epoch: 1, previous: e0, signer: alice.identity,
                                            members: [alice.entry, carol.entry], key: SessionKey.random())
            #expect(try await post(alice.http, "/sessions/\(id)/epochs", e1).status == 201)
            for path in paths {
                #expect(try await bob.http.send(.GET, path).status == 404, "removed: \(path)")
                #expect(try await carol.http.send(.GET, path).status == 200, "added: \(path)")
            }
            #expect(try await bob.http.send(.POST, "/upload?session=\(id)&epoch=1", body: sealed).status == 404)
        }
    }

    /// A removed member cannot write into a session (issue 24): an upload racing the epoch that
    /// removes its uploader, by tus PATCH and by a one-shot POST /upload whose body straddles the
    /// removal, is refused from that moment (404), dropped, never listed and never announced.
    @Test func anUploadRacingItsSendersRemovalAddsNothing() async throws {
        try await TestGateway.with { server in
            let users = try await accounts(server)
            let (alice, bob) = (users[0], users[1])
            let sessionID = Secrets.randomBytes(16)
            let id = Secrets.hex(sessionID)
            var log = [try EpochDocument.make(sessionID: sessionID, epoch: 0, previous: nil, signer: alice.identity,
                                              members: [alice.entry, bob.entry], key: SessionKey.random())]
            #expect(try await post(alice.http, "/sessions", log[0]).status == 201)
            func rotate(_ members: [Account]) async throws {
                let next = try EpochDocument.make(sessionID: sessionID, epoch: UInt32(log.count), previous: log.last!, signer: alice.identity,
                                                  members: members.map(\.entry), key: SessionKey.random())
                #expect(try await post(alice.http, "/sessions/\(id)/epochs", next).status == 201)
                log.append(next)
            }
            // 7 MB at 1 MB/s: the removal comes a second in, long before a body could finish.
            let (_, _, sealed) = try await sealedStream(plaintextSize: 7_000_000)
            let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("race-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: scratch) }
            /// curl sending `body` at 1 MB/s with `headers`; returns the process and where its status goes.
            func slowly(_ method: String, _ path: String, _ body: [UInt8], _ headers: [String]) throws -> (Process, URL) {
                let file = scratch.appendingPathComponent(UUID().uuidString), status = scratch.appendingPathComponent(UUID().uuidString)
                try Data(body).write(to: file)
                let curl = Process()
                curl.executableURL = URL(fileURLWithPath: "/usr/bin/env")
                curl.arguments = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--limit-rate", "1M", "-X", method, server.base + path,
                                  "-H", "Authorization: Bearer \(bob.http.token!)", "--data-binary", "@\(file.path)"] + headers.flatMap { ["-H", $0] }
                curl.standardOutput = try FileHandle(forWritingTo: { FileManager.default.createFile(atPath: status.path, contents: nil); return status }())
                try curl.run()
                return (curl, status)
            }
            func finished(_ curl: (Process, URL)) async throws -> String {
                while curl.0.isRunning { try await Task.sleep(for: .milliseconds(50)) }
                return try String(contentsOf: curl.1, encoding: .utf8)
            }
            func nothingOfBobs() async throws {
                let listing = try await alice.http.send(.GET, "/files?session=\(id)")
                #expect((listing.json["files"] as? [Any])?.isEmpty == true, "nothing listed: \(listing.text)")
                #expect((try await bob.http.send(.GET, "/files").json["files"] as? [Any])?.isEmpty == true)
                let aliceID = try #require(UserID(Secrets.hex(alice.identity.userID)))
                #expect(await server.gateway.chat.log.backlog(session: SessionID(id)!, user: aliceID).entries.isEmpty, "nothing announced")
            }

            // tus: a first part before the removal, the rest in a PATCH that is still sending when it comes.
            let meta = "session \(Data(id.utf8).base64EncodedString()),epoch \(Data("0".utf8).base64EncodedString())"
            let tus = try await bob.http.createUpload(length: sealed.count, metadata: meta)
            #expect(try await bob.http.patch(tus, offset: 0, sealed.prefix(1_000_000)).status == 204)
            let patch = try slowly("PATCH", tus, Array(sealed[1_000_000...]), ["Tus-Resumable: 1.0.0", "Upload-Offset: 1000000",
                                                                                 "Content-Type: application/offset+octet-stream"])
            try await Task.sleep(for: .seconds(1))
            try await rotate([alice])
            var removed = ContinuousClock.now
            #expect(try await finished(patch) == "404", "the PATCH straddling the removal is refused")
            #expect(ContinuousClock.now - removed < .seconds(3), "at once, not at the end of its body")
            #expect(try await bob.http.send(.HEAD, tus, headers: [("Tus-Resumable", "1.0.0")]).status == 404, "and the upload is gone")
            #expect(try await bob.http.patch(tus, offset: 1_000_000, sealed[1_000_000...]).status == 404)
            try await nothingOfBobs()

            // POST /upload: bob is added back, starts sending, and is removed while the body arrives.
            try await rotate([alice, bob])
            let oneShot = try slowly("POST", "/upload?session=\(id)&epoch=2", sealed, [])
            try await Task.sleep(for: .seconds(1))
            try await rotate([alice])
            removed = ContinuousClock.now
            #expect(try await finished(oneShot) == "404", "the one-shot upload straddling the removal is refused")
            #expect(ContinuousClock.now - removed < .seconds(3), "at once, not at the end of its body")
            try await nothingOfBobs()
        }
    }
}
