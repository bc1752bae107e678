import Foundation
import SafeChatAPI
import SealedFormat
import Synchronization

/// Sessions as the gateway keeps them: each one's chain of epoch documents, opaque but for who is
/// a member now. One JSON file per session in `registry/sessions/`, rewritten (write, fsync,
/// rename) when an epoch is appended.
///
/// The gateway checks only what it needs to decide who may see a session: that an epoch names
/// this session and the next number, and that its poster is a current member who signed it as
/// themselves. It never verifies signatures: clients do (docs/KEYS.md 7.4), and trust nothing here.
public actor SessionStore {
    public struct Record: Codable, Sendable {
        public let sessionID: SessionID
        public var epochs: [EpochWire]
        /// The current epoch's members.
        public var members: Set<UserID>
    }

    private let directory: URL
    private var sessions: [SessionID: Record] = [:]
    /// Each session's current members, readable without a hop to the actor: an upload checks it
    /// for every part it appends. Updated once an epoch is durable, before it is acknowledged.
    private nonisolated let currentMembers = Mutex<[SessionID: Set<UserID>]>([:])
    /// Sessions with an append being written: a second one waits for no one and is told to retry.
    private var writing: Set<SessionID> = []

    public init(directory: String) throws {
        self.directory = URL(fileURLWithPath: directory)
        try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        for name in try FileManager.default.contentsOfDirectory(atPath: directory) where name.hasSuffix(".json") {
            guard let id = SessionID(name.dropLast(5)) else { continue }
            let record = try WireCoding.decoder.decode(Record.self, from: Data(contentsOf: self.directory.appendingPathComponent(name)))
            if record.sessionID == id { sessions[id] = record }
        }
        let loaded = sessions.mapValues(\.members)
        currentMembers.withLock { $0 = loaded }
    }

    /// Whether `user` is a current member of `session`, as of the last epoch stored.
    public nonisolated func isMember(_ user: UserID, of session: SessionID) -> Bool {
        currentMembers.withLock { $0[session]?.contains(user) ?? false }
    }

    public func record(_ id: SessionID) -> Record? { sessions[id] }

    public func sessions(of user: UserID) -> [Record] {
        sessions.values.filter { $0.members.contains(user) }.sorted { $0.sessionID.value < $1.sessionID.value }
    }

    /// Epoch 0 of a new session, posted by `creator`.
    func create(_ epoch: EpochWire, by creator: UserID) async throws -> Record {
        guard let id = SessionID(epoch.sessionID) else { throw GatewayError(.badRequest, .invalidID, "a session id is 32 lowercase hexadecimal digits") }
        let members = try Self.check(epoch, session: id, number: 0, poster: creator)
        guard sessions[id] == nil, !writing.contains(id) else {
            throw GatewayError(.conflict, .sessionExists, "a session with this id exists; make a new random id")
        }
        let record = Record(sessionID: id, epochs: [epoch], members: members)
        try await save(record)
        return record
    }

    /// The next epoch, posted by `poster`, who must be a current member.
    func append(_ epoch: EpochWire, to id: SessionID, by poster: UserID) async throws -> Record {
        guard var record = sessions[id], record.members.contains(poster) else { throw GatewayError.notFound("session") }
        guard !writing.contains(id) else {
            throw GatewayError(.conflict, .epochConflict, "another epoch is being added to this session; fetch the chain and try again")
        }
        let next = UInt32(record.epochs.count)
        guard epoch.epoch == next else {
            throw GatewayError(.conflict, .epochConflict, "the next epoch is \(next), not \(epoch.epoch); fetch the chain and try again")
        }
        record.members = try Self.check(epoch, session: id, number: next, poster: poster)
        record.epochs.append(epoch)
        try await save(record)
        return record
    }

    /// Writes `record` off the actor's thread; no other append to it can start meanwhile.
    private func save(_ record: Record) async throws {
        writing.insert(record.sessionID)
        defer { writing.remove(record.sessionID) }
        let data = try WireCoding.encoder.encode(record)
        let path = directory.appendingPathComponent("\(record.sessionID).json").path
        try await blockingIO {
            let writer = try AtomicFileWriter(destination: path, permissions: 0o600)
            try writer.write(Array(data))
            try writer.commit()
        }
        sessions[record.sessionID] = record
        currentMembers.withLock { $0[record.sessionID] = record.members }
    }

    /// The shape the gateway relies on; returns the epoch's members.
    static func check(_ epoch: EpochWire, session: SessionID, number: UInt32, poster: UserID) throws -> Set<UserID> {
        guard epoch.version == 1, epoch.sessionID == session.value, epoch.epoch == number else {
            throw GatewayError.badRequest("an epoch document (docs/KEYS.md 7) of this session with epoch \(number)")
        }
        let members = epoch.members.compactMap { UserID($0.userID) }
        guard members.count == epoch.members.count, Set(members).count == members.count, !members.isEmpty,
              members.count <= EpochWire.maxMembers else {
            throw GatewayError.badRequest("an epoch lists 1 to \(EpochWire.maxMembers) distinct members by user id")
        }
        guard epoch.signer == poster.value, members.contains(poster) || number > 0 else {
            throw GatewayError(.forbidden, .forbidden, "post only epochs you signed yourself (signer = your user id)")
        }
        if number == 0 && !members.contains(poster) {
            throw GatewayError(.forbidden, .forbidden, "the creator must be a member of epoch 0")
        }
        return Set(members)
    }
}
