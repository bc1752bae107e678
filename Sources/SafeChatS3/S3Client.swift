import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import SafeChatGateway
import SealedFormat

/// Signed requests to one bucket, path-style (`ENDPOINT/BUCKET/KEY`), each retried a few times
/// when the store fails in a way that may pass. What still fails that way is
/// ``StorageUnavailable`` (the gateway answers 503 and keeps what it acknowledged); what the store
/// refuses is ``S3ServiceError``.
struct S3Client: Sendable {
    let settings: S3Settings
    let signer: SigV4Signer

    init(settings: S3Settings) {
        self.settings = settings
        signer = SigV4Signer(credentials: settings.credentials, region: settings.region)
    }

    /// One client for the process, never shut down (like AsyncHTTPClient's own shared one); its
    /// connections to the store are pooled across every request.
    static let http: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        // A store that does not answer is told to clients (503) within seconds: AsyncHTTPClient retries a
        // refused connection until the connect timeout, and each request is tried three times.
        configuration.timeout = .init(connect: .seconds(2), read: .seconds(60))
        configuration.connectionPool = .init(idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: 64)
        configuration.decompression = .disabled
        configuration.redirectConfiguration = .disallow
        configuration.httpVersion = .http1Only
        if let bundle = ProcessInfo.processInfo.environment["AWS_CA_BUNDLE"], !bundle.isEmpty {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .file(bundle)
            configuration.tlsConfiguration = tls
        }
        return HTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton, configuration: configuration)
    }()

    /// Attempts per request, and the pause before each retry.
    static let retryPauses: [Duration] = [.milliseconds(200), .milliseconds(1000)]
    static let deadline: TimeAmount = .seconds(120)

    struct Answer: Sendable {
        let status: Int
        let headers: HTTPHeaders
        let body: ByteBuffer
        var text: Substring { Substring(String(buffer: body)) }
    }

    /// Sends one request and collects its answer (at most `maxAnswer` bytes). `accept` are the
    /// statuses that are answers; any other is an error.
    func send(_ method: HTTPMethod, _ key: String?, query: [(String, String)] = [], headers: [(String, String)] = [],
              body: ByteBuffer? = nil, contentMD5: [UInt8]? = nil, accept: Set<Int> = [200], maxAnswer: Int = 1 << 20) async throws -> Answer {
        try await perform(method, key, query: query, headers: headers, body: body, contentMD5: contentMD5) { response in
            let bytes = try await response.body.collect(upTo: maxAnswer)
            let answer = Answer(status: Int(response.status.code), headers: response.headers, body: bytes)
            guard accept.contains(answer.status) else { throw error(answer, method, key) }
            // CompleteMultipartUpload may fail after its 200 has been sent: the error is in the body.
            if method == .POST, answer.text.contains("<Error>") { throw error(answer, method, key, status: 500) }
            return answer
        }
    }

    /// `count` bytes of `key` from `offset`, read into `buffer` (which then holds exactly them; its
    /// memory is reused when no one else holds it).
    func read(_ key: String, at offset: Int64, count: Int, into buffer: inout ByteBuffer) async throws {
        let slot = BufferSlot(buffer)
        buffer = ByteBuffer()
        try await perform(.GET, key, headers: [("range", "bytes=\(offset)-\(offset + Int64(count) - 1)")]) { response in
            guard response.status.code == 206 else {
                let answer = Answer(status: Int(response.status.code), headers: response.headers,
                                    body: try await response.body.collect(upTo: 1 << 20))
                throw error(answer, .GET, key)
            }
            slot.buffer.clear()
            slot.buffer.reserveCapacity(count)
            for try await part in response.body {
                guard slot.buffer.readableBytes + part.readableBytes <= count else { break }
                slot.buffer.writeImmutableBuffer(part)
            }
            guard slot.buffer.readableBytes == count else {
                throw S3ServiceError(status: 502, code: "ShortRead", operation: "GET \(key)",
                                     message: "the store sent \(slot.buffer.readableBytes) bytes where \(count) were asked for")
            }
        }
        buffer = slot.buffer
    }

    /// A buffer handed to one attempt at a time.
    private final class BufferSlot: @unchecked Sendable {
        var buffer: ByteBuffer
        init(_ buffer: ByteBuffer) { self.buffer = buffer }
    }

    /// Runs one request, retried when it fails in a way that may pass; `handle` reads the answer.
    private func perform<T: Sendable>(_ method: HTTPMethod, _ key: String?, query: [(String, String)] = [], headers: [(String, String)] = [],
                                      body: ByteBuffer? = nil, contentMD5: [UInt8]? = nil,
                                      _ handle: @Sendable (HTTPClientResponse) async throws -> T) async throws -> T {
        var pauses = Self.retryPauses[...]
        while true {
            do {
                let request = makeRequest(method, key, query: query, headers: headers, body: body, contentMD5: contentMD5)
                let response = try await Self.http.execute(request, timeout: Self.deadline)
                return try await handle(response)
            } catch let error as S3ServiceError where !error.mayPass {
                throw error
            } catch {
                if Task.isCancelled { throw CancellationError() }
                guard let pause = pauses.popFirst() else {
                    throw StorageUnavailable("the object store at \(settings.endpoint) failed: \(method) \(key ?? settings.bucket): \(Self.describe(error))")
                }
                try await Task.sleep(for: pause)
            }
        }
    }

    private func makeRequest(_ method: HTTPMethod, _ key: String?, query: [(String, String)], headers: [(String, String)],
                             body: ByteBuffer?, contentMD5: [UInt8]?) -> HTTPClientRequest {
        let path = "/\(settings.bucket)" + (key.map { "/\($0)" } ?? "")
        // A body this gateway builds (small XML) is signed; parts and objects are not (their
        // Content-MD5 is checked by the store instead), so that they are not hashed twice.
        let payloadHash = body.map { contentMD5 == nil ? Hashes.sha256Hex(Array(buffer: $0)) : "UNSIGNED-PAYLOAD" }
            ?? Hashes.sha256Hex([])
        let timestamp = SigV4Signer.timestamp(Date())
        var signed = headers + [("host", settings.endpoint.hostHeader), ("x-amz-date", timestamp), ("x-amz-content-sha256", payloadHash)]
        if let token = settings.credentials.sessionToken { signed.append(("x-amz-security-token", token)) }
        if let contentMD5 { signed.append(("content-md5", Data(contentMD5).base64EncodedString())) }
        let authorization = signer.authorization(.init(method: method.rawValue, path: path, query: query, headers: signed, payloadHash: payloadHash),
                                                 timestamp: timestamp)
        let queryText = query.map { $0.1.isEmpty ? SigV4Signer.encode($0.0) : "\(SigV4Signer.encode($0.0))=\(SigV4Signer.encode($0.1))" }
            .joined(separator: "&")
        var request = HTTPClientRequest(url: "\(settings.endpoint)\(SigV4Signer.encode(path, keepingSlashes: true))" + (queryText.isEmpty ? "" : "?" + queryText))
        request.method = method
        for (name, value) in signed { request.headers.replaceOrAdd(name: name, value: value) }
        request.headers.replaceOrAdd(name: "authorization", value: authorization)
        if let body {
            request.body = .bytes(body)
        } else if method == .PUT || method == .POST {
            request.headers.replaceOrAdd(name: "content-length", value: "0")
        }
        return request
    }

    private func error(_ answer: Answer, _ method: HTTPMethod, _ key: String?, status: Int? = nil) -> S3ServiceError {
        let text = answer.text
        return S3ServiceError(status: status ?? answer.status, code: S3XML.value("Code", in: text) ?? "HTTP\(answer.status)",
                              operation: "\(method) \(key ?? settings.bucket)",
                              message: S3XML.value("Message", in: text).map { String($0.prefix(300)) } ?? "")
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? S3ServiceError { return error.description }
        if let error = error as? HTTPClientError { return "\(error)" }
        return String(describing: error)
    }
}

/// The store answered with an error.
public struct S3ServiceError: Error, CustomStringConvertible {
    public let status: Int
    /// S3's error code (`NoSuchBucket`, `AccessDenied`, `SignatureDoesNotMatch`, …).
    public let code: String
    public let operation: String
    public let message: String

    /// Whether trying again may work (the store is overloaded or restarting).
    var mayPass: Bool { status >= 500 || ["SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable"].contains(code) }

    public var description: String { "\(operation): \(status) \(code)\(message.isEmpty ? "" : ": \(message)")" }
}
