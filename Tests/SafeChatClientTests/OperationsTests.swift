import Foundation
import Testing
@testable import SafeChatGateway
import SafeChatAPI
import SafeChatClient
import SafeChatTestSupport
import SealedStream

/// What operators see (issue 27): /metrics after known traffic moves by exactly that traffic and
/// names no one, promtool accepts it, and SIGTERM drains (not ready first, chat told to go away,
/// an upload in flight resumed after a restart with nothing acknowledged lost).
@Suite struct OperationsTests {
    typealias Workspace = ClientCommandTests.Workspace

    /// The exposition's samples, by series (`name{labels}`).
    struct Scrape {
        let text: String
        let samples: [String: Double]

        init(_ text: String) {
            self.text = text
            var samples: [String: Double] = [:]
            for line in text.split(separator: "\n") where !line.hasPrefix("#") {
                guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
                samples[String(line[..<space])] = value
            }
            self.samples = samples
        }

        subscript(_ series: String) -> Double { samples[series] ?? 0 }
        /// The series of `name` whose labels contain `fragment`.
        func series(_ name: String, with fragment: String) -> [String: Double] {
            samples.filter { $0.key.hasPrefix(name + "{") && $0.key.contains(fragment) }
        }
    }

    static func scrape(_ port: Int) async throws -> Scrape {
        let reply = try await HTTP(base: "http://127.0.0.1:\(port)").send(.GET, "/metrics")
        #expect(reply.status == 200)
        #expect(reply.header("Content-Type")?.hasPrefix("text/plain; version=0.0.4") == true)
        return Scrape(reply.text)
    }

    /// Debian's promtool, reading the exposition on standard input.
    static func promtoolCheck(_ text: String) async throws -> (status: Int32, output: String) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("promtool-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try text.write(to: directory.appendingPathComponent("metrics.txt"), atomically: true, encoding: .utf8)
        return try await runProcess(["sh", "-c", "promtool check metrics < metrics.txt"], in: directory)
    }

