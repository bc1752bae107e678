import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import SafeChatAPI

/// Every failure the gateway reports: an HTTP status and a JSON ``ErrorBody``
/// `{"error": code, "message": text}`.
public struct GatewayError: HTTPResponseError, Sendable {
    public let status: HTTPResponse.Status
    public let code: ErrorCode
    public let message: String
    public var headers: HTTPFields = [:]

    public init(_ status: HTTPResponse.Status, _ code: ErrorCode, _ message: String, headers: HTTPFields = [:]) {
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
    }

    /// `{"error": code, "message": text}`.
    var jsonBody: [UInt8] { (try? Array(WireCoding.encoder.encode(ErrorBody(error: code, message: message)))) ?? [] }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        let body = jsonBody
        var headers = self.headers
        headers[.contentType] = "application/json; charset=utf-8"
        headers[.cacheControl] = "no-store"
        // A HEAD answer promises no body; its headers still say what went wrong.
        let payload: ResponseBody = request.method == .head ? .init() : .init(byteBuffer: ByteBuffer(bytes: body))
        if request.method != .head { headers[.contentLength] = "\(body.count)" }
        return Response(status: status, headers: headers, body: payload)
    }

    static let unauthorized = GatewayError(.unauthorized, .unauthorized, "a valid bearer token is required",
                                           headers: [.wwwAuthenticate: "Bearer realm=\"safechat\""])
    static func notFound(_ what: String) -> GatewayError { GatewayError(.notFound, .notFound, "\(what) not found") }
    static func badRequest(_ message: String) -> GatewayError { GatewayError(.badRequest, .badRequest, message) }
    static let locked = GatewayError(.init(code: 423, reasonPhrase: "Locked"), .uploadBusy, "another request is appending to this upload")
    static func tooLarge(_ max: Int64) -> GatewayError {
        GatewayError(.contentTooLarge, .tooLarge, "the file exceeds the maximum size of \(max) bytes")
    }
    static let overQuota = GatewayError(.contentTooLarge, .quotaExceeded, "the upload would exceed your storage quota")
    /// A blob store failure as the client sees it: 503 with Retry-After when the store is
    /// unreachable (try again; nothing acknowledged is lost), else 500.
    static func storage(_ error: any Error) -> GatewayError {
        if let error = error as? GatewayError { return error }
        if let error = error as? StorageUnavailable { return .storageUnavailable(error) }
        return GatewayError(.internalServerError, .storageError, "the gateway could not store the upload; nothing was kept")
    }
    static func storageUnavailable(_ error: StorageUnavailable) -> GatewayError {
        GatewayError(.serviceUnavailable, .storageUnavailable,
                     "the file store is unavailable (\(error.description)); try again shortly: nothing acknowledged was lost",
                     headers: [.retryAfter: "5"])
    }
    /// The uploader was removed from the session the upload goes to (it is dropped).
    static let notMember = GatewayError(.notFound, .notFound,
                                        "session not found: you are no longer a member of the session this upload goes to; nothing more was stored")
}
