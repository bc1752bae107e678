import Foundation
import Testing
@testable import SafeChatGateway
import SafeChatAPI
import SafeChatClient
import SafeChatKeys
import SafeChatTestSupport
import SealedStream

/// The `safechat` client commands against a real gateway, as subprocesses.
@Suite struct ClientCommandTests {
    static let safechat = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("safechat").path

    /// A scratch directory with its own client config (XDG_CONFIG_HOME) and a session key.
    struct Workspace {
        let url: URL
        var config: String { url.appendingPathComponent("config").path }
        /// Where this "device" keeps its identity (XDG_DATA_HOME).
        var data: String { url.appendingPathComponent("data").path }
        func path(_ name: String) -> String { url.appendingPathComponent(name).path }

        init() throws {
            url = FileManager.default.temporaryDirectory.appendingPathComponent("client-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        }

        func run(_ arguments: [String], stdin: String? = nil) async throws -> (status: Int32, output: String) {
            var command = ["env", "XDG_CONFIG_HOME=\(config)", "XDG_DATA_HOME=\(data)", ClientCommandTests.safechat] + arguments
            if let stdin { command = ["sh", "-c", "printf '%s\\n' \"$0\" | \"$@\"", stdin] + command }
            return try await runProcess(command, in: url)
        }

        func start(_ arguments: [String]) throws -> Process {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: ClientCommandTests.safechat)
            process.arguments = arguments
            process.environment = ProcessInfo.processInfo.environment.merging(["XDG_CONFIG_HOME": config, "XDG_DATA_HOME": data]) { $1 }
            process.currentDirectoryURL = url
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            return process
        }

        /// Length and SHA-256 of a file in the workspace.
        func fingerprintOf(_ name: String) throws -> String { fingerprint(try Data(contentsOf: URL(fileURLWithPath: path(name)))) }

        /// Writes `size` random bytes to `name`, uploads it with the workspace's key, and returns
        /// the bytes and the file id.
        func uploadRandomFile(_ name: String, size: Int) async throws -> (plaintext: [UInt8], id: String) {
            let plaintext = Secrets.randomBytes(size)
            try Data(plaintext).write(to: URL(fileURLWithPath: path(name)))
            let upload = try await run(["upload", "-q", "--key", "key", name])
            #expect(upload.status == 0, "\(upload.output)")
            return (plaintext, upload.output.trimmingCharacters(in: .whitespacesAndNewlines))
        }

        func remove() { try? FileManager.default.removeItem(at: url) }
    }

