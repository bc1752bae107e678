import Foundation
import NIOCore
import SafeChatGateway
import SealedFormat

/// An upload's bytes on their way to S3. Appends fill a part-sized buffer; each full buffer is
/// sent as the next part of the multipart upload while the next one fills (two sends at most,
/// within the gateway's ``UploadMemory``). Making the bytes durable waits for the sends, then
/// stores what is left as a tail object, or, when the stream is complete, as the final part.
final class S3PartialBlob: PartialBlob, @unchecked Sendable {
    // Driven by one request at a time (the upload manager hands a partial to a single appender);
    // each part send is a task that touches only the buffer handed to it.
    private let client: S3Client
    private let memory: UploadMemory
    private let key: String
    private let tailPrefix: String
    private let partSize: Int
    /// What the gateway has recorded (what a roll-back returns to).
    private var recorded: S3UploadCheckpoint
    /// What was last made durable.
    private var durable: S3UploadCheckpoint
    private var uploadID: String?
    /// Parts sent and confirmed.
    private var parts: [S3UploadCheckpoint.Part]
    private var sending: [Task<(S3UploadCheckpoint.Part, ByteBuffer), any Error>] = []
    /// The bytes after the parts sent; nil until memory is taken for it.
    private var staging: ByteBuffer?
    /// The recorded tail, not read back yet (it is, before the first append).
    private var unreadTail: S3UploadCheckpoint.Tail?
    /// Tail objects written by this blob: deleted once a later checkpoint is recorded, or rolled back.
    private var tailsWritten: [String] = []
    private var heldMemory = 0
    private var appendedSinceDurable = false
    private(set) var length: Int64

    /// Sends running while the next part fills.
    static let sendsAhead = 2

    init(client: S3Client, memory: UploadMemory, key: String, tailPrefix: String, recorded: S3UploadCheckpoint) {
        self.client = client
        self.memory = memory
        self.key = key
        self.tailPrefix = tailPrefix
        self.recorded = recorded
        durable = recorded
        partSize = recorded.partSize
        uploadID = recorded.uploadID
        parts = recorded.parts
        unreadTail = recorded.tail
        length = recorded.length
    }

    func append(_ bytes: ByteBuffer) async throws {
        var rest = bytes
        guard rest.readableBytes > 0 else { return }
        var buffer = try await takeStaging()
        appendedSinceDurable = true
        while rest.readableBytes > 0 {
            let count = min(rest.readableBytes, partSize - buffer.readableBytes)
            buffer.writeImmutableBuffer(rest.readSlice(length: count)!)
            length += Int64(count)
            if buffer.readableBytes == partSize {
                buffer = try await send(buffer)
            }
        }
        staging = buffer
    }

    /// The staging buffer, taken out (the caller puts it back): memory is taken for it first, and
    /// the recorded tail read back into it.
    private func takeStaging() async throws -> ByteBuffer {
        if let staging {
            self.staging = nil
            return staging
        }
        await memory.take(partSize)
        heldMemory += partSize
        var buffer = ByteBufferAllocator().buffer(capacity: partSize)
        if let tail = unreadTail {
            try await client.read(tail.key, at: 0, count: tail.size, into: &buffer)
            let md5 = buffer.withUnsafeReadableBytes { MD5.hash($0) }
            guard Secrets.hex(md5) == tail.md5 else {
                throw S3IntegrityError("\(tail.key) does not hold the bytes recorded for it (MD5 \(Secrets.hex(md5)), recorded \(tail.md5))")
            }
            unreadTail = nil
        }
        return buffer
    }

    /// Starts sending `full` as the next part; returns the buffer to fill next (new memory if it is
    /// free and fewer than ``sendsAhead`` sends run, else the buffer of the oldest send, once done).
    private func send(_ full: ByteBuffer) async throws -> ByteBuffer {
        let uploadID = try await ensureUpload()
        let number = parts.count + sending.count + 1
        let client = client, key = key
        sending.append(Task {
            let md5 = full.withUnsafeReadableBytes { MD5.hash($0) }
            try await client.uploadPart(key, uploadID: uploadID, number: number, full, md5: md5)
            return (.init(number: number, size: full.readableBytes, md5: Secrets.hex(md5)), full)
        })
        if sending.count <= Self.sendsAhead, await memory.takeIfFree(partSize) {
            heldMemory += partSize
            return ByteBufferAllocator().buffer(capacity: partSize)
        }
        var reused = try await settleOldest()
        reused.clear()
        return reused
    }

