/// SafeChatTestSupport: what every test target that talks to a real gateway shares: a gateway on a
/// loopback port that is always stopped (``TestGateway/with(configure:_:)``), a small HTTP client,
/// sealed test streams, subprocess and raw-socket helpers.
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import SafeChatGateway
import SafeChatPostgres
import SafeChatAPI
import SealedStream
import Hummingbird
import Logging
import Synchronization

/// A real gateway on an ephemeral loopback port, over its own data directory.
public final class TestGateway: @unchecked Sendable {
    public let dataDirectory: String
    public let port: Int
    /// The operators' listener (metrics, probes), when the configuration asks for one.
    public let operationsPort: Int?
    public let gateway: Gateway
    private let task: Task<Void, any Error>
    /// The PostgreSQL registry's pool (store `.postgres`), stopped after the gateway.
    private let database: (pool: PostgresDatabase, task: Task<Void, Never>)?
    public var base: String { "http://127.0.0.1:\(port)" }

    /// Starts a gateway over `dataDirectory` (a new one if nil), its sealed bytes in `store`: on S3,
    /// under a prefix named after the data directory, so that a restart over it finds them.
    /// `database` puts the registry in that database instead (any store).
    public static func start(dataDirectory: String? = nil, store: TestStore = .local, blobs: (any BlobStore)? = nil,
                             database databaseSettings: DatabaseSettings? = nil,
                             configure: (inout GatewayConfiguration) -> Void = { _ in }) async throws -> TestGateway {
        let dir = dataDirectory ?? FileManager.default.temporaryDirectory.appendingPathComponent("gw-\(UUID().uuidString)").path
        var configuration = GatewayConfiguration()
        configuration.port = 0
        configuration.dataDirectory = dir
        configuration.demo = true
        configure(&configuration)
        var logger = Logger(label: "test-gateway")
        logger.logLevel = .critical
        let blobs: (any BlobStore)? = if let blobs { blobs } else if store.usesS3 {
            try await TestObjectStore.fromEnvironment().blobStore(prefix: Self.s3Prefix(dataDirectory: dir), maxObjectSize: configuration.maxFileSize)
        } else {
            nil
        }
        let metrics = GatewayMetrics()
        var database: (pool: PostgresDatabase, task: Task<Void, Never>)?
        if store == .postgres || databaseSettings != nil {
            let settings = try databaseSettings ?? {
                let server = try TestDatabase.fromEnvironment()
                let name = TestDatabase.name(dataDirectory: dir)
                try server.create(name)
                return try server.settings(name)
            }()
            let pool = PostgresDatabase(settings: settings, maximumConnections: 10, logger: logger,
                                        timing: { metrics.storeOperation(.database, duration: $0, failed: $1) })
            database = (pool, Task { await pool.run() })
            try await pool.prepare(logger: logger)
        }
        do {
            let gateway = try await Gateway(configuration: configuration, blobs: blobs,
                                            state: database.map { [configuration] in .postgres($0.pool, clock: configuration.clock) }
                                                ?? GatewayStateStores(), metrics: metrics, logger: logger)
            let (portStream, portContinuation) = AsyncStream<Int>.makeStream()
            let (operationsStream, operationsContinuation) = AsyncStream<Int>.makeStream()
            let app = try gateway.makeApplication(onServerRunning: { port in portContinuation.yield(port) },
                                                  onOperationsRunning: { port in operationsContinuation.yield(port) })
            let task = Task { try await app.runService(gracefulShutdownSignals: []) }
            var iterator = portStream.makeAsyncIterator()
            guard let port = await iterator.next() else { throw CancellationError() }
            var operationsPort: Int?
            if configuration.operationsAddress != nil {
                var operations = operationsStream.makeAsyncIterator()
                operationsPort = await operations.next()
            }
            return TestGateway(dataDirectory: dir, port: port, operationsPort: operationsPort, gateway: gateway, task: task, database: database)
        } catch {
            database?.task.cancel()
            throw error
        }
    }

    private init(dataDirectory: String, port: Int, operationsPort: Int?, gateway: Gateway, task: Task<Void, any Error>,
                 database: (pool: PostgresDatabase, task: Task<Void, Never>)?) {
        self.dataDirectory = dataDirectory
        self.port = port
        self.operationsPort = operationsPort
        self.gateway = gateway
        self.task = task
        self.database = database
    }

