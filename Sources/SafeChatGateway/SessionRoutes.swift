import Foundation
import Hummingbird
import SafeChatAPI

/// Sessions: POST /sessions (epoch 0), GET /sessions, GET /sessions/{id}[?after=N],
/// POST /sessions/{id}/epochs, and the prototype's GET /get_chat_key?session=ID[&epoch=N], which
/// returns the caller's wrap of an epoch's key (only their private key opens it). Everyone but a
/// current member is told the session does not exist (404).
struct SessionRoutes: Sendable {
    let sessions: SessionStore
    /// Told after an epoch changed a session's members.
    let membersChanged: @Sendable (SessionStore.Record) async -> Void

    func register(on router: RouterGroup<GatewayContext>) {
        router.post("sessions") { request, context in try await create(request, context) }
        router.get("sessions") { request, context in try await list(request, context) }
        router.get("sessions/:id") { request, context in try await chain(request, context) }
        router.post("sessions/:id/epochs") { request, context in try await append(request, context) }
        router.get("get_chat_key") { request, context in try await chatKey(request, context) }
    }

    func create(_ request: Request, _ context: GatewayContext) async throws -> Response {
        let principal = try context.requirePrincipal()
        let record = try await sessions.create(try await epoch(from: request), by: principal.id)
        context.logger.info("session created", metadata: ["session_id": "\(record.sessionID)", "members": "\(record.members.count)"])
        return try jsonResponse(SessionChain(sessionID: record.sessionID.value, epochs: record.epochs), status: .created,
                                headers: [.location: "/sessions/\(record.sessionID)"])
    }

    func list(_ request: Request, _ context: GatewayContext) async throws -> Response {
        let principal = try context.requirePrincipal()
        let entries = await sessions.sessions(of: principal.id).map {
            SessionListing.Entry(sessionID: $0.sessionID.value, epoch: UInt32($0.epochs.count - 1), members: $0.members.count)
        }
        return try jsonResponse(SessionListing(sessions: entries))
    }

    func chain(_ request: Request, _ context: GatewayContext) async throws -> Response {
        let record = try await memberRecord(context.parameters.get("id"), context)
        var epochs = record.epochs
        if let after = request.uri.queryParameters.get("after") {
            guard let n = Int(after), n >= -1 else { throw GatewayError.badRequest("after must be an epoch number") }
            epochs = Array(epochs.dropFirst(min(epochs.count, n + 1)))
        }
        return try jsonResponse(SessionChain(sessionID: record.sessionID.value, epochs: epochs))
    }

    func append(_ request: Request, _ context: GatewayContext) async throws -> Response {
        let principal = try context.requirePrincipal()
        guard let text = context.parameters.get("id"), let id = SessionID(text) else {
            throw GatewayError(.badRequest, .invalidID, "a session id is 32 lowercase hexadecimal digits")
        }
        let record = try await sessions.append(try await epoch(from: request), to: id, by: principal.id)
        await membersChanged(record)
        return try jsonResponse(SessionChain(sessionID: record.sessionID.value, epochs: [record.epochs.last!]), status: .created)
    }

    func chatKey(_ request: Request, _ context: GatewayContext) async throws -> Response {
        let principal = try context.requirePrincipal()
        let record = try await memberRecord(request.uri.queryParameters.get("session").map { String($0) }, context)
        let current = UInt32(record.epochs.count - 1)
        var epoch = current
        if let text = request.uri.queryParameters.get("epoch") {
            guard let n = UInt32(text), n <= current else { throw GatewayError.notFound("epoch") }
            epoch = n
        }
        // The newest document holding the caller's wrap of that epoch's key (a later one may have
        // shared it with a newcomer).
        for document in record.epochs.reversed() {
            if let wrap = document.wraps.first(where: { $0.userID == principal.id.value && $0.keyEpoch == epoch }) {
                return try jsonResponse(WrappedKeyReply(sessionID: record.sessionID.value, epoch: epoch, wrap: wrap))
            }
        }
        throw GatewayError.notFound("key for epoch \(epoch)")
    }

    private func memberRecord(_ text: String?, _ context: GatewayContext) async throws -> SessionStore.Record {
        let principal = try context.requirePrincipal()
        guard let text, let id = SessionID(text) else {
            throw GatewayError(.badRequest, .invalidID, "a session id is 32 lowercase hexadecimal digits")
        }
        guard let record = await sessions.record(id), record.members.contains(principal.id) else { throw GatewayError.notFound("session") }
        return record
    }

    private func epoch(from request: Request) async throws -> EpochWire {
        let body = try await request.body.collect(upTo: BodyLimits.epoch)
        guard let epoch = try? WireCoding.decoder.decode(EpochWire.self, from: Data(buffer: body)) else {
            throw GatewayError.badRequest("expected an epoch document (docs/KEYS.md 7)")
        }
        return epoch
    }
}
