import HTTPTypes
import NIOHTTP1
import SafeChatAPI

/// How large a request body each route takes (docs/API.md). ``RequestGuard`` refuses a declared
/// length over it (413) before the body is read; a route reading a chunked body stops at it too.
enum BodyLimits {
    static let login = 16 * 1024
    static let bundle = 4096
    static let epoch = EpochWire.maxEncodedLength
    /// Every other route that reads a body takes small JSON, or nothing.
    static let other = 64 * 1024

    /// The limit for `method` on `path` (a path without its query); uploads take up to `maxFileSize`.
    static func limit(_ method: NIOHTTP1.HTTPMethod, _ path: String, maxFileSize: Int64) -> Int64 {
        let segments = path.split(separator: "/", omittingEmptySubsequences: true)
        switch (method, segments.first, segments.count) {
        case (.POST, "upload", 1), (.POST, "uploads", 1), (.PATCH, "uploads", 2), (.POST, "uploads", 2): return maxFileSize
        case (.POST, "login", 1): return Int64(login)
        case (.PUT, "keys", 2): return Int64(bundle)
        case (.POST, "sessions", 1), (.POST, "sessions", 3): return Int64(epoch)
        default: return Int64(other)
        }
    }
}
