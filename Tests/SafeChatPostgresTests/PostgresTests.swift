import Foundation
import SafeChatAPI
import SafeChatGateway
import SafeChatPostgres
import SafeChatTestSupport
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
}