    /// Waits for the oldest send; returns its buffer.
    private func settleOldest() async throws -> ByteBuffer {
        let (part, buffer) = try await sending.removeFirst().value
        parts.append(part)
        return buffer
    }

    private func ensureUpload() async throws -> String {
        if let uploadID { return uploadID }
        let created = try await client.createMultipartUpload(key)
        uploadID = created
        return created
    }

    func makeDurable(final: Bool) async throws -> BlobCheckpoint? {
        while !sending.isEmpty {
            _ = try await settleOldest()
            await memory.give(partSize)  // the staging buffer stays; the sent ones go
            heldMemory -= partSize
        }
        guard appendedSinceDurable || final else { return durable.encoded }
        var tail: S3UploadCheckpoint.Tail?
        var buffer = try await takeStaging()
        defer { staging = buffer }
        if final {
            if buffer.readableBytes > 0 || parts.isEmpty {
                let uploadID = try await ensureUpload()
                let md5 = buffer.withUnsafeReadableBytes { MD5.hash($0) }
                try await client.uploadPart(key, uploadID: uploadID, number: parts.count + 1, buffer, md5: md5)
                parts.append(.init(number: parts.count + 1, size: buffer.readableBytes, md5: Secrets.hex(md5)))
                buffer.clear()
            }
        } else if buffer.readableBytes > 0 {
            let tailKey = tailPrefix + "tail-\(length)-\(Secrets.randomHex(4))"
            let md5 = try await client.put(tailKey, buffer)
            tailsWritten.append(tailKey)
            tail = .init(key: tailKey, size: buffer.readableBytes, md5: Secrets.hex(md5))
        }
        durable = S3UploadCheckpoint(partSize: partSize, uploadID: uploadID, parts: parts, tail: tail, final: final)
        appendedSinceDurable = false
        return durable.encoded
    }

    func checkpointRecorded() async {
        let stale = ([recorded.tail?.key].compactMap { $0 } + tailsWritten).filter { $0 != durable.tail?.key }
        recorded = durable
        tailsWritten = durable.tail.map { [$0.key] } ?? []
        for key in stale { try? await client.delete(key) }  // best effort: a leftover goes when the upload ends
    }

    /// Back to the recorded state: parts sent since are replaced by the next sends (or left out when
    /// the upload is completed), tails written since are deleted, and a multipart upload begun since
    /// is aborted.
    func truncate(to newLength: Int64) async throws {
        guard newLength < length || appendedSinceDurable || durable != recorded else { return }
        guard newLength == recorded.length else {
            throw S3IntegrityError("an S3 upload rolls back only to its recorded offset \(recorded.length), not \(newLength)")
        }
        await stopSending()
        if recorded.uploadID == nil, let begun = uploadID { try? await client.abortMultipartUpload(key, uploadID: begun) }
        for key in tailsWritten where key != recorded.tail?.key { try? await client.delete(key) }
        tailsWritten = []
        uploadID = recorded.uploadID
        parts = recorded.parts
        durable = recorded
        unreadTail = recorded.tail
        staging?.clear()
        if unreadTail != nil, staging != nil {
            staging = nil
            await memory.give(partSize)
            heldMemory -= partSize
        }
        length = recorded.length
        appendedSinceDurable = false
    }

    private func stopSending() async {
        for task in sending {
            task.cancel()
            _ = try? await task.value
        }
        await memory.give(partSize * sending.count)
        heldMemory -= partSize * sending.count
        sending = []
    }

    func close() async {
        await stopSending()
        staging = nil
        await memory.give(heldMemory)
        heldMemory = 0
    }
}
