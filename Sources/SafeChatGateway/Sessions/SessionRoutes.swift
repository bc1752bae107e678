import Foundation
import Hummingbird
import SafeChatAPI

/// Sessions: POST /sessions (epoch 0), GET /sessions, GET /sessions/{id}[?after=N],
/// POST /sessions/{id}/epochs, and the prototype's GET /get_chat_key?session=ID[&epoch=N], which
/// returns the caller's wrap of an epoch's key (only their private key opens it). Everyone but a
/// current member is told the session does not exist (404).
struct SessionRoutes: Sendable {
    let sessions: any SessionStore
    /// Told after an epoch changed a session's members.
    let membersChanged: @Sendable (SessionSummary) async -> Void

    func register(on router: RouterGroup<GatewayContext>) {
        router.post("sessions") { request, context in try await create(request, context) }
        router.get("sessions") { request, context in try await list(request, context) }
        router.get("sessions/:id") { request, context in try await chain(request, context) }
        router.post("sessions/:id/epochs") { request, context in try await append(request, context) }
        router.get("get_chat_key") { request, context in try await chatKey(request, context) }
    }

    func create(_ request: Request, _ context: GatewayContext) async throws -> Response {
        let principal = try context.requirePrincipal()
        let (epoch, bytes) = try await epoch(from: request)
        let summary = try await sessions.create(epoch, encodedBytes: bytes, by: principal.id)
        context.logger.info("session created", metadata: ["session_id": "\(summary.sessionID)", "members": "\(summary.members.count)"])
        return try jsonResponse(SessionChain(sessionID: summary.sessionID.value, epochs: [epoch]), status: .created,
                                headers: [.location: "/sessions/\(summary.sessionID)"])
    }

    func list(_ request: Request, _ context: GatewayContext) async throws -> Response {
        let principal = try context.requirePrincipal()
        let entries = try await sessions.sessions(of: principal.id).map {
            SessionListing.Entry(sessionID: $0.sessionID.value, epoch: $0.currentEpoch, members: $0.members.count)
        }
        return try jsonResponse(SessionListing(sessions: entries))
    }

    /// The chain (or the part after `?after=N`), streamed an epoch at a time as stored: what the
    /// gateway holds in memory does not grow with a session's log.
    func chain(_ request: Request, _ context: GatewayContext) async throws -> Response {
        let summary = try await memberSummary(context.parameters.get("id"), context)
        var first = 0
        if let after = request.uri.queryParameters.get("after") {
            guard let n = Int(after), n >= -1 else { throw GatewayError.badRequest("after must be an epoch number") }
            first = n + 1
        }
        let numbers = min(first, summary.epochCount)..<summary.epochCount
        let id = summary.sessionID, sessions = self.sessions
        return Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody { writer in
            try await writer.write(ByteBuffer(string: #"{"epochs":["#))
            for number in numbers {
                guard let bytes = try await sessions.epochDocument(id, number: number) else { throw GatewayError.notFound("epoch \(number)") }
                try await writer.write(ByteBuffer(bytes: (number == numbers.lowerBound ? [] : [UInt8(ascii: ",")]) + Array(bytes)))
            }
            try await writer.write(ByteBuffer(string: #"],"session_id":"\#(id)"}"#))
            try await writer.finish(nil)
        })
    }

    func append(_ request: Request, _ context: GatewayContext) async throws -> Response {
        let principal = try context.requirePrincipal()
        guard let text = context.parameters.get("id"), let id = SessionID(text) else {
            throw GatewayError(.badRequest, .invalidID, "a session id is 32 lowercase hexadecimal digits")
        }
        let (epoch, bytes) = try await epoch(from: request)
        let summary = try await sessions.append(epoch, encodedBytes: bytes, to: id, by: principal.id)
        await membersChanged(summary)
        return try jsonResponse(SessionChain(sessionID: summary.sessionID.value, epochs: [epoch]), status: .created)
    }

    func chatKey(_ request: Request, _ context: GatewayContext) async throws -> Response {
        let principal = try context.requirePrincipal()
        let summary = try await memberSummary(request.uri.queryParameters.get("session").map { String($0) }, context)
        var epoch = summary.currentEpoch
        if let text = request.uri.queryParameters.get("epoch") {
            guard let n = UInt32(text), n <= summary.currentEpoch else { throw GatewayError.notFound("epoch") }
            epoch = n
        }
        // The newest document holding the caller's wrap of that epoch's key (a later one may have
        // shared it with a newcomer).
        guard let wrap = try await sessions.wrap(for: principal.id, keyEpoch: epoch, in: summary.sessionID) else {
            throw GatewayError.notFound("key for epoch \(epoch)")
        }
        return try jsonResponse(WrappedKeyReply(sessionID: summary.sessionID.value, epoch: epoch, wrap: wrap))
    }

    private func memberSummary(_ text: String?, _ context: GatewayContext) async throws -> SessionSummary {
        let principal = try context.requirePrincipal()
        guard let text, let id = SessionID(text) else {
            throw GatewayError(.badRequest, .invalidID, "a session id is 32 lowercase hexadecimal digits")
        }
        guard let summary = try await sessions.summary(id), summary.members.contains(principal.id) else { throw GatewayError.notFound("session") }
        return summary
    }

    /// The posted epoch, and its size as sent (what it counts against the session's limit).
    private func epoch(from request: Request) async throws -> (EpochWire, Int) {
        let body = try await request.body.collect(upTo: BodyLimits.epoch)
        guard let epoch = try? WireCoding.decoder.decode(EpochWire.self, from: Data(buffer: body)) else {
            throw GatewayError.badRequest("expected an epoch document (docs/KEYS.md 7)")
        }
        return (epoch, body.readableBytes)
    }
}
