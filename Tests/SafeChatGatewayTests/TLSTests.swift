import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import SafeChatClient
import Testing
@testable import SafeChatGateway
import SafeChatTestSupport

/// --tls-cert / --tls-key: the same routes over HTTPS on the same port.
@Suite struct TLSTests {
    @Test func theGatewayServesHTTPSWithAGivenCertificate() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let cert = dir.appendingPathComponent("cert.pem").path, key = dir.appendingPathComponent("key.pem").path
        let made = try await runProcess(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                                         "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost",
                                         "-addext", "subjectAltName=IP:127.0.0.1"], in: dir)
        #expect(made.status == 0, "\(made.output)")
        let server = try await TestGateway.start { $0.tlsCertificatePath = cert; $0.tlsKeyPath = key }
        defer { server.removeData() }
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .file(cert)
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: tls))
        // The client must be shut down whatever happens (AsyncHTTPClient traps on a client dropped
        // running): a failure below is recorded, then cleaned up after.
        do {
            var request = HTTPClientRequest(url: "https://127.0.0.1:\(server.port)/login")
            request.method = .POST
            request.body = .bytes(ByteBuffer(string: #"{"username":"user1","password":"password123"}"#))
            let response = try await http.execute(request, timeout: .seconds(30))
            #expect(response.status.code == 200)
            let body = try await response.body.collect(upTo: 1 << 16)
            func field(_ name: String, _ json: [UInt8]) -> String? {
                (try? JSONSerialization.jsonObject(with: Data(json)) as? [String: Any])?[name] as? String
            }
            let token = try #require(field("token", Array(buffer: body)))

            // A download over TLS takes the copying path (sendfile cannot encrypt): same bytes, ranges too.
            func send(_ method: HTTPMethod, _ path: String, headers: [(String, String)] = [], body: [UInt8]? = nil) async throws -> (Int, [UInt8]) {
                var request = HTTPClientRequest(url: "https://127.0.0.1:\(server.port)\(path)")
                request.method = method
                request.headers.add(name: "Authorization", value: "Bearer \(token)")
                for (name, value) in headers { request.headers.add(name: name, value: value) }
                if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
                let response = try await http.execute(request, timeout: .seconds(30))
                return (Int(response.status.code), Array(buffer: try await response.body.collect(upTo: 16 << 20)))
            }
            let (sessionKey, plaintext, sealed) = try await sealedStream(plaintextSize: 3 << 20)
            let (created, reply) = try await send(.POST, "/upload", body: sealed)
            #expect(created == 201)
            let id = try #require(field("file_id", reply))
            let whole = try await send(.GET, "/download/\(id)")
            #expect(whole.0 == 200 && fingerprint(whole.1) == fingerprint(sealed))
            let part = try await send(.GET, "/download/\(id)", headers: [("Range", "bytes=1000-")])
            #expect(part.0 == 206 && fingerprint(part.1) == fingerprint(sealed[1000...]))

            // The client's striped download makes its own TLS connections, with the trust it is given.
            let output = dir.appendingPathComponent("out").path
            let client = GatewayClient(server: "https://127.0.0.1:\(server.port)", token: token, http: http, tls: tls)
            try await Downloader(client: client, key: sessionKey).download(id, to: output)
            #expect(fingerprint(try Data(contentsOf: URL(fileURLWithPath: output))) == fingerprint(plaintext))
            // Without it, the self-signed certificate is refused and no output appears.
            let untrusting = GatewayClient(server: "https://127.0.0.1:\(server.port)", token: token, http: http)
            await #expect(throws: (any Error).self) {
                try await Downloader(client: untrusting, key: sessionKey).download(id, to: output + "2")
            }
            #expect(!FileManager.default.fileExists(atPath: output + "2"))
        } catch {
            Issue.record(error)
        }
        try await http.shutdown()
        await server.stop()
    }
}
