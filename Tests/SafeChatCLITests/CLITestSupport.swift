import Foundation
import SealedStream

/// Runs the real `safechat` binary built beside the test bundle.
struct CLI {
    static let executable: URL = {
        // swift test runs from .build/<triple>/debug/SafeChatPackageTests.xctest; the CLI sits beside it.
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        if !FileManager.default.fileExists(atPath: dir.appendingPathComponent("safechat").path) {
            dir = Bundle.main.bundleURL
        }
        return dir.appendingPathComponent("safechat")
    }()

    struct Result {
        let status: Int32
        let stdout: Data
        let stderr: String
    }

    /// Runs the command on threads of its own, so that a test waiting for it holds no thread of
    /// Swift's cooperative pool, which every test's in-process gateway needs.
    @discardableResult
    static func run(_ arguments: [String], stdin: Data? = nil, in directory: URL, environment: [String: String]? = nil) async throws -> Result {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Swift.Result { try runBlocking(arguments, stdin: stdin, in: directory, environment: environment) }) }.start()
        }
    }

    private static func runBlocking(_ arguments: [String], stdin: Data?, in directory: URL, environment: [String: String]?) throws -> Result {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.currentDirectoryURL = directory
        if let environment { process.environment = environment }
        let out = Pipe(), err = Pipe(), input = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input
        try process.run()
        // A command that should have ended but runs on (a server that was meant to refuse its
        // configuration) fails the test instead of hanging it.
        let watchdog = DispatchWorkItem { if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + 120, execute: watchdog)
        defer { watchdog.cancel() }
        // Feed stdin and drain both pipes concurrently so no side blocks on a full pipe.
        let writer = Thread { if let stdin { input.fileHandleForWriting.write(stdin) }; try? input.fileHandleForWriting.close() }
        writer.start()
        nonisolated(unsafe) var errData = Data()
        let errReader = Thread { errData = err.fileHandleForReading.readDataToEndOfFile() }
        errReader.start()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        while errReader.isExecuting || !errReader.isFinished { usleep(1000) }
        return Result(status: process.terminationStatus, stdout: outData, stderr: String(decoding: errData, as: UTF8.self))
    }
}

/// A fresh directory per test, removed afterwards.
final class Scratch {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("safechat-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: url) }

    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
    func write(_ name: String, _ bytes: [UInt8]) throws { try Data(bytes).write(to: url.appendingPathComponent(name)) }
    func read(_ name: String) throws -> [UInt8] { Array(try Data(contentsOf: url.appendingPathComponent(name))) }
    func exists(_ name: String) -> Bool { FileManager.default.fileExists(atPath: path(name)) }
    func contents() throws -> Set<String> { Set(try FileManager.default.contentsOfDirectory(atPath: url.path)) }
}

func textLike(_ count: Int) -> [UInt8] {
    var out = [UInt8]()
    var line = 0
    while out.count < count { out += Array("\(line) lorem ipsum dolor sit amet \(line % 13)\n".utf8); line += 1 }
    return Array(out.prefix(count))
}

func randomBytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8.random(in: 0...255) } }

func fingerprint(_ bytes: some Sequence<UInt8>) -> String {
    let array = Array(bytes)
    return "\(array.count) bytes sha256:\(SHA256Hasher.hash(array).prefix(8).map { String(format: "%02x", $0) }.joined())"
}
