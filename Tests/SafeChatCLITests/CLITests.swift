import Foundation
import Testing
import SealedStream

@Suite struct CLITests {
    let scratch: Scratch
    /// 4 chunks of 64 KiB: two compressible, two random; the last one short.
    let plaintext = textLike(2 * 65536) + randomBytes(65536 + 1234)

    init() async throws {
        scratch = try Scratch()
        try await CLI.run(["keygen", "key"], in: scratch.url)
        try scratch.write("plain", plaintext)
    }

    func sealDefault() async throws {
        let r = try await CLI.run(["seal", "--key", "key", "--chunk-size", "64K", "plain", "sealed"], in: scratch.url)
        #expect(r.status == 0, "\(r.stderr)")
    }

    @Test func keygenCreatesAPrivateKeyFileAndNeverOverwrites() async throws {
        var info = stat()
        #expect(stat(scratch.path("key"), &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
        let before = try scratch.read("key")
        #expect(before.count == 65)
        let again = try await CLI.run(["keygen", "key"], in: scratch.url)
        #expect(again.status == 1)
        #expect(again.stderr.contains("File exists"))
        #expect(try scratch.read("key") == before)
    }

    @Test func sealAndOpenRoundTripThroughFilesAndPipes() async throws {
        try await sealDefault()
        let sealed = try scratch.read("sealed")
        #expect(sealed.count < plaintext.count)
        let opened = try await CLI.run(["open", "--key", "key", "sealed", "out"], in: scratch.url)
        #expect(opened.status == 0, "\(opened.stderr)")
        #expect(fingerprint(try scratch.read("out")) == fingerprint(plaintext))
        var info = stat()
        stat(scratch.path("out"), &info)
        #expect(info.st_mode & 0o777 == 0o600, "plaintext output is private")

        let piped = try await CLI.run(["seal", "--key", "key", "-", "-"], stdin: Data(plaintext), in: scratch.url)
        #expect(piped.status == 0)
        let back = try await CLI.run(["open", "--key", "key", "-", "-"], stdin: piped.stdout, in: scratch.url)
        #expect(back.status == 0)
        #expect(fingerprint(back.stdout) == fingerprint(plaintext))
        #expect(try scratch.contents() == ["key", "plain", "sealed", "out"])
    }

    @Test func optionsShowInInspect() async throws {
        let r = try await CLI.run(["seal", "--key", "key", "--chunk-size", "128K", "--no-compress", "plain", "raw"], in: scratch.url)
        #expect(r.status == 0)
        let inspect = try await CLI.run(["inspect", "raw"], in: scratch.url)
        let text = String(decoding: inspect.stdout, as: UTF8.self)
        #expect(inspect.status == 0)
        #expect(text.contains("chunk size:  131072 bytes"))
        #expect(text.contains("compression: none"))
        #expect(text.contains("chunks:      2 (0 LZ4, 2 stored)"))
        #expect(text.contains("plaintext:   \(plaintext.count) bytes"))
        try await sealDefault()
        let table = String(decoding: try await CLI.run(["inspect", "sealed"], in: scratch.url).stdout, as: UTF8.self)
        #expect(table.contains("chunks:      4 (2 LZ4, 2 stored)"))
        #expect(table.split(separator: "\n").filter { $0.hasSuffix(" no") || $0.hasSuffix(" yes") }.count == 4)
    }