    public func stop() async {
        task.cancel()
        _ = await task.result
        database?.task.cancel()
        _ = await database?.task.value
    }

    /// Removes the data directory, and the gateway's database when it has one.
    public func removeData() {
        try? FileManager.default.removeItem(atPath: dataDirectory)
        if let database, database.pool.settings.database == TestDatabase.name(dataDirectory: dataDirectory) {
            try? TestDatabase.fromEnvironment().drop(database.pool.settings.database)
        }
    }

    /// The S3 prefix of a test gateway over `dataDirectory`.
    public static func s3Prefix(dataDirectory: String) -> String { "gw/" + URL(fileURLWithPath: dataDirectory).lastPathComponent }

    /// Runs `body` against a fresh gateway that is stopped and removed afterwards, whatever `body` does.
    public static func with<T>(store: TestStore = .local, configure: (inout GatewayConfiguration) -> Void = { _ in },
                               _ body: (TestGateway) async throws -> T) async throws -> T {
        let server = try await start(store: store, configure: configure)
        do {
            let result = try await body(server)
            await server.stop()
            server.removeData()
            return result
        } catch {
            await server.stop()
            server.removeData()
            throw error
        }
    }
}

/// A response with its body collected.
public struct Reply: Sendable {
    public let status: Int
    public let headers: HTTPHeaders
    public let body: [UInt8]
    public var text: String { String(decoding: body, as: UTF8.self) }
    public var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:] }
    public func header(_ name: String) -> String? { headers.first(name: name) }
}

/// A small HTTP client for the tests.
public struct HTTP: Sendable {
    public let base: String
    public var token: String?

    public init(base: String, token: String? = nil) {
        self.base = base
        self.token = token
    }

    public func send(_ method: HTTPMethod, _ path: String, headers: [(String, String)] = [], body: [UInt8]? = nil,
              authorized: Bool = true, timeout: TimeAmount = .seconds(60)) async throws -> Reply {
        var request = HTTPClientRequest(url: base + path)
        request.method = method
        if authorized, let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        let response = try await HTTPClient.shared.execute(request, timeout: timeout)
        let bytes = method == .HEAD ? ByteBuffer() : try await response.body.collect(upTo: 256 << 20)
        return Reply(status: Int(response.status.code), headers: response.headers, body: Array(buffer: bytes))
    }

    public static func login(_ base: String, user: String = "user1", password: String = "password123") async throws -> HTTP {
        let reply = try await HTTP(base: base).send(.POST, "/login", body: Array("{\"username\":\"\(user)\",\"password\":\"\(password)\"}".utf8))
        guard reply.status == 200, let token = reply.json["token"] as? String else {
            throw NSError(domain: "login", code: reply.status, userInfo: [NSLocalizedDescriptionKey: reply.text])
        }
        return HTTP(base: base, token: token)
    }

    /// tus: create an upload of `length` bytes; returns its path (/uploads/<id>).
    public func createUpload(length: Int, metadata: String? = nil) async throws -> String {
        var headers = [("Tus-Resumable", "1.0.0"), ("Upload-Length", "\(length)")]
        if let metadata { headers.append(("Upload-Metadata", metadata)) }
        let reply = try await send(.POST, "/uploads", headers: headers)
        guard reply.status == 201, let location = reply.header("Location") else {
            throw NSError(domain: "create", code: reply.status, userInfo: [NSLocalizedDescriptionKey: reply.text])
        }
        return location
    }

    /// tus: create an upload whose length is deferred; returns its path.
    public func createDeferredUpload() async throws -> String {
        let reply = try await send(.POST, "/uploads", headers: [("Tus-Resumable", "1.0.0"), ("Upload-Defer-Length", "1")])
        guard reply.status == 201, let location = reply.header("Location") else {
            throw NSError(domain: "create", code: reply.status, userInfo: [NSLocalizedDescriptionKey: reply.text])
        }
        return location
    }

    public func patch(_ path: String, offset: Int, _ body: some Collection<UInt8>, extraHeaders: [(String, String)] = [],
                      timeout: TimeAmount = .seconds(60)) async throws -> Reply {
        try await send(.PATCH, path, headers: [("Tus-Resumable", "1.0.0"), ("Upload-Offset", "\(offset)"),
                                               ("Content-Type", "application/offset+octet-stream")] + extraHeaders, body: Array(body), timeout: timeout)
    }
}

