import Foundation
import SafeChatAPI
import SafeChatTestSupport
import SealedStream
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Two `safechat serve` processes on one PostgreSQL and one S3 prefix, sharing a signing key: what
/// one gateway acknowledged, the other continues; one append at a time across both.
@Suite(.serialized) struct ClusterTests {
    /// Two gateways of one cluster, removed (data directories and database) afterwards.
    struct Cluster {
        let name = "cluster-\(UUID().uuidString)"
        let directories: [String]
        let signingKey: String
        var a: ServerProcess, b: ServerProcess

        init() async throws {
            let root = FileManager.default.temporaryDirectory.appendingPathComponent(name).path
            directories = [root + "/a", root + "/b"]
            for directory in directories {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            }
            signingKey = root + "/signing.key"
            let options = ["--signing-key", signingKey]
            a = try await ServerProcess(dataDirectory: directories[0], store: .postgres, cluster: name, options: options)
            b = try await ServerProcess(dataDirectory: directories[1], store: .postgres, cluster: name, options: options)
        }

        func remove() {
            a.kill()
            b.kill()
            try? FileManager.default.removeItem(atPath: FileManager.default.temporaryDirectory.appendingPathComponent(name).path)
            try? TestDatabase.fromEnvironment().drop(TestDatabase.name(dataDirectory: name))
        }
    }

    @Test func anUploadBegunOnOneGatewayContinuesOnTheOther() async throws {
        let cluster = try await Cluster()
        defer { cluster.remove() }
        let onA = try await HTTP.login(cluster.a.base)
        // The token A issued opens B: one signing key, one account table.
        let onB = HTTP(base: cluster.b.base, token: onA.token)
        let (key, plaintext, sealed) = try await sealedStream(plaintextSize: 9_000_000, chunkSize: 1 << 20)
        let path = try await onA.createUpload(length: sealed.count)
        #expect(try await onA.patch(path, offset: 0, sealed.prefix(4_000_001)).status == 204)
        #expect(try await onB.send(.HEAD, path, headers: [("Tus-Resumable", "1.0.0")]).header("Upload-Offset") == "4000001")
        #expect(try await onB.patch(path, offset: 4_000_001, sealed.dropFirst(4_000_001)).status == 204)
        let id = String(path.split(separator: "/").last!)
        for client in [onA, onB] {
            let body = try await client.send(.GET, "/download/\(id)").body
            #expect(fingerprint(try await openStream(body, key: key)) == fingerprint(plaintext))
        }
        let listed = try #require(try await onB.send(.GET, "/files").json["files"] as? [[String: Any]])
        #expect(listed.compactMap { $0["file_id"] as? String } == [id])

        // Logged out through A: refused by B at once; another token of the same account still works.
        let other = try await HTTP.login(cluster.b.base)
        #expect(try await onA.send(.POST, "/logout").status == 204)
        #expect(try await onB.send(.GET, "/files").status == 401)
        #expect(try await onA.send(.GET, "/files").status == 401)
        #expect(try await HTTP(base: cluster.a.base, token: other.token).send(.GET, "/files").status == 200)
    }

