import Foundation
import Testing

/// Tests/Interop/sealed_stream_v1.py is a second implementation of the format, written from
/// docs/FORMAT.md alone with Python's `cryptography` and `lz4`. Streams must cross between the two
/// in both directions, which checks the document as much as the code.
@Suite struct FormatInteropTests {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Interop/sealed_stream_v1.py").path

    func python(_ arguments: [String], in directory: URL) throws -> (status: Int32, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", Self.script] + arguments
        process.currentDirectoryURL = directory
        let err = Pipe()
        process.standardError = err
        try process.run()
        let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, message)
    }

    @Test func safechatStreamsOpenWithTheIndependentImplementation() async throws {
        let scratch = try Scratch()
        let plaintext = textLike(300_000) + randomBytes(200_000)
        try scratch.write("plain", plaintext)
        try await CLI.run(["keygen", "key"], in: scratch.url)
        for flags in [["--chunk-size", "64K"], ["--chunk-size", "1M", "--no-compress"], ["--chunk-size", "128K"]] {
            let sealed = try await CLI.run(["seal", "--key", "key"] + flags + ["plain", "sealed"], in: scratch.url)
            #expect(sealed.status == 0)
            let opened = try python(["open", "key", "sealed", "out"], in: scratch.url)
            #expect(opened.status == 0, "\(flags): \(opened.stderr)")
            #expect(fingerprint(try scratch.read("out")) == fingerprint(plaintext), "\(flags)")
        }
        var tampered = try scratch.read("sealed")
        tampered[tampered.count - 3] ^= 1
        try scratch.write("tampered", tampered)
        let rejected = try python(["open", "key", "tampered", "out2"], in: scratch.url)
        #expect(rejected.status == 2 && rejected.stderr.contains("authentication failed"))
    }

    @Test func independentlySealedStreamsOpenWithSafechat() async throws {
        let scratch = try Scratch()
        let plaintext = randomBytes(100_000) + textLike(250_000)
        try scratch.write("plain", plaintext)
        try await CLI.run(["keygen", "key"], in: scratch.url)
        for flags in [["--chunk-log2", "16"], ["--chunk-log2", "17", "--no-compress"], ["--chunk-log2", "20"]] {
            let sealed = try python(["seal", "key", "plain", "sealed"] + flags, in: scratch.url)
            #expect(sealed.status == 0, "\(sealed.stderr)")
            let opened = try await CLI.run(["open", "--key", "key", "sealed", "out"], in: scratch.url)
            #expect(opened.status == 0, "\(flags): \(opened.stderr)")
            #expect(fingerprint(try scratch.read("out")) == fingerprint(plaintext), "\(flags)")
            let inspect = try await CLI.run(["inspect", "--summary", "sealed"], in: scratch.url)
            #expect(inspect.status == 0)
        }
    }
}