/// A sealed stream of `size` plaintext bytes (random, so it is stored raw) under a fresh key.
public func sealedStream(plaintextSize: Int, chunkSize: Int = 1 << 16) async throws -> (key: SessionKey, plaintext: [UInt8], sealed: [UInt8]) {
    let key = SessionKey.random()
    let plaintext = Secrets.randomBytes(plaintextSize)
    var sealed = [UInt8]()
    for try await piece in try Sealer(key: key, options: SealOptions(chunkSize: chunkSize)).seal(ArrayByteSource(plaintext)) {
        sealed += piece
    }
    return (key, plaintext, sealed)
}

/// The stream digest of docs/FORMAT.md, computed here from the bytes on its own (not through the
/// gateway's validator): d0 = SHA-256(stream header), d(i+1) = SHA-256(d(i) || record header || tag).
public func streamDigest(_ sealed: [UInt8]) -> String {
    var digest = SHA256Hasher.hash(Array(sealed[0..<92]))
    var offset = 92
    while offset < sealed.count {
        let header = Array(sealed[offset..<(offset + 16)])
        let bodyLength = Int(header[12]) << 24 | Int(header[13]) << 16 | Int(header[14]) << 8 | Int(header[15])
        let tagStart = offset + 16 + bodyLength
        digest = SHA256Hasher.hash(digest + header + Array(sealed[tagStart..<(tagStart + 16)]))
        offset = tagStart + 16
    }
    return Secrets.hex(digest)
}

public func openStream(_ sealed: [UInt8], key: SessionKey) async throws -> [UInt8] {
    var out = [UInt8]()
    for try await piece in Opener(key: key).open(ArrayByteSource(sealed)) { out += piece }
    return out
}

public func fingerprint(_ bytes: some Sequence<UInt8>) -> String {
    let array = Array(bytes)
    return "\(array.count) bytes sha256:\(Secrets.hex(SHA256Hasher.hash(array)).prefix(16))"
}

public enum SHA1 {
    public static func digest(_ bytes: [UInt8]) -> [UInt8] {
        var digest = StreamingDigest(.sha1)
        bytes.withUnsafeBytes { digest.update($0) }
        return digest.finalize()
    }
}

/// Runs a command to completion without blocking a Swift concurrency thread: the gateway under
/// test shares the cooperative pool with the test, so a blocking wait could starve it. `output`
/// holds standard output and error together.
public func runProcess(_ arguments: [String], in directory: URL) async throws -> (status: Int32, output: String) {
    let run = try await runProcess(arguments, in: directory, environment: nil, errorsApart: false)
    return (run.status, run.output)
}

/// As above, with `environment` (nil: this process's) and, with `errorsApart`, standard error
/// collected on its own.
public func runProcess(_ arguments: [String], in directory: URL = URL(fileURLWithPath: FileManager.default.currentDirectoryPath),
                       environment: [String: String]?, errorsApart: Bool) async throws -> (status: Int32, output: String, errors: String) {
    try await withCheckedThrowingContinuation { continuation in
        Thread {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = arguments
            process.currentDirectoryURL = directory
            if let environment { process.environment = environment }
            let pipe = Pipe(), errors = Pipe()
            process.standardOutput = pipe
            process.standardError = errorsApart ? errors : pipe
            do {
                try process.run()
                let errorText = LogLines()
                let reader = Thread { errorText.append(String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)) }
                if errorsApart { reader.start() }
                let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                process.waitUntilExit()
                if errorsApart { while !reader.isFinished { usleep(1000) } }
                continuation.resume(returning: (process.terminationStatus, output, errorText.text))
            } catch {
                continuation.resume(throwing: error)
            }
        }.start()
    }
}

/// A clock that stands still until a test moves it: give `now` to ``GatewayConfiguration/clock``
/// and the gateway's expiries and login locks follow it, however slow the machine.
public final class TestClock: Sendable {
    private let time = Mutex(Date())
    public init() {}
    public func advance(by seconds: TimeInterval) { time.withLock { $0 = $0.addingTimeInterval(seconds) } }
    public var now: @Sendable () -> Date { { [self] in time.withLock { $0 } } }
}
