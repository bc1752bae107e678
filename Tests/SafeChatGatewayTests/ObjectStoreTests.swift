import Foundation
import NIOCore
import Testing
@testable import SafeChatGateway
import SafeChatAPI
import SafeChatS3
import SafeChatTestSupport
import SealedStream

/// What running on an object store adds: the case tusd's S3 store lost bytes in, a store that
/// goes away and comes back, a completion a crash interrupted, and a start that checks the store.
@Suite struct ObjectStoreTests {
    /// tusd pull request 1385: a deferred-length upload whose last bytes arrive in a PATCH shorter
    /// than a part, after which the length is declared and the upload finishes without another
    /// PATCH of data. tusd's S3 store completed the multipart upload without that short tail. Here
    /// the stream's FINAL record completes it, the tail goes out as the last part, and the object
    /// holds every byte; also when the tail waited in a tail object first.
    @Test(arguments: TestStore.allCases)
    func aDeferredLengthUploadEndingInAShortPatchKeepsEveryByte(store: TestStore) async throws {
        try await TestGateway.with(store: store) { server in
            let client = try await HTTP.login(server.base)
            let (key, plaintext, sealed) = try await sealedStream(plaintextSize: 12_000_000, chunkSize: 1 << 20)
            let n = sealed.count
            // tusd's case: a part and more, then the short rest (no length yet), then the length alone.
            let path = try await client.createDeferredUpload()
            #expect(try await client.patch(path, offset: 0, sealed.prefix(9_000_000)).status == 204)
            let last = try await client.patch(path, offset: 9_000_000, sealed[9_000_000...])
            #expect(last.status == 204 && last.header("Upload-Offset") == "\(n)")
            let declared = try await client.patch(path, offset: n, [UInt8](), extraHeaders: [("Upload-Length", "\(n)")])
            #expect(declared.status == 204 && declared.header("Upload-Offset") == "\(n)", "\(declared.status) \(declared.text)")
            let head = try await client.send(.HEAD, path, headers: [("Tus-Resumable", "1.0.0")])
            #expect(head.header("Upload-Offset") == "\(n)" && head.header("Upload-Length") == "\(n)")
            let id = String(path.split(separator: "/").last!)
            let body = try await client.send(.GET, "/download/\(id)").body
            #expect(body.count == n && fingerprint(body) == fingerprint(sealed))
            #expect(fingerprint(try await openStream(body, key: key)) == fingerprint(plaintext))

            // The short rest kept as a tail first (an interrupted request), then finished by a PATCH
            // that declares the length with the last 100 bytes.
            let (_, _, second) = try await sealedStream(plaintextSize: 12_000_000, chunkSize: 1 << 20)
            let path2 = try await client.createDeferredUpload()
            #expect(try await client.patch(path2, offset: 0, second.prefix(9_000_000)).status == 204)
            #expect(try await client.patch(path2, offset: 9_000_000, second[9_000_000..<(second.count - 100)]).status == 204)
            let final = try await client.patch(path2, offset: second.count - 100, second.suffix(100),
                                               extraHeaders: [("Upload-Length", "\(second.count)")])
            #expect(final.status == 204 && final.header("Upload-Offset") == "\(second.count)")
            let id2 = String(path2.split(separator: "/").last!)
            #expect(fingerprint(try await client.send(.GET, "/download/\(id2)").body) == fingerprint(second))
            let stored = try await server.storedBlobs()
            #expect(stored.files.count == 2 && stored.uploads.isEmpty, "\(stored)")
        }
    }

    /// The store goes away mid-upload: requests that need it get 503 with a JSON body and
    /// Retry-After (never a 500), what was acknowledged stays acknowledged; when it is back the
    /// upload resumes, finishes, and downloads byte for byte.
    @Test func aStoreThatStopsAnswersWith503sAndUploadsResumeWhenItIsBack() async throws {
        let weed = try PrivateSeaweedFS()
        defer { weed.remove() }
        try await weed.start()
        try await weed.makeBucket("outage")
        let server = try await TestGateway.start(blobs: try weed.blobStore(bucket: "outage"))
        defer { server.removeData() }
        let client = try await HTTP.login(server.base)
        let (_, _, small) = try await sealedStream(plaintextSize: 300_000)
        let smallID = try #require(try await client.send(.POST, "/upload", body: small).json["file_id"] as? String)
        let (key, plaintext, sealed) = try await sealedStream(plaintextSize: 24_000_000, chunkSize: 1 << 20)
        let path = try await client.createUpload(length: sealed.count)
        let acknowledged = 10_000_003
        #expect(try await client.patch(path, offset: 0, sealed.prefix(acknowledged)).status == 204)

        weed.stop()
        let refused = try await client.patch(path, offset: acknowledged, sealed[acknowledged...])
        #expect(refused.status == 503, "\(refused.status) \(refused.text)")
        #expect(refused.json["error"] as? String == "storage_unavailable" && refused.header("Retry-After") != nil, "\(refused.text)")
        let download = try await client.send(.GET, "/download/\(smallID)")
        #expect(download.status == 503 && download.json["error"] as? String == "storage_unavailable", "\(download.status) \(download.text)")
        let created = try await client.send(.POST, "/upload", body: small)
        #expect(created.status == 503 || created.status == 409, "\(created.status) \(created.text)")
        let head = try await client.send(.HEAD, path, headers: [("Tus-Resumable", "1.0.0")])
        #expect(head.status == 200 && head.header("Upload-Offset") == "\(acknowledged)")

        try await weed.start()
        var resumed = try await client.patch(path, offset: acknowledged, sealed[acknowledged...])
        for _ in 0..<20 where resumed.status == 503 {  // the store's volumes may take a moment more
            try await Task.sleep(for: .milliseconds(500))
            resumed = try await client.patch(path, offset: acknowledged, sealed[acknowledged...])
        }
        #expect(resumed.status == 204, "\(resumed.status) \(resumed.text)")
        let id = String(path.split(separator: "/").last!)
        let body = try await client.send(.GET, "/download/\(id)").body
        #expect(fingerprint(try await openStream(body, key: key)) == fingerprint(plaintext))
        #expect(fingerprint(try await client.send(.GET, "/download/\(smallID)").body) == fingerprint(small))
        #expect(try await server.storedBlobs().uploads.isEmpty)
        await server.stop()
    }

