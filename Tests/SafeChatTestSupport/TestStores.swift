import AsyncHTTPClient
import Foundation
import SafeChatGateway
import SafeChatPostgres
import SafeChatS3

/// The storage configurations the gateway suite runs against: the embedded default (the data
/// directory), S3 on the SeaweedFS that `.ci/services start` runs on loopback, and the
/// server-grade pair: the registry in that script's PostgreSQL, sealed bytes on S3.
public enum TestStore: String, Sendable, CaseIterable, CustomStringConvertible {
    case local, s3
    case postgres = "postgres+s3"

    public var description: String { rawValue }
    /// Sealed bytes on S3.
    public var usesS3: Bool { self != .local }
}

/// What `.ci/services` wrote for the tests: the environment's SAFECHAT_TEST_* values, else its file.
func testServiceSettings() -> [String: String] {
    var values = ProcessInfo.processInfo.environment
    let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent(".build/test-services/env")
    for line in ((try? String(contentsOf: file, encoding: .utf8)) ?? "").split(separator: "\n") {
        let parts = line.split(separator: "=", maxSplits: 1)
        if parts.count == 2, values[String(parts[0])] == nil { values[String(parts[0])] = String(parts[1]) }
    }
    return values
}

/// The PostgreSQL of `.ci/services`; each test gateway gets a database of its own, named after its
/// data directory (so a restart over the directory finds it). Missing, a test fails naming the
/// script: it never skips.
public struct TestDatabase: Sendable {
    /// postgres://USER@HOST:PORT/postgres (the server's maintenance database).
    public let url: String
    public let password: String

    public static func fromEnvironment() throws -> TestDatabase {
        let values = testServiceSettings()
        guard let url = values["SAFECHAT_TEST_DATABASE_URL"], let password = values["SAFECHAT_TEST_PGPASSWORD"] else {
            throw TestStoreMissing(description: "no test PostgreSQL: run `bash .ci/services start` (it starts PostgreSQL on loopback)")
        }
        return TestDatabase(url: url, password: password)
    }

    /// The database of the gateway over `dataDirectory`.
    public static func name(dataDirectory: String) -> String {
        let base = URL(fileURLWithPath: dataDirectory).lastPathComponent.lowercased()
            .map { $0.isLetter || $0.isNumber ? $0 : "_" }
        return "t_" + String(base.suffix(56))
    }

    /// The URL of database `name` on this server.
    public func url(of name: String) -> String {
        url[..<url.lastIndex(of: "/")!] + "/" + name
    }

    /// Makes database `name` unless it exists; returns its URL.
    @discardableResult
    public func create(_ name: String) throws -> String {
        let exists = try psql("SELECT 1 FROM pg_database WHERE datname = '\(name)'")
        if exists.trimmingCharacters(in: .whitespacesAndNewlines) != "1" { _ = try psql("CREATE DATABASE \(name)") }
        return url(of: name)
    }

