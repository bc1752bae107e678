import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import SafeChatAPI
import SafeChatWeb
import SealedFormat
import ServiceLifecycle
import Synchronization


/// What every request passes before routing: CORS (browsers' preflights included, answered with
/// the tus discovery headers too) and tus's X-HTTP-Method-Override, which must change the method
/// before the router picks a route.
struct FrontResponder<Routes: HTTPResponder<GatewayContext>>: HTTPResponder {
    typealias Context = GatewayContext
    let routes: Routes
    let routeTable: RouteTable
    let maxFileSize: Int64
    let metrics: GatewayMetrics
    let trustedProxies: Set<String>
    let cors = CORSMiddleware<GatewayContext>(
        allowOrigin: .all,
        allowHeaders: ["Authorization", "Content-Type", Tus.Header.uploadLength, Tus.Header.uploadOffset, Tus.Header.resumable,
                       Tus.Header.uploadMetadata, Tus.Header.uploadDeferLength, "Upload-Concat", Tus.Header.uploadChecksum,
                       Tus.Header.methodOverride, "X-Requested-With", "Range", "If-Range", "X-Request-Id"].compactMap { HTTPField.Name($0) },
        allowMethods: [.post, .head, .patch, .options, .get, .delete, .put],
        exposedHeaders: [Tus.Header.uploadOffset, "Location", Tus.Header.uploadLength, Tus.Header.version, Tus.Header.resumable,
                         Tus.Header.maxSize, Tus.Header.extensions, Tus.Header.uploadMetadata, Tus.Header.uploadDeferLength,
                         "Upload-Concat", Tus.Header.uploadExpires, "Content-Range", "Accept-Ranges", "ETag", "X-Request-Id"])

    func respond(to request: Request, context: Context) async throws -> Response {
        let start = ContinuousClock.now
        var context = context
        let requestID = RequestID.choose(offered: request.headers[RequestID.header], from: context.remoteAddress, trustedProxies: trustedProxies)
        context.logger[metadataKey: "request_id"] = .string(requestID)
        var response: Response
        do {
            response = try await respondMeasured(to: request, context: context)
        } catch {
            // Hummingbird answers what escapes here with a 500.
            metrics.requestAnswered(route: context.endpointPath, method: request.method.rawValue, status: 500,
                                    duration: ContinuousClock.now - start)
            logRequest(request, context, status: 500, bytesOut: nil, start: start)
            throw error
        }
        metrics.requestAnswered(route: context.endpointPath, method: request.method.rawValue, status: response.status.code,
                                duration: ContinuousClock.now - start)
        response.headers[RequestID.header] = requestID
        // The line is written once the body has been sent (or has failed), so that it tells the
        // bytes and the time of the whole transfer.
        let body = response.body, status = response.status.code, answered = context
        response.body = ResponseBody(contentLength: body.contentLength) { writer in
            let context = answered
            do {
                try await body.write(writer)
            } catch {
                logRequest(request, context, status: status, bytesOut: context.record.bytesOut, start: start, failed: true)
                throw error
            }
            logRequest(request, context, status: status, bytesOut: context.record.bytesOut ?? body.contentLength.map(Int64.init), start: start)
        }
        return response
    }

    /// One line per request: the route's template (never its path, which holds ids), status,
    /// body bytes, time and account id; names, tokens and keys never.
    private func logRequest(_ request: Request, _ context: Context, status: Int, bytesOut: Int64?, start: ContinuousClock.Instant,
                            failed: Bool = false) {
        let duration = ContinuousClock.now - start
        var metadata: Logger.Metadata = [
            "method": .string(request.method.rawValue),
            "route": .string(context.endpointPath.flatMap { $0 == "NotFound" ? nil : $0 } ?? "unmatched"),
            "status": .stringConvertible(status),
            "duration_ms": .stringConvertible(((Double(duration.components.seconds) * 1e6 + Double(duration.components.attoseconds) / 1e12).rounded()) / 1000),
        ]
        let record = context.record
        if let userID = record.userID { metadata["user_id"] = .string(userID) }
        if let bytesIn = record.bytesIn ?? request.headers[.contentLength].flatMap({ Int64($0) }) { metadata["bytes_in"] = .stringConvertible(bytesIn) }
        if let bytesOut { metadata["bytes_out"] = .stringConvertible(bytesOut) }
        if failed { metadata["body_failed"] = "true" }
        context.logger.info("request", metadata: metadata)
    }

    private func respondMeasured(to request: Request, context: Context) async throws -> Response {
        do {
            var response = try await cors.handle(request, context: context) { request, context in
                try await respondToRoutes(try Self.applyingMethodOverride(request), context: context)
            }
            // A preflight is answered by the CORS middleware alone; it still tells tus clients what
            // this server speaks.
            if request.method == .options, request.uri.path.hasPrefix(Tus.uploadsPath) {
                for field in UploadRoutes.discoveryHeaders(maxFileSize: maxFileSize) where response.headers[field.name] == nil {
                    response.headers.append(field)
                }
            }
            return response
        } catch let error as GatewayError {
            return try error.response(from: request, context: context)
        }
    }

    /// HEAD works wherever GET does: a path with no HEAD route of its own is answered as GET would
    /// be, without the body.
    private func respondToRoutes(_ request: Request, context: Context) async throws -> Response {
        let methods = routeTable.methods(for: request.uri.path)
        guard request.method == .head, !methods.contains(.head), methods.contains(.get) else {
            return try await routes.respond(to: request, context: context)
        }
        var head = request.head
        head.method = .get
        let response = try await routes.respond(to: Request(head: head, body: request.body), context: context)
        var headers = response.headers
        if headers[.contentLength] == nil, let length = response.body.contentLength { headers[.contentLength] = "\(length)" }
        return Response(status: response.status, headers: headers)
    }

    /// A POST to an upload URL that says it is a PATCH or DELETE is routed as one (for clients and
    /// proxies that only speak GET and POST). Nothing else may be overridden: a HEAD override would
    /// answer a request whose client expects a body with headers that promise one it never gets.
    static func applyingMethodOverride(_ request: Request) throws -> Request {
        guard let override = request.headers[.httpMethodOverride] else { return request }
        let path = request.uri.path.split(separator: "/", omittingEmptySubsequences: true)
        guard request.method == .post, path.count == 2, path[0] == Tus.uploadsPath.dropFirst() else {
            throw GatewayError.badRequest("X-HTTP-Method-Override is only for POST to an upload URL")
        }
        var head = request.head
        switch override.uppercased() {
        case "PATCH": head.method = .patch
        case "DELETE": head.method = .delete
        default: throw GatewayError.badRequest("X-HTTP-Method-Override supports PATCH and DELETE")
        }
        return Request(head: head, body: request.body)
    }
}
