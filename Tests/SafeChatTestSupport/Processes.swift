import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A tus PATCH of `file` sent by curl at 1 MB/s, so a test can kill one side partway.
public func slowPatch(_ url: String, token: String, offset: Int, file: URL) throws -> Process {
    let curl = Process()
    curl.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    curl.arguments = ["curl", "-s", "-o", "/dev/null", "--limit-rate", "1M", "-X", "PATCH", url,
                      "-H", "Authorization: Bearer \(token)", "-H", "Tus-Resumable: 1.0.0", "-H", "Upload-Offset: \(offset)",
                      "-H", "Content-Type: application/offset+octet-stream", "--data-binary", "@\(file.path)"]
    try curl.run()
    return curl
}

/// `safechat serve` as a child process, killed with SIGKILL by the tests.
public struct ServerProcess {
    public let process: Process
    public let base: String
    private let logged = LogLines()
    /// Everything it wrote to standard error so far (its log).
    public var log: String { logged.text }

    /// `safechat serve --demo` over `dataDirectory`, its sealed bytes in `store` (on S3 under the
    /// prefix ``TestGateway`` would use for the same directory; for `.postgres`, its registry in the
    /// database ``TestGateway`` would use).
    /// `cluster` names the database and S3 prefix instead of the data directory, for gateways that
    /// share them.
    public init(dataDirectory: String, store: TestStore = .local, cluster: String? = nil, port: Int = 0, options: [String] = []) async throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("safechat")
        var storeOptions: [String] = []
        var environment = ProcessInfo.processInfo.environment
        if store.usesS3 {
            let (options, s3Environment) = try TestObjectStore.fromEnvironment().serveArguments(prefix: TestGateway.s3Prefix(dataDirectory: cluster ?? dataDirectory))
            storeOptions = options
            environment.merge(s3Environment) { $1 }
        }
        if store == .postgres {
            let server = try TestDatabase.fromEnvironment()
            storeOptions += ["--database", try server.create(TestDatabase.name(dataDirectory: cluster ?? dataDirectory))]
            environment["PGPASSWORD"] = server.password
        }
        process.environment = environment
        process.arguments = ["serve", "--demo", "--port", "\(port)", "--data-dir", dataDirectory] + storeOptions + options
        let log = Pipe()
        process.standardError = log
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        // The "listening" log line carries the URL: `url=http://…` in text, `"url":"http://…"` in
        // JSON (not the operators' listener's `operations_url`).
        @Sendable func url(in text: String) -> String? {
            for token in text.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "," || $0 == "{" }) {
                if token.hasPrefix("url=http") { return String(token.dropFirst(4)) }
                if token.hasPrefix("\"url\":\"http") { return String(token.dropFirst(7).prefix { $0 != "\"" }) }
            }
            return nil
        }
        // Read on a thread of its own: a start can take seconds under load, and blocking a thread of
        // the cooperative pool that long stalls the gateways other tests run in-process.
        let handle = log.fileHandleForReading
        let seen: String = try await withCheckedThrowingContinuation { continuation in
            Thread {
                var seen = ""
                while url(in: seen) == nil {
                    let data = handle.availableData
                    if data.isEmpty { return continuation.resume(throwing: CocoaError(.fileReadUnknown)) }
                    seen += String(decoding: data, as: UTF8.self)
                }
                continuation.resume(returning: seen)
            }.start()
        }
        base = url(in: seen)!
        // Keep draining the log so the server never blocks on a full pipe, and keep it for tests.
        let logged = self.logged
        logged.append(seen)
        Thread {
            while true {
                let data = handle.availableData
                if data.isEmpty { break }
                logged.append(String(decoding: data, as: UTF8.self))
            }
        }.start()
    }

    public func kill() {
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}

final class LogLines: Sendable {
    private let lines = Mutex("")
    func append(_ text: String) { lines.withLock { $0 += text } }
    var text: String { lines.withLock { $0 } }
}

/// A plain TCP connection, for clients that misbehave in ways an HTTP library will not.
public final class RawConnection: @unchecked Sendable {
    let fd: Int32

    public init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else { throw POSIXError(.ECONNREFUSED) }
    }

    public func send(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw POSIXError(.EPIPE) }
            sent += n
        }
    }

    /// Whether the peer closes the connection within `timeout` (reading and dropping whatever it sends).
    public func isClosedByPeer(within timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        var buffer = [UInt8](repeating: 0, count: 65536)
        while ContinuousClock.now < deadline {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 100) >= 0 else { return false }
            if poller.revents != 0 {
                let n = recv(fd, &buffer, buffer.count, 0)
                if n == 0 || (n < 0 && errno == ECONNRESET) { return true }
            }
        }
        return false
    }

    /// Everything the peer sends until it closes the connection or `timeout` passes.
    /// What arrives until `timeout` passes, the peer closes, or `enough` holds for what came so far.
    public func received(within timeout: Duration, until enough: ([UInt8]) -> Bool = { _ in false }) -> [UInt8] {
        let deadline = ContinuousClock.now + timeout
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while ContinuousClock.now < deadline && !enough(out) {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 50) >= 0 else { break }
            guard poller.revents != 0 else { continue }
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            out += buffer[0..<n]
        }
        return out
    }

    public func close() { Glibc.close(fd) }
}