    /// Drops database `name`, closing whatever is still connected to it.
    public func drop(_ name: String) {
        _ = try? psql("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
    }

    /// Settings for database `name`, with this server's password.
    public func settings(_ name: String) throws -> DatabaseSettings {
        try DatabaseSettings(url: url(of: name), environment: ["PGPASSWORD": password])
    }

    /// Runs one statement with Debian's psql (the password in its environment, never its arguments).
    public func psql(_ statement: String, database: String? = nil) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["psql", database.map { url(of: $0) } ?? url, "-v", "ON_ERROR_STOP=1", "-tAc", statement]
        process.environment = ProcessInfo.processInfo.environment.merging(["PGPASSWORD": password]) { $1 }
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        do { try process.run() } catch {
            throw TestStoreMissing(description: "psql cannot be run (\(error)): `bash .ci/services start` installs PostgreSQL")
        }
        let out = output.fileHandleForReading.readDataToEndOfFile()
        let err = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw TestStoreMissing(description: "psql \(statement): \(String(decoding: err, as: UTF8.self)) (is `bash .ci/services start` running?)")
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// The object store of `.ci/services`: its settings from the environment (SAFECHAT_TEST_S3_*) or
/// from the file that script writes. A test that needs it and finds it missing fails, naming the
/// script: it never skips.
public struct TestObjectStore: Sendable {
    public let endpoint: String
    public let bucket: String
    public let accessKeyID: String
    public let secretAccessKey: String

    public static func fromEnvironment() throws -> TestObjectStore {
        let values = testServiceSettings()
        guard let endpoint = values["SAFECHAT_TEST_S3_ENDPOINT"], let bucket = values["SAFECHAT_TEST_S3_BUCKET"],
              let id = values["SAFECHAT_TEST_S3_ACCESS_KEY_ID"], let secret = values["SAFECHAT_TEST_S3_SECRET_ACCESS_KEY"] else {
            throw TestStoreMissing(description: "no S3 test store: run `bash .ci/services start` (it starts SeaweedFS on loopback)")
        }
        return TestObjectStore(endpoint: endpoint, bucket: bucket, accessKeyID: id, secretAccessKey: secret)
    }

    /// A store under `s3://BUCKET/PREFIX`, checked (a store that does not answer fails the test).
    public func blobStore(prefix: String, maxObjectSize: Int64 = 64 << 30) async throws -> S3BlobStore {
        let store = S3BlobStore(settings: try settings(prefix: prefix, maxObjectSize: maxObjectSize))
        do { try await store.check() } catch {
            throw TestStoreMissing(description: "the S3 test store at \(endpoint) does not answer (\(error)): run `bash .ci/services start`")
        }
        return store
    }

    public func settings(prefix: String, maxObjectSize: Int64 = 64 << 30) throws -> S3Settings {
        try S3Settings(location: "s3://\(bucket)/\(prefix)", endpoint: endpoint, region: nil,
                       credentials: S3Credentials(accessKeyID: accessKeyID, secretAccessKey: secretAccessKey), maxObjectSize: maxObjectSize)
    }

    /// `safechat serve` options and environment for this store under `prefix`.
    public func serveArguments(prefix: String) -> (options: [String], environment: [String: String]) {
        (["--blob-store", "s3://\(bucket)/\(prefix)", "--s3-endpoint", endpoint],
         ["AWS_ACCESS_KEY_ID": accessKeyID, "AWS_SECRET_ACCESS_KEY": secretAccessKey])
    }

    /// Runs awscli (an independent S3 client) against this store; returns its standard output.
    public func aws(_ arguments: [String]) async throws -> String {
        var environment = ProcessInfo.processInfo.environment
        environment["AWS_ACCESS_KEY_ID"] = accessKeyID
        environment["AWS_SECRET_ACCESS_KEY"] = secretAccessKey
        environment["AWS_DEFAULT_REGION"] = "us-east-1"
        environment["AWS_CA_BUNDLE"] = nil
        let run = try await runProcess(["aws", "--endpoint-url", endpoint] + arguments, environment: environment, errorsApart: true)
        guard run.status == 0 else { throw TestStoreMissing(description: "aws \(arguments.joined(separator: " ")): \(run.errors)") }
        return run.output
    }
}

public struct TestStoreMissing: Error, CustomStringConvertible {
    public let description: String
}

extension TestGateway {
    /// What the blob store holds: finished files, and whatever uploads in progress keep there
    /// (local: partial files; S3: multipart uploads and tail objects).
    public func storedBlobs() async throws -> (files: [String], uploads: [String]) {
        if let store = gateway.blobs as? S3BlobStore {
            let inventory = try await store.inventory()
            return (inventory.files, inventory.multipartUploads + inventory.tails)
        }
        let data = dataDirectory + "/data"
        return (try FileManager.default.contentsOfDirectory(atPath: data + "/blobs"),
                try FileManager.default.contentsOfDirectory(atPath: data + "/partial"))
    }

    /// What the registry holds durably: the embedded one's record files on disk, or the rows a
    /// fresh query of the database returns.
    public func recordedRegistry() async throws -> (files: [String], uploads: [String]) {
        if gateway.registry is JSONFileRegistry {
            let registry = dataDirectory + "/registry"
            return (try FileManager.default.contentsOfDirectory(atPath: registry + "/files"),
                    try FileManager.default.contentsOfDirectory(atPath: registry + "/uploads"))
        }
        return (try await gateway.registry.allFiles().map(\.fileID.description), try await gateway.registry.uploads().map(\.uploadID.description))
    }
}

/// A SeaweedFS of a test's own (S3 on loopback, any access key accepted), for a test that stops
/// and restarts its store: the shared one of `.ci/services` stays up for every other test.
public final class PrivateSeaweedFS: @unchecked Sendable {
    // Used by the one test that made it.
    public let directory: String
    public let s3Port: Int
    private var process: Process?
    public var endpoint: String { "http://127.0.0.1:\(s3Port)" }

    public init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("weed-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // Four ports from here, each with its gRPC port 10000 above: all under 55000.
        s3Port = 20_000 + Int.random(in: 0..<2400) * 10
    }

    /// Starts it (again, over the same directory and ports) and waits until S3 answers.
    public func start() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["weed", "server", "-dir=\(directory)", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                             "-master.port=\(s3Port + 1)", "-volume.port=\(s3Port + 2)", "-filer.port=\(s3Port + 3)",
                             "-volume.max=0", "-master.volumeSizeLimitMB=64", "-s3", "-s3.port=\(s3Port)",
                             // Its S3 server also opens catalog ports of fixed numbers by default, which the
                             // shared store holds already.
                             "-s3.port.iceberg=0", "-s3.port.lance=0"]
        process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        _ = FileManager.default.createFile(atPath: directory + "/log", contents: nil)
        process.standardError = FileHandle(forWritingAtPath: directory + "/log")
        do { try process.run() } catch {
            throw TestStoreMissing(description: "weed (SeaweedFS) cannot be run: \(error); `bash .ci/services start` installs it")
        }
        self.process = process
        // Its master, volume and filer start one after another: slow on a loaded two-core machine.
        for _ in 0..<360 {
            if await answers() { return }
            guard process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(250))
        }
        let log = (try? String(contentsOfFile: directory + "/log", encoding: .utf8)) ?? ""
        let tail = log.split(separator: "\n").suffix(15).joined(separator: "\n")
        throw TestStoreMissing(description: "SeaweedFS did not answer on \(endpoint) within 90 s"
            + (process.isRunning ? "" : " (it exited with \(process.terminationStatus))") + "; its log ends:\n\(tail)")
    }