    @Test(arguments: [TestStore.local, .postgres])
    func metricsMoveByExactlyTheTrafficAndNameNoOne(store: TestStore) async throws {
        try await TestGateway.with(store: store, configure: { $0.operationsAddress = ("127.0.0.1", 0) }) { server in
            let operations = try #require(server.operationsPort)
            let before = try await Self.scrape(operations)

            // Traffic: two CLI logins and a session (ChatTests.pair), one HTTP login, one failed
            // login, one upload, a whole download and a 100-byte range, three messages received
            // by the other member, and a path no route knows.
            let (one, two, _, session) = try await ChatTests.pair(server)
            defer { one.remove(); two.remove() }
            let login = try await HTTP(base: server.base).send(.POST, "/login", body: Array(#"{"username":"user1","password":"password123"}"#.utf8))
            let token = try #require(login.json["token"] as? String), userID = try #require(login.json["user_id"] as? String)
            let http = HTTP(base: server.base, token: token)
            #expect(try await HTTP(base: server.base).send(.POST, "/login", body: Array(#"{"username":"user2","password":"wrong"}"#.utf8)).status == 401)
            #expect(try await one.run(["keygen", "key"]).status == 0)
            let (_, fileID) = try await one.uploadRandomFile("report.bin", size: 300_000)
            let size = try #require(try await http.send(.GET, "/files/\(fileID)").json["size"] as? Int)
            let whole = try await http.send(.GET, "/download/\(fileID)")
            #expect(whole.status == 200 && whole.body.count == size)
            #expect(try await http.send(.GET, "/download/\(fileID)", headers: [("Range", "bytes=0-99")]).status == 206)
            #expect(try await http.send(.GET, "/no/such/route/\(fileID)").status == 404)
            for n in 1...3 { #expect(try await one.run(["send", session, "metric \(n)"]).status == 0) }
            // The queue's depth is read once a second.
            var depth = 0.0
            for _ in 0..<100 {
                depth = try await Self.scrape(operations)["safechat_chat_queue_depth"]
                if depth == 3 { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(depth == 3, "three messages wait for user2")
            let received = try await two.run(["recv", session])
            #expect(received.output.contains("metric 3"), "\(received.output)")

            var after = try await Self.scrape(operations)
            for _ in 0..<100 where after["safechat_chat_connections"] != 0 {
                try await Task.sleep(for: .milliseconds(100))
                after = try await Self.scrape(operations)
            }
            func delta(_ series: String) -> Double { after[series] - before[series] }
            #expect(delta("safechat_upload_bytes_total") == Double(size))
            #expect(delta("safechat_download_bytes_total") == Double(size + 100))
            #expect(delta(#"safechat_logins_total{result="success"}"#) == 3)
            #expect(delta(#"safechat_logins_total{result="failure"}"#) == 1)
            #expect(delta(#"safechat_logins_total{result="throttled"}"#) == 0)
            #expect(delta("safechat_chat_messages_total") == 3)
            #expect(delta("safechat_chat_deliveries_total") == 3)
            #expect(delta("safechat_chat_dropped_deliveries_total") == 0)
            #expect(after["safechat_chat_connections"] == 0 && after["safechat_uploads_active"] == 0 && after["safechat_downloads_active"] == 0)

            // Requests by route template: the download route's template, never the id in the path.
            let downloads = after.series("safechat_http_requests_total", with: #"method="GET""#).filter { $0.key.contains(#"route="/download/"#) }
            #expect(downloads.count == 2, "\(downloads)")
            #expect(downloads.first { $0.key.contains(#"status="200""#) }?.value == 1)
            #expect(downloads.first { $0.key.contains(#"status="206""#) }?.value == 1)
            #expect(delta(#"safechat_http_requests_total{route="unmatched",method="GET",status="404"}"#) == 1)
            #expect(delta(#"safechat_http_requests_total{route="/login",method="POST",status="401"}"#) == 1)
            #expect(after.series("safechat_http_request_duration_seconds_count", with: #"route="/login""#).values.reduce(0, +) == 4)

            // Every backing store was timed; with PostgreSQL, the database too.
            #expect(delta(#"safechat_store_operation_duration_seconds_count{store="registry"}"#) > 0)
            #expect(delta(#"safechat_store_operation_duration_seconds_count{store="blob_store"}"#) > 0)
            #expect((delta(#"safechat_store_operation_duration_seconds_count{store="database"}"#) > 0) == (store == .postgres))
            #expect(after[#"safechat_store_errors_total{store="registry"}"#] == 0)

            // No identifier is a label value (nor anywhere else in the exposition).
            for identifier in [fileID, session, userID, token, "user1", "user2", "report.bin"] {
                #expect(!after.text.contains(identifier), "the metrics name \(identifier)")
            }
            let checked = try await Self.promtoolCheck(after.text)
            #expect(checked.status == 0, "promtool check metrics: \(checked.output)")
        }
    }

    @Test func everyExportedMetricIsDocumented() throws {
        let docs = try String(contentsOfFile: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/OPERATIONS.md").path, encoding: .utf8)
        for metric in MetricCatalog.all {
            #expect(docs.contains("`\(metric.name)`"), "docs/OPERATIONS.md does not describe \(metric.name)")
        }
    }

    @Test func probesAnswerWithJSONAndTheDiskThresholdTurnsReadinessFalse() async throws {
        try await TestGateway.with(configure: { $0.operationsAddress = ("127.0.0.1", 0); $0.minimumFreeSpace = 1 << 60 }) { server in
            let operationsPort = try #require(server.operationsPort)
            let operations = HTTP(base: "http://127.0.0.1:\(operationsPort)")
            #expect(try await operations.send(.GET, "/healthz").status == 200)
            let ready = try await operations.send(.GET, "/readyz")
            #expect(ready.status == 503)
            // (The other checks passing is ReadinessTests' to show; here only the disk is short.)
            let checks = try #require(ready.json["checks"] as? [String: String])
            #expect(checks["disk"]?.contains("below the") == true, "\(checks)")
            #expect(ready.json["ready"] as? Bool == false)
            let unknown = try await operations.send(.GET, "/metrics/../admin")
            #expect(unknown.status == 404 && unknown.json["error"] as? String == "not_found")
            // Nothing of it is on the public port.
            #expect(try await HTTP(base: server.base).send(.GET, "/metrics").status == 404)
        }
    }

    /// SIGTERM with an upload streaming in and a chat client connected: /readyz turns false first,
    /// the chat client is told "going away" (1001), the process exits within its grace period, and
    /// on a restarted gateway the upload resumes from its acknowledged offset and the chat client
    /// reconnects by itself.
    @Test func sigtermDrainsAndTheUploadResumesWithNothingLost() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("drain-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let operationsPort = try freePort()
        let options = ["--metrics-listen", "127.0.0.1:\(operationsPort)", "--shutdown-grace", "4"]
        let first = try await ServerProcess(dataDirectory: directory, options: options)
        let (one, two, _, session) = try await ChatTests.pair(base: first.base, dataDirectory: directory)
        defer { one.remove(); two.remove() }

        // user2 in `safechat chat`, its messages on standard error.
        let chat = Process()
        chat.executableURL = URL(fileURLWithPath: ClientCommandTests.safechat)
        chat.arguments = ["chat", session]
        chat.environment = ProcessInfo.processInfo.environment.merging(["XDG_CONFIG_HOME": two.config, "XDG_DATA_HOME": two.data]) { $1 }
        let typed = Pipe(), said = PipeText()
        chat.standardInput = typed
        chat.standardOutput = FileHandle.nullDevice
        chat.standardError = said.pipe
        try chat.run()
        defer { if chat.isRunning { chat.terminate() }; chat.waitUntilExit() }
        #expect(await said.wait(for: "connected to"), "\(said.value)")

        // A 24 MiB sealed stream PATCHed at 1 MB/s: well under way when the signal comes.
        let stream = try await sealedStream(plaintextSize: 24 << 20)
        let file = URL(fileURLWithPath: directory + "-upload.bin")
        defer { try? FileManager.default.removeItem(at: file) }
        try Data(stream.sealed).write(to: file)
        let http = try await HTTP.login(first.base)
        let upload = try await http.createUpload(length: stream.sealed.count)
        let patch = try slowPatch(first.base + upload, token: try #require(http.token), offset: 0, file: file)
        defer { if patch.isRunning { patch.terminate() } }
        try await Task.sleep(for: .seconds(3))

        let operations = HTTP(base: "http://127.0.0.1:\(operationsPort)")
        #expect(try await operations.send(.GET, "/readyz").status == 200)
        kill(first.process.processIdentifier, SIGTERM)
        var draining: Reply?
        for _ in 0..<40 {
            let reply = try? await operations.send(.GET, "/readyz", timeout: .seconds(1))
            if reply?.status == 503 { draining = reply; break }
            try await Task.sleep(for: .milliseconds(25))
        }
        #expect(draining?.json["draining"] as? Bool == true, "readiness turns false at once: \(draining?.text ?? "no answer")")
        #expect(await said.wait(for: "disconnected (1001", within: .seconds(10)), "\(said.value)")
        let exit = ContinuousClock.now
        await first.process.exited()
        #expect(ContinuousClock.now - exit < .seconds(12), "the gateway exits within its grace period (4 s) and the cancellation after it")

        // Restarted on the same port: the upload resumes from what was acknowledged, and finishes
        // byte-identical; the chat client is back on its own.
        let port = try #require(URL(string: first.base)?.port)
        let second = try await ServerProcess(dataDirectory: directory, port: port, options: options)
        defer { second.kill() }
        let resumed = try await HTTP.login(second.base)
        let head = try await resumed.send(.HEAD, upload, headers: [("Tus-Resumable", "1.0.0")])
        let offset = try #require(head.header("Upload-Offset").flatMap { Int($0) })
        #expect(offset > 0 && offset < stream.sealed.count, "the upload was in flight: \(offset)")
        let finished = try await resumed.patch(upload, offset: offset, stream.sealed[offset...])
        #expect(finished.status == 204, "\(finished.text)")
        let id = String(upload.split(separator: "/").last!)
        let downloaded = try await resumed.send(.GET, "/download/\(id)")
        #expect(downloaded.body == stream.sealed, "the stored file is the stream sent, byte for byte")
        var connections = 0
        for _ in 0..<200 {
            connections = said.value.components(separatedBy: "connected to").count - 1
            if connections >= 2 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(connections >= 2, "the chat client reconnects by itself: \(said.value)")
        try? typed.fileHandleForWriting.write(contentsOf: Data("/quit\n".utf8))
    }

    /// `--log-format json`: one JSON object per line; each request's line names its id (kept from
    /// a trusted proxy, made up otherwise, echoed either way), route template, status, bytes,
    /// duration and account id, and no line names a user, a file or a token.
    @Test func jsonLogsTellEachRequestAndNameNoOne() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("logs-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let trusted = try await ServerProcess(dataDirectory: directory, options: ["--log-format", "json", "--trusted-proxies", "127.0.0.1,::1"])
        defer { trusted.kill() }
        let login = try await HTTP(base: trusted.base).send(.POST, "/login", headers: [("X-Request-Id", "lb-login.1")],
                                                             body: Array(#"{"username":"user1","password":"password123"}"#.utf8))
        #expect(login.header("X-Request-Id") == "lb-login.1")
        let token = try #require(login.json["token"] as? String), userID = try #require(login.json["user_id"] as? String)
        let http = HTTP(base: trusted.base, token: token)
        // A file whose name must stay out of the log, uploaded and downloaded.
        let sealed = try await sealedStream(plaintextSize: 300_000).sealed
        let upload = try await http.createUpload(length: sealed.count, metadata: "filename \(Data("quarterly-secret-plan.pdf".utf8).base64EncodedString())")
        let patched = try await http.patch(upload, offset: 0, sealed, extraHeaders: [("X-Request-Id", "lb-patch.2")])
        #expect(patched.status == 204 && patched.header("X-Request-Id") == "lb-patch.2")
        let id = String(upload.split(separator: "/").last!)
        let downloaded = try await http.send(.GET, "/download/\(id)", headers: [("X-Request-Id", "lb-download.3")])
        #expect(downloaded.body == sealed)
        // An id that could forge a log field is not taken over, even from a trusted proxy.
        let forged = try await http.send(.GET, "/files", headers: [("X-Request-Id", "x\" level=error")])
        let made = try #require(forged.header("X-Request-Id"))
        #expect(made.count == 16 && made.allSatisfy(\.isHexDigit), "\(made)")
        let missing = try await HTTP(base: trusted.base).send(.GET, "/no/such/path")
        #expect(missing.status == 404)

        // From an address that is not a trusted proxy, the header is ignored.
        let other = try await ServerProcess(dataDirectory: directory + "-other", options: ["--log-format", "json"])
        defer { other.kill(); try? FileManager.default.removeItem(atPath: directory + "-other") }
        let untrusted = try await HTTP(base: other.base).send(.GET, "/files", headers: [("X-Request-Id", "lb-untrusted")])
        let own = try #require(untrusted.header("X-Request-Id"))
        #expect(own != "lb-untrusted" && own.count == 16)

        // Lines are written once each body is sent: wait for the download's.
        var records: [[String: Any]] = []
        for _ in 0..<100 {
            records = trusted.log.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            if records.contains(where: { $0["request_id"] as? String == "lb-download.3" && $0["message"] as? String == "request" }) { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        let lines = trusted.log.split(separator: "\n")
        #expect(records.count == lines.count, "every line is one JSON object: \(trusted.log)")
        for record in records {
            #expect(record["time"] is String && record["level"] is String && record["message"] is String, "\(record)")
        }
        func request(_ id: String) -> [String: Any] {
            records.first { $0["request_id"] as? String == id && $0["message"] as? String == "request" } ?? [:]
        }
        let loginLine = request("lb-login.1")
        #expect(loginLine["route"] as? String == "/login" && loginLine["status"] as? Int == 200 && loginLine["method"] as? String == "POST")
        let patchLine = request("lb-patch.2")
        #expect(patchLine["route"] as? String == "/uploads/{id}" && patchLine["status"] as? Int == 204, "\(patchLine)")
        #expect(patchLine["bytes_in"] as? Int == sealed.count && patchLine["user_id"] as? String == userID, "\(patchLine)")
        let downloadLine = request("lb-download.3")
        #expect(downloadLine["route"] as? String == "/download/{id}" && downloadLine["status"] as? Int == 200, "\(downloadLine)")
        #expect(downloadLine["bytes_out"] as? Int == sealed.count && downloadLine["user_id"] as? String == userID, "\(downloadLine)")
        #expect((downloadLine["duration_ms"] as? Double).map { $0 >= 0 } == true, "\(downloadLine)")
        #expect(request(made)["route"] as? String == "/files")
        #expect(records.contains { $0["route"] as? String == "unmatched" && $0["status"] as? Int == 404 })
        // Handlers' own lines carry the request's id too (the login line).
        #expect(records.contains { $0["request_id"] as? String == "lb-login.1" && $0["message"] as? String == "login" })
        // (The demo account's warning at start names the prototype's well-known demo login.)
        let requestTime = lines.filter { !$0.contains("demo mode") }.joined(separator: "\n")
        for secret in ["user1", "password123", token, "quarterly-secret-plan", Data("quarterly-secret-plan.pdf".utf8).base64EncodedString(), "/download/\(id)"] {
            #expect(!requestTime.contains(secret), "the log holds \(secret)")
        }
    }

    /// `safechat admin` beside a running gateway, on the data directory and on PostgreSQL + S3:
    /// usage per account, disable (tokens refused at once) and enable, removal keeping or deleting
    /// files (storage freed, bytes gone from the store), totals.
    @Test(arguments: [TestStore.local, .postgres])
    func adminCommandsActOnARunningGateway(store: TestStore) async throws {
        try await TestGateway.with(store: store) { server in
            var options = ["--data-dir", server.dataDirectory], objectStore: [String] = []
            var environment = ProcessInfo.processInfo.environment
            if store.usesS3 {
                let (s3, s3Environment) = try TestObjectStore.fromEnvironment().serveArguments(prefix: TestGateway.s3Prefix(dataDirectory: server.dataDirectory))
                objectStore = s3
                environment.merge(s3Environment) { $1 }
            }
            if store == .postgres {
                let database = try TestDatabase.fromEnvironment()
                options += ["--database", database.url(of: TestDatabase.name(dataDirectory: server.dataDirectory))]
                environment["PGPASSWORD"] = database.password
            }
            func safechat(_ arguments: [String], input: String? = nil) async throws -> (status: Int32, output: String, errors: String) {
                let command = input.map { ["sh", "-c", "printf '\($0)' | \"$0\" \"$@\"", ClientCommandTests.safechat] } ?? [ClientCommandTests.safechat]
                // `admin` deletes sealed bytes, so it is told where they are; `user` is not.
                return try await runProcess(command + arguments + options + (arguments.first == "admin" ? objectStore : []),
                                            environment: environment, errorsApart: true)
            }
            func users() async throws -> [String: [String: Any]] {
                let run = try await safechat(["admin", "users", "--json"])
                #expect(run.status == 0, "\(run.errors)")
                var rows: [String: [String: Any]] = [:]
                for line in run.output.split(separator: "\n") {
                    if let row = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], let name = row["name"] as? String { rows[name] = row }
                }
                return rows
            }
            func totals() async throws -> [String: Int] {
                let run = try await safechat(["admin", "storage", "--json"])
                #expect(run.status == 0, "\(run.errors)")
                return (try JSONSerialization.jsonObject(with: Data(run.output.utf8)) as? [String: Int]) ?? [:]
            }

            #expect(try await safechat(["user", "add", "carol"], input: "carols-password\\ncarols-password\\n").status == 0)
            let user1 = try await HTTP.login(server.base)
            let carol = try await HTTP.login(server.base, user: "carol", password: "carols-password")
            let mine = try await sealedStream(plaintextSize: 200_000).sealed, hers = try await sealedStream(plaintextSize: 500_000).sealed
            let myUpload = try await user1.createUpload(length: mine.count)
            #expect(try await user1.patch(myUpload, offset: 0, mine).status == 204)
            let herUpload = try await carol.createUpload(length: hers.count)
            #expect(try await carol.patch(herUpload, offset: 0, hers).status == 204)
            let herPartial = try await carol.createUpload(length: 1 << 20)
            #expect(try await carol.patch(herPartial, offset: 0, hers.prefix(65536)).status == 204)
            let herFile = String(herUpload.split(separator: "/").last!)

            let before = try await users()
            #expect(before["user1"]?["files"] as? Int == 1 && before["user1"]?["bytes"] as? Int == mine.count, "\(before)")
            #expect(before["carol"]?["files"] as? Int == 1 && before["carol"]?["bytes"] as? Int == hers.count, "\(before)")
            #expect(before["carol"]?["uploads"] as? Int == 1 && before["carol"]?["upload_bytes"] as? Int == 65536, "\(before)")
            #expect(before["carol"]?["disabled"] as? Bool == false)
            let table = try await safechat(["admin", "users"])
            #expect(table.output.contains("NAME") && table.output.contains("carol"), "\(table.output)")
            let all = try await totals()
            #expect(all["accounts"] == 2 && all["files"] == 2 && all["file_bytes"] == mine.count + hers.count, "\(all)")

            // Disabled: the token it holds is refused at once, and so is a new login; enabled: back.
            #expect(try await safechat(["admin", "disable", "carol"]).status == 0)
            #expect(try await carol.send(.GET, "/files").status == 401)
            await #expect(throws: (any Error).self) { try await HTTP.login(server.base, user: "carol", password: "carols-password") }
            #expect(try await users()["carol"]?["disabled"] as? Bool == true)
            #expect(try await user1.send(.GET, "/files").status == 200, "others are not touched")
            #expect(try await safechat(["admin", "enable", "carol"]).status == 0)
            let back = try await HTTP.login(server.base, user: "carol", password: "carols-password")
            #expect(try await back.send(.GET, "/files").status == 200)

            // Removal needs a decision about the files, and a name that exists.
            #expect(try await safechat(["admin", "remove", "carol"]).status == 64)
            let unknown = try await safechat(["admin", "remove", "nobody", "--delete-files"])
            #expect(unknown.status == 1 && unknown.errors.contains("no account 'nobody'"), "\(unknown.errors)")
            #expect(try await users()["carol"] != nil, "a refused command changes nothing")

            // Deleting: her file and upload are gone from the registry and the store at once.
            let removed = try await safechat(["admin", "remove", "carol", "--delete-files"])
            #expect(removed.status == 0 && removed.errors.contains("2 files and uploads"), "\(removed.errors)")
            let after = try await totals()
            #expect(after["accounts"] == 1 && after["files"] == 1 && after["file_bytes"] == mine.count && after["uploads_in_progress"] == 0, "\(after)")
            if store.usesS3 {
                let listed = try await TestObjectStore.fromEnvironment().aws(["s3", "ls", "--recursive",
                    "s3://\(try TestObjectStore.fromEnvironment().bucket)/\(TestGateway.s3Prefix(dataDirectory: server.dataDirectory))"])
                #expect(!listed.contains(herFile), "\(listed)")
            } else {
                #expect(!FileManager.default.fileExists(atPath: server.dataDirectory + "/data/blobs/\(herFile)"))
                #expect(FileManager.default.fileExists(atPath: server.dataDirectory + "/data/blobs/\(myUpload.split(separator: "/").last!)"))
            }

            // Keeping: the account goes, its file stays.
            #expect(try await safechat(["admin", "remove", "user1", "--keep-files"]).status == 0)
            let kept = try await totals()
            #expect(kept["accounts"] == 0 && kept["files"] == 1 && kept["file_bytes"] == mine.count && kept["files_of_removed_accounts"] == 1, "\(kept)")
            #expect(try await user1.send(.GET, "/files").status == 401)
        }
    }
}