    /// Starts `safechat upload FILE` and kills it with SIGKILL once the gateway holds 20 MiB of it;
    /// returns the upload's id.
    static func killedUpload(_ ws: Workspace, server: TestGateway, file: String) async throws -> String? {
        let client = try ws.start(["upload", "-q", "--key", "key", file])
        defer {
            kill(client.processIdentifier, SIGKILL)
            client.waitUntilExit()  // SIGKILL: immediate
        }
        let partialDirectory = server.dataDirectory + "/data/partial"
        for _ in 0..<2000 {
            if let name = try FileManager.default.contentsOfDirectory(atPath: partialDirectory).first,
               let size = try FileManager.default.attributesOfItem(atPath: partialDirectory + "/" + name)[.size] as? Int, size > 20 << 20 {
                return name
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        return nil
    }

    static func ready(_ server: TestGateway) async throws -> Workspace {
        let ws = try Workspace()
        let login = try await ws.run(["login", "--server", server.base, "--user", "user1"], stdin: "password123")
        #expect(login.status == 0, "\(login.output)")
        #expect(try await ws.run(["keygen", "key"]).status == 0)
        return ws
    }

    @Test func loginUploadSeveralFilesListDownloadAndRemove() async throws {
        let server = try await TestGateway.start()
        defer { server.removeData() }
        let ws = try await Self.ready(server)
        defer { ws.remove() }
        var info = stat()
        #expect(stat(ws.config + "/safechat/session.json", &info) == 0 && info.st_mode & 0o777 == 0o600)
        let a = Secrets.randomBytes(700_000), b = Array(String(repeating: "chat beside the transfers\n", count: 40_000).utf8)
        try Data(a).write(to: URL(fileURLWithPath: ws.path("a")))
        try Data(b).write(to: URL(fileURLWithPath: ws.path("b")))
        let upload = try await ws.run(["upload", "-q", "--key", "key", "a", "b"])
        #expect(upload.status == 0, "\(upload.output)")
        let ids = upload.output.split(separator: "\n").map(String.init).filter { FileID($0) != nil }
        #expect(ids.count == 2)
        let listing = try await ws.run(["files"])
        #expect(ids.allSatisfy { listing.output.contains($0) })
        #expect(try await ws.run(["download", "-q", "--key", "key", ids[0], "-o", "a.out"]).status == 0)
        #expect(try await ws.run(["download", "-q", "--key", "key", ids[1], "-o", "b.out"]).status == 0)
        #expect(try ws.fingerprintOf("a.out") == fingerprint(a))
        #expect(try ws.fingerprintOf("b.out") == fingerprint(b))
        // The gateway holds only sealed bytes and a sealed name.
        let manifest = try await HTTP.login(server.base).send(.GET, "/files/\(ids[0])").json
        let name = try #require((manifest["metadata"] as? [String: String])?["name"])
        let sealedName = Array(try #require(Data(base64Encoded: name)))
        #expect(sealedName.starts(with: Array("SAFECHAT".utf8)), "the name is a sealed stream")
        let key = try SessionKey(hexEncoded: try String(contentsOfFile: ws.path("key"), encoding: .utf8))
        // The sealed plaintext is the file's stream salt, then the name (docs/API.md, Upload-Metadata).
        let salt = try #require(manifest["header"] as? [Int]).map { UInt8($0) }[12..<44]
        #expect(try await openStream(sealedName, key: key) == Array(salt) + Array("a".utf8))
        // A wrong key fails before anything is written.
        #expect(try await ws.run(["keygen", "other"]).status == 0)
        let wrong = try await ws.run(["download", "-q", "--key", "other", ids[0], "-o", "wrong.out"])
        #expect(wrong.status == 2 && wrong.output.contains("wrong key"))
        #expect(!FileManager.default.fileExists(atPath: ws.path("wrong.out")))
        // A device as output is written into, never renamed over.
        #expect(try await ws.run(["download", "-q", "--key", "key", ids[0], "-o", "/dev/null"]).status == 0)
        var device = stat()
        #expect(stat("/dev/null", &device) == 0 && (device.st_mode & S_IFMT) == S_IFCHR)
        #expect(try await ws.run(["rm", ids[0]]).status == 0)
        let gone = try await ws.run(["download", "-q", "--key", "key", ids[0], "-o", "gone.out"])
        #expect(gone.status == 1 && gone.output.contains("404"), "\(gone.output)")
        await server.stop()
    }

    @Test func anUploadKilledMidwayResumesWhereTheGatewayStopped() async throws {
        let server = try await TestGateway.start()
        defer { server.removeData() }
        let ws = try await Self.ready(server)
        defer { ws.remove() }
        let plaintext = Secrets.randomBytes(300 << 20)
        try Data(plaintext).write(to: URL(fileURLWithPath: ws.path("big")))
        let id = try #require(try await Self.killedUpload(ws, server: server, file: "big"))
        let resumed = try await ws.run(["upload", "-q", "--key", "key", "big"])
        #expect(resumed.status == 0, "\(resumed.output)")
        #expect(resumed.output.trimmingCharacters(in: .whitespacesAndNewlines) == id, "the same upload finished")
        let download = try await ws.run(["download", "-q", "--key", "key", id, "-o", "big.out"])
        #expect(download.status == 0)
        #expect(try ws.fingerprintOf("big.out") == fingerprint(plaintext))
        #expect(try FileManager.default.contentsOfDirectory(atPath: ws.config + "/safechat/uploads").isEmpty)
        await server.stop()
    }

    /// Same name, size and mtime, different bytes: resuming would re-seal different plaintext under
    /// the same nonces, so the client must notice and start afresh with a new salt.
    @Test func aFileChangedBetweenAttemptsStartsAfreshInsteadOfReusingNonces() async throws {
        let server = try await TestGateway.start()
        defer { server.removeData() }
        let ws = try await Self.ready(server)
        defer { ws.remove() }
        var plaintext = Secrets.randomBytes(300 << 20)
        let path = ws.path("big")
        try Data(plaintext).write(to: URL(fileURLWithPath: path))
        let first = try #require(try await Self.killedUpload(ws, server: server, file: "big"))
        // Change one byte in the first chunk and put the old mtime back.
        var info = stat()
        stat(path, &info)
        plaintext[1000] ^= 0xFF
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.seek(toOffset: 1000)
        try handle.write(contentsOf: Data([plaintext[1000]]))
        try handle.close()
        var times = [info.st_atim, info.st_mtim]
        utimensat(AT_FDCWD, path, &times, 0)
        let again = try await ws.run(["upload", "-q", "--key", "key", "big"])
        #expect(again.status == 0, "\(again.output)")
        let id = again.output.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(FileID(id) != nil && id != first, "a new upload, with a new salt")
        #expect(try await ws.run(["download", "-q", "--key", "key", id, "-o", "big.out"]).status == 0)
        #expect(try ws.fingerprintOf("big.out") == fingerprint(plaintext))
        await server.stop()
    }

    /// A download interrupted with two stripes part done (as its progress file records) fetches
    /// only the chunks not yet verified: a marker planted in a chunk recorded as done survives,
    /// every other byte comes out right. A progress file that does not match starts over.
    @Test func anInterruptedDownloadResumesEveryStripeFromItsLastVerifiedChunk() async throws {
        let server = try await TestGateway.start()
        defer { server.removeData() }
        let ws = try await Self.ready(server)
        defer { ws.remove() }
        let (plaintext, id) = try await ws.uploadRandomFile("f", size: 20 << 20)
        let http = try await HTTP.login(server.base)
        let manifest = try await http.send(.GET, "/files/\(id)").json
        let sha256 = try #require(manifest["digest"] as? String)
        let header = Secrets.hex(try #require(manifest["header"] as? [Int]).map { UInt8($0) })
        // Each record's header and tag, as a download records them beside the partial file.
        let sealed = try await http.send(.GET, "/download/\(id)").body
        let digestEntries: [[UInt8]] = try #require(manifest["records"] as? [[String: Any]]).map { record in
            let offset = (record["offset"] as! NSNumber).intValue, length = (record["length"] as! NSNumber).intValue
            return Array(sealed[offset..<offset + 16] + sealed[offset + length - 16..<offset + length])
        }

        let partial = ws.path(".f.out.\(id).safechat-download")
        let progress = partial + ".progress"
        let mib = 1 << 20
        func interrupted(progressText: String) throws -> [UInt8] {
            // Stripe 0 (chunks 0-9) verified 0-3, stripe 1 (10-19) verified 10-12, then a torn chunk 13.
            var bytes = [UInt8](repeating: 0, count: 13 * mib + 500_000)
            bytes.replaceSubrange(0..<(4 * mib), with: plaintext[0..<(4 * mib)])
            bytes.replaceSubrange((10 * mib)..<(13 * mib + 500_000), with: plaintext[(10 * mib)..<(13 * mib + 500_000)])
            let marker = Array("already verified".utf8)
            bytes.replaceSubrange((mib + 100)..<(mib + 100 + marker.count), with: marker)
            try Data(bytes).write(to: URL(fileURLWithPath: partial))
            try progressText.write(toFile: progress, atomically: false, encoding: .utf8)
            var entries = [UInt8](repeating: 0, count: 13 * 32)
            for index in [0, 1, 2, 3, 10, 11, 12] { entries.replaceSubrange(index * 32..<(index + 1) * 32, with: digestEntries[index]) }
            try Data(entries).write(to: URL(fileURLWithPath: partial + ".records"))
            var expected = plaintext
            expected.replaceSubrange((mib + 100)..<(mib + 100 + marker.count), with: marker)
            return expected
        }

        let valid = "safechat-download 2 \(sha256) \(header) 2\n0000000000 0000000010 0000000004\n0000000010 0000000020 0000000013\n"
        let expected = try interrupted(progressText: valid)
        let resumed = try await ws.run(["download", "-q", "--key", "key", id, "-o", "f.out"])
        #expect(resumed.status == 0, "\(resumed.output)")
        #expect(try ws.fingerprintOf("f.out") == fingerprint(expected))
        #expect(!FileManager.default.fileExists(atPath: partial) && !FileManager.default.fileExists(atPath: progress))

        // Progress that is damaged, or from an older version: everything is fetched again.
        for text in [String(valid.dropLast(5)), valid.replacingOccurrences(of: "0000000013", with: "0000000021"),
                     "safechat-download 1 \(sha256) 2\n0000000000 0000000010 0000000004\n0000000010 0000000020 0000000013\n"] {
            _ = try interrupted(progressText: text)
            let fresh = try await ws.run(["download", "-q", "--key", "key", id, "-o", "f.out"])
            #expect(fresh.status == 0, "\(fresh.output)")
            #expect(try ws.fingerprintOf("f.out") == fingerprint(plaintext))
        }
        // Progress of another stream (another digest) than the one the gateway now serves under the
        // id: the partial file did not come from this file, so the download is refused and it is deleted.
        _ = try interrupted(progressText: valid.replacingOccurrences(of: sha256, with: String(repeating: "0", count: 64)))
        let other = try await ws.run(["download", "-q", "--key", "key", id, "-o", "f.out"])
        #expect(other.status == 2 && other.output.contains("another stream"), "\(other.output)")
        #expect(!FileManager.default.fileExists(atPath: partial) && !FileManager.default.fileExists(atPath: progress))
        // Valid progress, but the digest entries of verified records are gone: start over.
        _ = try interrupted(progressText: valid)
        try FileManager.default.removeItem(atPath: partial + ".records")
        let withoutEntries = try await ws.run(["download", "-q", "--key", "key", id, "-o", "f.out"])
        #expect(withoutEntries.status == 0, "\(withoutEntries.output)")
        #expect(try ws.fingerprintOf("f.out") == fingerprint(plaintext))
        // Valid progress, but the partial file was cut short since: start over too.
        _ = try interrupted(progressText: valid)
        #expect(truncate(partial, off_t(12 << 20)) == 0)
        let afterCut = try await ws.run(["download", "-q", "--key", "key", id, "-o", "f.out"])
        #expect(afterCut.status == 0, "\(afterCut.output)")
        #expect(try ws.fingerprintOf("f.out") == fingerprint(plaintext))
        await server.stop()
    }

    /// A real interruption: the download is killed with SIGKILL part-way, then rerun.
    @Test func aDownloadKilledMidwayResumesAndEndsByteIdentical() async throws {
        let server = try await TestGateway.start()
        defer { server.removeData() }
        let ws = try await Self.ready(server)
        defer { ws.remove() }
        let (plaintext, id) = try await ws.uploadRandomFile("f", size: 96 << 20)
        let progress = ws.path(".f.out.\(id).safechat-download.progress")
        let client = try ws.start(["download", "-q", "--key", "key", id, "-o", "f.out"])
        // Kill it once some chunk has verified but before it finishes (if it finishes first, the
        // resume below still has to produce the file; the check is then only weaker).
        var killedMidway = false
        for _ in 0..<4000 {
            if let text = try? String(contentsOfFile: progress, encoding: .utf8),
               text.split(separator: "\n").dropFirst().contains(where: { line in
                   let n = line.split(separator: " ").compactMap { Int($0) }
                   return n.count == 3 && n[2] > n[0]
               }) {
                kill(client.processIdentifier, SIGKILL)
                killedMidway = true
                break
            }
            // A pause that leaves the cooperative thread to the gateway serving this download.
            try await Task.sleep(for: .microseconds(500))
        }
        await client.exited()
        if killedMidway { #expect(!FileManager.default.fileExists(atPath: ws.path("f.out"))) }
        let resumed = try await ws.run(["download", "-q", "--key", "key", id, "-o", "f.out"])
        #expect(resumed.status == 0, "\(resumed.output)")
        #expect(try ws.fingerprintOf("f.out") == fingerprint(plaintext))
        #expect(!FileManager.default.fileExists(atPath: progress))
        await server.stop()
    }
}

extension ClientCommandTests {
    @Test func filesShowsNamesTheKeyOpensAndDownloadUsesTheOriginalName() async throws {
        try await TestGateway.with { server in
            let ws = try await Self.ready(server)
            defer { ws.remove() }
            let (plaintext, id) = try await ws.uploadRandomFile("report.txt", size: 200_000)
            let withKey = try await ws.run(["files", "--key", "key"])
            #expect(withKey.status == 0 && withKey.output.contains("\(id)") && withKey.output.contains("report.txt"), "\(withKey.output)")
            let withoutKey = try await ws.run(["files"])
            #expect(withoutKey.output.contains("(sealed: give --key to open names of personal files)") && !withoutKey.output.contains("report.txt"),
                    "\(withoutKey.output)")
            let otherKey = try await ws.run(["keygen", "other.key"])
            #expect(otherKey.status == 0)
            #expect(try await ws.run(["files", "--key", "other.key"]).output.contains("(sealed: its name is sealed under another key than this file's)"))

            // Into a fresh directory: the original name; a second time it refuses to overwrite.
            let into = ws.path("inbox")
            try FileManager.default.createDirectory(atPath: into, withIntermediateDirectories: true)
            let first = try await runProcess(["env", "XDG_CONFIG_HOME=\(ws.config)", Self.safechat, "download", "-q", "--key", ws.path("key"), id],
                                             in: URL(fileURLWithPath: into))
            #expect(first.status == 0, "\(first.output)")
            #expect(fingerprint(try Data(contentsOf: URL(fileURLWithPath: into + "/report.txt"))) == fingerprint(plaintext))
            try Data("mine".utf8).write(to: URL(fileURLWithPath: into + "/report.txt"))
            let again = try await runProcess(["env", "XDG_CONFIG_HOME=\(ws.config)", Self.safechat, "download", "-q", "--key", ws.path("key"), id],
                                             in: URL(fileURLWithPath: into))
            #expect(again.status == 1 && again.output.contains("already exists"), "\(again.output)")
            #expect(try String(contentsOfFile: into + "/report.txt", encoding: .utf8) == "mine", "never overwritten")
            let forced = try await runProcess(["env", "XDG_CONFIG_HOME=\(ws.config)", Self.safechat, "download", "-q", "--force", "--key", ws.path("key"), id],
                                              in: URL(fileURLWithPath: into))
            #expect(forced.status == 0)
            #expect(fingerprint(try Data(contentsOf: URL(fileURLWithPath: into + "/report.txt"))) == fingerprint(plaintext))
            // Without a key that opens the name, the id is the name.
            let unnamed = try await runProcess(["env", "XDG_CONFIG_HOME=\(ws.config)", Self.safechat, "download", "-q", "--key", ws.path("other.key"), id],
                                               in: URL(fileURLWithPath: into))
            #expect(unnamed.status == 2, "the wrong key is refused before anything is written: \(unnamed.output)")
        }
    }

    @Test func hostileSealedNamesAreReducedToSafeBaseNames() {
        #expect(SealedName.safeBaseName("../../etc/passwd") == "passwd")
        #expect(SealedName.safeBaseName("a\\b\\..\\evil.exe") == "evil.exe")
        #expect(SealedName.safeBaseName("..") == nil)
        #expect(SealedName.safeBaseName(".") == nil)
        #expect(SealedName.safeBaseName("dir/") == "dir")
        #expect(SealedName.safeBaseName("/") == nil)
        #expect(SealedName.safeBaseName("") == nil)
        #expect(SealedName.safeBaseName("bell\u{07}\u{1B}[31mred\n.txt") == "bell[31mred.txt")
        #expect(SealedName.safeBaseName(String(repeating: "x", count: 300)) == nil)
        #expect(SealedName.safeBaseName("résumé.pdf") == "résumé.pdf")
    }
}

extension ClientCommandTests {
    @Test func loginMakesAnIdentityThatMovesToASecondDeviceByExport() async throws {
        try await TestGateway.with { server in
            let laptop = try await Self.ready(server)
            defer { laptop.remove() }
            let identityFile = laptop.data + "/safechat/identity.json"
            var info = stat()
            #expect(stat(identityFile, &info) == 0 && info.st_mode & 0o777 == 0o600, "made at login, 0600")
            let own = try await laptop.run(["keys", "fingerprint"])
            let served = try await laptop.run(["keys", "fingerprint", "user1"])
            #expect(own.status == 0 && served.status == 0)
            let fingerprint = own.output.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(fingerprint.split(separator: " ").count == 6 && fingerprint.count == 35, "\(fingerprint)")
            #expect(served.output.contains(fingerprint), "the gateway serves the published key: \(served.output)")

            let export = try await laptop.run(["keys", "export", "me.export"], stdin: "a good long passphrase")
            #expect(export.status == 0, "\(export.output)")
            #expect(stat(laptop.path("me.export"), &info) == 0 && info.st_mode & 0o777 == 0o600)
            #expect(try await laptop.run(["keys", "export", "me.export"], stdin: "a good long passphrase").status == 1, "never overwritten")
            #expect(try await laptop.run(["keys", "export", "weak.export"], stdin: "short").status == 1)

            // A second device: logging in does not make a second identity for the account.
            let phone = try Workspace()
            defer { phone.remove() }
            let login = try await phone.run(["login", "--server", server.base, "--user", "user1"], stdin: "password123")
            #expect(login.status == 0 && login.output.contains("keys import"), "\(login.output)")
            #expect(!FileManager.default.fileExists(atPath: phone.data + "/safechat/identity.json"))
            try FileManager.default.copyItem(atPath: laptop.path("me.export"), toPath: phone.path("me.export"))
            let wrong = try await phone.run(["keys", "import", "me.export"], stdin: "not the passphrase")
            #expect(wrong.status == 1 && wrong.output.contains("wrong passphrase"), "\(wrong.output)")
            #expect(!FileManager.default.fileExists(atPath: phone.data + "/safechat/identity.json"))
            let imported = try await phone.run(["keys", "import", "me.export"], stdin: "a good long passphrase")
            #expect(imported.status == 0, "\(imported.output)")
            #expect(try await phone.run(["keys", "fingerprint"]).output.trimmingCharacters(in: .whitespacesAndNewlines) == fingerprint)
            #expect(try await phone.run(["keys", "import", "me.export"], stdin: "a good long passphrase").status == 1, "never replaced")
        }
    }
}

extension ClientCommandTests {
    /// A gateway that swaps user1's published key for one of its own is caught by user2's pin.
    @Test func aSubstitutedKeyIsRefusedByThePinUntilTrusted() async throws {
        try await TestGateway.with { server in
            let cli = try UserStore(path: Gateway.usersPath(dataDirectory: server.dataDirectory))
            try await cli.add("user2", password: "password-two")
            let alice = try await Self.ready(server)
            defer { alice.remove() }
            let bob = try Workspace()
            defer { bob.remove() }
            #expect(try await bob.run(["login", "--server", server.base, "--user", "user2"], stdin: "password-two").status == 0)
            let real = try await alice.run(["keys", "fingerprint"])
            let first = try await bob.run(["keys", "fingerprint", "user1"])
            #expect(first.status == 0 && first.output.contains("pinned now"), "\(first.output)")
            #expect(first.output.contains(real.output.trimmingCharacters(in: .whitespacesAndNewlines)))

            // Verification needs the right digits.
            #expect(try await bob.run(["keys", "verify", "user1", "11111 22222 33333 44444 55555 66666"]).status == 1)
            let realDigits = real.output.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(try await bob.run(["keys", "verify", "user1"] + realDigits.split(separator: " ").map(String.init)).status == 0)
            #expect(try await bob.run(["keys", "fingerprint", "user1"]).output.contains("verified"))

            // The gateway serves a key it made itself, signed correctly, for user1's account.
            let id1 = try #require(try await server.gateway.users.id(of: "user1"))
            let forged = try Identity.generate(userID: Secrets.bytes(fromHex: id1.value)!)
            let bundle = try WireCoding.decoder.decode(IdentityBundle.self, from: Data(forged.publicBundle.encoded()))
            try await server.gateway.registry.putIdentity(bundle, of: id1, at: Date())
            let refused = try await bob.run(["keys", "fingerprint", "user1"])
            #expect(refused.status == 2, "\(refused.output)")
            #expect(refused.output.contains("REFUSED") && refused.output.contains(realDigits)
                    && refused.output.contains(forged.publicBundle.fingerprint.description), "\(refused.output)")
            // Only a deliberate decision accepts it, naming the fingerprint checked with user1.
            #expect(try await bob.run(["keys", "trust", "user1"]).status == 64)
            #expect(try await bob.run(["keys", "trust", "user1", forged.publicBundle.fingerprint.description]).status == 0)
            let after = try await bob.run(["keys", "fingerprint", "user1"])
            #expect(after.status == 0 && after.output.contains("verified"), "\(after.output)")
            var info = stat()
            #expect(stat(bob.data + "/safechat/pins.json", &info) == 0 && info.st_mode & 0o777 == 0o600)
        }
    }
}

extension ClientCommandTests {
    /// Issue 10's story with the real binary: three users, a session, files shared, a member
    /// removed, a newcomer with and without history, and a gateway that holds nothing secret.
    @Test func threeUsersShareFilesThroughASession() async throws {
        try await TestGateway.with { server in
            let cli = try UserStore(path: Gateway.usersPath(dataDirectory: server.dataDirectory))
            try await cli.add("user2", password: "password-two")
            try await cli.add("user3", password: "password-three")
            let one = try await Self.ready(server)
            defer { one.remove() }
            let two = try Workspace(), three = try Workspace()
            defer { two.remove(); three.remove() }
            #expect(try await two.run(["login", "--server", server.base, "--user", "user2"], stdin: "password-two").status == 0)
            #expect(try await three.run(["login", "--server", server.base, "--user", "user3"], stdin: "password-three").status == 0)

            let created = try await one.run(["session", "create", "Project Quokka", "--with", "user2"])
            #expect(created.status == 0, "\(created.output)")
            let session = try #require(created.output.split(separator: "\n").last.map(String.init))
            #expect(session.count == 32)
            let show = try await two.run(["session", "show", session])
            #expect(show.status == 0 && show.output.contains("user1") && show.output.contains("epoch 0"), "\(show.output)")
            #expect(show.output.contains("Project Quokka"), "members read the sealed name: \(show.output)")
            #expect(try await two.run(["sessions"]).output.contains("Project Quokka"))

            let secret = Secrets.randomBytes(300_000)
            try Data(secret).write(to: URL(fileURLWithPath: one.path("quokka-report.bin")))
            let upload = try await one.run(["upload", "-q", "--session", session, "quokka-report.bin"])
            #expect(upload.status == 0, "\(upload.output)")
            let file = upload.output.trimmingCharacters(in: .whitespacesAndNewlines)
            let listed = try await two.run(["files", "--session", session])
            #expect(listed.output.contains(file) && listed.output.contains("quokka-report.bin"), "\(listed.output)")

            // user2 downloads with no key file: the key comes from the session.
            let got = try await two.run(["download", "-q", file])
            #expect(got.status == 0, "\(got.output)")
            #expect(try two.fingerprintOf("quokka-report.bin") == fingerprint(secret))
            // user3 is no member.
            let outsider = try await three.run(["download", "-q", file, "-o", "x"])
            #expect(outsider.status == 1 && outsider.output.contains("404"), "\(outsider.output)")

            // user1 removes user2; a file sent afterwards is not his, and the old one is gone for him too.
            #expect(try await one.run(["session", "remove", session, "user2"]).status == 0)
            try Data(secret.reversed()).write(to: URL(fileURLWithPath: one.path("after.bin")))
            let later = try await one.run(["upload", "-q", "--session", session, "after.bin"])
            let laterID = later.output.trimmingCharacters(in: .whitespacesAndNewlines)
            for id in [file, laterID] {
                let refused = try await two.run(["download", "-q", id, "-o", "no"])
                #expect(refused.status == 1 && refused.output.contains("404"), "\(refused.output)")
            }

            // user3 joins without history: files sent from now on open for them, earlier ones do not.
            #expect(try await one.run(["session", "add", session, "user3"]).status == 0)
            let newest = try await one.run(["upload", "-q", "--session", session, "after.bin"])
            let newestID = newest.output.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(try await three.run(["download", "-q", newestID, "-o", "newest.out"]).status == 0)
            #expect(try three.fingerprintOf("newest.out") == fingerprint(Array(secret.reversed())))
            for id in [file, laterID] {
                let noHistory = try await three.run(["download", "-q", id, "-o", "early.out"])
                #expect(noHistory.status == 1 && noHistory.output.contains("404"), "\(noHistory.output)")
            }
            // With --share-history in a second session, the earlier epoch's files open too.
            let second = try #require(try await one.run(["session", "create", "Second", "--with", "user2"]).output
                .split(separator: "\n").last.map(String.init))
            let early = try await one.run(["upload", "-q", "--session", second, "quokka-report.bin"])
            let earlyID = early.output.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(try await one.run(["session", "add", second, "user3", "--share-history"]).status == 0)
            #expect(try await three.run(["download", "-q", earlyID, "-o", "shared.out"]).status == 0)
            #expect(try three.fingerprintOf("shared.out") == fingerprint(secret))

            // Nothing secret on the gateway's disk: no private key, no plaintext name, no session name.
            var needles: [(String, [UInt8])] = [("file name", Array("quokka-report".utf8)), ("session name", Array("Quokka".utf8))]
            for ws in [one, two, three] {
                let identity = try IdentityFile.decode(Array(try Data(contentsOf: URL(fileURLWithPath: ws.data + "/safechat/identity.json"))))
                needles.append(("signing seed", identity.signingKey.seed))
                needles.append(("signing seed hex", Array(Secrets.hex(identity.signingKey.seed).utf8)))
                needles.append(("agreement key", identity.agreementKey.rawRepresentation))
                needles.append(("agreement key hex", Array(Secrets.hex(identity.agreementKey.rawRepresentation).utf8)))
                needles.append(("history key hex", Array(Secrets.hex(identity.historyKey).utf8)))
            }
            let enumerator = FileManager.default.enumerator(atPath: server.dataDirectory)!
            while let relative = enumerator.nextObject() as? String {
                let path = server.dataDirectory + "/" + relative
                guard let data = FileManager.default.contents(atPath: path) else { continue }
                let bytes = [UInt8](data)
                for (what, needle) in needles {
                    #expect(bytes.firstRange(of: needle) == nil, "\(what) found in \(relative)")
                }
            }
        }
    }
}

extension ClientCommandTests {
    /// The gateway appends an epoch it signed itself (adding an account it controls), or serves a
    /// shortened log: the members' clients refuse the session with a clear error.
    @Test func aGatewayThatForgesOrRollsBackASessionIsRefused() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gw-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var server = try await TestGateway.start(dataDirectory: dir)
        let cli = try UserStore(path: Gateway.usersPath(dataDirectory: dir))
        try await cli.add("user2", password: "password-two")
        try await cli.add("mallory", password: "password-mallory")
        let one = try await Self.ready(server)
        defer { one.remove() }
        let two = try Workspace()
        defer { two.remove() }
        #expect(try await two.run(["login", "--server", server.base, "--user", "user2"], stdin: "password-two").status == 0)
        let session = try #require(try await one.run(["session", "create", "S", "--with", "user2"]).output.split(separator: "\n").last.map(String.init))
        #expect(try await one.run(["session", "add", session, "user2"]).status == 1, "already a member")
        #expect(try await two.run(["session", "show", session]).status == 0)