    private func answers() async -> Bool {
        var request = HTTPClientRequest(url: endpoint + "/")
        request.method = .GET
        return (try? await HTTPClient.shared.execute(request, timeout: .seconds(1))) != nil
    }

    /// Stops it the way an outage does: SIGKILL, nothing flushed.
    public func stop() {
        guard let process else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        self.process = nil
    }

    public func remove() {
        stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    public func makeBucket(_ name: String) async throws {
        var environment = ProcessInfo.processInfo.environment
        environment["AWS_ACCESS_KEY_ID"] = "any"
        environment["AWS_SECRET_ACCESS_KEY"] = "any"
        environment["AWS_DEFAULT_REGION"] = "us-east-1"
        environment["AWS_CA_BUNDLE"] = nil
        for _ in 0..<40 {
            let run = try await runProcess(["aws", "--endpoint-url", endpoint, "s3", "mb", "s3://\(name)"], environment: environment, errorsApart: true)
            if run.status == 0 { return }
            try await Task.sleep(for: .milliseconds(250))
        }
        throw TestStoreMissing(description: "could not make bucket \(name) on \(endpoint); see \(directory)/log")
    }

    /// An S3 store on it, under `s3://BUCKET/PREFIX`.
    public func blobStore(bucket: String, prefix: String = "gw") throws -> S3BlobStore {
        S3BlobStore(settings: try S3Settings(location: "s3://\(bucket)/\(prefix)", endpoint: endpoint, region: nil,
                                             credentials: S3Credentials(accessKeyID: "any", secretAccessKey: "any"), maxObjectSize: 64 << 30))
    }
}

/// A PostgreSQL of a test's own (Debian's, a scratch cluster on a loopback port), for a test that
/// stops and restarts its database: the shared one of `.ci/services` stays up for every other test.
/// As root it runs as the `postgres` user, as PostgreSQL requires.
public final class PrivatePostgres: @unchecked Sendable {
    // Used by the one test that made it.
    public let directory: String
    public let port: Int
    public let password: String
    private static let bin = "/usr/lib/postgresql/15/bin/"
    public var url: String { "postgres://postgres@127.0.0.1:\(port)/postgres" }

    public init() async throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("pg-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        port = 30_000 + Int.random(in: 0..<20_000)
        password = UUID().uuidString
        let pwfile = directory + "/pwfile"
        FileManager.default.createFile(atPath: pwfile, contents: Data((password + "\n").utf8), attributes: [.posixPermissions: 0o600])
        if getuid() == 0 { _ = try await runProcess(["chown", "-R", "postgres:", directory], in: URL(fileURLWithPath: "/")) }
        let run = try await Self.asPostgres([Self.bin + "initdb", "-D", directory + "/data", "-U", "postgres",
                                             "--auth=scram-sha-256", "--pwfile=" + pwfile, "-N"])
        guard run.status == 0 else { throw TestStoreMissing(description: "initdb failed: \(run.output)") }
    }

    private static func asPostgres(_ arguments: [String]) async throws -> (status: Int32, output: String) {
        try await runProcess((getuid() == 0 ? ["runuser", "-u", "postgres", "--"] : []) + arguments, in: URL(fileURLWithPath: "/"))
    }

    /// Starts it (again, over the same data) and waits until it takes connections. The server runs
    /// in the foreground of a child of its own (no pg_ctl, whose exit nothing here would wait for).
    public func start() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = (getuid() == 0 ? ["runuser", "-u", "postgres", "--"] : [])
            + [Self.bin + "postgres", "-D", directory + "/data", "-p", "\(port)", "-k", "/tmp", "-c", "listen_addresses=127.0.0.1"]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle(forWritingAtPath: directory + "/log") ?? FileHandle.nullDevice
        try process.run()
        for _ in 0..<240 {
            if (try? await PostgresDatabase(settings: settings()).check()) != nil { return }
            try await Task.sleep(for: .milliseconds(250))
        }
        let log = (try? String(contentsOfFile: directory + "/log", encoding: .utf8)) ?? ""
        throw TestStoreMissing(description: "PostgreSQL did not start within 60 s: \(log.suffix(500))")
    }

    /// Stops it the way a crash does (SIGQUIT: no shutdown checkpoint, every connection cut), and
    /// waits until it is gone.
    public func stop() async throws {
        guard let text = try? String(contentsOfFile: directory + "/data/postmaster.pid", encoding: .utf8),
              let pid = text.split(separator: "\n").first.flatMap({ pid_t($0) }) else { return }
        kill(pid, SIGQUIT)
        for _ in 0..<240 where kill(pid, 0) == 0 { try await Task.sleep(for: .milliseconds(250)) }
    }

    public func remove() async {
        try? await stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    public func settings() throws -> DatabaseSettings {
        try DatabaseSettings(url: url, environment: ["PGPASSWORD": password])
    }
}
