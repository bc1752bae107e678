import Foundation
import Testing
@testable import SafeChatGateway
import SafeChatAPI
import SafeChatClient
import SafeChatKeys
import SafeChatTestSupport
import SealedStream

/// The CLI against a gateway that lies (issue 23): `LyingGateway` proxies a real gateway and
/// rewrites what a hostile one could (manifests, bytes, bundles, logs), and chat lies are made by
/// changing what the real gateway's queue holds. Each test shows a lie refused with a message a
/// person can act on, and that nothing was written or pinned because of it.
@Suite struct LyingGatewayTests {
    typealias Workspace = ClientCommandTests.Workspace

    /// Uploads `bytes` as `name` into `session` with 64 KiB chunks; returns the file id.
    static func upload(_ ws: Workspace, _ session: String, _ name: String, _ bytes: [UInt8]) async throws -> String {
        try Data(bytes).write(to: URL(fileURLWithPath: ws.path(name)))
        let upload = try await ws.run(["upload", "-q", "--chunk-size", "64K", "--session", session, name])
        #expect(upload.status == 0, "\(upload.output)")
        return upload.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `json` (an object) with `change` applied to it.
    static func edited(_ json: [UInt8], _ change: (inout [String: Any]) -> Void) throws -> [UInt8] {
        var object = try #require(try JSONSerialization.jsonObject(with: Data(json)) as? [String: Any])
        change(&object)
        return Array(try JSONSerialization.data(withJSONObject: object))
    }

    static func userID(_ base: String, _ user: String, _ password: String) async throws -> String {
        let reply = try await HTTP(base: base).send(.POST, "/login", body: Array("{\"username\":\"\(user)\",\"password\":\"\(password)\"}".utf8))
        return try #require(reply.json["user_id"] as? String)
    }

    /// The workspace's leftovers from downloads: partial files, progress and digest files.
    static func downloadLeftovers(_ ws: Workspace) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: ws.url.path).filter { $0.contains("safechat-download") }
    }

    static func pins(_ ws: Workspace) throws -> [String: [String: Any]] {
        guard let data = FileManager.default.contents(atPath: ws.data + "/safechat/pins.json") else { return [:] }
        return (try JSONSerialization.jsonObject(with: data) as? [String: Any])?["pins"] as? [String: [String: Any]] ?? [:]
    }

    /// What GET /keys/USER would answer if USER's key were `identity`'s.
    static func substitutedEntry(_ base: String, _ token: String, user: String, identity: Identity) async throws -> [UInt8] {
        let real = try await HTTP(base: base, token: token).send(.GET, "/keys/\(user)")
        let bundle = try JSONSerialization.jsonObject(with: Data(identity.publicBundle.encoded()))
        return try edited(real.body) { $0["bundle"] = bundle }
    }

    // MARK: 1. A file id names exactly one stream

    @Test func aFileServedUnderAnotherFilesIdIsRefusedAndNothingIsWritten() async throws {
        try await TestGateway.with { server in
            let (one, two, _, session) = try await ChatTests.pair(server)
            defer { one.remove(); two.remove() }
            let a = try await Self.upload(one, session, "a.bin", Secrets.randomBytes(300_000))
            let b = try await Self.upload(one, session, "b.bin", Secrets.randomBytes(200_000))
            let proxy = try await LyingGateway.start(upstream: server.base)
            defer { Task { await proxy.stop() } }
            #expect(try await two.run(["login", "--server", proxy.base, "--user", "user2"], stdin: "password-two").status == 0)
            let user2 = try await HTTP.login(server.base, user: "user2", password: "password-two")

            // B's manifest and bytes under A's id.
            proxy.lie { asked in
                switch asked.path {
                case "/files/\(a)": .forward(path: "/files/\(b)")
                case "/download/\(a)": .forward(path: "/download/\(b)")
                default: nil
                }
            }
            let naive = try await two.run(["download", "-q", a])
            #expect(naive.status == 2 && naive.output.contains("REFUSED"), "\(naive.output)")

            // The same, with B's manifest relabelled as A's: the header is B's, and A's id is not bound to it.
            let relabelled = try Self.edited(try await user2.send(.GET, "/files/\(b)").body) { $0["fileID"] = a }
            proxy.lie { asked in
                switch asked.path {
                case "/files/\(a)": .respond(status: 200, body: relabelled)
                case "/download/\(a)": .forward(path: "/download/\(b)")
                default: nil
                }
            }
            let relabel = try await two.run(["download", "-q", a])
            #expect(relabel.status == 2 && relabel.output.contains("not the stream the gateway serves under that id"), "\(relabel.output)")
            let written = try FileManager.default.contentsOfDirectory(atPath: two.url.path)
            let leftovers = try Self.downloadLeftovers(two)
            #expect(!written.contains(a) && !written.contains("a.bin") && !written.contains("b.bin") && leftovers.isEmpty,
                    "nothing written: \(written)")

            // A listing that pairs A's id with B's header and name is refused on that line; one whose
            // name is B's beside A's header says the name was sealed for another file.
            let listing = try await user2.send(.GET, "/files?session=\(session)").body
            let entries = try #require(try JSONSerialization.jsonObject(with: Data(listing)) as? [String: [[String: Any]]])["files"]!
            let entryB = try #require(entries.first { $0["file_id"] as? String == b })
            let swapped = try Self.edited(listing) { object in
                object["files"] = entries.map { entry in
                    var entry = entry
                    if entry["file_id"] as? String == a { entry["header"] = entryB["header"]; entry["metadata"] = entryB["metadata"] }
                    return entry
                }
            }
            let renamed = try Self.edited(listing) { object in
                object["files"] = entries.map { entry in
                    var entry = entry
                    if entry["file_id"] as? String == a { entry["metadata"] = entryB["metadata"] }
                    return entry
                }
            }
            proxy.lie { $0.path.hasPrefix("/files?session=") ? .respond(status: 200, body: swapped) : nil }
            let shown = try await two.run(["files", "--session", session])
            let lineA = try #require(shown.output.split(separator: "\n").first { $0.hasPrefix(a) }, "\(shown.output)")
            #expect(lineA.contains("(refused: its id is not bound") && !lineA.contains("b.bin"), "\(shown.output)")
            proxy.lie { $0.path.hasPrefix("/files?session=") ? .respond(status: 200, body: renamed) : nil }
            let named = try await two.run(["files", "--session", session])
            #expect(named.output.contains("(sealed: its name was sealed for another file)"), "\(named.output)")

            // Told the truth again, the same commands work.
            proxy.lie(nil)
            let honest = try await two.run(["download", "-q", a])
            #expect(honest.status == 0 && FileManager.default.fileExists(atPath: two.path("a.bin")), "\(honest.output)")
        }
    }

    // MARK: 2. A resumed download continues only the stream it began with

    @Test func aResumedDownloadContinuesOnlyTheStreamItBeganWith() async throws {
        try await TestGateway.with { server in
            let (one, two, _, session) = try await ChatTests.pair(server)
            defer { one.remove(); two.remove() }
            // Four records each: three whole 64 KiB chunks and a short last one.
            let plainA = Secrets.randomBytes(3 * 65_536 + 30_000)
            let a = try await Self.upload(one, session, "a.bin", plainA)
            let b = try await Self.upload(one, session, "b.bin", Secrets.randomBytes(3 * 65_536 + 30_000))
            let proxy = try await LyingGateway.start(upstream: server.base)
            defer { Task { await proxy.stop() } }
            #expect(try await two.run(["login", "--server", proxy.base, "--user", "user2"], stdin: "password-two").status == 0)
            let user2 = try await HTTP.login(server.base, user: "user2", password: "password-two")
            let manifestA = try await user2.send(.GET, "/files/\(a)").body
            let records = try #require(try JSONSerialization.jsonObject(with: Data(manifestA)) as? [String: Any])["records"] as! [[String: Any]]
            let offsets = records.map { ($0["offset"] as! NSNumber).intValue }
            #expect(offsets.count == 4)
            // Cut inside the last record: the request that fetches records 2 and 3 stops 1000 bytes into record 3.
            let cutInsideTheLast: LyingGateway.Rule = { asked in
                guard asked.path == "/download/\(a)", asked.header("Range")?.hasPrefix("bytes=\(offsets[2])-") == true else { return nil }
                return .cut(path: nil, after: offsets[3] - offsets[2] + 1000)
            }

            // Cut, then resumed against B's manifest (relabelled as A's) and B's bytes: refused, and the partial file is gone.
            proxy.lie(cutInsideTheLast)
            let cut = try await two.run(["download", "-q", a, "-o", "a.out"])
            #expect(cut.status == 1 && cut.output.contains("run the same command again to resume"), "\(cut.output)")
            #expect(!(try Self.downloadLeftovers(two)).isEmpty, "the verified part is kept to resume from")
            let relabelled = try Self.edited(try await user2.send(.GET, "/files/\(b)").body) { $0["fileID"] = a }
            proxy.lie { asked in
                switch asked.path {
                case "/files/\(a)": .respond(status: 200, body: relabelled)
                case "/download/\(a)": .forward(path: "/download/\(b)")
                default: nil
                }
            }
            let swapped = try await two.run(["download", "-q", a, "-o", "a.out"])
            #expect(swapped.status == 2 && swapped.output.contains("REFUSED"), "\(swapped.output)")
            #expect(!FileManager.default.fileExists(atPath: two.path("a.out")))
            // What the first attempt verified is A's and stays to resume from: told the truth, the
            // download completes byte-identical.
            proxy.lie(nil)
            let resumed = try await two.run(["download", "-q", a, "-o", "a.out"])
            #expect(resumed.status == 0, "\(resumed.output)")
            #expect(try two.fingerprintOf("a.out") == fingerprint(plainA))
            try FileManager.default.removeItem(atPath: two.path("a.out"))

            // Cut, then resumed against A's header with another digest: the partial file came from
            // another stream than the one now served, and is deleted.
            let otherDigest = try Self.edited(manifestA) { $0["digest"] = String(repeating: "ab", count: 32) }
            proxy.lie(cutInsideTheLast)
            #expect(try await two.run(["download", "-q", a, "-o", "a.out"]).status == 1)
            proxy.lie { asked in
                switch asked.path {
                case "/files/\(a)": .respond(status: 200, body: otherDigest)
                case "/download/\(a)": .forward(path: asked.path, dropping: ["If-Range"])
                default: nil
                }
            }
            let moved = try await two.run(["download", "-q", a, "-o", "a.out"])
            #expect(moved.status == 2 && moved.output.contains("another stream under file \(a)"), "\(moved.output)")
            #expect(try !FileManager.default.fileExists(atPath: two.path("a.out")) && Self.downloadLeftovers(two).isEmpty)

            // Whole from the start, but under a digest that is not the stream's: every chunk opens,
            // the digest of what was opened does not match, and nothing is kept.
            let fresh = try await two.run(["download", "-q", a, "-o", "a.out"])
            #expect(fresh.status == 2 && fresh.output.contains("stream digest is not the one"), "\(fresh.output)")
            #expect(try !FileManager.default.fileExists(atPath: two.path("a.out")) && Self.downloadLeftovers(two).isEmpty)
        }
    }

    // MARK: 3 and 4. Chat: a removed member's old key, and replays after clear-history

    @Test func aRemovedMemberCannotKeepSpeakingUnderAnOldEpoch() async throws {
        try await TestGateway.with { server in
            let (one, two, three, session) = try await ChatTests.pair(server, third: true)
            defer { one.remove(); two.remove(); three?.remove() }
            func device(_ ws: Workspace) throws -> (SessionClient, Identity) {
                let identities = IdentityStore(environment: ["XDG_DATA_HOME": ws.data])
                let login = try ClientSession.load(from: ClientDirectory(environment: ["XDG_CONFIG_HOME": ws.config]))
                let identity = try identities.load()
                return (SessionClient(session: login, identity: identity, identities: identities), identity)
            }
            let (alice, aliceIdentity) = try device(one), (carol, carolIdentity) = try device(three!)
            let sessionBytes = try #require(Secrets.bytes(fromHex: session, count: 16))
            let aliceKey = try await alice.key(session, epoch: 0).key, carolKey = try await carol.key(session, epoch: 0).key
            #expect(try await one.run(["session", "remove", session, "user3"]).status == 0)

            // After the removal: user3 still holds epoch 0's key and signs a message under it; user1's
            // message under epoch 0 was sent before the rotation and is delivered late.
            let now = UInt64(Date().timeIntervalSince1970 * 1000)
            func wire(_ text: String, _ key: SessionKey, _ identity: Identity, _ sentAt: UInt64) throws -> ChatMessageWire {
                let m = try ChatMessage.seal(text, sessionID: sessionBytes, epoch: 0, chatKey: ChatMessage.chatKey(key, sessionID: sessionBytes, epoch: 0),
                                             from: identity, sentAt: sentAt)
                return ChatMessageWire(sessionID: session, epoch: 0, sender: Secrets.hex(m.sender), messageID: Secrets.hex(m.messageID), sentAt: m.sentAt,
                                       ciphertext: Secrets.hex(m.ciphertext), signature: Secrets.hex(m.signature))
            }
            let user2 = UserID(try await Self.userID(server.base, "user2", "password-two"))!
            let log = server.gateway.chat.log
            _ = try await log.append(session: SessionID(session)!, message: try wire("sent before the rotation", aliceKey, aliceIdentity, now - 60_000),
                                     file: nil, recipients: [user2], now: now)
            _ = try await log.append(session: SessionID(session)!, message: try wire("I am still here", carolKey, carolIdentity, now + 1),
                                     file: nil, recipients: [user2], now: now)
            // And a message that claims an epoch the log does not have.
            var future = try wire("from the future", aliceKey, aliceIdentity, now + 2)
            future = ChatMessageWire(sessionID: future.sessionID, epoch: 7, sender: future.sender, messageID: future.messageID,
                                     sentAt: future.sentAt, ciphertext: future.ciphertext, signature: future.signature)
            _ = try await log.append(session: SessionID(session)!, message: future, file: nil, recipients: [user2], now: now)

            let got = try await two.run(["recv", session])
            #expect(got.status == 0, "\(got.output)")
            #expect(got.output.contains("user1 ✓: sent before the rotation"), "\(got.output)")
            #expect(!got.output.contains("user3 ✓") && !got.output.contains("I am still here"), "\(got.output)")
            #expect(got.output.contains("WARNING: a message from user3 under epoch 0 was refused: user3 was removed from this session in epoch 1 by user1"),
                    "\(got.output)")
            #expect(got.output.contains("WARNING: a message was rejected: it claims epoch 7, but the session's verified log ends at epoch 1"),
                    "\(got.output)")
        }
    }

    @Test func clearingHistoryDoesNotReopenReplays() async throws {
        try await TestGateway.with { server in
            let (one, two, _, session) = try await ChatTests.pair(server)
            defer { one.remove(); two.remove() }
            #expect(try await one.run(["send", session, "only once"]).status == 0)
            let user2 = UserID(try await Self.userID(server.base, "user2", "password-two"))!
            let log = server.gateway.chat.log
            let sent = try #require(await log.backlog(session: SessionID(session)!, user: user2).entries.first?.message)
            #expect(try await two.run(["recv", session]).output.contains("user1 ✓: only once"))
            #expect(try await two.run(["clear-history", session]).status == 0)
            #expect(try await two.run(["history", session]).output.isEmpty)
            // The gateway delivers the same message again, under a new sequence number.
            _ = try await log.append(session: SessionID(session)!, message: sent, file: nil, recipients: [user2],
                                     now: UInt64(Date().timeIntervalSince1970 * 1000))
            let again = try await two.run(["recv", session])
            #expect(!again.output.contains("✓") && again.output.contains("WARNING: a replayed message"), "\(again.output)")
            // What outlives the history holds no text.
            let guardFile = try Data(contentsOf: URL(fileURLWithPath: two.data + "/safechat/history/\(session).seen"))
            #expect(guardFile.count % 40 == 0 && guardFile.range(of: Data("only once".utf8)) == nil)
        }
    }

    // MARK: 5 and 6. Keys: conflicting evidence on first contact, and trusting only a checked fingerprint

    @Test func firstContactWithConflictingEvidencePinsNothingAndTrustNeedsTheCheckedFingerprint() async throws {
        try await TestGateway.with { server in
            let (one, two, three, session) = try await ChatTests.pair(server, third: true)
            defer { one.remove(); two.remove(); three?.remove() }
            let carol = three!
            let proxy = try await LyingGateway.start(upstream: server.base)
            defer { Task { await proxy.stop() } }
            #expect(try await carol.run(["login", "--server", proxy.base, "--user", "user3"], stdin: "password-three").status == 0)
            let user2ID = try #require(Secrets.bytes(fromHex: try await Self.userID(server.base, "user2", "password-two"), count: 16))
            let token = try #require(try await HTTP.login(server.base, user: "user3", password: "password-three").token)
            let real = try await two.run(["keys", "fingerprint"])
            let realFingerprint = real.output.trimmingCharacters(in: .whitespacesAndNewlines)
            let b = try Identity.generate(userID: user2ID), c = try Identity.generate(userID: user2ID)
            let entryB = try await Self.substitutedEntry(server.base, token, user: "user2", identity: b)
            let entryC = try await Self.substitutedEntry(server.base, token, user: "user2", identity: c)
            func serve(_ entry: [UInt8]?) {
                proxy.lie { asked in
                    guard let entry, asked.path == "/keys/user2" else { return nil }
                    return .respond(status: 200, body: entry)
                }
            }

            // Epoch 0, signed by user1, lists user2's real key; the gateway's bundle for user2 is B.
            serve(entryB)
            let refused = try await carol.run(["session", "show", session])
            #expect(refused.status == 2, "\(refused.output)")
            #expect(refused.output.contains(realFingerprint) && refused.output.contains(b.publicBundle.fingerprint.description), "\(refused.output)")
            #expect(try Self.pins(carol)["user2"] == nil, "nothing pinned for user2")
            // Told the truth, the same log verifies and pins the real key; B is then refused as changed.
            serve(nil)
            #expect(try await carol.run(["session", "show", session]).status == 0)
            #expect(try Self.pins(carol)["user2"]?["fingerprint"] as? String == realFingerprint)
            serve(entryB)
            let changed = try await carol.run(["keys", "fingerprint", "user2"])
            #expect(changed.status == 2 && changed.output.contains("user2's key has changed") && changed.output.contains(realFingerprint),
                    "\(changed.output)")

            // `keys trust` pins only the key with the fingerprint the user checked: the refusal showed B,
            // the gateway serves C to trust, and nothing changes.
            let noFingerprint = try await carol.run(["keys", "trust", "user2"])
            #expect(noFingerprint.status == 64, "\(noFingerprint.output)")
            serve(entryC)
            let wrong = try await carol.run(["keys", "trust", "user2"] + b.publicBundle.fingerprint.description.split(separator: " ").map(String.init))
            #expect(wrong.status == 2 && wrong.output.contains(c.publicBundle.fingerprint.description), "\(wrong.output)")
            #expect(try Self.pins(carol)["user2"]?["fingerprint"] as? String == realFingerprint)
            serve(entryB)
            let trusted = try await carol.run(["keys", "trust", "user2", b.publicBundle.fingerprint.description])
            #expect(trusted.status == 0, "\(trusted.output)")
            #expect(try Self.pins(carol)["user2"]?["fingerprint"] as? String == b.publicBundle.fingerprint.description)
            #expect(try Self.pins(carol)["user2"]?["verified"] as? Bool == true)
        }
    }

    // MARK: 7. Refusals a person can act on

    @Test func refusalsSayWhatHappenedAndWhatToDo() async throws {
        try await TestGateway.with { server in
            let (one, two, three, session) = try await ChatTests.pair(server, third: true)
            defer { one.remove(); two.remove(); three?.remove() }
            let proxy = try await LyingGateway.start(upstream: server.base)
            defer { Task { await proxy.stop() } }
            let user1 = try await HTTP.login(server.base)
            let user2Fingerprint = try await two.run(["keys", "fingerprint"]).output.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(try await one.run(["login", "--server", proxy.base, "--user", "user1"], stdin: "password123").status == 0)
            #expect(try await three!.run(["session", "show", session]).status == 0)

            // A log that lists user2 under another key: every command that uses it shows both
            // fingerprints and how to accept the new one.
            let impostor = try Identity.generate(userID: Secrets.randomBytes(16))
            let chain = try await user1.send(.GET, "/sessions/\(session)").body
            let realKey = try #require(String(decoding: chain, as: UTF8.self).range(of: #"(?<="name":"user2","signing_key":")[0-9a-f]{64}"#, options: .regularExpression)
                .map { String(String(decoding: chain, as: UTF8.self)[$0]) })
            let forged = Array(String(decoding: chain, as: UTF8.self).replacingOccurrences(of: realKey, with: Secrets.hex(impostor.signingKey.publicKey.rawRepresentation)).utf8)
            proxy.lie { $0.path == "/sessions/\(session)" ? .respond(status: 200, body: forged) : nil }
            try Data("x".utf8).write(to: URL(fileURLWithPath: one.path("x.txt")))
            for command in [["session", "show", session], ["upload", "-q", "--session", session, "x.txt"], ["sessions"]] {
                let got = try await one.run(command)
                #expect(got.output.contains(user2Fingerprint) && got.output.contains(impostor.publicBundle.fingerprint.description)
                        && got.output.contains("safechat keys trust user2"), "\(command): \(got.output)")
            }

            // An upload whose connection drops says so, and that the same command resumes.
            proxy.lie { $0.method == "PATCH" ? .drop(afterBody: 100_000) : nil }
            let big = Secrets.randomBytes(3_000_000)
            try Data(big).write(to: URL(fileURLWithPath: one.path("big.bin")))
            let dropped = try await one.run(["upload", "-q", "--session", session, "big.bin"])
            #expect(dropped.status == 1 && dropped.output.contains("connection to the gateway lost")
                    && dropped.output.contains("run the same command again to resume"), "\(dropped.output)")
            proxy.lie(nil)
            let resumed = try await one.run(["upload", "-q", "--session", session, "big.bin"])
            #expect(resumed.status == 0, "\(resumed.output)")

            // A send racing a rotation is sealed again under the new epoch, not refused (chat goes
            // to the gateway itself: the proxy does not carry WebSockets).
            #expect(try await one.run(["login", "--server", server.base, "--user", "user1"], stdin: "password123").status == 0)
            let identities = IdentityStore(environment: ["XDG_DATA_HOME": one.data])
            let login = try ClientSession.load(from: ClientDirectory(environment: ["XDG_CONFIG_HOME": one.config]))
            let room = try await ChatRoom(sessions: SessionClient(session: login, identity: try identities.load(), identities: identities),
                                          sessionID: session, identities: identities)
            #expect(try await one.run(["session", "remove", session, "user3"]).status == 0)
            let line = try await ChatClient(login: login, room: room).send("after the rotation")
            #expect(line.text == "after the rotation")
            #expect(try await two.run(["recv", session]).output.contains("user1 ✓: after the rotation"))

            // The removed member is told so: by the gateway's silence about a session it verified
            // before, and, if a gateway still serves them the log, by the log itself.
            let removed = try await three!.run(["session", "show", session])
            #expect(removed.status == 1 && removed.output.contains("you were removed from it"), "\(removed.output)")
            let current = try await user1.send(.GET, "/sessions/\(session)").body
            #expect(try await three!.run(["login", "--server", proxy.base, "--user", "user3"], stdin: "password-three").status == 0)
            proxy.lie { $0.path == "/sessions/\(session)" ? .respond(status: 200, body: current) : nil }
            try Data("y".utf8).write(to: URL(fileURLWithPath: three!.path("y.txt")))
            let told = try await three!.run(["upload", "-q", "--session", session, "y.txt"])
            #expect(told.status == 1 && told.output.contains("you were removed from session \(session) in epoch 1 by user1"), "\(told.output)")
        }
    }
}
