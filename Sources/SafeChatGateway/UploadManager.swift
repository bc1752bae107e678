import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import SealedStream

/// Owns every upload in progress: who may append, at which offset, and what is durable.
///
/// A request body is streamed by an ``AppendSession`` outside the actor (uploads run in parallel);
/// the actor only hands sessions out, one per upload at a time, and records their outcome. An offset
/// is acknowledged only after the bytes are fsynced and the upload's state (with its framing
/// checkpoint) is written to the registry.
public actor UploadManager {
    let registry: any Registry
    let blobs: any BlobStore
    let configuration: GatewayConfiguration
    let logger: Logger
    private var busy: Set<FileID> = []
    /// Running SHA-256 of each upload's bytes, valid up to its `offset`; rebuilt from disk if lost.
    private var hashes: [FileID: RunningHash] = [:]

    public init(registry: any Registry, blobs: any BlobStore, configuration: GatewayConfiguration, logger: Logger) {
        self.registry = registry
        self.blobs = blobs
        self.configuration = configuration
        self.logger = logger
    }

    /// Registers a new upload. `length` is the declared sealed size (nil when not known yet).
    public func create(owner: String, length: Int64?, metadata: [String: String]) async throws -> UploadState {
        if let length {
            guard length <= configuration.maxFileSize else { throw Self.tooLarge(configuration.maxFileSize) }
            guard try await registry.usage(of: owner) + length <= configuration.userQuota else { throw Self.overQuota }
        }
        let now = Date()
        let state = UploadState(
            uploadID: FileID.random(), owner: owner, length: length, offset: 0, createdAt: now,
            expiresAt: now.addingTimeInterval(configuration.uploadExpiry), metadata: metadata, validator: FramingValidator())
        try blobs.openPartial(state.uploadID, truncatingTo: 0).close()
        try await registry.putUpload(state)
        return state
    }

    /// The upload `id` if `user` owns it; anyone else learns nothing (404).
    public func upload(_ id: FileID, for user: String) async throws -> UploadState {
        guard let state = try await registry.upload(id), state.owner == user else { throw GatewayError.notFound("upload") }
        return state
    }

    /// creation-defer-length: fixes the length of an upload created without one.
    func declareLength(_ id: FileID, user: String, length: Int64) async throws {
        var state = try await upload(id, for: user)
        if let existing = state.length {
            guard existing == length else { throw GatewayError.badRequest("Upload-Length is already \(existing)") }
            return
        }
        guard !busy.contains(id) else { throw GatewayError(.init(code: 423, reasonPhrase: "Locked"), "upload_busy", "another request is appending to this upload") }
        guard length <= configuration.maxFileSize else { throw Self.tooLarge(configuration.maxFileSize) }
        guard try await registry.usage(of: user) - state.offset + length <= configuration.userQuota else { throw Self.overQuota }
        state.length = length
        try await registry.putUpload(state)
    }

    /// Hands out the right to append to `id` at `offset`.
    func beginAppend(_ id: FileID, user: String, offset: Int64, checksum: (DigestKind, [UInt8])?) async throws -> AppendSession {
        let state = try await upload(id, for: user)
        guard !busy.contains(id) else {
            throw GatewayError(.init(code: 423, reasonPhrase: "Locked"), "upload_busy", "another request is appending to this upload")
        }
        guard offset == state.offset else {
            throw GatewayError(.conflict, "offset_mismatch", "Upload-Offset \(offset) does not match the upload's offset \(state.offset)")
        }
        let partial = try blobs.openPartial(id, truncatingTo: state.offset)
        let hash: RunningHash
        if let cached = hashes[id], cached.offset == state.offset {
            hash = cached
        } else {
            hash = try RunningHash(rehashing: partial, upTo: state.offset)
        }
        hashes[id] = nil
        busy.insert(id)
        // The most this upload may grow to: its declared length or the maximum file size, and what
        // the quota leaves once the user's other files and uploads are counted.
        let lengthLimit = min(state.length ?? configuration.maxFileSize, configuration.maxFileSize)
        let usedElsewhere = try await registry.usage(of: user) - (state.length ?? state.offset)
        let quotaLimit = configuration.userQuota - usedElsewhere
        return AppendSession(state: state, partial: partial, hash: hash, checksum: checksum,
                             limit: max(state.offset, min(lengthLimit, quotaLimit)),
                             limitIsQuota: quotaLimit < lengthLimit, maxFileSize: configuration.maxFileSize)
    }

    /// How an append ended.
    enum AppendEnd {
        /// The body arrived whole.
        case completed
        /// The connection broke: keep every validated byte that arrived.
        case interrupted
        /// The request is refused: roll the upload back to where the request started.
        case refused
    }

    /// Records the outcome of `session`; returns the new state and, when the stream is complete,
    /// the finished file's manifest.
    func endAppend(_ session: AppendSession, _ end: AppendEnd) async throws -> (UploadState, FileManifest?) {
        let id = session.state.uploadID
        defer { busy.remove(id); session.partial.close() }
        var state = session.state
        var keep = end != .refused
        if keep, let expected = session.checksumExpected {
            // A chunk whose checksum cannot be verified (mismatch, or cut short) is discarded whole.
            keep = end == .completed && session.checksumActual() == expected
            if !keep {
                try session.partial.truncate(to: state.offset)
                if end == .completed {
                    throw GatewayError(HTTPResponse.Status(code: 460, reasonPhrase: "Checksum Mismatch"), "checksum_mismatch",
                                       "the request body does not match its Upload-Checksum; nothing was stored")
                }
                return (state, nil)
            }
        }
        guard keep else {
            try session.partial.truncate(to: state.offset)
            return (state, nil)
        }
        try session.partial.sync()
        state.offset = session.partial.length
        state.validator = session.validator
        if state.validator.isComplete {
            if let length = state.length, length != state.offset {
                try session.partial.truncate(to: session.state.offset)
                throw GatewayError.badRequest("the sealed stream ended at \(state.offset) bytes but Upload-Length is \(length)")
            }
            let manifest = try await finish(state, hash: session.hash)
            return (state, manifest)
        }
        try await registry.putUpload(state)
        hashes[id] = session.hash
        return (state, nil)
    }

    /// Turns a complete upload into a file: its manifest is written, then its bytes take their final name.
    private func finish(_ state: UploadState, hash: RunningHash) async throws -> FileManifest {
        let reader = try blobs.openPartial(state.uploadID, truncatingTo: state.offset)
        defer { reader.close() }
        let header = state.validator.header!
        let records = try RecordScanner.scan(reader, header: header, length: state.offset)
        let manifest = FileManifest(
            fileID: state.uploadID, owner: state.owner, createdAt: Date(), expiresAt: nil, size: state.offset,
            plaintextSize: state.validator.plaintextLength, chunkSize: header.chunkSize, header: header,
            sha256: Secrets.hex(hash.finalize()), metadata: state.metadata, records: records)
        try await registry.putFile(manifest)
        try blobs.promote(state.uploadID)
        try await registry.removeUpload(state.uploadID)
        logger.info("file stored", metadata: ["file_id": "\(manifest.fileID)", "owner": "\(manifest.owner)", "bytes": "\(manifest.size)"])
        return manifest
    }

    /// Finishes what a crash interrupted between recording a file and retiring its upload: a manifest
    /// whose bytes are still under the upload's name gets them moved into place, and the upload's
    /// state is dropped. Run once at start, before requests are served.
    public func reconcile() async throws {
        for state in try await registry.uploads() {
            guard try await registry.file(state.uploadID) != nil else { continue }
            if blobs.partialExists(state.uploadID) { try blobs.promote(state.uploadID) }
            try await registry.removeUpload(state.uploadID)
            logger.notice("finished an interrupted completion", metadata: ["file_id": "\(state.uploadID)"])
        }
    }

    /// tus termination: removes an upload in progress.
    public func terminate(_ id: FileID, user: String) async throws {
        _ = try await upload(id, for: user)
        guard !busy.contains(id) else { throw GatewayError(.init(code: 423, reasonPhrase: "Locked"), "upload_busy", "a request is appending to this upload") }
        try await discard(id)
    }

    private func discard(_ id: FileID) async throws {
        try await registry.removeUpload(id)
        try blobs.removePartial(id)
        hashes[id] = nil
    }

    /// Removes uploads abandoned past their expiry; returns how many.
    @discardableResult
    public func removeExpired(now: Date = Date()) async throws -> Int {
        var removed = 0
        for state in try await registry.uploads() where state.expiresAt < now && !busy.contains(state.uploadID) {
            try await discard(state.uploadID)
            removed += 1
            logger.info("expired upload removed", metadata: ["upload_id": "\(state.uploadID)"])
        }
        return removed
    }

    static func tooLarge(_ max: Int64) -> GatewayError {
        GatewayError(.contentTooLarge, "too_large", "the file exceeds the maximum size of \(max) bytes")
    }
    static let overQuota = GatewayError(.contentTooLarge, "quota_exceeded", "the upload would exceed your storage quota")
}