    /// A PATCH in flight on A holds the upload: the same PATCH on B gets 423. A is killed with
    /// SIGKILL mid-PATCH: its lock goes with its connection, and B takes the upload over from the
    /// offset A acknowledged, within seconds; the file is byte-identical.
    @Test func appendsAreOneAtATimeAcrossGatewaysAndADeadGatewaysLockIsReleased() async throws {
        var cluster = try await Cluster()
        defer { cluster.remove() }
        let onA = try await HTTP.login(cluster.a.base)
        let onB = HTTP(base: cluster.b.base, token: onA.token)
        let (key, plaintext, sealed) = try await sealedStream(plaintextSize: 24_000_000, chunkSize: 1 << 20)
        let path = try await onA.createUpload(length: sealed.count)
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("sealed-\(UUID().uuidString)")
        try Data(sealed).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let curl = try slowPatch(cluster.a.base + path, token: onA.token!, offset: 0, file: file)
        try await Task.sleep(for: .milliseconds(1500))
        let raced = try await onB.patch(path, offset: 0, sealed.prefix(1000))
        #expect(raced.status == 423, "\(raced.text)")
        #expect(raced.json["error"] as? String == "upload_busy")

        cluster.a.kill()
        kill(curl.processIdentifier, SIGKILL)
        await curl.exited()
        let started = ContinuousClock.now
        var rest: Reply?
        for _ in 0..<100 {
            let offset = Int(try await onB.send(.HEAD, path, headers: [("Tus-Resumable", "1.0.0")]).header("Upload-Offset") ?? "") ?? -1
            rest = try await onB.patch(path, offset: offset, sealed[offset...])
            if rest?.status != 423 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(rest?.status == 204, "\(rest?.text ?? "")")
        #expect(ContinuousClock.now - started < .seconds(10))
        let id = String(path.split(separator: "/").last!)
        let body = try await onB.send(.GET, "/download/\(id)").body
        #expect(fingerprint(try await openStream(body, key: key)) == fingerprint(plaintext))
        _ = cluster
    }

    /// The CLI through HAProxy: gateway A serves until it is killed with SIGKILL mid-PATCH, then
    /// HAProxy sends everything to B; `safechat upload` run again resumes there, and the file
    /// downloaded through the balancer is byte-identical.
    @Test func theCLIFinishesThroughTheBalancerAfterAGatewayIsKilledMidPatch() async throws {
        let cluster = try await Cluster()
        defer { cluster.remove() }
        let balancer = try await TestBalancer(servers: [cluster.a.base, cluster.b.base], backupsFrom: 1)
        defer { balancer.stop() }
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("client-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        let environment = ProcessInfo.processInfo.environment.merging(["XDG_CONFIG_HOME": work + "/config", "XDG_DATA_HOME": work + "/data"]) { $1 }
        func safechat(_ arguments: [String], stdin: String? = nil) async throws -> (status: Int32, output: String, errors: String) {
            let command = stdin.map { ["sh", "-c", "printf '%s\\n' \"$0\" | \"$@\"", $0, PostgresTests.safechat] } ?? [PostgresTests.safechat]
            return try await runProcess(command + arguments, in: URL(fileURLWithPath: work), environment: environment, errorsApart: true)
        }
        #expect(try await safechat(["login", "--server", balancer.base, "--user", "user1"], stdin: "password123").status == 0)
        #expect(try await safechat(["keygen", "key"]).status == 0)
        #expect(try await runProcess(["sh", "-c", "head -c 600000000 /dev/urandom > big"], in: URL(fileURLWithPath: work)).status == 0)

        let upload = Process()
        upload.executableURL = URL(fileURLWithPath: PostgresTests.safechat)
        upload.arguments = ["upload", "-q", "--key", "key", "big"]
        upload.environment = environment
        upload.currentDirectoryURL = URL(fileURLWithPath: work)
        upload.standardOutput = FileHandle.nullDevice
        upload.standardError = FileHandle.nullDevice
        try upload.run()
        // Kill A a second after the upload was created there: its PATCH is streaming then (an
        // offset is recorded when a PATCH ends, so the registry cannot say how far it got).
        let database = try TestDatabase.fromEnvironment()
        var created = false
        for _ in 0..<600 where !created {
            let text = try database.psql("SELECT count(*) FROM uploads", database: TestDatabase.name(dataDirectory: cluster.name))
            created = text.trimmingCharacters(in: .whitespacesAndNewlines) != "0"
            if !created { try await Task.sleep(for: .milliseconds(50)) }
        }
        try await Task.sleep(for: .seconds(1))
        cluster.a.kill()
        let status: Int32 = await withCheckedContinuation { continuation in
            Thread { upload.waitUntilExit(); continuation.resume(returning: upload.terminationStatus) }.start()
        }
        #expect(created && status != 0, "the upload was to be cut off mid-way (exit \(status))")

        var finished: (status: Int32, output: String, errors: String)?
        for _ in 0..<3 {
            finished = try await safechat(["upload", "-q", "--key", "key", "big"])
            if finished?.status == 0 { break }
            try await Task.sleep(for: .seconds(1))
        }
        #expect(finished?.status == 0, "\(finished?.errors ?? "")")
        let id = finished?.output.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        #expect(try await safechat(["download", "--key", "key", id, "--output", "back"]).status == 0)
        #expect(try await runProcess(["cmp", "big", "back"], in: URL(fileURLWithPath: work)).status == 0)
    }
}
