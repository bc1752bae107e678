import Foundation

/// tus 1.0.0 as SafeChat speaks it (docs/API.md).
public enum Tus {
    public static let version = "1.0.0"
    public static let extensions = "creation,creation-with-upload,creation-defer-length,termination,expiration,checksum"
    public static let checksumAlgorithms = "sha1,sha256"
    public static let offsetContentType = "application/offset+octet-stream"
    /// Upload-Metadata holds at most this many bytes.
    public static let maxMetadataLength = 4096
    /// Where uploads live; an upload URL is `uploadsPath + "/" + id`.
    public static let uploadsPath = "/uploads"

    /// Upload-Metadata keys SafeChat's clients send (docs/API.md, "POST /uploads").
    public enum MetadataKey {
        /// The 92-byte stream header the upload will start with: the gateway makes the upload's
        /// id the one bound to it (docs/FORMAT.md section 11) and refuses a stream that starts otherwise.
        public static let header = "header"
        /// The file's name, sealed under the file's key and bound to its salt.
        public static let name = "name"
        /// The session the file goes to (its id as text) and the epoch whose key sealed it (decimal).
        public static let session = "session"
        public static let epoch = "epoch"
    }

    /// Header names, as tus spells them.
    public enum Header {
        public static let resumable = "Tus-Resumable"
        public static let version = "Tus-Version"
        public static let extensions = "Tus-Extension"
        public static let maxSize = "Tus-Max-Size"
        public static let checksumAlgorithm = "Tus-Checksum-Algorithm"
        public static let uploadLength = "Upload-Length"
        public static let uploadOffset = "Upload-Offset"
        public static let uploadMetadata = "Upload-Metadata"
        public static let uploadDeferLength = "Upload-Defer-Length"
        public static let uploadExpires = "Upload-Expires"
        public static let uploadChecksum = "Upload-Checksum"
        public static let methodOverride = "X-HTTP-Method-Override"
    }
}

/// The one JSON encoding both sides use: ISO 8601 dates, sorted keys.
public enum WireCoding {
    public static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }

    public static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }
}
