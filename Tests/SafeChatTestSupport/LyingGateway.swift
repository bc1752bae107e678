import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// A gateway that lies: an HTTP proxy on a loopback port in front of a real gateway, which passes
/// every request through unless the test's rule says otherwise. Clients logged in through it see
/// whatever the rule makes up (another file's manifest under an id, another stream's bytes on a
/// resume, a substituted identity), which is what a hostile gateway can do and what the client's
/// checks must catch. Chat's WebSocket is not proxied: tests of chat lies change what the real
/// gateway's queue holds instead.
public final class LyingGateway: Sendable {
    /// A request as the rule sees it.
    public struct Asked: Sendable {
        public let method: String
        /// Path and query, as sent.
        public let path: String
        public let headers: HTTPFields
        public func header(_ name: String) -> String? { HTTPField.Name(name).flatMap { headers[$0] } }
    }

    /// What to do with a request.
    public enum Lie: Sendable {
        /// Answer this instead of asking the gateway.
        case respond(status: Int, body: [UInt8], contentType: String = "application/json")
        /// Ask the gateway for `path` instead (method, headers but those `dropping`, and body as
        /// sent), and pass its answer on.
        case forward(path: String, dropping: [String] = [])
        /// Ask the gateway (for `path`, if given), pass on the first `bytes` bytes of its answer's
        /// body, then drop the connection.
        case cut(path: String?, after: Int)
        /// Read up to `bytes` of the request's body, then drop the connection without answering.
        case drop(afterBody: Int)
    }

    public typealias Rule = @Sendable (Asked) async throws -> Lie?

    public let upstream: String
    private let boundPort = Mutex(0)
    public var port: Int { boundPort.withLock { $0 } }
    public var base: String { "http://127.0.0.1:\(port)" }
    private let rule = Mutex<Rule?>(nil)
    private let task = Mutex<Task<Void, any Error>?>(nil)

    private init(upstream: String) { self.upstream = upstream }

    /// Sets the rule (nil: pass everything through).
    public func lie(_ rule: Rule?) { self.rule.withLock { $0 = rule } }

    public static func start(upstream: String) async throws -> LyingGateway {
        let proxy = LyingGateway(upstream: upstream)
        var logger = Logger(label: "lying-gateway")
        logger.logLevel = .critical
        let (ports, found) = AsyncStream<Int>.makeStream()
        let app = Application(
            responder: CallbackResponder { (request: Request, context: ProxyContext) in try await proxy.respond(to: request, context) },
            configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { found.yield($0.localAddress?.port ?? 0) },
            logger: logger)
        proxy.task.withLock { $0 = Task { try await app.runService(gracefulShutdownSignals: []) } }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw CancellationError() }
        proxy.boundPort.withLock { $0 = port }
        return proxy
    }

    public func stop() async {
        let running = task.withLock { $0 }
        running?.cancel()
        _ = await running?.result
    }

    private func respond(to request: Request, _ context: ProxyContext) async throws -> Response {
        let asked = Asked(method: request.method.rawValue, path: request.uri.description, headers: request.headers)
        let lie = try await rule.withLock { $0 }?(asked)
        switch lie {
        case .respond(let status, let body, let contentType)?:
            return Response(status: .init(code: status), headers: [.contentType: contentType, .contentLength: "\(body.count)"],
                            body: .init(byteBuffer: ByteBuffer(bytes: body)))
        case .drop(let limit)?:
            var read = 0
            for try await buffer in request.body {
                read += buffer.readableBytes
                if read >= limit { break }
            }
            // Closed before any answer: the client sees its request go unanswered.
            try await context.channel.close(mode: .all)
            throw LyingGatewayCut()
        case .forward(let path, let dropping)?:
            return try await forward(request, path: path, dropping: dropping, cut: nil)
        case .cut(let path, let after)?:
            return try await forward(request, path: path ?? asked.path, dropping: [], cut: after)
        case nil:
            return try await forward(request, path: asked.path, dropping: [], cut: nil)
        }
    }

    private func forward(_ request: Request, path: String, dropping: [String], cut: Int?) async throws -> Response {
        var outgoing = HTTPClientRequest(url: upstream + path)
        outgoing.method = .init(rawValue: request.method.rawValue)
        let skipped = ["host", "connection", "content-length", "transfer-encoding"] + dropping.map { $0.lowercased() }
        for field in request.headers where !skipped.contains(field.name.canonicalName) {
            outgoing.headers.add(name: field.name.rawName, value: field.value)
        }
        if let length = request.headers[.contentLength].flatMap({ Int64($0) }) {
            outgoing.body = .stream(request.body, length: .known(length))
        } else if request.method != .get && request.method != .head {
            outgoing.body = .stream(request.body, length: .unknown)
        }
        let answer = try await HTTPClient.shared.execute(outgoing, timeout: .minutes(5))
        var headers = HTTPFields()
        for (name, value) in answer.headers where !["connection", "transfer-encoding"].contains(name.lowercased()) {
            if let field = HTTPField.Name(name) { headers.append(HTTPField(name: field, value: value)) }
        }
        let body = answer.body
        return Response(status: .init(code: Int(answer.status.code)), headers: headers, body: ResponseBody { writer in
            var sent = 0
            for try await var buffer in body {
                if let cut, sent + buffer.readableBytes >= cut {
                    if let slice = buffer.readSlice(length: cut - sent) { try await writer.write(slice) }
                    throw LyingGatewayCut()
                }
                sent += buffer.readableBytes
                try await writer.write(buffer)
            }
            try await writer.finish(nil)
        })
    }
}

/// Ends a response mid-body, so the connection drops.
struct LyingGatewayCut: Error {}

/// Hummingbird's request context, with the connection (a lie may drop it).
struct ProxyContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let channel: any Channel
    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}
