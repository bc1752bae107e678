import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore

/// Every failure the gateway reports: an HTTP status and a JSON body `{"error": code, "message": text}`.
public struct GatewayError: HTTPResponseError, Sendable {
    public let status: HTTPResponse.Status
    public let code: String
    public let message: String
    public var headers: HTTPFields = [:]

    public init(_ status: HTTPResponse.Status, _ code: String, _ message: String, headers: HTTPFields = [:]) {
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let body = try encoder.encode(["error": code, "message": message])
        var headers = self.headers
        headers[.contentType] = "application/json; charset=utf-8"
        headers[.cacheControl] = "no-store"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    static let unauthorized = GatewayError(.unauthorized, "unauthorized", "a valid bearer token is required",
                                           headers: [.wwwAuthenticate: "Bearer realm=\"safechat\""])
    static func notFound(_ what: String) -> GatewayError { GatewayError(.notFound, "not_found", "\(what) not found") }
    static func badRequest(_ message: String) -> GatewayError { GatewayError(.badRequest, "bad_request", message) }
}
