/// Every `error` code the gateway answers with (docs/API.md lists each with its statuses).
public enum ErrorCode: String, Codable, Sendable, CaseIterable {
    case badRequest = "bad_request"
    case notImplemented = "not_implemented"
    case httpVersionNotSupported = "http_version_not_supported"
    case bodyTimeout = "body_timeout"
    case invalidID = "invalid_id"
    case unauthorized
    case forbidden
    case invalidCredentials = "invalid_credentials"
    case tooManyAttempts = "too_many_attempts"
    case notFound = "not_found"
    case methodNotAllowed = "method_not_allowed"
    case uploadExpired = "upload_expired"
    case unsupportedTusVersion = "unsupported_tus_version"
    case badContentType = "bad_content_type"
    case offsetMismatch = "offset_mismatch"
    case epochConflict = "epoch_conflict"
    case sessionExists = "session_exists"
    case fileExists = "file_exists"
    case uploadBusy = "upload_busy"
    case tooLarge = "too_large"
    case exceedsLength = "exceeds_length"
    case quotaExceeded = "quota_exceeded"
    case limitReached = "limit_reached"
    case malformedStream = "malformed_stream"
    case incompleteStream = "incomplete_stream"
    case checksumMismatch = "checksum_mismatch"
    case rangeNotSatisfiable = "range_not_satisfiable"
    case storageError = "storage_error"
    case storageUnavailable = "storage_unavailable"
    case upgradeRequired = "upgrade_required"
    case staleEpoch = "stale_epoch"
    case chatStorageFull = "chat_storage_full"
    case shuttingDown = "shutting_down"
    case internalError = "internal_error"
}

/// The JSON body of every error answer: `{"error": code, "message": text}`.
public struct ErrorBody: Codable, Sendable {
    public let error: String
    public let message: String
    public init(error: ErrorCode, message: String) {
        self.error = error.rawValue
        self.message = message
    }
    /// The code, if it is one this build knows (a newer gateway may send others).
    public var code: ErrorCode? { ErrorCode(rawValue: error) }
}
