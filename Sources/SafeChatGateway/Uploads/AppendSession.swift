import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOPosix
import SafeChatAPI
import SealedFormat

/// One request's bytes going into an upload: framing checked first, then limits, then written.
final class AppendSession: @unchecked Sendable {
    // Driven by the one request that holds it (the manager's busy set guarantees it).
    let state: UploadState
    let partial: any PartialBlob
    /// The upload's length as this request leaves it (declared now or before), nil while deferred.
    let length: Int64?
    private(set) var validator: FramingValidator
    /// Records completed by this request's bytes.
    private(set) var records: [FileManifest.Record] = []
    let checksumExpected: [UInt8]?
    private var checksum: StreamingDigest?
    private let maxFileSize: Int64
    private let quota: any QuotaStore
    /// Whether the uploader may still write here (a member of the session the upload goes to).
    /// Asked before the first part and then at most every ``membershipInterval`` (with sessions in
    /// a database it is a query, and a part is as small as a read); the file's completion asks
    /// again, authoritatively, so a removed member's bytes never become a file.
    private let stillAllowed: @Sendable () async throws -> Bool
    private var allowedCheckedAt: ContinuousClock.Instant?
    static let membershipInterval: Duration = .milliseconds(250)
    /// Quota taken by this request: a length declared with it, or (length deferred) its bytes.
    private var reserved: Int64
    /// The header the upload was created with, until the stream's own header has been compared with it.
    private var declaredHeader: [UInt8]?

    init(state: UploadState, partial: any PartialBlob, length: Int64?, reservedUpFront: Int64,
         checksum: (DigestKind, [UInt8])?, maxFileSize: Int64, quota: any QuotaStore,
         stillAllowed: @escaping @Sendable () async throws -> Bool = { true }) {
        self.stillAllowed = stillAllowed
        self.state = state
        self.partial = partial
        self.length = length
        self.reserved = reservedUpFront
        self.validator = state.validator
        self.checksumExpected = checksum?.1
        self.checksum = checksum.map { StreamingDigest($0.0) }
        self.maxFileSize = maxFileSize
        self.quota = quota
        declaredHeader = state.validator.header == nil ? state.declaredHeader : nil
        checkpoint = state.blobCheckpoint
    }

    func append(_ buffer: ByteBuffer) async throws {
        // Length deferred: the bytes are reserved as they come (given back by rollBack if refused).
        if length == nil {
            guard try await quota.reserve(Int64(buffer.readableBytes), for: state.owner) else { throw GatewayError.overQuota }
            reserved += Int64(buffer.readableBytes)
        }
        let now = ContinuousClock.now
        if allowedCheckedAt.map({ now - $0 >= Self.membershipInterval }) ?? true {
            guard try await stillAllowed() else { throw GatewayError.notMember }
            allowedCheckedAt = now
        }
        try buffer.withUnsafeReadableBytes { bytes in
            let end = partial.length + Int64(bytes.count)
            if let length, end > length {
                throw GatewayError(.contentTooLarge, .exceedsLength, "the body goes past the declared Upload-Length of \(length)")
            }
            guard end <= maxFileSize else { throw GatewayError.tooLarge(maxFileSize) }
            do {
                for record in try validator.consume(bytes) {
                    records.append(.init(index: record.index, offset: record.offset, length: record.length, plaintextLength: record.plaintextLength))
                }
            } catch {
                throw GatewayError(.unprocessableContent, .malformedStream,
                                   "not a valid sealed stream at byte \(validator.consumedOffset): \(error)")
            }
            if let declared = declaredHeader, let header = validator.header {
                guard header.encoded() == declared else {
                    throw GatewayError(.unprocessableContent, .malformedStream,
                                       "the stream does not start with the header declared when the upload was created")
                }
                declaredHeader = nil
            }
            checksum?.update(bytes)
        }
        try await partial.append(buffer)
    }

    /// What the store returned when it last made this request's bytes durable.
    private(set) var checkpoint: BlobCheckpoint?

    /// Makes the appended bytes durable (local: written and fsynced; S3: in parts and a tail
    /// object); the last bytes of a complete stream go out as its final part.
    func makeDurable() async throws {
        checkpoint = try await partial.makeDurable(final: validator.isComplete)
    }

    /// Undoes the request: its bytes are cut off and its quota given back.
    func rollBack() async throws {
        await quota.release(reserved, for: state.owner)
        reserved = 0
        checkpoint = state.blobCheckpoint
        try await partial.truncate(to: state.offset)
    }

    func checksumActual() -> [UInt8]? {
        guard let digest = checksum.take() else { return nil }
        return digest.finalize()
    }
}
