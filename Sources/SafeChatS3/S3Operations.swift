import Foundation
import NIOCore
import NIOHTTP1
import SealedFormat

/// The S3 calls the blob store makes, each one request (retried as ``S3Client`` does).
extension S3Client {
    /// PutObject, with the body's MD5 for the store to check; returns the MD5.
    @discardableResult
    func put(_ key: String, _ body: ByteBuffer) async throws -> [UInt8] {
        let md5 = body.withUnsafeReadableBytes { MD5.hash($0) }
        let answer = try await send(.PUT, key, body: body, contentMD5: md5)
        try Self.check(etag: answer.headers.first(name: "etag"), md5: md5, of: "PUT \(key)")
        return md5
    }

    /// HeadBucket: throws unless the bucket exists and the credentials reach it.
    func headBucket() async throws {
        let answer = try await send(.HEAD, nil, accept: [200, 404])
        guard answer.status == 200 else {
            throw S3ServiceError(status: 404, code: "NoSuchBucket", operation: "HEAD \(settings.bucket)", message: "the bucket does not exist")
        }
    }

    /// HeadObject: the object's size and ETag, or nil if there is none.
    func head(_ key: String) async throws -> (size: Int64, etag: String)? {
        let answer = try await send(.HEAD, key, accept: [200, 404])
        guard answer.status == 200 else { return nil }
        guard let size = answer.headers.first(name: "content-length").flatMap({ Int64($0) }) else {
            throw S3ServiceError(status: 200, code: "BadAnswer", operation: "HEAD \(key)", message: "no Content-Length")
        }
        return (size, answer.headers.first(name: "etag") ?? "")
    }

    /// DeleteObject (deleting what is not there succeeds).
    func delete(_ key: String) async throws {
        _ = try await send(.DELETE, key, accept: [200, 204, 404])
    }

    /// The keys under `prefix`, every page of ListObjectsV2.
    func list(prefix: String) async throws -> [String] {
        var keys: [String] = []
        var token: String?
        repeat {
            var query = [("list-type", "2"), ("prefix", prefix)]
            if let token { query.append(("continuation-token", token)) }
            let answer = try await send(.GET, nil, query: query, maxAnswer: 8 << 20)
            keys += S3XML.elements("Contents", in: answer.text).compactMap { S3XML.value("Key", in: $0) }
            token = S3XML.value("IsTruncated", in: answer.text) == "true" ? S3XML.value("NextContinuationToken", in: answer.text) : nil
        } while token != nil
        return keys
    }

    /// CreateMultipartUpload: the new upload's id.
    func createMultipartUpload(_ key: String) async throws -> String {
        let answer = try await send(.POST, key, query: [("uploads", "")])
        guard let id = S3XML.value("UploadId", in: answer.text), !id.isEmpty else {
            throw S3ServiceError(status: answer.status, code: "BadAnswer", operation: "POST \(key)?uploads", message: "no UploadId")
        }
        return id
    }

    /// UploadPart, with the part's MD5 for the store to check; the ETag must be that MD5.
    func uploadPart(_ key: String, uploadID: String, number: Int, _ body: ByteBuffer, md5: [UInt8]) async throws {
        let answer = try await send(.PUT, key, query: [("partNumber", "\(number)"), ("uploadId", uploadID)], body: body, contentMD5: md5)
        try Self.check(etag: answer.headers.first(name: "etag"), md5: md5, of: "part \(number) of \(key)")
    }

    /// CompleteMultipartUpload from `parts` (number and MD5, in order).
    func completeMultipartUpload(_ key: String, uploadID: String, parts: [(number: Int, md5: [UInt8])]) async throws {
        let xml = "<CompleteMultipartUpload>"
            + parts.map { "<Part><PartNumber>\($0.number)</PartNumber><ETag>\"\(Secrets.hex($0.md5))\"</ETag></Part>" }.joined()
            + "</CompleteMultipartUpload>"
        _ = try await send(.POST, key, query: [("uploadId", uploadID)], headers: [("content-type", "application/xml")],
                           body: ByteBuffer(string: xml))
    }

    /// AbortMultipartUpload (an upload that is gone already counts as aborted).
    func abortMultipartUpload(_ key: String, uploadID: String) async throws {
        _ = try await send(.DELETE, key, query: [("uploadId", uploadID)], accept: [200, 204, 404])
    }

    /// The multipart uploads in progress under `prefix` (key and upload id), every page.
    func multipartUploads(prefix: String) async throws -> [(key: String, uploadID: String)] {
        var found: [(String, String)] = []
        var marker: (key: String, id: String)?
        repeat {
            var query = [("uploads", ""), ("prefix", prefix)]
            if let marker { query += [("key-marker", marker.key), ("upload-id-marker", marker.id)] }
            let answer = try await send(.GET, nil, query: query, maxAnswer: 8 << 20)
            found += S3XML.elements("Upload", in: answer.text).compactMap { upload in
                guard let key = S3XML.value("Key", in: upload), let id = S3XML.value("UploadId", in: upload) else { return nil }
                return (key, id)
            }
            marker = nil
            if S3XML.value("IsTruncated", in: answer.text) == "true", let key = S3XML.value("NextKeyMarker", in: answer.text),
               let id = S3XML.value("NextUploadIdMarker", in: answer.text) {
                marker = (key, id)
            }
        } while marker != nil
        return found
    }

    /// An ETag that is not the MD5 the store was sent means the store kept other bytes (or
    /// encrypts with keys of its own, which docs/STORAGE.md says is not supported).
    static func check(etag: String?, md5: [UInt8], of what: String) throws {
        let expected = "\"\(Secrets.hex(md5))\""
        guard let etag, etag.lowercased() == expected else {
            throw S3ServiceError(status: 200, code: "ETagMismatch", operation: what,
                                 message: "the store answered ETag \(etag ?? "(none)") for bytes whose MD5 is \(expected)")
        }
    }

    /// The ETag S3 gives an object assembled from parts: the MD5 of their MD5s, a dash, their count.
    static func multipartETag(_ md5s: [[UInt8]]) -> String {
        let joined = md5s.flatMap { $0 }
        return "\"\(Secrets.hex(joined.withUnsafeBytes { MD5.hash($0) }))-\(md5s.count)\""
    }
}