    /// Every byte in and recorded, the gateway stopped before the file was made (or the store failed
    /// then): the next start finishes it.
    @Test(arguments: TestStore.allCases)
    func aCompleteUploadThatIsNotYetAFileIsFinishedAtStart(store: TestStore) async throws {
        let server = try await TestGateway.start(store: store)
        defer { server.removeData() }
        let client = try await HTTP.login(server.base)
        let (key, plaintext, sealed) = try await sealedStream(plaintextSize: 9_000_000, chunkSize: 1 << 20)
        let path = try await client.createUpload(length: sealed.count)
        let id = try #require(FileID(String(path.split(separator: "/").last!)))
        #expect(try await client.patch(path, offset: 0, sealed.dropLast(5)).status == 204)
        // The last request's work up to the completion, done by hand: its bytes in, the state recorded.
        var state = try #require(try await server.gateway.registry.upload(id))
        let blob = try await server.gateway.blobs.openPartial(id, at: state.offset, checkpoint: state.blobCheckpoint, sizeLimit: state.length!)
        try await blob.append(ByteBuffer(bytes: sealed.suffix(5)))
        state.blobCheckpoint = try await blob.makeDurable(final: true)
        await blob.close()
        state.records += try state.validator.consume(Array(sealed.suffix(5))).map {
            .init(index: $0.index, offset: $0.offset, length: $0.length, plaintextLength: $0.plaintextLength)
        }
        state.offset = Int64(sealed.count)
        try await server.gateway.registry.putUpload(state)
        await server.stop()

        let restarted = try await TestGateway.start(dataDirectory: server.dataDirectory, store: store)
        let again = try await HTTP.login(restarted.base)
        let body = try await again.send(.GET, "/download/\(id)").body
        #expect(fingerprint(try await openStream(body, key: key)) == fingerprint(plaintext))
        #expect(try await restarted.gateway.registry.upload(id) == nil)
        #expect(try await restarted.storedBlobs().uploads.isEmpty)
        await restarted.stop()
    }

    /// At start the gateway checks the store, and stops with one line naming the endpoint and the
    /// store's error; credentials come from the environment and never reach its log.
    @Test func startChecksTheStoreAndNeverLogsCredentials() async throws {
        let store = try TestObjectStore.fromEnvironment()
        let dataDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("gw-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dataDirectory) }
        let safechat = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("safechat").path
        var environment = ProcessInfo.processInfo.environment
        environment["AWS_ACCESS_KEY_ID"] = store.accessKeyID
        environment["AWS_SECRET_ACCESS_KEY"] = store.secretAccessKey
        func serve(_ options: [String], environment: [String: String]) async throws -> (status: Int32, errors: String) {
            let run = try await runProcess([safechat, "serve", "--port", "0", "--data-dir", dataDirectory] + options,
                                           environment: environment, errorsApart: true)
            return (run.status, run.errors)
        }
        let cases: [([String], [String: String], [String])] = [
            (["--blob-store", "s3://\(store.bucket)", "--s3-endpoint", "http://127.0.0.1:9"], environment, ["http://127.0.0.1:9", "cannot be used"]),
            (["--blob-store", "s3://no-such-bucket-here", "--s3-endpoint", store.endpoint], environment, [store.endpoint, "NoSuchBucket"]),
            (["--blob-store", "s3://\(store.bucket)", "--s3-endpoint", store.endpoint],
             environment.merging(["AWS_SECRET_ACCESS_KEY": "wrong"]) { $1 }, ["403"]),
            (["--blob-store", "s3://\(store.bucket)", "--s3-endpoint", store.endpoint],
             environment.merging(["AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "HOME": dataDirectory]) { $1 }, ["no S3 credentials"]),
            (["--blob-store", "s3://\(store.bucket)", "--s3-endpoint", "http://key:secret@127.0.0.1:9"], environment, ["must not hold credentials"]),
        ]
        for (options, environment, expected) in cases {
            let (status, errors) = try await serve(options, environment: environment)
            #expect(status != 0, "\(options)")
            let lines = errors.split(separator: "\n")
            #expect(lines.count == 1, "\(errors)")
            for text in expected { #expect(errors.contains(text), "\(options): \(errors)") }
            #expect(!errors.contains(store.secretAccessKey))
        }

        let server = try await ServerProcess(dataDirectory: dataDirectory, store: .s3)
        defer { server.kill() }
        let client = try await HTTP.login(server.base)
        let (_, _, sealed) = try await sealedStream(plaintextSize: 100_000)
        #expect(try await client.send(.POST, "/upload", body: sealed).status == 201)
        #expect(server.log.contains("blob_store=") && !server.log.contains(store.secretAccessKey))
    }
}
