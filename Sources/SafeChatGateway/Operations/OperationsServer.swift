import Foundation
import Hummingbird
import Logging
import NIOCore
import SafeChatAPI

/// The operators' listener (`--metrics-listen`), apart from the public port so that metrics and
/// probes are not exposed to users: GET /metrics (Prometheus text format), /healthz (the process
/// answers) and /readyz (``Readiness``: 200 when traffic may be sent here, 503 when not, with a JSON
/// body naming each check).
struct OperationsServer {
    let metrics: GatewayMetrics
    let readiness: Readiness

    func makeApplication(host: String, port: Int, logger: Logger,
                         onServerRunning: @escaping @Sendable (Int) async -> Void) -> some ApplicationProtocol {
        let router = Router()
        router.add(middleware: JSONNotFound())
        router.get("metrics") { [metrics] _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(bytes: metrics.exposition())))
        }
        router.get("healthz") { _, _ in try jsonResponse(["status": "alive"]) }
        router.get("readyz") { [readiness] _, _ in
            let report = await readiness.report()
            return try jsonResponse(report, status: report.ready ? .ok : .serviceUnavailable)
        }
        return Application(router: router, server: .http1(configuration: .init(idleTimeout: .seconds(60))),
                           configuration: .init(address: .hostname(host, port: port), serverName: "SafeChat-operations"),
                           onServerRunning: { await onServerRunning($0.localAddress?.port ?? 0) }, logger: logger)
    }
}

/// Unknown paths get the same JSON error body as on the public port.
private struct JSONNotFound: RouterMiddleware {
    func handle(_ request: Request, context: BasicRequestContext,
                next: (Request, BasicRequestContext) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound {
            return try jsonResponse(ErrorBody(error: .notFound, message: "no such endpoint: \(request.uri.path) (GET /metrics, /healthz, /readyz)"),
                                    status: .notFound)
        }
    }
}