/// SHA-256 of an upload's bytes so far.
final class RunningHash: @unchecked Sendable {
    // Used by one append session at a time (the manager's busy set guarantees it).
    private var digest: StreamingDigest? = StreamingDigest(.sha256)
    private(set) var offset: Int64 = 0

    init() {}

    /// Rebuilds the hash from the bytes already stored (after a restart or a rolled-back request).
    init(rehashing partial: any PartialBlob, upTo length: Int64) throws {
        while offset < length {
            let count = Int(min(Int64(4 << 20), length - offset))
            let bytes = try partial.read(at: offset, count: count)
            guard bytes.count == count else { throw FileError.truncated("upload") }
            update(bytes.withUnsafeBytes { $0 })
        }
    }

    func update(_ bytes: UnsafeRawBufferPointer) {
        digest!.update(bytes)
        offset += Int64(bytes.count)
    }

    /// The digest of everything so far; the hash cannot be updated afterwards.
    func finalize() -> [UInt8] { digest.take()!.finalize() }
}

/// One request's bytes going into an upload: framing checked first, then limits, then written.
final class AppendSession: @unchecked Sendable {
    // Driven by the one request that holds it.
    let state: UploadState
    let partial: any PartialBlob
    let hash: RunningHash
    private(set) var validator: FramingValidator
    let checksumExpected: [UInt8]?
    private var checksum: StreamingDigest?
    private let limit: Int64
    private let limitIsQuota: Bool
    private let maxFileSize: Int64

