import Foundation
import SafeChatGateway
import SealedFormat

/// What an upload on S3 has stored, as of an acknowledged offset (docs/STORAGE.md, "Checkpoints"):
/// its multipart upload, the parts in it (each `partSize` bytes, numbered from 1, except a final
/// one), and the tail object holding the bytes after them. The gateway records it with the offset.
struct S3UploadCheckpoint: Codable, Equatable, Sendable {
    struct Part: Codable, Equatable, Sendable {
        var number: Int
        var size: Int
        /// Hex MD5 of the part's bytes (its ETag).
        var md5: String
    }

    struct Tail: Codable, Equatable, Sendable {
        var key: String
        var size: Int
        var md5: String
    }

    var partSize: Int
    /// Nil until the first part is sent.
    var uploadID: String?
    var parts: [Part]
    var tail: Tail?
    /// The last part is in: the upload is ready to be assembled.
    var final: Bool

    var length: Int64 { parts.reduce(0) { $0 + Int64($1.size) } + Int64(tail?.size ?? 0) }

    /// Everything `length` claims is consistent: parts numbered 1…n of `partSize` bytes (the last
    /// may be shorter only when final), a tail only when not final and shorter than a part.
    var isWellFormed: Bool {
        guard partSize >= S3PartSize.minimum, partSize <= S3PartSize.maximum, parts.count <= S3PartSize.maxParts else { return false }
        for (index, part) in parts.enumerated() {
            guard part.number == index + 1, part.md5.utf8.count == 32, Secrets.bytes(fromHex: part.md5, count: 16) != nil else { return false }
            let last = index == parts.count - 1
            guard part.size == partSize || (final && last && part.size > 0 && part.size < partSize) else { return false }
        }
        if !parts.isEmpty && uploadID == nil { return false }
        if let tail {
            guard !final, tail.size > 0, tail.size < partSize, Secrets.bytes(fromHex: tail.md5, count: 16) != nil else { return false }
        }
        return !final || !parts.isEmpty
    }

    init(partSize: Int, uploadID: String?, parts: [Part], tail: Tail?, final: Bool) {
        self.partSize = partSize
        self.uploadID = uploadID
        self.parts = parts
        self.tail = tail
        self.final = final
    }

    init(_ checkpoint: BlobCheckpoint) throws {
        guard checkpoint.json.utf8.count <= 4 << 20, let decoded = try? JSONDecoder().decode(Self.self, from: Data(checkpoint.json.utf8)),
              decoded.isWellFormed else {
            throw S3IntegrityError("the upload's recorded S3 state is not readable")
        }
        self = decoded
    }

    var encoded: BlobCheckpoint {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return BlobCheckpoint(json: String(decoding: try! encoder.encode(self), as: UTF8.self))
    }
}

/// Part sizes: at least 8 MiB (S3's minimum is 5 MiB), in whole MiB, large enough that the largest
/// file an upload may become fits in 10 000 parts.
enum S3PartSize {
    static let minimum = 5 << 20
    static let maximum = 5 << 30
    static let maxParts = 10_000
    static let smallest = 8 << 20

    static func forUpload(upTo sizeLimit: Int64) -> Int {
        let mib: Int64 = 1 << 20
        let needed = (max(sizeLimit, 1) + Int64(maxParts) - 1) / Int64(maxParts)
        let rounded = (needed + mib - 1) / mib * mib
        return Int(min(max(rounded, Int64(smallest)), Int64(maximum)))
    }
}

/// The store holds something other than what the gateway put there (or recorded).
public struct S3IntegrityError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