        // The gateway makes epoch 1 itself: mallory added, signed with a key it made for user1's id.
        let id1 = try #require(try await server.gateway.users.id(of: "user1"))
        let malloryID = try #require(try await server.gateway.users.id(of: "mallory"))
        let stored = try #require(try await server.gateway.sessions.chain(SessionID(session)!))
        let e0 = try EpochDocument(stored[0])
        let fake = try Identity.generate(userID: Secrets.bytes(fromHex: id1.value)!)
        let mallory = try Identity.generate(userID: Secrets.bytes(fromHex: malloryID.value)!)
        var members = e0.members.map { ($0, try! X25519PublicKey(rawRepresentation: Array(repeating: 9, count: 32))) }
        members.append((.init(userID: mallory.userID, name: "mallory", signingKey: mallory.signingKey.publicKey.rawRepresentation), mallory.agreementKey.publicKey))
        let forged = try EpochDocument.make(sessionID: e0.sessionID, epoch: 1, previous: e0, signer: fake, members: members, key: SessionKey.random())
        _ = try await server.gateway.sessions.append(forged.wire, encodedBytes: 0, to: SessionID(session)!, by: id1)
        for ws in [one, two] {
            let refused = try await ws.run(["session", "show", session])
            #expect(refused.status == 2 && refused.output.contains("epoch 1") && refused.output.contains("mallory"), "\(refused.output)")
        }
        let upload = try await one.run(["upload", "-q", "--session", session, "key"])
        #expect(upload.status == 2, "nothing is sealed under a forged epoch: \(upload.output)")

        // The forgery undone (the gateway restarts on the same port with epoch 0 only), a genuine
        // epoch 1 accepted, then a log cut back to epoch 0: rolled back.
        let port = server.port
        // One file per epoch (SessionStore): a log cut back to epoch 0 keeps only the first.
        let folder = dir + "/registry/sessions/\(session)"
        func cutToEpoch0() async throws {
            await server.stop()
            for name in try FileManager.default.contentsOfDirectory(atPath: folder) where name != "00000000.json" {
                try FileManager.default.removeItem(atPath: folder + "/" + name)
            }
            server = try await TestGateway.start(dataDirectory: dir) { $0.port = port }
        }
        try await cutToEpoch0()
        let removed = try await one.run(["session", "remove", session, "user2"])
        #expect(removed.status == 0, "\(removed.output)")
        try await cutToEpoch0()
        let rolledBack = try await one.run(["session", "show", session])
        #expect(rolledBack.status == 2 && rolledBack.output.contains("rolled back"), "\(rolledBack.output)")
        await server.stop()
    }
}