    init(state: UploadState, partial: any PartialBlob, hash: RunningHash, checksum: (DigestKind, [UInt8])?,
         limit: Int64, limitIsQuota: Bool, maxFileSize: Int64) {
        self.state = state
        self.partial = partial
        self.hash = hash
        self.validator = state.validator
        self.checksumExpected = checksum?.1
        self.checksum = checksum.map { StreamingDigest($0.0) }
        self.limit = limit
        self.limitIsQuota = limitIsQuota
        self.maxFileSize = maxFileSize
    }

    var offset: Int64 { partial.length }

    func append(_ buffer: ByteBuffer) throws {
        try buffer.withUnsafeReadableBytes { bytes in
            guard partial.length + Int64(bytes.count) <= limit else {
                if limitIsQuota { throw UploadManager.overQuota }
                if let length = state.length, partial.length + Int64(bytes.count) > length {
                    throw GatewayError(.contentTooLarge, "exceeds_length", "the body goes past the declared Upload-Length of \(length)")
                }
                throw UploadManager.tooLarge(maxFileSize)
            }
            do {
                _ = try validator.consume(bytes)
            } catch {
                throw GatewayError(.unprocessableContent, "malformed_stream",
                                   "not a valid sealed stream at byte \(validator.consumedOffset): \(error)")
            }
            try partial.append(bytes)
            hash.update(bytes)
            checksum?.update(bytes)
        }
    }

    func checksumActual() -> [UInt8]? {
        guard let digest = checksum.take() else { return nil }
        return digest.finalize()
    }
}

/// Reads the record table of a stored stream (headers only, skipping bodies) for its manifest.
enum RecordScanner {
    static func scan(_ blob: any PartialBlob, header: StreamHeader, length: Int64) throws -> [FileManifest.Record] {
        var records: [FileManifest.Record] = []
        var offset = Int64(StreamHeader.encodedLength)
        var index: UInt32 = 0
        while offset < length {
            let bytes = try blob.read(at: offset, count: RecordHeader.encodedLength)
            let record = try bytes.withUnsafeBytes { try RecordHeader.parse($0, in: header, expectedIndex: index) }
            records.append(.init(index: index, offset: offset, length: record.recordLength, plaintextLength: record.plaintextLength))
            offset += Int64(record.recordLength)
            if record.isFinal { break }
            index += 1
        }
        guard offset == length else { throw FileError.truncated("upload") }
        return records
    }
}
