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


/// Answers every error with the documented JSON body: unknown routes (404), a known path with
/// another method (405 with Allow), bodies over a limit, and anything unexpected (500, logged).
struct ErrorBodyMiddleware: RouterMiddleware {
    typealias Context = GatewayContext
    let routes: RouteTable

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as GatewayError {
            throw error
        } catch let error as HTTPError {
            if error.status == .notFound {
                let allowed = routes.methods(for: request.uri.path)
                if !allowed.isEmpty {
                    throw GatewayError(.methodNotAllowed, .methodNotAllowed, "\(request.method) is not allowed here",
                                       headers: [.allow: allowed.map(\.rawValue).sorted().joined(separator: ", ")])
                }
                throw GatewayError(.notFound, .notFound, "no such route: \(request.method) \(request.uri.path)")
            }
            if error.status == .contentTooLarge { throw GatewayError(.contentTooLarge, .tooLarge, "the request body is too large") }
            throw GatewayError(error.status, error.status.code < 500 ? .badRequest : .internalError, error.body ?? error.status.reasonPhrase)
        } catch let error as StorageUnavailable {
            context.logger.warning("storage unavailable", metadata: ["route": "\(context.endpointPath ?? "unmatched")", "error": "\(error)"])
            throw GatewayError.storageUnavailable(error)
        } catch is NIOTooManyBytesError {
            throw GatewayError(.contentTooLarge, .tooLarge, "the request body is too large")
        } catch let error as HTTPParserError {
            // NIO's decoder failed inside the body (a malformed chunk); RequestGuard closes the
            // connection after this answer.
            throw GatewayError(.badRequest, .badRequest, "malformed request body (\(error))")
        } catch {
            context.logger.error("request failed", metadata: ["route": "\(context.endpointPath ?? "unmatched")", "error": "\(error)"])
            throw GatewayError(.internalServerError, .internalError, "the gateway failed to answer; try again")
        }
    }

}

/// The routes the router knows (method and path pattern), so a wrong method on a known path is told
/// apart from an unknown path. Filled once the router is built.
final class RouteTable: Sendable {
    private let routes = Mutex<[(method: HTTPRequest.Method, pattern: [Substring])]>([])

    func set(_ list: [(HTTPRequest.Method, String)]) {
        routes.withLock { $0 = list.map { ($0.0, $0.1.split(separator: "/", omittingEmptySubsequences: true)) } }
    }

    /// Methods routed for `path` (a route parameter matches any one segment).
    func methods(for path: String) -> Set<HTTPRequest.Method> {
        let segments = path.split(separator: "/", omittingEmptySubsequences: true)
        return routes.withLock { routes in
            Set(routes.filter { route in
                route.pattern.count == segments.count
                    && zip(route.pattern, segments).allSatisfy { $0.hasPrefix(":") || $0.hasPrefix("{") || $0 == $1 }
            }.map(\.method))
        }
    }
}
