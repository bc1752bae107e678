import Foundation
import NIOCore
import SafeChatAPI
import SafeChatGateway
import SealedFormat
import Testing
@testable import SafeChatS3
import SafeChatTestSupport

/// The S3 store on a real object store (SeaweedFS from `.ci/services`, which checks every
/// signature): whatever the sizes of the appends, the checkpoints, roll-backs and re-opens, the
/// object holds exactly the bytes kept; nothing of an upload outlives it; what the store changes
/// behind the gateway's back is caught.
@Suite struct S3BlobStoreTests {
    static func pattern(_ count: Int, seed: Int) -> [UInt8] {
        var state = UInt64(truncatingIfNeeded: seed) &* 0x9E37_79B9_7F4A_7C15 | 1
        var words = [UInt64](repeating: 0, count: (count + 7) / 8)
        for i in words.indices {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            words[i] = state
        }
        return Array(words.withUnsafeBytes { $0.prefix(count) })
    }

    static func freshStore() async throws -> S3BlobStore {
        try await TestObjectStore.fromEnvironment().blobStore(prefix: "store-tests/\(UUID().uuidString)")
    }

    @Test func appendsCheckpointsRollBacksAndReopensKeepExactlyTheKeptBytes() async throws {
        let store = try await Self.freshStore()
        let id = FileID.random()
        var expected: [UInt8] = []
        var checkpoint: BlobCheckpoint? = nil
        var blob = try await store.openPartial(id, at: 0, checkpoint: nil, sizeLimit: 1 << 30)
        // Appends of many sizes across 8 MiB parts, each request made durable and recorded, some
        // ending mid-part (a tail object), one exactly on a part boundary.
        let requests: [[Int]] = [[1, 4095], [3_000_000, 7], [5_000_000, 385_793], [9_000_000], [123_457, 1], [6_000_000, 10_000_000]]
        for (n, sizes) in requests.enumerated() {
            for (m, size) in sizes.enumerated() {
                let bytes = Self.pattern(size, seed: n * 10 + m)
                try await blob.append(ByteBuffer(bytes: bytes))
                expected += bytes
                #expect(blob.length == Int64(expected.count))
            }
            checkpoint = try await blob.makeDurable(final: false)
            await blob.checkpointRecorded()
            if n % 2 == 1 {
                // The gateway stopped: reopened from the record alone.
                await blob.close()
                blob = try await store.openPartial(id, at: Int64(expected.count), checkpoint: checkpoint, sizeLimit: 1 << 30)
            }
        }
        // A request rolled back after its bytes went out (parts and a tail): back to the record.
        try await blob.append(ByteBuffer(bytes: Self.pattern(12_000_000, seed: 99)))
        _ = try await blob.makeDurable(final: false)
        try await blob.truncate(to: Int64(expected.count))
        #expect(blob.length == Int64(expected.count))
        let last = Self.pattern(1_234_567, seed: 7)
        try await blob.append(ByteBuffer(bytes: last))
        expected += last
        checkpoint = try await blob.makeDurable(final: true)
        await blob.checkpointRecorded()
        await blob.close()
        // A record whose offset does not match is refused, not trusted.
        await #expect(throws: S3IntegrityError.self) {
            try await store.openPartial(id, at: Int64(expected.count) - 1, checkpoint: checkpoint, sizeLimit: 1 << 30)
        }