    @Test func usageErrorsAndBadFilesGiveOneLineAndTheDocumentedCode() async throws {
        let badSize = try await CLI.run(["seal", "--key", "key", "--chunk-size", "1000", "plain", "x"], in: scratch.url)
        #expect(badSize.status == 64)
        let missing = try await CLI.run(["seal", "--key", "key", "nope", "x"], in: scratch.url)
        #expect(missing.status == 1)
        #expect(missing.stderr == "safechat: seal failed: cannot open nope: No such file or directory\n")
        try scratch.write("badkey", Array("not a key\n".utf8))
        let badKey = try await CLI.run(["seal", "--key", "badkey", "plain", "x"], in: scratch.url)
        #expect(badKey.status == 1)
        #expect(badKey.stderr.hasPrefix("safechat: seal failed: badkey is not a key file"))
        try scratch.write("hugekey", randomBytes(100_000))
        #expect(try await CLI.run(["open", "--key", "hugekey", "plain", "x"], in: scratch.url).status == 1)
        let notSealed = try await CLI.run(["open", "--key", "key", "plain", "x"], in: scratch.url)
        #expect(notSealed.status == 2)
        #expect(notSealed.stderr == "safechat: open failed: input is not a SafeChat sealed stream (bad magic)\n")
        #expect(!scratch.exists("x"))
    }

    @Test func openingToADeviceStreamsIntoItInsteadOfReplacingIt() async throws {
        try await sealDefault()
        let r = try await CLI.run(["open", "--key", "key", "sealed", "/dev/null"], in: scratch.url)
        #expect(r.status == 0)
        var info = stat()
        #expect(stat("/dev/null", &info) == 0 && (info.st_mode & S_IFMT) == S_IFCHR)
    }

    /// Each attack: exit code 2, one line naming the chunk and the reason, and neither the output
    /// nor a temporary file left behind.
    @Test func everyAttackIsRefusedAndLeavesNothingBehind() async throws {
        try await sealDefault()
        let sealed = try scratch.read("sealed")
        let table = String(decoding: try await CLI.run(["inspect", "sealed"], in: scratch.url).stdout, as: UTF8.self)
        let offsets: [Int] = table.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ")
            return f.count == 6 && (f[5] == "no" || f[5] == "yes") ? Int(f[1]) : nil
        }
        #expect(offsets.count == 4)
        func record(_ i: Int) -> ArraySlice<UInt8> { sealed[offsets[i]..<(i + 1 < offsets.count ? offsets[i + 1] : sealed.count)] }
        var flippedBody = sealed; flippedBody[offsets[2] + 40] ^= 1
        var flippedTag = sealed; flippedTag[sealed.count - 1] ^= 0x80
        var flippedHeader = sealed; flippedHeader[20] ^= 4
        let head = Array(sealed.prefix(92))
        try await CLI.run(["keygen", "other"], in: scratch.url)

