import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore

/// POST /login, and the bearer-token check every other route uses.
struct Authenticator: Sendable {
    let users: UserStore
    let tokens: TokenService
    let throttle = LoginThrottle()

    struct LoginRequest: Decodable { let username: String; let password: String }
    struct LoginResponse: Encodable { let token: String; let expires_at: Date; let token_type = "Bearer" }

    func login(_ request: Request, context: GatewayContext) async throws -> Response {
        let body = try await request.body.collect(upTo: 16 * 1024)
        guard let login = try? JSONDecoder().decode(LoginRequest.self, from: Data(buffer: body)) else {
            throw GatewayError.badRequest("expected a JSON body {\"username\": ..., \"password\": ...}")
        }
        let keys = ["user:\(login.username)", "addr:\(context.remoteAddress)"]
        if let wait = await throttle.retryAfter(keys) {
            throw GatewayError(.tooManyRequests, "too_many_attempts", "too many failed logins; retry in \(wait) s",
                               headers: [.retryAfter: "\(wait)"])
        }
        guard try await users.verify(login.username, password: login.password) else {
            await throttle.failed(keys)
            context.logger.notice("login failed", metadata: ["user": "\(login.username)", "address": "\(context.remoteAddress)"])
            throw GatewayError(.unauthorized, "invalid_credentials", "wrong user name or password")
        }
        await throttle.succeeded(["user:\(login.username)"])
        let (token, expires) = try await tokens.issue(for: login.username)
        context.logger.info("login", metadata: ["user": "\(login.username)"])
        return try jsonResponse(LoginResponse(token: token, expires_at: expires))
    }

    /// The user a request's bearer token names; 401 without a valid one.
    func user(_ request: Request) async throws -> String {
        guard let header = request.headers[.authorization], header.count > 7,
              header.prefix(7).lowercased() == "bearer "
        else { throw GatewayError.unauthorized }
        guard let user = await tokens.verify(String(header.dropFirst(7))), try await users.contains(user) else {
            throw GatewayError.unauthorized
        }
        return user
    }
}

func jsonResponse(_ value: some Encodable, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) throws -> Response {
    let encoder = JSONEncoder()
    encoder.dateEncodingStrategy = .iso8601
    encoder.outputFormatting = [.sortedKeys]
    var headers = headers
    headers[.contentType] = "application/json; charset=utf-8"
    headers[.cacheControl] = "no-store"
    return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
}