/// An HTTP/1.1 answer read off a raw connection: the status, the header fields and the body.
public struct RawAnswer: Sendable {
    public let status: Int
    public let headers: [String: String]
    public let body: [UInt8]

    /// Parses the first answer in `bytes`, or nil if there is none.
    public init?(_ bytes: [UInt8]) {
        guard let end = bytes.firstRange(of: Array("\r\n\r\n".utf8)) else { return nil }
        let lines = String(decoding: bytes[..<end.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
        let statusLine = lines[0].split(separator: " ")
        guard statusLine.count >= 2, statusLine[0].hasPrefix("HTTP/1."), let status = Int(statusLine[1]) else { return nil }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let length = headers["content-length"].flatMap { Int($0) } ?? 0
        self.status = status
        self.headers = headers
        body = Array(bytes[end.upperBound...].prefix(length))
    }

    /// The JSON error body's `error` code, if the body is one.
    public var errorCode: String? {
        guard headers["content-type"]?.hasPrefix("application/json") == true,
              let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
              object["message"] is String else { return nil }
        return object["error"] as? String
    }
}

/// Text a child process writes to a pipe, gathered as it arrives so that a test can wait for a
/// line instead of sleeping a fixed time.
public final class PipeText: Sendable {
    public let pipe = Pipe()
    private let text = Mutex("")

    public init() {
        pipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            if data.isEmpty { handle.readabilityHandler = nil; return }
            self?.text.withLock { $0 += String(decoding: data, as: UTF8.self) }
        }
    }

    public var value: String { text.withLock { $0 } }

    /// Waits until the text contains `needle` or `timeout` passes; true if it does.
    @discardableResult
    public func wait(for needle: String, within timeout: Duration = .seconds(30)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if value.contains(needle) { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return value.contains(needle)
    }
}

/// HAProxy (Debian's) on a loopback port in front of gateways, as an operator runs it: HTTP mode,
/// health checks every 500 ms, long timeouts for uploads. `backupsFrom`: servers from this index on
/// take traffic only when every earlier one is down (a failover test knows where requests go).
public final class TestBalancer: @unchecked Sendable {
    // Used by the one test that made it.
    public let port: Int
    public var base: String { "http://127.0.0.1:\(port)" }
    private let process: Process
    private let directory: String

    public init(servers: [String], backupsFrom: Int? = nil) async throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("haproxy-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        port = try freePort()
        var config = """
            global
              maxconn 2000
            defaults
              mode http
              timeout connect 2s
              timeout client 10m
              timeout server 10m
              retries 3
              option redispatch
            frontend gateways
              bind 127.0.0.1:\(port)
              default_backend gateway
            backend gateway
              balance roundrobin
              option httpchk GET /
            """
        for (index, server) in servers.enumerated() {
            let address = server.replacingOccurrences(of: "http://", with: "")
            config += "\n  server g\(index) \(address) check inter 500 fall 2 rise 1" + (backupsFrom.map { index >= $0 ? " backup" : "" } ?? "")
        }
        try (config + "\n").write(toFile: directory + "/haproxy.cfg", atomically: true, encoding: .utf8)
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["haproxy", "-f", directory + "/haproxy.cfg", "-db"]
        process.standardOutput = FileHandle.nullDevice
        _ = FileManager.default.createFile(atPath: directory + "/log", contents: nil)
        process.standardError = FileHandle(forWritingAtPath: directory + "/log")
        do { try process.run() } catch {
            throw TestStoreMissing(description: "haproxy cannot be run (\(error)): .ci/run installs Debian's haproxy")
        }
        for _ in 0..<80 {
            if let reply = try? await HTTP(base: base).send(.GET, "/"), reply.status == 200 { return }
            guard process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(250))
        }
        let log = (try? String(contentsOfFile: directory + "/log", encoding: .utf8)) ?? ""
        stop()
        throw TestStoreMissing(description: "HAProxy did not answer on \(base): \(log.suffix(500))")
    }

    public func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// A TCP port nothing listens on now (the kernel's choice).
public func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard bound else { throw CocoaError(.fileWriteUnknown) }
    return Int(UInt16(bigEndian: address.sin_port))
}

extension Process {
    /// Waits for the process to end without holding a thread of Swift's cooperative pool: tests
    /// share that pool (two threads here) with the gateways they run in-process, so a blocking
    /// `waitUntilExit()` on a child that is itself waiting for such a gateway stalls both.
    @discardableResult
    public func exited() async -> Int32 {
        await withCheckedContinuation { continuation in
            Thread {
                self.waitUntilExit()
                continuation.resume(returning: self.terminationStatus)
            }.start()
        }
    }
}