        let cases: [(String, [UInt8], String, [String])] = [
            ("wrong key", sealed, "wrong key", ["--key", "other"]),
            ("flipped body bit", flippedBody, "chunk 2: authentication failed", []),
            ("flipped tag bit", flippedTag, "chunk 3: authentication failed", []),
            ("flipped salt bit", flippedHeader, "stream header is corrupted", []),
            ("missing final chunk", Array(sealed.prefix(offsets[3])), "ends after 3 chunk(s) without the final chunk", []),
            ("cut mid-record", Array(sealed.prefix(offsets[2] + 100)), "chunk 2: input is truncated inside the chunk", []),
            ("header only", head, "ends after 0 chunk(s)", []),
            ("empty input", [], "input is empty", []),
            ("trailing bytes", sealed + [0], "unexpected data after the final chunk 3", []),
            ("reordered", head + record(0) + record(2) + record(1) + record(3), "chunk 1: found chunk 2 instead", []),
            ("duplicated", head + record(0) + record(0) + record(1), "chunk 1: found chunk 0 instead", []),
        ]
        for (name, bytes, message, keyArgs) in cases {
            try scratch.write("evil", bytes)
            let r = try await CLI.run(["open"] + (keyArgs.isEmpty ? ["--key", "key"] : keyArgs) + ["evil", "opened"], in: scratch.url)
            #expect(r.status == 2, "\(name): exit \(r.status)")
            #expect(r.stderr.hasPrefix("safechat: open failed: ") && r.stderr.contains(message), "\(name): \(r.stderr)")
            #expect(r.stderr.filter { $0 == "\n" }.count == 1, "\(name): one line")
            #expect(try scratch.contents() == ["key", "other", "plain", "sealed", "evil"], "\(name) left files behind")
        }
    }

    @Test func streamingToStdoutReleasesOnlyVerifiedChunksThenFails() async throws {
        try await sealDefault()
        var sealed = try scratch.read("sealed")
        let table = String(decoding: try await CLI.run(["inspect", "sealed"], in: scratch.url).stdout, as: UTF8.self)
        let offset2 = table.split(separator: "\n").compactMap { line -> Int? in
            let f = line.split(separator: " ")
            return f.count == 6 && f[0] == "2" ? Int(f[1]) : nil
        }.first!
        sealed[offset2 + 50] ^= 1
        let r = try await CLI.run(["open", "--key", "key", "-", "-"], stdin: Data(sealed), in: scratch.url)
        #expect(r.status == 2)
        #expect(fingerprint(r.stdout) == fingerprint(plaintext.prefix(2 * 65536)))
        #expect(r.stderr.contains("chunk 2: authentication failed"))
    }

    @Test func inspectRejectsBrokenFramingWithoutAKey() async throws {
        try await sealDefault()
        let sealed = try scratch.read("sealed")
        try scratch.write("cut", Array(sealed.dropLast(5)))
        let r = try await CLI.run(["inspect", "--summary", "cut"], in: scratch.url)
        #expect(r.status == 2)
        #expect(r.stderr.contains("chunk 3: input is truncated inside the chunk"))
    }

    /// An interrupted `open` removes its partial plaintext: the input is a FIFO we feed by hand,
    /// so the command is provably mid-stream when it is signalled.
    @Test func interruptedOpenRemovesItsPartialOutput() async throws {
        try await sealDefault()
        let sealed = try scratch.read("sealed")
        #expect(mkfifo(scratch.path("fifo"), 0o600) == 0)
        let process = Process()
        process.executableURL = CLI.executable
        process.arguments = ["open", "--key", "key", "fifo", "opened"]
        process.currentDirectoryURL = scratch.url
        process.standardError = FileHandle.nullDevice
        try process.run()
        let fifo = try FileHandle(forWritingTo: URL(fileURLWithPath: scratch.path("fifo")))
        try fifo.write(contentsOf: Data(sealed.prefix(sealed.count / 2)))
        // Wait until the partial file exists, then interrupt.
        var partial: String?
        for _ in 0..<500 where partial == nil {
            partial = try scratch.contents().first { $0.hasSuffix(".safechat-partial") }
            if partial == nil { usleep(10_000) }
        }
        #expect(partial != nil)
        process.interrupt()
        process.waitUntilExit()
        try? fifo.close()
        #expect(process.terminationStatus == 128 + SIGINT)
        #expect(try scratch.contents() == ["key", "plain", "sealed", "fifo"])
    }

    /// Inputs that are regular files are memory-mapped; if another process truncates one while it
    /// is read, the command must fail cleanly (exit 1, one line), not die of SIGBUS.
    @Test func inputTruncatedWhileBeingReadFailsCleanly() async throws {
        let big = randomBytes(1 << 20)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: scratch.path("plain")))
        for _ in 0..<48 { try handle.write(contentsOf: Data(big)) }
        try handle.close()
        try await sealDefault()
        let process = Process()
        process.executableURL = CLI.executable
        process.arguments = ["open", "--key", "key", "sealed", "-"]
        process.currentDirectoryURL = scratch.url
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // The pipe fills and blocks the opener mid-file; then the input shrinks under it.
        let first = out.fileHandleForReading.readData(ofLength: 65536)
        #expect(first.count == 65536)
        usleep(200_000)
        #expect(truncate(scratch.path("sealed"), 100_000) == 0)
        _ = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationReason == .exit)
        #expect(process.terminationStatus == 1)
        // Depending on where the reader was, the cut is seen as SIGBUS on a mapping or as a short read.
        #expect(message.hasSuffix("was truncated while being read\n") && message.filter { $0 == "\n" }.count == 1, "\(message)")
    }
}
