import Foundation
import SealedFormat
import Testing
@testable import SafeChatS3
import SafeChatTestSupport

/// The request signer against AWS's SigV4 test suite (Fixtures/sigv4) and against botocore's S3
/// signer, an independent implementation, on the requests the S3 store sends.
@Suite struct SigV4Tests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/sigv4")
    static let suiteSigner = SigV4Signer(credentials: S3Credentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
                                         region: "us-east-1", service: "service")

    static var cases: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: fixtures.path)) ?? []).filter { !$0.hasSuffix(".md") }.sorted()
    }

    /// A test-suite `.req` file: request line, headers (a line starting with white space is another
    /// value of the previous header, as the suite means it), blank line, body.
    static func parse(_ text: String) -> (request: SigV4Signer.Request, timestamp: String) {
        let (head, body) = text.range(of: "\n\n").map { (String(text[..<$0.lowerBound]), String(text[$0.upperBound...])) } ?? (text, "")
        var lines = head.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let requestLine = lines.removeFirst().split(separator: " ")
        var headers: [(String, String)] = []
        for line in lines where !line.isEmpty {
            if line.first == " " || line.first == "\t" {
                headers.append((headers[headers.count - 1].0, line))
            } else {
                let colon = line.firstIndex(of: ":")!
                headers.append((String(line[..<colon]), String(line[line.index(after: colon)...])))
            }
        }
        let target = String(requestLine[1])
        let path = String(target.prefix { $0 != "?" })
        let query = target.dropFirst(path.count + 1).split(separator: "&").map { pair -> (String, String) in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return (String(parts[0]), parts.count > 1 ? String(parts[1]) : "")
        }
        let timestamp = headers.first { $0.0.lowercased() == "x-amz-date" }!.1
        return (SigV4Signer.Request(method: String(requestLine[0]), path: path, query: query, headers: headers,
                                    payloadHash: Secrets.hex(SHA256Hasher.hash(Array(body.utf8)))), timestamp)
    }

    @Test(arguments: cases)
    func awsTestSuiteCase(_ name: String) throws {
        let folder = Self.fixtures.appendingPathComponent(name)
        func file(_ ext: String) -> String? { try? String(contentsOf: folder.appendingPathComponent("\(name).\(ext)"), encoding: .utf8) }
        let (request, timestamp) = Self.parse(try #require(file("req")))
        #expect(Self.suiteSigner.authorization(request, timestamp: timestamp) == file("authz"))
        if let creq = file("creq") { #expect(Self.suiteSigner.canonicalRequest(request) == creq) }
        if let sts = file("sts") { #expect(Self.suiteSigner.stringToSign(request, timestamp: timestamp) == sts) }
    }

    @Test func theSuiteIsThere() {
        #expect(Self.cases.count >= 10)
    }

    /// The requests the store sends (S3's rules: paths encoded once, `x-amz-content-sha256`
    /// signed), signed here and by botocore's S3SigV4Auth.
    @Test func s3RequestsAreSignedAsBotocoreSignsThem() async throws {
        let signer = SigV4Signer(credentials: S3Credentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                                                            sessionToken: "token/with+chars="), region: "eu-west-3")
        let timestamp = "20261204T183600Z"
        let empty = Secrets.hex(SHA256Hasher.hash([]))
        let requests: [SigV4Signer.Request] = [
            .init(method: "PUT", path: "/bucket/pre fix/files/5ae56a7c11b1564fc3bd4c0d1a36147a", query: [("partNumber", "12"), ("uploadId", "a/b+c=d~e")],
                  headers: [("content-md5", "1B2M2Y8AsgTpgAmY7PhCfg=="), ("x-amz-content-sha256", "UNSIGNED-PAYLOAD")], payloadHash: "UNSIGNED-PAYLOAD"),
            .init(method: "POST", path: "/bucket/files/x", query: [("uploads", "")], headers: [("x-amz-content-sha256", empty)], payloadHash: empty),
            .init(method: "GET", path: "/bucket", query: [("list-type", "2"), ("prefix", "gw/uploads/ä é/"), ("continuation-token", "1/2==")],
                  headers: [("x-amz-content-sha256", empty), ("range", "bytes=0-99")], payloadHash: empty),
            .init(method: "DELETE", path: "/bucket/a~b/c.d_e-f", headers: [("x-amz-content-sha256", empty)], payloadHash: empty),
        ]
        var lines: [String] = []
        for var request in requests {
            request.headers += [("host", "127.0.0.1:18333"), ("x-amz-date", timestamp), ("x-amz-security-token", "token/with+chars=")]
            let query = request.query.map { "\(SigV4Signer.encode($0.0))=\(SigV4Signer.encode($0.1))" }.joined(separator: "&")
            let object: [String: Any] = [
                "method": request.method, "url": "http://127.0.0.1:18333\(SigV4Signer.encode(request.path, keepingSlashes: true))" + (query.isEmpty ? "" : "?" + query),
                "headers": Dictionary(request.headers.filter { $0.0 != "host" }, uniquingKeysWith: { $1 }), "timestamp": timestamp,
            ]
            lines.append(String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self))
            lines.append(signer.authorization(request, timestamp: timestamp))
        }
        let script = """
            import json, sys
            from botocore.auth import S3SigV4Auth
            from botocore.awsrequest import AWSRequest
            from botocore.credentials import Credentials
            lines = sys.argv[1].split("\\n")
            auth = S3SigV4Auth(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "token/with+chars="), "s3", "eu-west-3")
            for spec, ours in zip(lines[0::2], lines[1::2]):
                spec = json.loads(spec)
                request = AWSRequest(method=spec["method"], url=spec["url"], headers=spec["headers"])
                request.context["timestamp"] = spec["timestamp"]
                canonical = auth.canonical_request(request)
                signature = auth.signature(auth.string_to_sign(request, canonical), request)
                theirs = "AWS4-HMAC-SHA256 Credential=%s, SignedHeaders=%s, Signature=%s" % (
                    auth.scope(request), auth.signed_headers(auth.headers_to_sign(request)), signature)
                print("same" if theirs == ours else "DIFFERENT\\n ours:   %s\\n theirs: %s\\n%s" % (ours, theirs, canonical))
            """
        let run = try await runProcess(["python3", "-c", script, lines.joined(separator: "\n")], environment: nil, errorsApart: true)
        #expect(run.status == 0, "\(run.errors)")
        #expect(run.output == String(repeating: "same\n", count: requests.count), "\(run.output)")
    }
}
