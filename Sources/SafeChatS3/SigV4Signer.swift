import Foundation
import SealedFormat

/// AWS Signature Version 4 (docs/STORAGE.md, "Request signatures"): the `Authorization` header of
/// one request, from its method, path, query, headers and payload hash. Checked against AWS's
/// SigV4 test suite (Fixtures/sigv4) and botocore's S3 signer.
///
/// The caller passes the headers it wants signed, `host` and `x-amz-date` among them (and
/// `x-amz-security-token` with temporary credentials); ``S3Client`` does that. Paths are encoded
/// once and never normalised, as S3 wants.
public struct SigV4Signer: Sendable {
    public let credentials: S3Credentials
    public let region: String
    public let service: String

    public init(credentials: S3Credentials, region: String, service: String = "s3") {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    /// One request as SigV4 sees it.
    public struct Request: Sendable {
        public var method: String
        /// The path as sent, unencoded (each byte outside the unreserved set is encoded here).
        public var path: String
        /// Query parameters, unencoded.
        public var query: [(String, String)]
        public var headers: [(String, String)]
        /// Hex SHA-256 of the body, or `UNSIGNED-PAYLOAD`.
        public var payloadHash: String

        public init(method: String, path: String, query: [(String, String)] = [], headers: [(String, String)], payloadHash: String) {
            self.method = method
            self.path = path
            self.query = query
            self.headers = headers
            self.payloadHash = payloadHash
        }
    }

    /// `20150830T123600Z`.
    public static func timestamp(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        return String(format: "%04d%02d%02dT%02d%02d%02dZ", c.year!, c.month!, c.day!, c.hour!, c.minute!, c.second!)
    }

    /// The canonical request: method, encoded path, sorted encoded query, canonical headers,
    /// signed header names, payload hash, one per line.
    public func canonicalRequest(_ request: Request) -> String {
        let encoded: [(key: String, value: String)] = request.query.map { (Self.encode($0.0), Self.encode($0.1)) }
        let sorted = encoded.sorted { $0.key == $1.key ? $0.value < $1.value : $0.key < $1.key }
        let query = sorted.map { "\($0.key)=\($0.value)" }.joined(separator: "&")
        let headers = Self.canonicalHeaders(request.headers)
        let headerLines = headers.map { "\($0.name):\($0.value)\n" }.joined()
        let signedNames = headers.map(\.name).joined(separator: ";")
        let lines: [String] = [request.method, Self.encode(request.path, keepingSlashes: true), query, headerLines, signedNames, request.payloadHash]
        return lines.joined(separator: "\n")
    }

    /// What is signed: the algorithm, the timestamp, the credential scope and the canonical
    /// request's SHA-256.
    public func stringToSign(_ request: Request, timestamp: String) -> String {
        ["AWS4-HMAC-SHA256", timestamp, scope(timestamp), Hashes.sha256Hex(Array(canonicalRequest(request).utf8))].joined(separator: "\n")
    }

    /// The `Authorization` header's value. `timestamp` is the request's `x-amz-date`.
    public func authorization(_ request: Request, timestamp: String) -> String {
        let day = String(timestamp.prefix(8))
        var key = Hashes.hmacSHA256(key: Array("AWS4\(credentials.secretAccessKey)".utf8), day)
        for part in [region, service, "aws4_request"] { key = Hashes.hmacSHA256(key: key, part) }
        let signature = Secrets.hex(Hashes.hmacSHA256(key: key, stringToSign(request, timestamp: timestamp)))
        let signed = Self.canonicalHeaders(request.headers).map(\.name).joined(separator: ";")
        return "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope(timestamp)), SignedHeaders=\(signed), Signature=\(signature)"
    }

    private func scope(_ timestamp: String) -> String { "\(timestamp.prefix(8))/\(region)/\(service)/aws4_request" }

    /// Names lowercased, values trimmed with each run of white space made one space, sorted by name;
    /// a name given twice has its values joined with commas, in order.
    static func canonicalHeaders(_ headers: [(String, String)]) -> [(name: String, value: String)] {
        var merged: [String: [String]] = [:]
        for (name, value) in headers {
            let clean = value.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }).joined(separator: " ")
            merged[name.lowercased(), default: []].append(clean)
        }
        return merged.keys.sorted().map { ($0, merged[$0]!.joined(separator: ",")) }
    }

    /// RFC 3986 percent-encoding of everything but the unreserved characters (and `/` in paths).
    static func encode(_ text: String, keepingSlashes: Bool = false) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: "/") where keepingSlashes:
                out.append("/")
            default:
                out += String(format: "%%%02X", byte)
            }
        }
        return out
    }
}
