import Foundation
import Testing
@testable import SafeChatGateway
import SafeChatKeys
import SafeChatTestSupport
import SealedStream

/// Every request gets an answer (issue 24): malformed requests, sent on raw sockets as a hostile
/// client would, are answered at once (well before the 60 s idle timeout the gateway runs with here)
/// with the status HTTP/1.1 gives them and the JSON error body of docs/API.md, and the connection
/// is closed.
@Suite struct MalformedRequestTests {
    struct Case: Sendable, CustomTestStringConvertible {
        let name: String
        let bytes: [UInt8]
        let status: Int
        var testDescription: String { name }
        init(_ name: String, _ text: String, _ status: Int) { self.init(name, Array(text.utf8), status) }
        init(_ name: String, _ bytes: [UInt8], _ status: Int) {
            self.name = name
            self.bytes = bytes
            self.status = status
        }
    }

    static let host = "Host: gateway\r\n"
    static let login = "POST /login HTTP/1.1\r\n" + host
    static let chat = "GET /chat?session=" + String(repeating: "a", count: 32) + " HTTP/1.1\r\n" + host
        + "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"

    static let cases: [Case] = [
        // Bytes that are not UTF-8, or control characters, in the target or a header.
        Case("not UTF-8 in the path", Array("GET /".utf8) + [0xFF, 0xFE] + Array(" HTTP/1.1\r\n\(host)\r\n".utf8), 400),
        Case("a control character in the path", "GET /a\u{01}b HTTP/1.1\r\n\(host)\r\n", 400),
        Case("not UTF-8 in a header", Array("GET / HTTP/1.1\r\n\(host)X-Note: ".utf8) + [0xC3, 0x28] + Array("\r\n\r\n".utf8), 400),
        Case("a control character in a header", "GET / HTTP/1.1\r\n\(host)X-Note: a\u{01}b\r\n\r\n", 400),
        // Content-Length.
        Case("conflicting Content-Length", login + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef", 400),
        Case("duplicate Content-Length", login + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nabcde", 400),
        Case("signed Content-Length", login + "Content-Length: +5\r\n\r\nabcde", 400),
        Case("negative Content-Length", login + "Content-Length: -5\r\n\r\nabcde", 400),
        Case("hexadecimal Content-Length", login + "Content-Length: 0x5\r\n\r\nabcde", 400),
        Case("oversized Content-Length", login + "Content-Length: 99999999999999999999999\r\n\r\nabcde", 400),
        Case("a body over the route's limit", login + "Content-Length: 100000\r\n\r\n", 413),
        Case("Expect: 100-continue with a body over the limit", login + "Content-Length: 100000000\r\nExpect: 100-continue\r\n\r\n", 413),
        // Transfer-Encoding.
        Case("Transfer-Encoding with Content-Length", login + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        Case("an encoding but chunked", login + "Transfer-Encoding: gzip\r\n\r\nabc", 400),
        Case("a coding before chunked", login + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
        Case("Transfer-Encoding: xchunked", login + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400),
        Case("chunked twice", login + "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400),
        // Malformed chunked bodies: the route's 400, never 500.
        Case("a chunk size of -5", login + "Transfer-Encoding: chunked\r\n\r\n-5\r\nabcde\r\n0\r\n\r\n", 400),
        Case("a chunk size of 0x5", login + "Transfer-Encoding: chunked\r\n\r\n0x5\r\nabcde\r\n0\r\n\r\n", 400),
        Case("a chunk size past 64 bits", login + "Transfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nabcde\r\n0\r\n\r\n", 400),
        // Line endings and header syntax.
        Case("obs-fold", "GET / HTTP/1.1\r\n\(host)X-Note: a\r\n b\r\n\r\n", 400),
        Case("bare LF line endings", "GET / HTTP/1.1\nHost: gateway\nX-Note: a\n\n", 400),
        Case("bare CR line endings", "GET / HTTP/1.1\rHost: gateway\rX-Note: a\r\r", 400),
        Case("a header without a colon", "GET / HTTP/1.1\r\n\(host)X-Note a\r\n\r\n", 400),
        // Sizes.
        Case("a very long header", "GET / HTTP/1.1\r\n\(host)X-Note: " + String(repeating: "a", count: 100_000) + "\r\n\r\n", 431),
        Case("a very long URL", "GET /" + String(repeating: "a", count: 100_000) + " HTTP/1.1\r\n\(host)\r\n", 414),
        Case("a very long method", String(repeating: "A", count: 100_000) + " / HTTP/1.1\r\n\(host)\r\n", 501),
        Case("an unknown method", "FROB / HTTP/1.1\r\n\(host)\r\n", 501),
        Case("too many headers", "GET / HTTP/1.1\r\n\(host)" + (0..<500).map { "X-\($0): a\r\n" }.joined() + "\r\n", 431),
        // Versions and upgrades.
        Case("an HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
        Case("HTTP/3.0", "GET / HTTP/3.0\r\n\(host)\r\n", 505),
        Case("Upgrade: h2c", "GET / HTTP/1.1\r\n\(host)Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n", 400),
        Case("an upgrade but WebSocket", "GET / HTTP/1.1\r\n\(host)Connection: Upgrade\r\nUpgrade: foo\r\n\r\n", 400),
        // The WebSocket handshake, as RFC 6455 section 4.2.1 says.
        Case("a WebSocket key that is not 16 bytes", chat + "Sec-WebSocket-Key: YWJj\r\n\r\n", 400),
        Case("a WebSocket handshake by POST", chat.replacingOccurrences(of: "GET", with: "POST") + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nContent-Length: 0\r\n\r\n", 400),
        Case("a WebSocket handshake in HTTP/1.0", chat.replacingOccurrences(of: "HTTP/1.1", with: "HTTP/1.0") + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", 400),
        Case("a WebSocket version but 13", chat.replacingOccurrences(of: "Version: 13", with: "Version: 8") + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", 426),
        // Host.
        Case("no Host", "GET / HTTP/1.1\r\n\r\n", 400),
        Case("two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ]

    @Test(arguments: cases)
    func aMalformedRequestIsAnsweredAtOnceWithItsStatusAndAJSONBody(_ request: Case) async throws {
        try await TestGateway.with { server in
            let socket = try RawConnection(port: server.port)
            defer { socket.close() }
            let start = ContinuousClock.now
            try? socket.send(request.bytes)  // the gateway may answer and close before it has read everything
            let bytes = socket.received(within: .seconds(10))
            let elapsed = ContinuousClock.now - start
            let answer = try #require(RawAnswer(bytes), "\(request.name): no answer: \(String(decoding: bytes.prefix(300), as: UTF8.self))")
            #expect(answer.status == request.status, "\(request.name): \(answer.status) \(String(decoding: answer.body, as: UTF8.self))")
            #expect(answer.errorCode != nil, "\(request.name): a JSON error body: \(String(decoding: answer.body, as: UTF8.self))")
            #expect(elapsed < .seconds(5), "\(request.name): answered at once and closed (\(elapsed))")
        }
    }

    /// A client's WebSocket frames must be masked (RFC 6455 section 5.1): an unmasked one closes the
    /// connection with 1002.
    @Test func anUnmaskedClientFrameClosesTheChatWith1002() async throws {
        try await TestGateway.with { server in
            // A session of alice's, as SessionRouteTests makes one.
            let routes = SessionRouteTests()
            let alice = try await routes.accounts(server)[0]
            let sessionID = Secrets.randomBytes(16), session = Secrets.hex(sessionID)
            let epoch0 = try EpochDocument.make(sessionID: sessionID, epoch: 0, previous: nil, signer: alice.identity, members: [alice.entry],
                                                key: SessionKey.random())
            #expect(try await routes.post(alice.http, "/sessions", epoch0).status == 201)
            let client = alice.http
            let socket = try RawConnection(port: server.port)
            defer { socket.close() }
            try socket.send(Array(("GET /chat?session=\(session) HTTP/1.1\r\n\(Self.host)Connection: Upgrade\r\nUpgrade: websocket\r\n"
                + "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer \(client.token!)\r\n\r\n").utf8))
            let upgraded = socket.received(within: .seconds(20)) { $0.firstRange(of: Array("\r\n\r\n".utf8)) != nil }
            #expect(String(decoding: upgraded, as: UTF8.self).hasPrefix("HTTP/1.1 101"), "\(String(decoding: upgraded, as: UTF8.self))")
            let frame = Array(#"{"v":1,"type":"ack","seq":1}"#.utf8)
            try socket.send([0x81, UInt8(frame.count)] + frame)
            let closing = socket.received(within: .seconds(20))
            // A close frame (0x88) whose payload starts with 1002 (0x03EA), then the end of the connection.
            let close = try #require(closing.firstRange(of: [0x88]).map { Array(closing[$0.lowerBound...]) }, "\(closing)")
            #expect(close.count >= 4 && close[2] == 0x03 && close[3] == 0xEA, "\(close)")
        }
    }

    /// --body-timeout holds for every request body, not only uploads: a login whose body stops
    /// coming is answered 408 and closed.
    @Test func aBodyThatStopsArrivingIsCutOffOnEveryRoute() async throws {
        try await TestGateway.with(configure: { $0.bodyStallTimeout = .seconds(1) }) { server in
            let socket = try RawConnection(port: server.port)
            defer { socket.close() }
            let start = ContinuousClock.now
            try socket.send(Array((Self.login + "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"username\":").utf8))
            let answer = try #require(RawAnswer(socket.received(within: .seconds(10))))
            #expect(answer.status == 408 && answer.errorCode == "body_timeout", "\(answer.status)")
            #expect(ContinuousClock.now - start < .seconds(5))
        }
    }
}
