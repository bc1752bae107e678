import AsyncHTTPClient
import Foundation
import NIOCore
import NIOSSL
import Testing
@testable import SafeChatGateway

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
        var request = HTTPClientRequest(url: "https://127.0.0.1:\(server.port)/login")
        request.method = .POST
        request.body = .bytes(ByteBuffer(string: #"{"username":"user1","password":"password123"}"#))
        let response = try await http.execute(request, timeout: .seconds(30))
        #expect(response.status.code == 200)
        let body = try await response.body.collect(upTo: 1 << 16)
        #expect(String(buffer: body).contains("token"))
        try await http.shutdown()
        await server.stop()
    }
}
