import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import SafeChatAPI
import SealedStream

/// The gateway's HTTP API (docs/API.md), as typed calls.
public struct GatewayClient: Sendable {
    public let server: String
    public let token: String?
    let http: HTTPClient
    /// For downloads, which use their own connections (``RangeDownload``); `http` has its own.
    let tls: TLSConfiguration

    public init(server: String, token: String? = nil, http: HTTPClient = .shared, tls: TLSConfiguration = .makeClientConfiguration()) {
        self.server = server.hasSuffix("/") ? String(server.dropLast()) : server
        self.token = token
        self.http = http
        self.tls = tls
    }

    public init(session: ClientSession) { self.init(server: session.server, token: session.token) }

    func request(_ method: HTTPMethod, _ path: String, headers: [(String, String)] = []) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: server + path)
        request.method = method
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        return request
    }

    /// Sends a request and turns any non-2xx answer into ``ClientError/server(status:code:message:)``.
    func send(_ request: HTTPClientRequest, timeout: TimeAmount = .minutes(5)) async throws -> HTTPClientResponse {
        let response = try await execute(request, timeout: timeout)
        guard (200..<300).contains(Int(response.status.code)) else {
            // The status is the error; the JSON body only adds words, so a missing or odd one is fine.
            let body = try? await response.body.collect(upTo: 64 * 1024)
            let error = body.flatMap { try? WireCoding.decoder.decode(ErrorBody.self, from: Data($0.readableBytesView)) }
            throw ClientError.server(status: Int(response.status.code), code: error?.error ?? "error",
                                     message: error?.message ?? response.status.reasonPhrase)
        }
        return response
    }

    /// The request's answer, whatever its status; a transport failure (refused, dropped, timed out)
    /// is ``ClientError/connectionLost(_:)``, which tells the user that the same command resumes.
    func execute(_ request: HTTPClientRequest, timeout: TimeAmount) async throws -> HTTPClientResponse {
        do {
            return try await http.execute(request, timeout: timeout)
        } catch let error as HTTPClientError {
            let why = switch error {
            case .remoteConnectionClosed: "the connection dropped"
            case .readTimeout, .deadlineExceeded: "no answer within \(timeout.nanoseconds / 1_000_000_000) s"
            case .connectTimeout: "cannot connect to \(server) in time"
            default: "\(error)"
            }
            throw ClientError.connectionLost(why)
        } catch let error as NIOConnectionError {
            let cause: any Error = error.connectionErrors.first?.error ?? error
            throw ClientError.connectionLost("cannot connect to \(server): \(cause)")
        } catch let error as ChannelError {
            throw ClientError.connectionLost("the connection failed (\(error))")
        } catch let error as IOError {
            throw ClientError.connectionLost("the connection failed (\(error.description))")
        }
    }

    func json<T: Decodable>(_ type: T.Type, _ response: HTTPClientResponse) async throws -> T {
        let body = try await response.body.collect(upTo: 64 << 20)
        do { return try WireCoding.decoder.decode(type, from: Data(body.readableBytesView)) } catch {
            throw ClientError.protocolViolation("cannot read \(type): \(error)")
        }
    }

    // MARK: accounts

    public func login(user: String, password: String) async throws -> ClientSession {
        var request = self.request(.POST, "/login", headers: [("Content-Type", "application/json")])
        request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(["username": user, "password": password])))
        let reply = try await json(LoginReply.self, try await send(request, timeout: .seconds(60)))
        return ClientSession(server: server, user: user, token: reply.token, expiresAt: reply.expiresAt, userID: reply.userID)
    }

    /// Revokes this client's token on the gateway (POST /logout). A token the gateway no longer
    /// accepts (401) is as good as revoked.
    public func logout() async throws {
        do {
            _ = try await send(request(.POST, "/logout"), timeout: .seconds(60))
        } catch ClientError.server(status: 401, _, _) {}
    }

    // MARK: keys

    /// Publishes this device's identity bundle (PUT /keys/me).
    public func publish(_ bundle: [UInt8]) async throws {
        var request = self.request(.PUT, "/keys/me", headers: [("Content-Type", "application/json")])
        request.body = .bytes(ByteBuffer(bytes: bundle))
        _ = try await send(request, timeout: .seconds(60))
    }

    /// `user`'s published identity, or nil if they have none. The caller verifies it.
    public func identity(of user: String) async throws -> KeyDirectoryEntry? {
        do {
            return try await json(KeyDirectoryEntry.self, try await send(request(.GET, "/keys/\(user)"), timeout: .seconds(60)))
        } catch ClientError.server(status: 404, _, _) {
            return nil
        }
    }

    // MARK: sessions

    /// The sessions the caller is a current member of.
    public func sessions() async throws -> [SessionListing.Entry] {
        try await json(SessionListing.self, try await send(request(.GET, "/sessions"))).sessions
    }

    // MARK: files

    /// Your files, or (`session`) that session's files.
    public func files(session: String? = nil) async throws -> [FileListing.Entry] {
        if let session { _ = try Self.checked(session) }
        return try await json(FileListing.self, try await send(request(.GET, session.map { "/files?session=\($0)" } ?? "/files"))).files
    }

    public func remove(_ fileID: String) async throws {
        _ = try await send(request(.DELETE, "/files/\(try Self.checked(fileID))"))
    }

    public func manifest(_ fileID: String) async throws -> FileManifest {
        try await json(FileManifest.self, try await send(request(.GET, "/files/\(try Self.checked(fileID))")))
    }

    /// Downloads records `first..<end` of a file (through its FINAL record when `end` is nil) with
    /// one Range request on `eventLoop`, and opens them as they arrive.
    func downloadChunks(_ manifest: FileManifest, key: SessionKey, records first: Int, to end: Int?,
                        on eventLoop: any EventLoop) throws -> OpenedChunks {
        let count = manifest.records.count
        precondition(first < (end ?? count) && (end ?? count) <= count)
        let lastByte = end.map { String(manifest.records[$0].offset - 1) } ?? ""
        var headers = HTTPHeaders()
        if let token { headers.add(name: "Authorization", value: "Bearer \(token)") }
        headers.add(name: "Range", value: "bytes=\(manifest.records[first].offset)-\(lastByte)")
        // A file id's bytes never change, but should they, a whole new body must not be mistaken
        // for the range asked for.
        headers.add(name: "If-Range", value: "\"\(manifest.digest)\"")
        guard let url = URL(string: server + "/download/\(manifest.fileID)") else {
            throw ClientError.protocolViolation("'\(server)' is not a server URL")
        }
        let opener = try IncrementalOpener(key: key, header: manifest.header, firstIndex: UInt32(first), endIndex: end.map { UInt32($0) })
        return try RangeDownload.start(url: url, headers: headers, tls: tls, opener: opener, on: eventLoop)
    }

    static func checked(_ fileID: String) throws -> String {
        guard fileID.utf8.count == 32, fileID.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else {
            throw ClientError.protocolViolation("'\(fileID)' is not a file id (32 lowercase hex digits)")
        }
        return fileID
    }

    // MARK: tus

    /// Creates an upload whose length is given at the end (the stream is sealed on the fly).
    func createUpload(metadata: [String: [UInt8]]) async throws -> String {
        var headers = [(Tus.Header.resumable, Tus.version), (Tus.Header.uploadDeferLength, "1")]
        if !metadata.isEmpty {
            headers.append((Tus.Header.uploadMetadata, metadata.sorted { $0.key < $1.key }
                .map { "\($0.key) \(Data($0.value).base64EncodedString())" }.joined(separator: ",")))
        }
        let response = try await send(request(.POST, Tus.uploadsPath, headers: headers))
        guard let location = response.headers.first(name: "Location"), location.hasPrefix(Tus.uploadsPath + "/") else {
            throw ClientError.protocolViolation("no upload Location in the answer")
        }
        return location
    }

    /// The gateway's offset for an upload, or nil if it no longer knows it. A finished upload
    /// reports its full length.
    func uploadOffset(_ location: String) async throws -> Int64? {
        let response = try await execute(request(.HEAD, location, headers: [(Tus.Header.resumable, Tus.version)]), timeout: .seconds(60))
        switch response.status.code {
        case 200: return response.headers.first(name: Tus.Header.uploadOffset).flatMap { Int64($0) }
        case 404, 410: return nil
        default: throw ClientError.server(status: Int(response.status.code), code: "head_failed", message: "cannot query the upload")
        }
    }

    /// Streams `body` into the upload from `offset`; returns the new offset.
    func patch<Body: AsyncSequence & Sendable>(_ location: String, offset: Int64, body: Body) async throws -> Int64
    where Body.Element == ByteBuffer {
        var request = self.request(.PATCH, location, headers: [
            (Tus.Header.resumable, Tus.version), (Tus.Header.uploadOffset, "\(offset)"), ("Content-Type", Tus.offsetContentType),
        ])
        request.body = .stream(body, length: .unknown)
        let response = try await send(request, timeout: .hours(24))
        guard let text = response.headers.first(name: Tus.Header.uploadOffset), let newOffset = Int64(text) else {
            throw ClientError.protocolViolation("no Upload-Offset after PATCH")
        }
        return newOffset
    }
}
