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
    public init(dataDirectory: String, store: TestStore = .local, cluster: String? = nil, port: Int = 0, options: [String] = []) throws {
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
        // The "listening" log line carries the URL.
        var seen = ""
        let handle = log.fileHandleForReading
        while !seen.contains("url=http") {
            let data = handle.availableData
            if data.isEmpty { throw CocoaError(.fileReadUnknown) }
            seen += String(decoding: data, as: UTF8.self)
        }
        let url = seen.split(separator: " ").first { $0.hasPrefix("url=") }!.dropFirst(4)
        base = String(url)
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