        try await store.promote(id, size: Int64(expected.count), checkpoint: checkpoint)
        try await store.promote(id, size: Int64(expected.count), checkpoint: checkpoint)  // again, as after a crash: finds it done
        let inventory = try await store.inventory()
        #expect(inventory.files.count == 1 && inventory.multipartUploads.isEmpty && inventory.tails.isEmpty, "\(inventory)")
        let reader = try await store.openBlob(id, size: Int64(expected.count))
        let ranges = [(0, 1), (1, 4095), (8_388_607, 2), (8_388_608, 8_388_608), (expected.count - 1, 1), (expected.count - 5000, 5000),
                      (0, expected.count)]
        for (offset, count) in ranges {
            var buffer = ByteBuffer()
            try await reader.read(at: Int64(offset), count: count, into: &buffer)
            #expect(buffer.readableBytesView.elementsEqual(expected[offset..<(offset + count)]), "range \(offset) + \(count)")
        }
        try await store.removeBlob(id)
        #expect(try await store.inventory().files.isEmpty)
    }

    /// A removed upload leaves nothing: its multipart upload aborted (and one a crash left
    /// unrecorded), its tail objects deleted, as awscli, an independent client, lists them.
    @Test func aRemovedUploadLeavesNothingInTheBucket() async throws {
        let settings = try TestObjectStore.fromEnvironment()
        let prefix = "store-tests/\(UUID().uuidString)"
        let store = try await settings.blobStore(prefix: prefix)
        let id = FileID.random()
        let blob = try await store.openPartial(id, at: 0, checkpoint: nil, sizeLimit: 1 << 30)
        try await blob.append(ByteBuffer(bytes: Self.pattern(20_000_000, seed: 1)))
        let checkpoint = try await blob.makeDurable(final: false)
        await blob.checkpointRecorded()
        await blob.close()
        // An upload begun and never recorded (the gateway crashed before writing its state).
        let orphan = try await store.openPartial(id, at: 0, checkpoint: nil, sizeLimit: 1 << 30)
        try await orphan.append(ByteBuffer(bytes: Self.pattern(9_000_000, seed: 2)))
        await orphan.close()

        func listed() async throws -> (uploads: String, objects: String) {
            (try await settings.aws(["s3api", "list-multipart-uploads", "--bucket", settings.bucket, "--prefix", prefix, "--output", "text"]),
             try await settings.aws(["s3api", "list-objects-v2", "--bucket", settings.bucket, "--prefix", prefix, "--query", "Contents[].Key",
                                     "--output", "text"]))
        }
        let before = try await listed()
        #expect(before.uploads.components(separatedBy: "UPLOADS").count - 1 == 2, "\(before.uploads)")
        #expect(before.objects.contains("/tail-"), "\(before.objects)")
        try await store.removePartial(id, checkpoint: checkpoint)
        let after = try await listed()
        #expect(!after.uploads.contains("UPLOADS"), "\(after.uploads)")
        #expect(after.objects.trimmingCharacters(in: .whitespacesAndNewlines) == "None", "\(after.objects)")
    }

    /// The store is not trusted to keep what it was given: a tail object changed behind the
    /// gateway's back fails the resume, and an object replaced after completion fails the check.
    @Test func bytesTheStoreChangedAreCaught() async throws {
        let settings = try TestObjectStore.fromEnvironment()
        let store = try await Self.freshStore()
        let id = FileID.random()
        var blob = try await store.openPartial(id, at: 0, checkpoint: nil, sizeLimit: 1 << 30)
        try await blob.append(ByteBuffer(bytes: Self.pattern(1_000_000, seed: 3)))
        var checkpoint = try #require(try await blob.makeDurable(final: false))
        await blob.checkpointRecorded()
        await blob.close()
        let tail = try #require(try S3UploadCheckpoint(checkpoint).tail)
        var changed = Self.pattern(1_000_000, seed: 3)
        changed[500_000] ^= 1
        try await store.client.put(tail.key, ByteBuffer(bytes: changed))
        blob = try await store.openPartial(id, at: 1_000_000, checkpoint: checkpoint, sizeLimit: 1 << 30)
        await #expect(throws: S3IntegrityError.self) { try await blob.append(ByteBuffer(bytes: [1])) }
        await blob.close()

        try await store.client.put(tail.key, ByteBuffer(bytes: Self.pattern(1_000_000, seed: 3)))
        blob = try await store.openPartial(id, at: 1_000_000, checkpoint: checkpoint, sizeLimit: 1 << 30)
        try await blob.append(ByteBuffer(bytes: [1]))
        checkpoint = try #require(try await blob.makeDurable(final: true))
        await blob.close()
        try await store.promote(id, size: 1_000_001, checkpoint: checkpoint)
        let key = store.fileKey(id)
        _ = try await settings.aws(["s3api", "put-object", "--bucket", settings.bucket, "--key", key, "--body", "/etc/hostname"])
        await #expect(throws: S3IntegrityError.self) { try await store.promote(id, size: 1_000_001, checkpoint: checkpoint) }
        try await store.removeBlob(id)
    }

    /// Part sizes hold the largest file in 10 000 parts, and never go under S3's minimum.
    @Test func partSizesFitTheLargestFile() {
        #expect(S3PartSize.forUpload(upTo: 1) == 8 << 20)
        #expect(S3PartSize.forUpload(upTo: 64 << 30) == 8 << 20)
        for limit: Int64 in [100 << 30, 1 << 40, 5 << 40, 123_456_789_012] {
            let size = S3PartSize.forUpload(upTo: limit)
            #expect(Int64(size) * 10_000 >= limit && size % (1 << 20) == 0 && size >= 5 << 20, "\(limit)")
        }
    }

    /// A store that does not answer is unavailable (503 for clients), and one that refuses the
    /// credentials is an error naming S3's code: SeaweedFS here checks every signature.
    @Test func unreachableStoresAndBadCredentialsAreToldApart() async throws {
        let settings = try TestObjectStore.fromEnvironment()
        let nowhere = S3BlobStore(settings: try S3Settings(location: "s3://\(settings.bucket)", endpoint: "http://127.0.0.1:9", region: nil,
                                                           credentials: S3Credentials(accessKeyID: "x", secretAccessKey: "y"), maxObjectSize: 1 << 30))
        await #expect(throws: StorageUnavailable.self) { try await nowhere.check() }
        let forged = S3BlobStore(settings: try S3Settings(location: "s3://\(settings.bucket)", endpoint: settings.endpoint, region: nil,
                                                          credentials: S3Credentials(accessKeyID: settings.accessKeyID, secretAccessKey: "not-the-secret"),
                                                          maxObjectSize: 1 << 30))
        let refused = await #expect(throws: S3ServiceError.self) { try await forged.check() }
        #expect(refused?.status == 403, "\(String(describing: refused))")
    }

    @Test func uploadMemoryIsSharedAndWaitedFor() async throws {
        let memory = UploadMemory(bytes: 100)
        await memory.take(60)
        #expect(await memory.takeIfFree(50) == false)
        let waiter = Task { await memory.take(50); return true }
        try await Task.sleep(for: .milliseconds(50))
        #expect(await memory.takeIfFree(10) == false, "a waiter is first in line")
        await memory.give(60)
        #expect(await waiter.value)
        #expect(await memory.takeIfFree(50))
        #expect(await memory.takeIfFree(1) == false)
    }
}
