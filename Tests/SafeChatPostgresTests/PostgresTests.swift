import Foundation
import SafeChatAPI
@testable import SafeChatGateway
import SafeChatKeys
@testable import SafeChatPostgres
import SafeChatTestSupport
import SealedStream
import Testing

/// The PostgreSQL backend against a real server (`.ci/services`, or a private one for outages).
@Suite struct PostgresTests {
    static let safechat = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("safechat").path

    @Test func databaseURLsThatCannotWorkAreRefusedInOneLine() throws {
        func refusal(_ url: String) -> String? {
            do { _ = try DatabaseSettings(url: url, environment: [:]); return nil } catch { return error.description }
        }
        #expect(refusal("postgres://app:secret@db.example/safechat")?.contains("must not hold a password") == true)
        #expect(refusal("postgres://app:secret@db.example/safechat")?.contains("secret") == false)
        #expect(refusal("mysql://app@db.example/safechat")?.contains("postgres://USER@HOST") == true)
        #expect(refusal("postgres://db.example/safechat")?.contains("no host or no user") == true)
        #expect(refusal("postgres://app@db.example/")?.contains("names no database") == true)
        #expect(refusal("postgres://app@db.example/x?sslmode=maybe")?.contains("sslmode") == true)
        let settings = try DatabaseSettings(url: "postgresql://app@db.example:6543/safechat?sslmode=require", environment: ["PGPASSWORD": "pw"])
        #expect(settings.description == "postgres://app@db.example:6543/safechat")
        #expect(settings.tls == .require)
    }

