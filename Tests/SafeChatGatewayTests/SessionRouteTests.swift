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
        var out: [Account] = []
        for name in ["alice", "bob", "carol"] {
            try await server.gateway.users.add(name, password: "password-\(name)")
            let http = try await HTTP.login(server.base, user: name, password: "password-\(name)")
            let id = try #require(try await server.gateway.users.id(of: name))
            out.append(Account(name: name, http: http, identity: try Identity.generate(userID: Secrets.bytes(fromHex: id.value)!)))
        }
        return out
    }

    func post(_ http: HTTP, _ path: String, _ epoch: EpochDocument) async throws -> Reply {
        try await http.send(.POST, path, headers: [("Content-Type", "application/json")], body: Array(try WireCoding.encoder.encode(epoch.wire)))
    }

    @Test(arguments: [TestStore.local, .postgres])
    func membersSeeTheSessionAndTheirKeysEveryoneElseGets404(store: TestStore) async throws {
        try await TestGateway.with(store: store) { server in
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

            // Survives a restart (with PostgreSQL: another gateway on the database sees it).
            if store == .local {
                let reopened = try FileSessionStore(directory: server.dataDirectory + "/registry/sessions")
                #expect(try await reopened.chain(SessionID(id)!) == final)
            } else {
                let other = try await TestGateway.start(dataDirectory: server.dataDirectory, store: store)
                #expect(try await other.gateway.sessions.chain(SessionID(id)!) == final)
                await other.stop()
            }
        }
    }

    @Test(arguments: [TestStore.local, .postgres])
    func aSessionsFilesAreReadByItsMembersAndNoOneElse(store: TestStore) async throws {
        try await TestGateway.with(store: store) { server in
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
    @Test(arguments: [TestStore.local, .postgres])
    func anUploadRacingItsSendersRemovalAddsNothing(store: TestStore) async throws {
        try await TestGateway.with(store: store) { server in
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
                curl.arguments = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--limit-rate", "512K", "-X", method, server.base + path,
                                  "-H", "Authorization: Bearer \(bob.http.token!)", "--data-binary", "@\(file.path)"] + headers.flatMap { ["-H", $0] }
                curl.standardOutput = try FileHandle(forWritingTo: { _ = FileManager.default.createFile(atPath: status.path, contents: nil); return status }())
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
                #expect(try await server.gateway.chat.log.backlog(session: SessionID(id)!, user: aliceID).entries.isEmpty, "nothing announced")
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
            #expect(ContinuousClock.now - removed < .seconds(6), "at once, not at the end of its body (about 11 s later)")
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
            #expect(ContinuousClock.now - removed < .seconds(6), "at once, not at the end of its body (about 11 s later)")
            try await nothingOfBobs()
        }
    }

    /// An epoch as a hostile client could post it: the shape the gateway checks, random bytes where
    /// only clients look (wraps, signature).
    static func crafted(_ session: [UInt8], _ epoch: UInt32, previous: [UInt8], signer: Account, members: [Account],
                        extraWraps: Int = 0, strangers: Int = 0) -> EpochWire {
        var listed = members.map { EpochWire.Member(userID: Secrets.hex($0.identity.userID), name: $0.name,
                                                     signingKey: Secrets.hex($0.identity.signingKey.publicKey.rawRepresentation)) }
        listed += (0..<strangers).map { n in EpochWire.Member(userID: Secrets.randomHex(16), name: "stranger\(n)", signingKey: Secrets.randomHex(32)) }
        // One wrap of this epoch's key per member, then history: earlier keys, member by member
        // (more than there can be unique ones only where a test wants the count refused).
        let wraps = (0..<(listed.count + extraWraps)).map { n in
            EpochWire.Wrap(userID: listed[n % listed.count].userID, keyEpoch: epoch &- UInt32(n / listed.count) % (epoch + 1),
                           enc: Secrets.randomHex(32), ciphertext: Secrets.randomHex(48))
        }
        return EpochWire(sessionID: Secrets.hex(session), epoch: epoch, previous: Secrets.hex(previous), signer: Secrets.hex(signer.identity.userID),
                         members: listed, wraps: wraps, signature: Secrets.randomHex(64))
    }

    /// No account takes more than its share of what the gateway keeps for sessions (issue 24):
    /// members, wraps and bytes per epoch, epochs per session and sessions per account are bounded,
    /// and anything past a bound, or of the wrong shape, is refused with its status and a JSON body.
    @Test(arguments: [TestStore.local, .postgres])
    func sessionsAreBoundedAndEpochsChecked(store: TestStore) async throws {
        try await TestGateway.with(store: store) { server in
            let users = try await accounts(server)
            let (alice, bob, carol) = (users[0], users[1], users[2])
            func send(_ path: String, _ epoch: EpochWire, by account: Account) async throws -> Reply {
                let reply = try await account.http.send(.POST, path, headers: [("Content-Type", "application/json")],
                                                        body: Array(try WireCoding.encoder.encode(epoch)))
                #expect(reply.status < 300 || reply.json["error"] is String, "a JSON error body: \(reply.text)")
                return reply
            }
            let zero = [UInt8](repeating: 0, count: 32)
            let session = Secrets.randomBytes(16), id = Secrets.hex(session)
            // Past the per-epoch bounds: 413.
            #expect(try await send("/sessions", Self.crafted(session, 0, previous: zero, signer: alice, members: [alice], strangers: 1000), by: alice).status == 413)
            #expect(try await send("/sessions", Self.crafted(session, 0, previous: zero, signer: alice, members: [alice, bob], extraWraps: 1025), by: alice).status == 413)
            let huge = EpochWire(sessionID: id, epoch: 0, previous: Secrets.hex(zero), signer: Secrets.hex(alice.identity.userID),
                                 members: [.init(userID: Secrets.hex(alice.identity.userID), name: "alice", signingKey: Secrets.randomHex(32))],
                                 wraps: [], sealedName: Secrets.randomHex(SessionLimits.epochBytes / 2), signature: Secrets.randomHex(64))
            #expect(try await send("/sessions", huge, by: alice).status == 413)
            // The wrong shape: 400 (a name that is not the account's, a wrap for a non-member, bad hex), 409 (a wrong `previous`).
            var misnamed = Self.crafted(session, 0, previous: zero, signer: alice, members: [alice, bob])
            misnamed = EpochWire(sessionID: misnamed.sessionID, epoch: 0, previous: misnamed.previous, signer: misnamed.signer,
                                 members: [misnamed.members[0], .init(userID: misnamed.members[1].userID, name: "carol", signingKey: misnamed.members[1].signingKey)],
                                 wraps: misnamed.wraps, signature: misnamed.signature)
            let named = try await send("/sessions", misnamed, by: alice)
            #expect(named.status == 400 && named.text.contains("not the account"), "\(named.text)")
            let good = Self.crafted(session, 0, previous: zero, signer: alice, members: [alice, bob])
            let strayWrap = EpochWire(sessionID: id, epoch: 0, previous: good.previous, signer: good.signer, members: good.members,
                                      wraps: good.wraps + [.init(userID: Secrets.hex(carol.identity.userID), keyEpoch: 0, enc: Secrets.randomHex(32),
                                                                 ciphertext: Secrets.randomHex(48))], signature: good.signature)
            #expect(try await send("/sessions", strayWrap, by: alice).status == 400)
            let badHex = EpochWire(sessionID: id, epoch: 0, previous: good.previous, signer: good.signer, members: good.members, wraps: good.wraps,
                                   signature: "zz" + good.signature.dropFirst(2))
            #expect(try await send("/sessions", badHex, by: alice).status == 400)
            #expect(try await send("/sessions", Self.crafted(session, 0, previous: Array(repeating: 1, count: 32), signer: alice, members: [alice]), by: alice).status == 409)
            #expect(try await send("/sessions", good, by: alice).status == 201)
            var previous = try #require(good.hash)
            #expect(try await send("/sessions/\(id)/epochs", Self.crafted(session, 1, previous: zero, signer: alice, members: [alice]), by: alice).status == 409,
                    "previous must be the hash of epoch 0")

            // Epochs per session: the 1024th is the last.
            for n in 1..<UInt32(SessionLimits.epochsPerSession) {
                let next = Self.crafted(session, n, previous: previous, signer: alice, members: [alice, bob])
                let reply = try await send("/sessions/\(id)/epochs", next, by: alice)
                guard reply.status == 201 else { Issue.record("epoch \(n): \(reply.status) \(reply.text)"); return }
                previous = try #require(next.hash)
            }
            let beyond = try await send("/sessions/\(id)/epochs", Self.crafted(session, UInt32(SessionLimits.epochsPerSession), previous: previous,
                                                                                signer: alice, members: [alice, bob]), by: alice)
            #expect(beyond.status == 429 && beyond.json["error"] as? String == "limit_reached", "\(beyond.text)")
            let listing = try await bob.http.send(.GET, "/sessions")
            #expect((listing.json["sessions"] as? [[String: Any]])?.first?["epoch"] as? Int == SessionLimits.epochsPerSession - 1)

            // Sessions per account: the 256th is the last carol may create.
            for n in 0..<SessionLimits.sessionsPerAccount {
                let reply = try await send("/sessions", Self.crafted(Secrets.randomBytes(16), 0, previous: zero, signer: carol, members: [carol]), by: carol)
                guard reply.status == 201 else { Issue.record("session \(n): \(reply.status) \(reply.text)"); return }
            }
            let tooMany = try await send("/sessions", Self.crafted(Secrets.randomBytes(16), 0, previous: zero, signer: carol, members: [carol]), by: carol)
            #expect(tooMany.status == 429 && tooMany.json["error"] as? String == "limit_reached", "\(tooMany.text)")
            #expect(try await send("/sessions", Self.crafted(Secrets.randomBytes(16), 0, previous: zero, signer: bob, members: [bob]), by: bob).status == 201,
                    "carol's limit is carol's")
        }
    }

    /// What the gateway keeps in memory for sessions does not grow with their logs: over 30 MB of epochs
    /// leave a gateway's resident memory within 40 MB of where it was, however often they are read.
    @Test func theGatewaysMemoryDoesNotHoldEverySessionLog() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sessions-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let server = try await ServerProcess(dataDirectory: directory)
        defer { server.kill() }
        let cli = try UserStore(path: Gateway.usersPath(dataDirectory: directory))
        var members: [Account] = []
        for n in 0..<64 {
            let name = "member\(n)"
            try await cli.add(name, password: "password-\(name)")
            let http = n == 0 ? try await HTTP.login(server.base, user: name, password: "password-\(name)") : HTTP(base: server.base)
            let id = try #require(try await cli.id(of: name))
            members.append(Account(name: name, http: http, identity: try Identity.generate(userID: Secrets.bytes(fromHex: id.value)!)))
        }
        func residentMiB() throws -> Int {
            let status = try String(contentsOfFile: "/proc/\(server.process.processIdentifier)/status", encoding: .utf8)
            let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") })
            return (Int(line.split(separator: " ")[1]) ?? 0) / 1024
        }
        let before = try residentMiB()
        let owner = members[0]
        var written = 0
        for _ in 0..<5 {
            let session = Secrets.randomBytes(16), id = Secrets.hex(session)
            var previous = [UInt8](repeating: 0, count: 32)
            for n in 0..<32 {
                // 64 members and as many history wraps as the epoch can have (up to 1024): about 260 KB each.
                let epoch = Self.crafted(session, UInt32(n), previous: previous, signer: owner, members: members,
                                         extraWraps: min(64 * n, SessionLimits.historyWrapsPerEpoch))
                let body = Array(try WireCoding.encoder.encode(epoch))
                let reply = try await owner.http.send(.POST, n == 0 ? "/sessions" : "/sessions/\(id)/epochs", headers: [("Content-Type", "application/json")], body: body)
                #expect(reply.status == 201, "\(reply.text)")
                previous = try #require(epoch.hash)
                written += body.count
            }
            // Read back, whole, again and again.
            for _ in 0..<8 { #expect(try await owner.http.send(.GET, "/sessions/\(id)").status == 200) }
        }
        let after = try residentMiB()
        #expect(written > 30_000_000, "\(written) bytes of epochs")
        print("sessions: \(written >> 20) MiB of epochs; gateway resident \(before) -> \(after) MiB")
        #expect(after - before < 40, "the gateway grew from \(before) to \(after) MiB for \(written >> 20) MiB of session logs")
    }
}
