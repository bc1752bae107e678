import Foundation
import SafeChatAPI
import SealedFormat
import Synchronization

/// Sessions as the gateway keeps them: each one's chain of epoch documents, opaque but for who is a
/// member now and how the chain links.
///
/// On disk, `registry/sessions/<id>/<epoch>.json` (8 decimal digits), one file per epoch, each
/// written once (write, fsync, rename, fsync the directory). In memory, only a ``Summary`` per
/// session (its current members, epoch count, size and last hash), so that the gateway's memory
/// does not grow with every log: a chain is read from disk, an epoch at a time, when a member asks.
///
/// The gateway checks what it needs to decide who may see a session and to refuse garbage early
/// (docs/KEYS.md 7.4, docs/API.md "Limits"): the document's shape, its place in the chain, its
/// poster, the accounts it names, and the limits. It never verifies signatures: clients do, and
/// trust nothing here.
public actor SessionStore {
    /// What the gateway keeps in memory of one session.
    public struct Summary: Sendable {
        public let sessionID: SessionID
        /// The account that made epoch 0 (sessions count against their creator's limit).
        public let creator: UserID
        public var epochCount: Int
        /// The current epoch's members.
        public var members: Set<UserID>
        /// The hash of the last epoch (docs/KEYS.md 7.2): the next one's `previous`.
        public var lastHash: [UInt8]
        /// The encoded size of all its epochs.
        public var bytes: Int
        public var currentEpoch: UInt32 { UInt32(epochCount - 1) }
    }

    private let directory: URL
    /// The account name of a user id (nil: no such account); an epoch's names must be its accounts'.
    private let accountName: @Sendable (UserID) async throws -> String?
    private var summaries: [SessionID: Summary] = [:]
    private var created: [UserID: Int] = [:]
    /// Sessions with an epoch being written: a second one waits for no one and is told to retry.
    private var writing: Set<SessionID> = []
    /// Each session's current members, readable without a hop to the actor: an upload checks it
    /// for every part it appends. Updated once an epoch is durable, before it is acknowledged.
    private nonisolated let currentMembers = Mutex<[SessionID: Set<UserID>]>([:])

    public init(directory: String, accountName: @escaping @Sendable (UserID) async throws -> String? = { _ in nil }) throws {
        self.directory = URL(fileURLWithPath: directory)
        self.accountName = accountName
        try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        for name in try FileManager.default.contentsOfDirectory(atPath: directory) {
            if name.hasSuffix(".json"), let id = SessionID(name.dropLast(5)) {
                try Self.convertSingleFile(id, in: self.directory)
            } else if name.hasPrefix(".") {
                // A conversion a crash interrupted; its file is still there and is converted again.
                try FileManager.default.removeItem(at: self.directory.appendingPathComponent(name))
            }
        }
        for name in try FileManager.default.contentsOfDirectory(atPath: directory) {
            guard let id = SessionID(name), let summary = try Self.load(id, in: self.directory) else { continue }
            summaries[id] = summary
            created[summary.creator, default: 0] += 1
        }
        let loaded = summaries.mapValues(\.members)
        currentMembers.withLock { $0 = loaded }
    }

    /// Whether `user` is a current member of `session`, as of the last epoch stored.
    public nonisolated func isMember(_ user: UserID, of session: SessionID) -> Bool {
        currentMembers.withLock { $0[session]?.contains(user) ?? false }
    }

    public func summary(_ id: SessionID) -> Summary? { summaries[id] }

    public func sessions(of user: UserID) -> [Summary] {
        summaries.values.filter { $0.members.contains(user) }.sorted { $0.sessionID.value < $1.sessionID.value }
    }

    /// The files of epochs `first…` of `id`, in order, for a reply that streams them.
    func epochFiles(_ id: SessionID, from first: Int = 0) -> [URL] {
        guard let summary = summaries[id] else { return [] }
        return (min(first, summary.epochCount)..<summary.epochCount).map { Self.file(id, $0, in: directory) }
    }

    /// Every epoch of `id` (read from disk; tests and tools use it, routes stream instead).
    public func chain(_ id: SessionID) async throws -> [EpochWire]? {
        guard summaries[id] != nil else { return nil }
        var out: [EpochWire] = []
        for file in epochFiles(id) { out.append(try await Self.read(file)) }
        return out
    }

    /// The newest wrap of `keyEpoch`'s key for `user` in `id`, read an epoch at a time, newest first.
    func wrap(for user: UserID, keyEpoch: UInt32, in id: SessionID) async throws -> EpochWire.Wrap? {
        for file in epochFiles(id, from: Int(keyEpoch)).reversed() {
            if let wrap = try await Self.read(file).wraps.first(where: { $0.userID == user.value && $0.keyEpoch == keyEpoch }) { return wrap }
        }
        return nil
    }

    /// Epoch 0 of a new session, posted by `creator`.
    func create(_ epoch: EpochWire, encodedBytes: Int, by creator: UserID) async throws -> Summary {
        guard let id = SessionID(epoch.sessionID) else { throw GatewayError(.badRequest, .invalidID, "a session id is 32 lowercase hexadecimal digits") }
        guard summaries[id] == nil, !writing.contains(id) else {
            throw GatewayError(.conflict, .sessionExists, "a session with this id exists; make a new random id")
        }
        guard created[creator, default: 0] < SessionLimits.sessionsPerAccount else {
            throw GatewayError(.tooManyRequests, .limitReached, "an account may create at most \(SessionLimits.sessionsPerAccount) sessions")
        }
        let (members, hash) = try await check(epoch, session: id, number: 0, previous: [UInt8](repeating: 0, count: 32), signers: nil, poster: creator)
        let summary = Summary(sessionID: id, creator: creator, epochCount: 1, members: members, lastHash: hash, bytes: encodedBytes)
        try await save(epoch, as: summary)
        created[creator, default: 0] += 1
        return summary
    }

    /// The next epoch, posted by `poster`, who must be a current member.
    func append(_ epoch: EpochWire, encodedBytes: Int, to id: SessionID, by poster: UserID) async throws -> Summary {
        guard var summary = summaries[id], summary.members.contains(poster) else { throw GatewayError.notFound("session") }
        guard !writing.contains(id) else {
            throw GatewayError(.conflict, .epochConflict, "another epoch is being added to this session; fetch the chain and try again")
        }
        let next = UInt32(summary.epochCount)
        guard epoch.epoch == next else {
            throw GatewayError(.conflict, .epochConflict, "the next epoch is \(next), not \(epoch.epoch); fetch the chain and try again")
        }
        guard summary.epochCount < SessionLimits.epochsPerSession, summary.bytes + encodedBytes <= SessionLimits.sessionBytes else {
            throw GatewayError(.tooManyRequests, .limitReached, "a session holds at most \(SessionLimits.epochsPerSession) epochs and "
                               + "\(SessionLimits.sessionBytes >> 20) MiB of them; create a new session")
        }
        let (members, hash) = try await check(epoch, session: id, number: next, previous: summary.lastHash, signers: summary.members, poster: poster)
        summary.epochCount += 1
        summary.members = members
        summary.lastHash = hash
        summary.bytes += encodedBytes
        try await save(epoch, as: summary)
        return summary
    }

    /// Writes `epoch` off the actor's thread; no other epoch of the session can start meanwhile.
    /// Once it is durable, `summary` (and the members everyone reads) take effect.
    private func save(_ epoch: EpochWire, as summary: Summary) async throws {
        let id = summary.sessionID
        writing.insert(id)
        defer { writing.remove(id) }
        let data = try WireCoding.encoder.encode(epoch)
        let folder = directory.appendingPathComponent(id.value), file = Self.file(id, Int(epoch.epoch), in: directory)
        try await blockingIO {
            if epoch.epoch == 0 {
                try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
                syncDirectory(of: folder.path)
            }
            let writer = try AtomicFileWriter(destination: file.path, permissions: 0o600)
            try writer.write(Array(data))
            try writer.commit()
        }
        summaries[id] = summary
        currentMembers.withLock { $0[id] = summary.members }
    }

    // MARK: What the gateway checks

    /// The shape docs/KEYS.md 7.1 gives an epoch, its place (`previous` is the hash of the epoch
    /// before; `signers` are that epoch's members, nil for epoch 0), its poster (who signed it) and
    /// the accounts it lists; returns its members and hash.
    private func check(_ epoch: EpochWire, session: SessionID, number: UInt32, previous: [UInt8], signers: Set<UserID>?,
                       poster: UserID) async throws -> (Set<UserID>, [UInt8]) {
        guard epoch.version == 1, epoch.sessionID == session.value, epoch.epoch == number else {
            throw GatewayError.badRequest("an epoch document (docs/KEYS.md 7) of this session with epoch \(number)")
        }
        let members = epoch.members.compactMap { UserID($0.userID) }
        guard members.count == epoch.members.count, Set(members).count == members.count, !members.isEmpty else {
            throw GatewayError.badRequest("an epoch lists at least one member, each by a distinct user id of 32 lowercase hex digits")
        }
        guard members.count <= SessionLimits.membersPerEpoch, epoch.wraps.count <= members.count + SessionLimits.historyWrapsPerEpoch else {
            throw GatewayError(.contentTooLarge, .tooLarge, "an epoch lists at most \(SessionLimits.membersPerEpoch) members and "
                               + "\(SessionLimits.historyWrapsPerEpoch) wraps beyond one per member")
        }
        guard epoch.signer == poster.value, signers.map({ $0.contains(poster) }) ?? members.contains(poster) else {
            throw GatewayError(.forbidden, .forbidden, "post only epochs you signed yourself (signer = your user id), as a member of "
                               + (number == 0 ? "the session you create" : "epoch \(number - 1)"))
        }
        guard epoch.sealedName.utf8.count <= 2 * SessionLimits.sealedNameBytes, let hash = epoch.hash else {
            throw GatewayError.badRequest("every field of an epoch is lowercase hex of its length, and every name 1 to 64 bytes (docs/KEYS.md 7.1)")
        }
        guard epoch.members.allSatisfy({ (1...64).contains($0.name.utf8.count) }) else {
            throw GatewayError.badRequest("member names are 1 to 64 bytes")
        }
        var wrapped = Set<String>()
        for wrap in epoch.wraps {
            guard let user = UserID(wrap.userID), members.contains(user), wrap.keyEpoch <= number,
                  wrapped.insert("\(wrap.userID)/\(wrap.keyEpoch)").inserted else {
                throw GatewayError.badRequest("each wrap is for a member of this epoch, of this epoch's key or an earlier one, and only once")
            }
        }
        guard Secrets.bytes(fromHex: epoch.previous, count: 32) == previous else {
            throw GatewayError(.conflict, .epochConflict, number == 0 ? "epoch 0's previous is 32 zero bytes"
                               : "previous is not the hash of epoch \(number - 1); fetch the chain and make the epoch again")
        }
        for member in epoch.members {
            let id = UserID(member.userID)!
            guard try await accountName(id) == member.name else {
                throw GatewayError.badRequest("\(member.name) is not the account with user id \(member.userID)")
            }
        }
        return (Set(members), hash)
    }

    // MARK: Files

    private static func file(_ id: SessionID, _ epoch: Int, in directory: URL) -> URL {
        directory.appendingPathComponent(id.value).appendingPathComponent(String(format: "%08d.json", epoch))
    }

    private static func read(_ file: URL) async throws -> EpochWire {
        let data = try await blockingIO { try Data(contentsOf: file) }
        return try WireCoding.decoder.decode(EpochWire.self, from: data)
    }

    /// A session's summary from its folder: the members and hash of its last epoch, its creator, and
    /// its size. A folder without epoch 0 was never acknowledged (a crash while creating it) and is
    /// removed; a gap in the epochs means the folder was damaged, and the gateway stops.
    private static func load(_ id: SessionID, in directory: URL) throws -> Summary? {
        let folder = directory.appendingPathComponent(id.value)
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".json") && !$0.hasPrefix(".") }.sorted()
        guard !names.isEmpty else {
            try FileManager.default.removeItem(at: folder)
            return nil
        }
        guard names == (0..<names.count).map({ String(format: "%08d.json", $0) }) else {
            throw FileError(path: folder.path, operation: "load session (its epochs are not 0 to \(names.count - 1))", errno: EINVAL)
        }
        let first = try WireCoding.decoder.decode(EpochWire.self, from: Data(contentsOf: folder.appendingPathComponent(names[0])))
        let last = try WireCoding.decoder.decode(EpochWire.self, from: Data(contentsOf: folder.appendingPathComponent(names.last!)))
        var bytes = 0
        for name in names { bytes += (try FileManager.default.attributesOfItem(atPath: folder.appendingPathComponent(name).path)[.size] as? Int) ?? 0 }
        guard let creator = UserID(first.signer), let hash = last.hash else {
            throw FileError(path: folder.path, operation: "load session (an epoch does not parse)", errno: EINVAL)
        }
        return Summary(sessionID: id, creator: creator, epochCount: names.count, members: Set(last.members.compactMap { UserID($0.userID) }),
                       lastHash: hash, bytes: bytes)
    }

    /// A session kept in one file (`<id>.json`, before epochs had a file each): its epochs are
    /// written to their own files in a new folder, which takes its place; then the old file goes.
    private static func convertSingleFile(_ id: SessionID, in directory: URL) throws {
        struct OldRecord: Decodable { let epochs: [EpochWire] }
        let old = directory.appendingPathComponent("\(id.value).json"), folder = directory.appendingPathComponent(id.value)
        if !FileManager.default.fileExists(atPath: folder.path) {
            let record = try WireCoding.decoder.decode(OldRecord.self, from: Data(contentsOf: old))
            let staging = directory.appendingPathComponent(".\(id.value).\(Secrets.randomHex(4))")
            try FileManager.default.createDirectory(at: staging, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
            for (n, epoch) in record.epochs.enumerated() {
                let writer = try AtomicFileWriter(destination: staging.appendingPathComponent(String(format: "%08d.json", n)).path, permissions: 0o600)
                try writer.write(Array(try WireCoding.encoder.encode(epoch)))
                try writer.commit()
            }
            guard rename(staging.path, folder.path) == 0 else { throw FileError(path: folder.path, operation: "rename", errno: errno) }
            syncDirectory(of: folder.path)
        }
        try FileManager.default.removeItem(at: old)
    }
}