    /// Two `safechat migrate` at once on an empty database: both succeed, each step runs once.
    @Test func migrationsStartedTogetherApplyEachStepOnce() async throws {
        let server = try TestDatabase.fromEnvironment()
        let name = "t_migrate_\(UInt32.random(in: 0...UInt32.max))"
        let url = try server.create(name)
        defer { server.drop(name) }
        let environment = ProcessInfo.processInfo.environment.merging(["PGPASSWORD": server.password]) { $1 }
        async let first = runProcess([Self.safechat, "migrate", "--database", url], environment: environment, errorsApart: true)
        async let second = runProcess([Self.safechat, "migrate", "--database", url], environment: environment, errorsApart: true)
        let runs = try await [first, second]
        #expect(runs.map(\.status) == [0, 0], "\(runs.map(\.errors))")
        let applied = runs.map(\.output).joined().components(separatedBy: "applied 1:").count - 1
        #expect(applied == 1)
        #expect(runs.allSatisfy { $0.output.contains("schema version \(SchemaMigrations.latestVersion)") })
        #expect(try server.psql("SELECT count(*) FROM safechat_schema", database: name).trimmingCharacters(in: .whitespacesAndNewlines)
                == "\(SchemaMigrations.steps.count)")
        // A third run finds nothing to do.
        let again = try await runProcess([Self.safechat, "migrate", "--database", url], environment: environment, errorsApart: true)
        #expect(again.status == 0 && again.output.contains("up to date"))
    }

    @Test func aDatabaseANewerBuildMigratedIsRefused() async throws {
        let server = try TestDatabase.fromEnvironment()
        let name = "t_newer_\(UInt32.random(in: 0...UInt32.max))"
        let url = try server.create(name)
        defer { server.drop(name) }
        let environment = ProcessInfo.processInfo.environment.merging(["PGPASSWORD": server.password]) { $1 }
        #expect(try await runProcess([Self.safechat, "migrate", "--database", url], environment: environment, errorsApart: true).status == 0)
        _ = try server.psql("INSERT INTO safechat_schema (version, summary) VALUES (999, 'from the future')", database: name)
        let run = try await runProcess([Self.safechat, "migrate", "--database", url], environment: environment, errorsApart: true)
        #expect(run.status == 1)
        #expect(run.errors.contains("schema version 999, newer than this build's \(SchemaMigrations.latestVersion)"))
    }

    /// serve with a wrong password or an unreachable server: one line naming the server and the
    /// cause, exit 1, and the password nowhere.
    @Test func serveRefusesADatabaseItCannotUseInOneLine() async throws {
        let server = try TestDatabase.fromEnvironment()
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("gw-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: data) }
        let wrong = "wrong-\(UUID().uuidString)"
        var environment = ProcessInfo.processInfo.environment
        environment["PGPASSWORD"] = wrong
        let refused = try await runProcess([Self.safechat, "serve", "--port", "0", "--data-dir", data, "--database", server.url],
                                           environment: environment, errorsApart: true)
        #expect(refused.status == 1)
        let line = refused.errors.split(separator: "\n").last.map(String.init) ?? ""
        #expect(line.contains(server.url) && line.contains("password authentication failed"), "\(refused.errors)")
        #expect(!refused.errors.contains(wrong) && !refused.output.contains(wrong))
        environment["PGPASSWORD"] = server.password
        let unreachable = try await runProcess([Self.safechat, "serve", "--port", "0", "--data-dir", data,
                                                "--database", "postgres://postgres@127.0.0.1:1/postgres"],
                                               environment: environment, errorsApart: true)
        #expect(unreachable.status == 1)
        #expect(unreachable.errors.contains("127.0.0.1:1") && unreachable.errors.contains("Connection refused"), "\(unreachable.errors)")
    }

    /// The database restarts while an upload is under way: requests answer 503 with a JSON body and
    /// Retry-After while it is down, then the upload resumes from its acknowledged offset and the
    /// file downloads byte-identical.
    @Test func aDatabaseOutageAnswers503AndLosesNothingAcknowledged() async throws {
        let postgres = try await PrivatePostgres()
        try await postgres.start()
        let server = try await TestGateway.start(store: .s3, database: try postgres.settings())
        do {
            let client = try await HTTP.login(server.base)
            let (key, plaintext, sealed) = try await sealedStream(plaintextSize: 12_000_000, chunkSize: 1 << 20)
            let path = try await client.createUpload(length: sealed.count)
            let acknowledged = 5_000_007
            #expect(try await client.patch(path, offset: 0, sealed.prefix(acknowledged)).status == 204)

            try await postgres.stop()
            let during = try await client.send(.HEAD, path, headers: [("Tus-Resumable", "1.0.0")])
            #expect(during.status == 503)
            #expect(during.header("Retry-After") != nil)
            let listing = try await client.send(.GET, "/files")
            #expect(listing.status == 503)
            #expect(listing.json["error"] as? String == "storage_unavailable", "\(listing.text)")

            try await postgres.start()
            var offset: String?
            for _ in 0..<120 where offset == nil {
                let head = try await client.send(.HEAD, path, headers: [("Tus-Resumable", "1.0.0")])
                if head.status == 200 || head.status == 204 { offset = head.header("Upload-Offset") } else { try await Task.sleep(for: .milliseconds(500)) }
            }
            #expect(offset == "\(acknowledged)")
            #expect(try await client.patch(path, offset: acknowledged, sealed.dropFirst(acknowledged)).status == 204)
            let id = String(path.split(separator: "/").last!)
            let body = try await client.send(.GET, "/download/\(id)").body
            #expect(fingerprint(try await openStream(body, key: key)) == fingerprint(plaintext))
        } catch {
            Issue.record(error)
        }
        await server.stop()
        server.removeData()
        await postgres.remove()
    }

    /// Accounts in PostgreSQL: `safechat user add|passwd|rm --database` take effect on every gateway
    /// of the database at once.
    @Test func accountsManagedWithDatabaseHoldOnEveryGatewayAtOnce() async throws {
        let server = try TestDatabase.fromEnvironment()
        let name = "t_accounts_\(UInt32.random(in: 0...UInt32.max))"
        let url = try server.create(name)
        defer { server.drop(name) }
        let a = try await TestGateway.start(database: try server.settings(name))
        let b = try await TestGateway.start(database: try server.settings(name))
        do {
            let environment = ProcessInfo.processInfo.environment.merging(["PGPASSWORD": server.password]) { $1 }
            func user(_ arguments: [String], input: String) async throws -> (status: Int32, errors: String) {
                let run = try await runProcess(["sh", "-c", "printf '\(input)' | \"$0\" \"$@\"", Self.safechat, "user"] + arguments + ["--database", url],
                                               environment: environment, errorsApart: true)
                return (run.status, run.errors)
            }
            #expect(try await user(["add", "carol"], input: "first-password\\nfirst-password\\n").status == 0)
            let onA = try await HTTP.login(a.base, user: "carol", password: "first-password")
            let onB = try await HTTP.login(b.base, user: "carol", password: "first-password")
            #expect(try await onA.send(.GET, "/files").status == 200)
            #expect(try await onB.send(.GET, "/files").status == 200)
            // A second add of the same name is refused, whichever store it is.
            let again = try await user(["add", "carol"], input: "other-password\\nother-password\\n")
            #expect(again.status == 1 && again.errors.contains("already exists"))

            #expect(try await user(["passwd", "carol"], input: "second-password\\nsecond-password\\n").status == 0)
            #expect(try await onA.send(.GET, "/files").status == 401)
            #expect(try await onB.send(.GET, "/files").status == 401)
            let renewed = try await HTTP.login(b.base, user: "carol", password: "second-password")
            #expect(try await renewed.send(.GET, "/files").status == 200)

            #expect(try await user(["rm", "carol"], input: "").status == 0)
            #expect(try await renewed.send(.GET, "/files").status == 401)
            #expect(try await a.gateway.users.removedIDs().count == 1)
            #expect(try await user(["rm", "carol"], input: "").errors.contains("no user 'carol'"))
        } catch {
            Issue.record(error)
        }
        await a.stop()
        await b.stop()
        a.removeData()
        b.removeData()
    }

    /// Twelve wrong passwords at once, spread over two gateways of one database: together they get
    /// at most the documented guesses, as on one gateway; the right password then waits too.
    @Test func loginGuessesSpreadOverTwoGatewaysCountTogether() async throws {
        let server = try TestDatabase.fromEnvironment()
        let name = "t_throttle_\(UInt32.random(in: 0...UInt32.max))"
        try server.create(name)
        defer { server.drop(name) }
        let clock = TestClock()
        let a = try await TestGateway.start(database: try server.settings(name)) { $0.clock = clock.now }
        let b = try await TestGateway.start(database: try server.settings(name)) { $0.clock = clock.now }
        do {
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<12 {
                    let gateway = HTTP(base: index % 2 == 0 ? a.base : b.base)
                    group.addTask {
                        try await gateway.send(.POST, "/login", body: Array(#"{"username":"user1","password":"wrong-guess"}"#.utf8)).status
                    }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(statuses.filter { $0 == 401 }.count <= LoginAdmission.freeFailures, "\(statuses)")
            #expect(statuses.allSatisfy { $0 == 401 || $0 == 429 }, "\(statuses)")
            let locked = try await HTTP(base: b.base).send(.POST, "/login", body: Array(#"{"username":"user1","password":"password123"}"#.utf8))
            #expect(locked.status == 429 && locked.header("Retry-After") != nil)
            // Nothing in the table names the account or the address.
            let keys = try server.psql("SELECT string_agg(key, ',') FROM login_attempts", database: name)
            #expect(!keys.contains("user1") && !keys.contains("127.0.0.1") && keys.count > 64)
        } catch {
            Issue.record(error)
        }
        await a.stop()
        await b.stop()
        a.removeData()
        b.removeData()
    }

    /// One user's uploads spread over two gateways at once stop at one quota: of eight 4 MB
    /// uploads created together, half through each gateway, exactly two fit a 10 MB quota; a
    /// deferred-length upload appending through the other gateway is refused past it; and what is
    /// given back through one gateway, the other can use at once.
    @Test func theQuotaHoldsWithUploadsSpreadOverTwoGateways() async throws {
        let server = try TestDatabase.fromEnvironment()
        let name = "t_quota_\(UInt32.random(in: 0...UInt32.max))"
        try server.create(name)
        defer { server.drop(name) }
        let key = FileManager.default.temporaryDirectory.appendingPathComponent("key-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: key) }
        let configure: (inout GatewayConfiguration) -> Void = {
            $0.userQuota = 10_000_000
            $0.signingKeyPath = key
        }
        let a = try await TestGateway.start(database: try server.settings(name), configure: configure)
        let b = try await TestGateway.start(database: try server.settings(name), configure: configure)
        do {
            let onA = try await HTTP.login(a.base)
            let onB = HTTP(base: b.base, token: onA.token)
            let replies = try await withThrowingTaskGroup(of: (Int, String?).self) { group in
                for n in 0..<8 {
                    group.addTask {
                        let reply = try await (n % 2 == 0 ? onA : onB).send(.POST, "/uploads", headers: [("Tus-Resumable", "1.0.0"), ("Upload-Length", "4000000")])
                        return (reply.status, reply.header("Location"))
                    }
                }
                return try await group.reduce(into: [(Int, String?)]()) { $0.append($1) }
            }
            let statuses = replies.map(\.0)
            #expect(statuses.filter { $0 == 201 }.count == 2 && statuses.filter { $0 == 413 }.count == 6, "\(statuses)")

            // 8 MB reserved: a deferred-length upload through B may add 2 MB, not more.
            let (_, _, sealed) = try await sealedStream(plaintextSize: 3_000_000)
            let deferred = try await onB.createDeferredUpload()
            let over = try await onB.patch(deferred, offset: 0, sealed)
            #expect(over.status == 413 && over.json["error"] as? String == "quota_exceeded", "\(over.text)")

            // The uploads terminated through A give their share back, and B can use it at once.
            for location in replies.compactMap(\.1) {
                #expect(try await onA.send(.DELETE, location, headers: [("Tus-Resumable", "1.0.0")]).status == 204)
            }
            let full = try await onB.send(.POST, "/uploads", headers: [("Tus-Resumable", "1.0.0"), ("Upload-Length", "9000000")])
            #expect(full.status == 201, "every reservation was given back: \(full.text)")
        } catch {
            await a.stop()
            await b.stop()
            a.removeData()
            b.removeData()
            throw error
        }
        await a.stop()
        await b.stop()
        a.removeData()
        b.removeData()
    }

    /// Background work runs on one gateway of a cluster at a time: while one holds the sweep's
    /// lease, the other's round is skipped; once it is done (or its gateway is gone), the next
    /// round runs anywhere.
    @Test func backgroundWorkRunsOnOneGatewayAtATime() async throws {
        let server = try TestDatabase.fromEnvironment()
        let name = "t_leases_\(UInt32.random(in: 0...UInt32.max))"
        try server.create(name)
        defer { server.drop(name) }
        let pools = [PostgresDatabase(settings: try server.settings(name)), PostgresDatabase(settings: try server.settings(name))]
        let tasks = pools.map { pool in Task { await pool.run() } }
        defer { for task in tasks { task.cancel() } }
        let (a, b) = (PostgresClusterLeases(database: pools[0]), PostgresClusterLeases(database: pools[1]))
        let (started, release) = AsyncStream<Void>.makeStream()
        let (held, hold) = AsyncStream<Void>.makeStream()
        let first = Task {
            try await a.runAlone("sweep") {
                release.yield()
                for await _ in held { break }
            }
        }
        for await _ in started { break }
        #expect(try await b.runAlone("sweep") {} == false, "skipped while A sweeps")
        #expect(try await b.runAlone("other work") {} == true, "other work is not held up")
        hold.yield()
        #expect(try await first.value == true)
        #expect(try await b.runAlone("sweep") {} == true, "the next round runs on B")
        #expect(try await a.runAlone("sweep") {} == true)
    }

    /// The chat queue in PostgreSQL keeps the embedded queue's bounds: four accounts sending at
    /// once each stop at their own share; the storage limit stops everyone else; a member's queue
    /// keeps the newest deliveries and reports how many were dropped, once; deliveries past the
    /// retention expire; and what is acknowledged gives every byte back.
    @Test func theChatQueueKeepsItsBounds() async throws {
        let server = try TestDatabase.fromEnvironment()
        let name = "t_chatq_\(UInt32.random(in: 0...UInt32.max))"
        try server.create(name)
        defer { server.drop(name) }
        let database = PostgresDatabase(settings: try server.settings(name))
        let pool = Task { await database.run() }
        defer { pool.cancel() }
        try await SchemaMigrations.apply(on: database)
        func queue(queueLimit: Int = 1000, retention: TimeInterval = 3600) -> PostgresChatQueue {
            PostgresChatQueue(database: database, limits: ChatQueueLimits(queueLimit: queueLimit, retention: retention,
                                                                          storageLimit: 16 * 20_000, accountLimit: 4_000),
                              bus: LocalChatBus(), origin: "test")
        }
        let session = SessionID.random(), absent = UserID.random()
        func wire(from sender: UserID, in session: SessionID = session) -> ChatMessageWire {
            ChatMessageWire(sessionID: session.value, epoch: 0, sender: sender.value, messageID: Secrets.randomHex(16), sentAt: 1,
                            ciphertext: String(repeating: "ab", count: 100), signature: String(repeating: "cd", count: 64))
        }
        let now = UInt64(Date().timeIntervalSince1970 * 1000)
        let shared = queue()
        let senders = (0..<4).map { _ in UserID.random() }
        let counts = try await withThrowingTaskGroup(of: (Int, Bool).self) { group in
            for sender in senders {
                group.addTask {
                    var count = 0
                    while true {
                        do {
                            _ = try await shared.append(session: session, message: wire(from: sender), file: nil, recipients: [absent], now: now)
                            count += 1
                        } catch ChatLogError.accountFull {
                            return (count, true)
                        } catch {
                            return (count, false)
                        }
                    }
                }
            }
            return try await group.reduce(into: [(Int, Bool)]()) { $0.append($1) }
        }
        let cost = ChatEntry(session: session, seq: 1, time: now, recipients: [absent], message: wire(from: senders[0]), file: nil).cost
        #expect(counts.allSatisfy { $0 == (4_000 / cost, true) }, "each account stops at its own share: \(counts), \(cost) bytes each")
        // Others fill what is left of the storage (this session's sixteenth), then are refused as full.
        var others = 0
        while true {
            do {
                _ = try await shared.append(session: session, message: wire(from: UserID.random()), file: nil, recipients: [absent], now: now)
                others += 1
            } catch ChatLogError.full {
                break
            }
        }
        #expect((4 * (4_000 / cost) + others) * cost <= 20_000 && (4 * (4_000 / cost) + others + 1) * cost > 20_000)
        let waiting = try await shared.backlog(session: session, user: absent)
        #expect(waiting.entries.map(\.seq) == Array(1...UInt64(4 * (4_000 / cost) + others)), "numbered 1, 2, 3… with no gap")
        try await shared.acknowledge(session: session, user: absent, upTo: waiting.entries.last!.seq)
        func usage(of owner: String) async throws -> Int64 {
            try await database.perform("usage") { client in
                var bytes: Int64 = 0
                for try await value in try await client.query("SELECT bytes FROM chat_usage WHERE owner = \(owner)").decode(Int64.self) { bytes = value }
                return bytes
            }
        }
        let left = try await database.perform("usage") { client in
            var rows: [Int64] = []
            for try await bytes in try await client.query("SELECT bytes FROM chat_usage UNION ALL SELECT count(*) FROM chat_entries").decode(Int64.self) {
                rows.append(bytes)
            }
            return rows
        }
        #expect(left.allSatisfy { $0 == 0 }, "every byte given back, every delivery deleted: \(left)")

        // A member's queue holds the newest three (applied by the cluster's maintenance, once a
        // second); the two dropped are reported once, and their bytes given back.
        let bounded = queue(queueLimit: 3), second = SessionID.random()
        for _ in 1...5 {
            _ = try await bounded.append(session: second, message: wire(from: senders[0], in: second), file: nil, recipients: [absent], now: now)
        }
        try await bounded.maintain(now: now)
        let backlog = try await bounded.backlog(session: second, user: absent)
        #expect(backlog.entries.map(\.seq) == [3, 4, 5] && backlog.dropped == 2)
        #expect(try await bounded.backlog(session: second, user: absent).dropped == 0)
        #expect(try await usage(of: senders[0].value) == Int64(3 * cost))

        // Past the retention, a delivery expires and counts as dropped.
        let expiring = queue(retention: 60), third = SessionID.random()
        _ = try await expiring.append(session: third, message: wire(from: senders[1], in: third), file: nil, recipients: [absent], now: now)
        try await expiring.maintain(now: now + 61_000)
        let expired = try await expiring.backlog(session: third, user: absent)
        #expect(expired.entries.isEmpty && expired.dropped == 1)
    }

    /// The same registry operations give the same answers on PostgreSQL as on the embedded JSON
    /// registry: listings by owner and by session (oldest first), usage sums, uploads, identities.
    @Test func theRegistryAnswersAsTheEmbeddedOneDoes() async throws {
        let server = try TestDatabase.fromEnvironment()
        let name = "t_registry_\(UInt32.random(in: 0...UInt32.max))"
        try server.create(name)
        defer { server.drop(name) }
        let database = PostgresDatabase(settings: try server.settings(name))
        let pool = Task { await database.run() }
        defer { pool.cancel() }
        try await SchemaMigrations.apply(on: database)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("registry-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let registries: [any Registry] = [try JSONFileRegistry(directory: directory), PostgresRegistry(database: database)]

        let (_, _, sealed) = try await sealedStream(plaintextSize: 1000)
        let header = try StreamHeader.parse(Array(sealed.prefix(StreamHeader.encodedLength)))
        let (alice, bob) = (UserID.random(), UserID.random())
        let session = SessionID.random()
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        var manifests: [FileManifest] = []
        for index in 0..<6 {
            let owner: UserID = index % 2 == 0 ? alice : bob
            let createdAt: Date = start.addingTimeInterval(Double(10 - index))
            let fileSession: FileSession? = index < 3 ? FileSession(sessionID: session, epoch: UInt32(index)) : nil
            let record = FileManifest.Record(index: 0, offset: 92, length: 1000, plaintextLength: 900)
            manifests.append(FileManifest(fileID: FileID.random(), owner: owner, createdAt: createdAt, expiresAt: nil,
                                          size: Int64(1000 + index), plaintextSize: 900, chunkSize: 1 << 16, header: header,
                                          digest: String(repeating: "0", count: 64), metadata: ["n": "\(index)"],
                                          records: [record], session: fileSession))
        }
        for registry in registries {
            for manifest in manifests { try await registry.putFile(manifest) }
            try await registry.removeFile(manifests[5].fileID)
        }
        var answers: [RegistryAnswers] = []
        for registry in registries { answers.append(try await RegistryAnswers(registry, alice: alice, bob: bob, session: session, manifests: manifests)) }
        #expect(answers[0] == answers[1])
        let expected = answers[1]
        #expect(expected.alice == [manifests[4], manifests[2], manifests[0]].map(\.fileID))
        #expect(expected.bob == [manifests[3], manifests[1]].map(\.fileID))
        #expect(expected.session == [manifests[2], manifests[1], manifests[0]].map(\.fileID))
        #expect(expected.usage == [alice: 1000 + 1002 + 1004, bob: 1001 + 1003])
        #expect(expected.one == manifests[2])
        #expect(expected.removedIsGone)
    }

    /// An embedded gateway's files, upload in progress and identity bundle move to PostgreSQL and
    /// S3 with `safechat migrate --from-data-dir`; the gateway started on them serves the same
    /// bytes under the same ids, the upload resumes from its offset, and a second run copies nothing.
    @Test func migrateFromADataDirectoryMovesRegistryAndFiles() async throws {
        let embedded = try await TestGateway.start()
        let dir = embedded.dataDirectory
        let client = try await HTTP.login(embedded.base)
        var streams: [String: (SessionKey, [UInt8])] = [:]
        for size in [200_000, 3_000_000] {
            let (key, plaintext, sealed) = try await sealedStream(plaintextSize: size)
            let id = try #require(try await client.send(.POST, "/upload", body: sealed).json["file_id"] as? String)
            streams[id] = (key, plaintext)
        }
        let (key, plaintext, sealed) = try await sealedStream(plaintextSize: 2_500_000)
        let path = try await client.createUpload(length: sealed.count)
        #expect(try await client.patch(path, offset: 0, sealed.prefix(1_000_003)).status == 204)
        let user1 = try #require(try await embedded.gateway.users.id(of: "user1"))
        let identity = try Identity.generate(userID: Array(Data(hexPairs: user1.description)))
        #expect(try await client.send(.PUT, "/keys/me", headers: [("Content-Type", "application/json")],
                                      body: identity.publicBundle.encoded()).status == 200)
        let published = try await client.send(.GET, "/keys/user1").body
        let sessionID = Secrets.randomBytes(16)
        let epoch0 = try EpochDocument.make(sessionID: sessionID, epoch: 0, previous: nil, signer: identity,
                                            members: [(.init(userID: identity.userID, name: "user1", signingKey: identity.signingKey.publicKey.rawRepresentation),
                                                       identity.agreementKey.publicKey)], key: SessionKey.random())
        #expect(try await client.send(.POST, "/sessions", headers: [("Content-Type", "application/json")],
                                      body: Array(try WireCoding.encoder.encode(epoch0.wire))).status == 201)
        let chain = try await client.send(.GET, "/sessions/\(Secrets.hex(sessionID))").body
        // A delivery waiting for a member who has not connected (the store takes it as it is).
        let absent = UserID.random(), session = SessionID(Secrets.hex(sessionID))!
        let event = ChatFileEvent(fileID: FileID.random(), size: 1, sender: user1, epoch: 0, header: "00", sealedName: "")
        let waiting = try await embedded.gateway.chat.log.append(session: session, message: nil, file: event, recipients: [absent], now: UInt64(Date().timeIntervalSince1970 * 1000))
        await embedded.stop()

        let server = try TestDatabase.fromEnvironment()
        let url = try server.create(TestDatabase.name(dataDirectory: dir))
        let store = try TestObjectStore.fromEnvironment()
        let (storeOptions, storeEnvironment) = store.serveArguments(prefix: TestGateway.s3Prefix(dataDirectory: dir))
        let environment = ProcessInfo.processInfo.environment.merging(storeEnvironment) { $1 }.merging(["PGPASSWORD": server.password]) { $1 }
        let arguments = [Self.safechat, "migrate", "--database", url, "--from-data-dir", dir] + storeOptions
        let first = try await runProcess(arguments, environment: environment, errorsApart: true)
        #expect(first.status == 0, "\(first.errors)")
        #expect(first.output.contains("imported 1 accounts, 2 files, 1 uploads in progress, 1 identity bundles and 1 sessions with 1 waiting chat deliveries"), "\(first.output)")
        let second = try await runProcess(arguments, environment: environment, errorsApart: true)
        #expect(second.output.contains("imported 0 accounts, 0 files") && second.output.contains("and 0 sessions with 0 waiting")
                && second.output.contains("(2 files already there; 0 bytes copied)"), "\(second.output)")

        // The data directory's own registry and blobs go; the gateway finds everything in PostgreSQL and S3.
        try FileManager.default.removeItem(atPath: dir + "/registry/files")
        try FileManager.default.removeItem(atPath: dir + "/data")
        let moved = try await TestGateway.start(dataDirectory: dir, store: .postgres)
        do {
            let again = try await HTTP.login(moved.base)
            #expect(try await again.send(.GET, "/sessions/\(Secrets.hex(sessionID))").body == chain, "the session's chain, as it was")
            let backlog = try await moved.gateway.chat.log.backlog(session: session, user: absent)
            #expect(backlog.entries.map(\.seq) == [waiting.seq] && backlog.entries.first?.file == event, "the delivery waits, as it was")
            let next = try await moved.gateway.chat.log.append(session: session, message: nil, file: event, recipients: [absent], now: UInt64(Date().timeIntervalSince1970 * 1000))
            #expect(next.seq == waiting.seq + 1, "the session's numbering continues")
            let listed = try #require(try await again.send(.GET, "/files").json["files"] as? [[String: Any]])
            #expect(Set(listed.compactMap { $0["file_id"] as? String }) == Set(streams.keys))
            for (id, (key, plaintext)) in streams {
                let body = try await again.send(.GET, "/download/\(id)").body
                #expect(fingerprint(try await openStream(body, key: key)) == fingerprint(plaintext))
            }
            #expect(try await again.send(.HEAD, path, headers: [("Tus-Resumable", "1.0.0")]).header("Upload-Offset") == "1000003")
            #expect(try await again.patch(path, offset: 1_000_003, sealed.dropFirst(1_000_003)).status == 204)
            let id = String(path.split(separator: "/").last!)
            #expect(fingerprint(try await openStream(try await again.send(.GET, "/download/\(id)").body, key: key)) == fingerprint(plaintext))
            #expect(try await again.send(.GET, "/keys/user1").body == published)
            #expect(try await moved.storedBlobs().files.count == 3)
        } catch {
            Issue.record(error)
        }
        await moved.stop()
        moved.removeData()
    }
}

private extension Data {
    init(hexPairs hex: String) {
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex, let next = hex.index(index, offsetBy: 2, limitedBy: hex.endIndex) {
            bytes.append(UInt8(hex[index..<next], radix: 16) ?? 0)
            index = next
        }
        self.init(bytes)
    }
}

/// What one registry answers to the same questions, compared across backends.
private struct RegistryAnswers: Equatable {
    let alice: [FileID], bob: [FileID], session: [FileID]
    let usage: [UserID: Int64]
    let one: FileManifest?
    let removedIsGone: Bool

    init(_ registry: any Registry, alice: UserID, bob: UserID, session: SessionID, manifests: [FileManifest]) async throws {
        self.alice = try await registry.files(ownedBy: alice).map(\.fileID)
        self.bob = try await registry.files(ownedBy: bob).map(\.fileID)
        self.session = try await registry.files(inSession: session).map(\.fileID)
        self.usage = try await registry.storedBytesByOwner()
        self.one = try await registry.file(manifests[2].fileID)
        self.removedIsGone = try await registry.file(manifests[5].fileID) == nil
    }
}
