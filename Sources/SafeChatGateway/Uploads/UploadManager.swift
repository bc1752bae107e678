import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOPosix
import SafeChatAPI
import SealedFormat

/// Owns every upload in progress: who may append, at which offset, and what is durable.
///
/// A request body is streamed by an ``AppendSession`` outside the actor (uploads run in parallel);
/// the actor only hands sessions out, one per upload at a time, and records their outcome. No disk
/// work runs inside it: fsyncs happen in the request before ``endAppend(_:_:)``, registry writes on
/// NIO's thread pool. An offset is acknowledged only after the bytes are fsynced and the upload's
/// state (with its framing checkpoint) is written to the registry.
public actor UploadManager {
    let registry: any Registry
    let blobs: any BlobStore
    let configuration: GatewayConfiguration
    let access: AccessPolicy
    nonisolated let quota: any QuotaStore
    let logger: Logger
    /// Told of every file completed (the chat announces those sent to a session).
    let fileStored: @Sendable (FileManifest) async throws -> Void
    private var busy: Set<FileID> = []
    /// The cross-gateway lock each append in progress holds (see ``UploadLocks``).
    let locks: any UploadLocks
    private var held: [FileID: any HeldUploadLock] = [:]
    /// Ids being created now: a second create of the same bound id waits for no one and is refused.
    private var creating: Set<FileID> = []

    init(registry: any Registry, blobs: any BlobStore, configuration: GatewayConfiguration, access: AccessPolicy, logger: Logger,
         locks: any UploadLocks = ProcessUploadLocks(), quota: (any QuotaStore)? = nil, fileStored: @escaping @Sendable (FileManifest) async throws -> Void = { _ in }) {
        self.fileStored = fileStored
        self.locks = locks
        self.registry = registry
        self.blobs = blobs
        self.configuration = configuration
        self.access = access
        self.quota = quota ?? QuotaLedger(quota: configuration.userQuota)
        self.logger = logger
    }

    /// Registers a new upload. `length` is the declared sealed size (nil when not known yet); it is
    /// reserved against the quota at once. With `header` (the stream's first 92 bytes, declared or
    /// already received) the upload's id is the one bound to it, and the stream must start with it;
    /// without, the id is random.
    func create(owner: UserID, length: Int64?, metadata: [String: String], session: FileSession? = nil,
                header: StreamHeader? = nil) async throws -> UploadState {
        let id = header.map { FileID(boundTo: $0) } ?? FileID.random()
        guard !creating.contains(id) else { throw Self.exists }
        creating.insert(id)
        defer { creating.remove(id) }
        if header != nil {
            guard try await registry.file(id) == nil, try await registry.upload(id) == nil else { throw Self.exists }
        }
        if let length {
            guard length <= configuration.maxFileSize else { throw GatewayError.tooLarge(configuration.maxFileSize) }
            guard try await quota.reserve(length, for: owner) else { throw GatewayError.overQuota }
        }
        let now = configuration.clock()
        let state = UploadState(
            uploadID: id, owner: owner, length: length, offset: 0, createdAt: now,
            expiresAt: now.addingTimeInterval(configuration.uploadExpiry), metadata: metadata,
            validator: FramingValidator(), records: [], session: session, declaredHeader: header?.encoded())
        do {
            try await registry.putUpload(state)
        } catch {
            if let length { await quota.release(length, for: owner) }
            throw error
        }
        return state
    }

    static let exists = GatewayError(.conflict, .fileExists,
                                     "a file or upload of this stream exists already: seal the file again (a new salt) to send it again")

    /// The upload `id` if `principal` may append to it (anyone else learns nothing: 404). An upload
    /// past its expiry is gone at once (410), whether or not the sweeper has removed it yet.
    func upload(_ id: FileID, for principal: Principal) async throws -> UploadState {
        guard let state = try await registry.upload(id), access.mayAppend(state, principal) else { throw GatewayError.notFound("upload") }
        if state.isExpired(at: configuration.clock()) && !state.isComplete {
            if !busy.contains(id) { try await discard(state) }
            throw GatewayError(.gone, .uploadExpired, "the upload expired at \(httpDate(state.expiresAt)); start it again")
        }
        return state
    }

    /// Whether a request is appending to `id` now (others get 423 meanwhile).
    func isBeingAppended(_ id: FileID) -> Bool { busy.contains(id) }

    /// Hands out the right to append to `id` at `offset`. `declaredLength` is an Upload-Length sent
    /// with this request (creation-defer-length); like everything else the request asks, it takes
    /// effect only if the request is not refused.
    func beginAppend(_ id: FileID, principal: Principal, offset: Int64, declaredLength: Int64?,
                     checksum: (DigestKind, [UInt8])?) async throws -> AppendSession {
        _ = try await upload(id, for: principal)
        guard !busy.contains(id) else { throw GatewayError.locked }
        busy.insert(id)
        var lock: (any HeldUploadLock)?
        var reservedUpFront: Int64 = 0
        var owner: UserID?
        do {
            lock = try await locks.tryLock(id)
            guard lock != nil else { throw GatewayError.locked }
            // Read again under the lock: another gateway may have appended meanwhile.
            let state = try await upload(id, for: principal)
            owner = state.owner
            // Removed from the session it goes to: the upload can never complete, and is dropped now.
            if let session = state.session, try await !access.sessions.isMember(state.owner, of: session.sessionID) {
                try await discard(state)
                throw GatewayError.notMember
            }
            guard offset == state.offset else {
                throw GatewayError(.conflict, .offsetMismatch, "Upload-Offset \(offset) does not match the upload's offset \(state.offset)")
            }
            var length = state.length
            if let declaredLength {
                if let existing = state.length {
                    guard existing == declaredLength else { throw GatewayError.badRequest("Upload-Length is already \(existing)") }
                } else {
                    guard declaredLength >= state.offset else { throw GatewayError.badRequest("Upload-Length is smaller than the upload's offset \(state.offset)") }
                    guard declaredLength <= configuration.maxFileSize else { throw GatewayError.tooLarge(configuration.maxFileSize) }
                    // The bytes so far are reserved already; the rest of the declared length now.
                    guard try await quota.reserve(declaredLength - state.offset, for: state.owner) else { throw GatewayError.overQuota }
                    reservedUpFront = declaredLength - state.offset
                    length = declaredLength
                }
            }
            let partial = try await blobs.openPartial(id, at: state.offset, checkpoint: state.blobCheckpoint,
                                                      sizeLimit: length ?? configuration.maxFileSize)
            held[id] = lock
            return AppendSession(state: state, partial: partial, length: length, reservedUpFront: reservedUpFront,
                                 checksum: checksum, maxFileSize: configuration.maxFileSize, quota: quota,
                                 stillAllowed: { [sessions = access.sessions] in
                                     guard let session = state.session else { return true }
                                     return try await sessions.isMember(state.owner, of: session.sessionID)
                                 })
        } catch {
            busy.remove(id)
            await lock?.release()
            if let owner { await quota.release(reservedUpFront, for: owner) }
            throw error
        }
    }

    /// How an append ended.
    enum AppendEnd {
        /// The body arrived whole.
        case completed
        /// The connection broke: keep every validated byte that arrived.
        case interrupted
        /// The request is refused: the upload stays exactly as it was before the request.
        case refused
    }

    /// Records the outcome of `session`, whose bytes the caller has made durable
    /// (``AppendSession/makeDurable()``) unless it is refused; returns the new state and, when the
    /// stream is complete, the finished file's manifest.
    func endAppend(_ session: AppendSession, _ end: AppendEnd) async throws -> (UploadState, FileManifest?) {
        let outcome: Result<(UploadState, FileManifest?), any Error>
        do { outcome = .success(try await settle(session, end)) } catch { outcome = .failure(error) }
        await session.partial.close()
        busy.remove(session.state.uploadID)
        await held.removeValue(forKey: session.state.uploadID)?.release()
        return try outcome.get()
    }

    private func settle(_ session: AppendSession, _ end: AppendEnd) async throws -> (UploadState, FileManifest?) {
        var keep = end != .refused
        if keep, let expected = session.checksumExpected {
            // A body whose checksum cannot be verified (mismatch, or cut short) is discarded whole.
            keep = end == .completed && session.checksumActual() == expected
            if !keep && end == .completed {
                try await session.rollBack()
                throw GatewayError(HTTPResponse.Status(code: 460, reasonPhrase: "Checksum Mismatch"), .checksumMismatch,
                                   "the request body does not match its Upload-Checksum; nothing was stored")
            }
        }
        guard keep else {
            try await session.rollBack()
            // Its uploader was removed from the session it goes to: it can never complete.
            if let target = session.state.session, try await !access.sessions.isMember(session.state.owner, of: target.sessionID) {
                try await discard(session.state)
            }
            return (session.state, nil)
        }
        var state = session.state
        state.offset = session.partial.length
        state.length = session.length
        state.validator = session.validator
        state.records += session.records
        state.blobCheckpoint = session.checkpoint
        if state.isComplete, let length = state.length, length != state.offset {
            try await session.rollBack()
            throw GatewayError.badRequest("the sealed stream ended at \(state.offset) bytes but Upload-Length is \(length)")
        }
        // Acknowledged from here: the bytes are durable and the offset recorded.
        try await registry.putUpload(state)
        await session.partial.checkpointRecorded()
        guard state.isComplete else { return (state, nil) }
        return (state, try await finish(state))
    }

    /// The finished file `id` if `principal` owns it. An upload whose bytes are all in but that is
    /// not a file yet (the store failed while it was being assembled, or the gateway stopped) is
    /// finished now.
    func finishedFile(_ id: FileID, for principal: Principal) async throws -> FileManifest? {
        if let manifest = try await registry.file(id) { return access.owns(manifest, principal) ? manifest : nil }
        guard let state = try await registry.upload(id), access.mayAppend(state, principal), state.isComplete, !busy.contains(id) else {
            return nil
        }
        busy.insert(id)
        defer { busy.remove(id) }
        return try await finish(state)
    }

    /// Turns a complete upload, recorded as such, into a file: the store assembles and checks its
    /// bytes under the file's name, then the manifest is written (from then on it can be
    /// downloaded), then the upload is retired. Each step can run again after a failure or crash.
    ///
    /// A file sent to a session completes only if its uploader is a member before and after its
    /// manifest is written: an epoch that removes them, stored in between, undoes it, so from the
    /// moment an epoch is stored the members it removes add nothing (nor any announcement).
    private func finish(_ state: UploadState) async throws -> FileManifest {
        let header = state.validator.header!
        func uploaderIsMember() async throws -> Bool {
            guard let session = state.session else { return true }
            return try await access.sessions.isMember(state.owner, of: session.sessionID)
        }
        guard try await uploaderIsMember() else {
            try await discard(state)
            throw GatewayError.notMember
        }
        try await blobs.promote(state.uploadID, size: state.offset, checkpoint: state.blobCheckpoint)
        let manifest = FileManifest(
            fileID: state.uploadID, owner: state.owner, createdAt: configuration.clock(), expiresAt: nil, size: state.offset,
            plaintextSize: state.validator.plaintextLength, chunkSize: header.chunkSize, header: header,
            digest: state.validator.digestHex, metadata: state.metadata, records: state.records, session: state.session)
        try await registry.putFile(manifest)
        guard try await uploaderIsMember() else {
            try await blobs.removeBlob(manifest.fileID)
            try await registry.removeFile(manifest.fileID)
            try await registry.removeUpload(state.uploadID)
            await quota.release(state.reservedBytes, for: state.owner)
            throw GatewayError.notMember
        }
        try await registry.removeUpload(state.uploadID)
        logger.info("file stored", metadata: ["file_id": "\(manifest.fileID)", "owner": "\(manifest.owner)", "bytes": "\(manifest.size)"])
        do {
            try await fileStored(manifest)
        } catch {
            // The file is stored and acknowledged; only its announcement in the session's chat is lost.
            logger.warning("upload event not queued for the session's chat", metadata: ["file_id": "\(manifest.fileID)", "error": "\(error)"])
        }
        return manifest
    }

    /// Finishes what a crash interrupted (complete uploads become files; a manifest an older
    /// gateway recorded before moving its bytes gets them moved), then counts every user's
    /// storage. Run once at start, before requests are served.
    func reconcile() async throws {
        for state in try await registry.uploads() {
            if let manifest = try await registry.file(state.uploadID) {
                try await blobs.promote(state.uploadID, size: manifest.size, checkpoint: state.blobCheckpoint)
                try await registry.removeUpload(state.uploadID)
                logger.notice("finished an interrupted completion", metadata: ["file_id": "\(state.uploadID)"])
            } else if state.isComplete {
                await finishLeftOver(state)
            }
        }
        try await quota.load(stored: try await registry.storedBytesByOwner(), uploads: try await registry.uploads())
    }

    /// Tries to finish a complete upload no request is finishing; a failure (the store is down)
    /// leaves it for the next try.
    private func finishLeftOver(_ state: UploadState) async {
        guard !busy.contains(state.uploadID) else { return }
        busy.insert(state.uploadID)
        defer { busy.remove(state.uploadID) }
        do {
            _ = try await finish(state)
            logger.notice("finished an interrupted completion", metadata: ["file_id": "\(state.uploadID)"])
        } catch {
            logger.warning("a complete upload could not be finished yet", metadata: ["upload_id": "\(state.uploadID)", "error": "\(error)"])
        }
    }

    /// tus termination: removes an upload in progress.
    func terminate(_ id: FileID, principal: Principal) async throws {
        let state = try await upload(id, for: principal)
        guard !busy.contains(id) else { throw GatewayError.locked }
        try await discard(state)
    }

    /// Removes an upload: its bytes first, so that a store failure leaves it whole to retry.
    private func discard(_ state: UploadState) async throws {
        try await blobs.removePartial(state.uploadID, checkpoint: state.blobCheckpoint)
        try await registry.removeUpload(state.uploadID)
        await quota.release(state.reservedBytes, for: state.owner)
    }

    /// Deletes a finished file: bytes (first, as for uploads), record, and its share of the quota.
    func removeFile(_ manifest: FileManifest) async throws {
        try await blobs.removeBlob(manifest.fileID)
        try await registry.removeFile(manifest.fileID)
        await quota.release(manifest.size, for: manifest.owner)
    }

    /// Removes uploads abandoned past their expiry, and the files and uploads of `removedAccounts`;
    /// returns how many were removed.
    @discardableResult
    func sweep(now: Date? = nil, removedAccounts: Set<UserID> = []) async throws -> Int {
        let now = now ?? configuration.clock()
        var removed = 0
        for state in try await registry.uploads() where !busy.contains(state.uploadID) {
            let orphaned = removedAccounts.contains(state.owner)
            if state.isComplete && !orphaned {
                await finishLeftOver(state)
                continue
            }
            guard state.isExpired(at: now) || orphaned else { continue }
            try await discard(state)
            removed += 1
            logger.info(orphaned ? "upload of a removed account deleted" : "expired upload removed", metadata: ["upload_id": "\(state.uploadID)"])
        }
        for account in removedAccounts {
            for manifest in try await registry.files(ownedBy: account) {
                try await removeFile(manifest)
                removed += 1
                logger.info("file of a removed account deleted", metadata: ["file_id": "\(manifest.fileID)"])
            }
        }
        for account in removedAccounts { try await registry.removeIdentity(of: account) }
        return removed
    }
}
