import Foundation
import SafeChatClient
import Synchronization
import Testing
@testable import SafeChatGateway
import SafeChatAPI
import SafeChatTestSupport
import SealedStream

/// Crashes, restarts and load: what is acknowledged survives, and the registry stays consistent.
@Suite struct ResilienceTests {
    @Test(arguments: TestStore.allCases)
    func thirtyTwoConcurrentUploadsAndARestart(store: TestStore) async throws {
        let server = try await TestGateway.start(store: store)
        defer { server.removeData() }
        let client = try await HTTP.login(server.base)
        let streams = try await withThrowingTaskGroup(of: (SessionKey, [UInt8], [UInt8]).self) { group in
            for i in 0..<32 { group.addTask { try await sealedStream(plaintextSize: 50_000 + i * 3_000) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let ids = try await withThrowingTaskGroup(of: (Int, String).self) { group in
            for (i, stream) in streams.enumerated() {
                group.addTask {
                    if i % 2 == 0 {
                        let reply = try await client.send(.POST, "/upload", body: stream.2)
                        return (i, reply.json["file_id"] as? String ?? "failed \(reply.status)")
                    }
                    let path = try await client.createUpload(length: stream.2.count)
                    let half = stream.2.count / 2
                    _ = try await client.patch(path, offset: 0, stream.2.prefix(half))
                    let reply = try await client.patch(path, offset: half, stream.2[half...])
                    return (i, reply.status == 204 ? String(path.split(separator: "/").last!) : "failed \(reply.status)")
                }
            }
            return try await group.reduce(into: [Int: String]()) { $0[$1.0] = $1.1 }
        }
        #expect(Set(ids.values).count == 32 && ids.values.allSatisfy { FileID($0) != nil }, "\(ids.values.filter { FileID($0) == nil })")
        await server.stop()

        // A new process over the same data directory sees exactly the same files.
        let restarted = try await TestGateway.start(dataDirectory: server.dataDirectory, store: store)
        let again = try await HTTP.login(restarted.base)
        let listed = try #require(try await again.send(.GET, "/files").json["files"] as? [[String: Any]])
        #expect(Set(listed.compactMap { $0["file_id"] as? String }) == Set(ids.values))
        for (i, id) in ids {
            let body = try await again.send(.GET, "/download/\(id)").body
            #expect(fingerprint(try await openStream(body, key: streams[i].0)) == fingerprint(streams[i].1), "file \(i)")
        }
        #expect(try await restarted.recordedRegistry().uploads.isEmpty)
        #expect(try await restarted.recordedRegistry().files.count == 32)
        await restarted.stop()
    }

    /// Eight uploads at once, each large enough to have whole-buffer writes in flight when its
    /// final fsync starts: every one completes and reads back byte for byte.
    @Test(.timeLimit(.minutes(2)), arguments: TestStore.allCases)
    func concurrentLargeUploadsAllComplete(store: TestStore) async throws {
        try await TestGateway.with(store: store) { server in
            let client = try await HTTP.login(server.base)
            let streams = try await withThrowingTaskGroup(of: (SessionKey, [UInt8], [UInt8]).self) { group in
                for i in 0..<8 { group.addTask { try await sealedStream(plaintextSize: 9_000_000 + i * 70_001, chunkSize: 1 << 20) } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let ids = try await withThrowingTaskGroup(of: (Int, String).self) { group in
                for (i, stream) in streams.enumerated() {
                    group.addTask {
                        let path = try await client.createUpload(length: stream.2.count)
                        let cut = stream.2.count / 3
                        _ = try await client.patch(path, offset: 0, stream.2.prefix(cut))
                        let reply = try await client.patch(path, offset: cut, stream.2[cut...])
                        return (i, reply.status == 204 ? String(path.split(separator: "/").last!) : "failed \(reply.status)")
                    }
                }
                return try await group.reduce(into: [Int: String]()) { $0[$1.0] = $1.1 }
            }
            #expect(ids.values.allSatisfy { FileID($0) != nil }, "\(ids.values.filter { FileID($0) == nil })")
            for (i, id) in ids where FileID(id) != nil {
                let body = try await client.send(.GET, "/download/\(id)").body
                #expect(fingerprint(body) == fingerprint(streams[i].2), "file \(i)")
            }
        }
    }

    @Test(arguments: TestStore.allCases)
    func aClientKilledMidUploadResumesFromTheGatewaysOffset(store: TestStore) async throws {
        let server = try await TestGateway.start(store: store)
        defer { server.removeData() }
        let client = try await HTTP.login(server.base)
        // Large enough that socket buffers cannot swallow it all before curl is killed.
        let (key, plaintext, sealed) = try await sealedStream(plaintextSize: 16_000_000)
        let path = try await client.createUpload(length: sealed.count)
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("sealed-\(UUID().uuidString)")
        try Data(sealed).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        // curl sends slowly; it is killed with SIGKILL partway.
        let curl = try slowPatch(server.base + path, token: client.token!, offset: 0, file: file)
        try await Task.sleep(for: .milliseconds(1200))
        kill(curl.processIdentifier, SIGKILL)
        await curl.exited()
        // The gateway keeps what arrived and validated; HEAD says where to go on.
        var offset = 0
        for _ in 0..<50 {
            let head = try await client.send(.HEAD, path, headers: [("Tus-Resumable", "1.0.0")])
            offset = Int(head.header("Upload-Offset") ?? "0") ?? 0
            if offset > 0 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(offset > 0 && offset < sealed.count, "offset \(offset)")
        // Until the gateway sees the killed connection close, its PATCH still holds the upload:
        // 423, and a client asks again where to go on (as tus clients do).
        var rest = try await client.patch(path, offset: offset, sealed[offset...])
        for _ in 0..<100 where rest.status == 423 {
            try await Task.sleep(for: .milliseconds(100))
            offset = Int(try await client.send(.HEAD, path, headers: [("Tus-Resumable", "1.0.0")]).header("Upload-Offset") ?? "0") ?? 0
            rest = try await client.patch(path, offset: offset, sealed[offset...])
        }
        #expect(rest.status == 204)
        let id = String(path.split(separator: "/").last!)
        let body = try await client.send(.GET, "/download/\(id)").body
        #expect(fingerprint(try await openStream(body, key: key)) == fingerprint(plaintext))
        await server.stop()
    }

    @Test(arguments: TestStore.allCases)
    func aServerKilledWithSIGKILLMidUploadKeepsEveryAcknowledgedByte(store: TestStore) async throws {
        let dataDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("gw-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dataDirectory) }
        var server = try await ServerProcess(dataDirectory: dataDirectory, store: store)
        var client = try await HTTP.login(server.base)
        let (key, plaintext, sealed) = try await sealedStream(plaintextSize: 4_000_000)
        let path = try await client.createUpload(length: sealed.count)
        // An acknowledged first part that ends mid-record.
        let acknowledged = 1_000_003
        #expect(try await client.patch(path, offset: 0, sealed.prefix(acknowledged)).status == 204)
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("rest-\(UUID().uuidString)")
        try Data(sealed[acknowledged...]).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let curl = try slowPatch(server.base + path, token: client.token!, offset: acknowledged, file: file)
        try await Task.sleep(for: .milliseconds(1000))
        server.kill()
        await curl.exited()

        server = try await ServerProcess(dataDirectory: dataDirectory, store: store)
        defer { server.kill() }
        client = try await HTTP.login(server.base)
        let head = try await client.send(.HEAD, path, headers: [("Tus-Resumable", "1.0.0")])
        let offset = try #require(Int(head.header("Upload-Offset") ?? ""))
        #expect(offset >= acknowledged, "the acknowledged \(acknowledged) bytes survive (offset \(offset))")
        #expect(try await client.patch(path, offset: offset, sealed[offset...]).status == 204)
        let id = String(path.split(separator: "/").last!)
        let body = try await client.send(.GET, "/download/\(id)").body
        #expect(fingerprint(try await openStream(body, key: key)) == fingerprint(plaintext))
    }
}

extension ResilienceTests {
    /// SIGTERM stops the gateway within its grace period; an upload cut off by it keeps every byte
    /// that arrived, durably, and resumes after a restart.
    @Test(arguments: TestStore.allCases)
    func sigtermMidUploadStopsCleanlyAndLeavesAResumableOffset(store: TestStore) async throws {
        let dataDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("gw-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dataDirectory) }
        var server = try await ServerProcess(dataDirectory: dataDirectory, store: store, options: ["--shutdown-grace", "10"])
        var client = try await HTTP.login(server.base)
        let (key, plaintext, sealed) = try await sealedStream(plaintextSize: 16_000_000)
        let path = try await client.createUpload(length: sealed.count)
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("all-\(UUID().uuidString)")
        try Data(sealed).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        // 16 MB at 1 MB/s outlasts the 10 s grace period.
        let curl = try slowPatch(server.base + path, token: client.token!, offset: 0, file: file)
        try await Task.sleep(for: .milliseconds(1500))
        let stopped = Date()
        kill(server.process.processIdentifier, SIGTERM)
        while server.process.isRunning && Date().timeIntervalSince(stopped) < 30 { try await Task.sleep(for: .milliseconds(50)) }
        #expect(!server.process.isRunning, "the gateway stops within its grace period")
        #expect(server.process.terminationReason == .exit && server.process.terminationStatus == 0)
        kill(curl.processIdentifier, SIGKILL)
        await curl.exited()

        server = try await ServerProcess(dataDirectory: dataDirectory, store: store)
        defer { server.kill() }
        client = try await HTTP.login(server.base)
        let offset = try #require(Int(try await client.send(.HEAD, path, headers: [("Tus-Resumable", "1.0.0")]).header("Upload-Offset") ?? ""))
        #expect(offset > 1_000_000 && offset < sealed.count, "what arrived before the shutdown is kept (offset \(offset))")
        #expect(try await client.patch(path, offset: offset, sealed[offset...]).status == 204)
        let id = String(path.split(separator: "/").last!)
        let body = try await client.send(.GET, "/download/\(id)").body
        #expect(fingerprint(try await openStream(body, key: key)) == fingerprint(plaintext))
    }
}

extension ResilienceTests {
    /// Downloads go out with sendfile(2), queued all at once; the route still waits until the file
    /// has been sent, so a graceful shutdown lets a download in flight finish.
    /// The upload is written through the page cache too, so that the download reads memory: under
    /// the whole suite's load on two cores, one read from the disk has taken longer than the 10 s
    /// grace period, which this test would then report as the shutdown cutting it short.
    @Test(arguments: TestStore.allCases)
    func sigtermMidDownloadLetsItFinish(store: TestStore) async throws {
        let dataDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("gw-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dataDirectory) }
        let server = try await ServerProcess(dataDirectory: dataDirectory, store: store, options: ["--no-direct-io"])
        defer { server.kill() }
        let client = try await HTTP.login(server.base)
        let (_, _, sealed) = try await sealedStream(plaintextSize: 40_000_000)
        let id = try #require(try await client.send(.POST, "/upload", body: sealed).json["file_id"] as? String)
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("dl-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: output) }
        // 40 MB at 8 MB/s: about 5 s, far more than the kernel's socket buffers hold, and well
        // inside the 10 s grace period.
        let curl = Process()
        curl.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        curl.arguments = ["curl", "-s", "-f", "--limit-rate", "8M", "-o", output.path, "-H", "Authorization: Bearer \(client.token!)",
                          server.base + "/download/\(id)"]
        try curl.run()
        try await Task.sleep(for: .milliseconds(1000))
        kill(server.process.processIdentifier, SIGTERM)
        await curl.exited()
        await server.process.exited()
        #expect(curl.terminationStatus == 0)
        #expect(fingerprint(try Data(contentsOf: output)) == fingerprint(sealed))
        #expect(server.process.terminationReason == .exit && server.process.terminationStatus == 0)
    }

    /// A crash after the manifest is written but before the bytes are moved into place is finished
    /// at the next start.
    @Test func aCompletionInterruptedByACrashIsFinishedAtStart() async throws {
        let server = try await TestGateway.start()
        defer { server.removeData() }
        let client = try await HTTP.login(server.base)
        let (key, plaintext, sealed) = try await sealedStream(plaintextSize: 300_000)
        let path = try await client.createUpload(length: sealed.count)
        let id = try #require(FileID(String(path.split(separator: "/").last!)))
        let state = try #require(try await server.gateway.registry.upload(id))
        #expect(try await client.patch(path, offset: 0, sealed).status == 204)
        await server.stop()
        // Put the data directory back in the state of that crash.
        let data = server.dataDirectory + "/data"
        #expect(rename("\(data)/blobs/\(id)", "\(data)/partial/\(id)") == 0)
        try await server.gateway.registry.putUpload(state)
        let restarted = try await TestGateway.start(dataDirectory: server.dataDirectory)
        let again = try await HTTP.login(restarted.base)
        let body = try await again.send(.GET, "/download/\(id)").body
        #expect(fingerprint(try await openStream(body, key: key)) == fingerprint(plaintext))
        #expect(try await again.send(.HEAD, path, headers: [("Tus-Resumable", "1.0.0")]).header("Upload-Offset") == "\(sealed.count)")
        #expect(try await restarted.recordedRegistry().uploads.isEmpty)
        await restarted.stop()
    }
}


extension ResilienceTests {
    /// A gateway killed with SIGKILL mid-download: the download fails as a lost connection and keeps
    /// its verified chunks; after a restart the same download resumes and ends byte-identical.
    @Test(arguments: TestStore.allCases)
    func aGatewayKilledMidDownloadLeavesItResumable(store: TestStore) async throws {
        let dataDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("gw-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dataDirectory) }
        var server = try await ServerProcess(dataDirectory: dataDirectory, store: store)
        var http = try await HTTP.login(server.base)
        let (key, plaintext, sealed) = try await sealedStream(plaintextSize: 64 << 20, chunkSize: 1 << 20)
        let id = try #require(try await http.send(.POST, "/upload", body: sealed).json["file_id"] as? String)
        let output = dataDirectory + "-out"
        defer { try? FileManager.default.removeItem(atPath: output) }
        let partial = Downloader.partialPath(for: output, fileID: id)
        defer { try? FileManager.default.removeItem(atPath: partial); try? FileManager.default.removeItem(atPath: partial + ".progress") }

        let pid = server.process.processIdentifier
        let killed = Mutex(false)
        do {
            try await Downloader(client: GatewayClient(server: server.base, token: http.token), key: key).download(id, to: output) { _ in
                // At the first verified chunk, while most of the file is still to come; a slow
                // consumer keeps the rest from being read ahead.
                let first = killed.withLock { wasKilled in
                    defer { wasKilled = true }
                    return !wasKilled
                }
                if first { kill(pid, SIGKILL) }
                usleep(5000)
            }
            Issue.record("the download finished although its gateway was killed")
        } catch let error as ClientError {
            guard case .connectionLost = error else { Issue.record("unexpected error: \(error)"); return }
        }
        await server.process.exited()
        #expect(!FileManager.default.fileExists(atPath: output))
        let progress = try String(contentsOfFile: partial + ".progress", encoding: .utf8)
        let stripes = progress.split(separator: "\n").dropFirst().map { $0.split(separator: " ").compactMap { Int($0) } }
        #expect(stripes.contains { $0.count == 3 && $0[2] > $0[0] }, "some chunks were verified and recorded: \(progress)")

        server = try await ServerProcess(dataDirectory: dataDirectory, store: store)
        defer { server.kill() }
        http = try await HTTP.login(server.base)
        try await Downloader(client: GatewayClient(server: server.base, token: http.token), key: key).download(id, to: output)
        #expect(fingerprint(try Data(contentsOf: URL(fileURLWithPath: output))) == fingerprint(plaintext))
        #expect(!FileManager.default.fileExists(atPath: partial))
    }
}
