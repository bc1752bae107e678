import Foundation
import SafeChatAPI
import SealedFormat
import Synchronization

/// Sessions in the data directory (the embedded ``SessionStore``).
///
/// On disk, `registry/sessions/<id>/<epoch>.json` (8 decimal digits), one file per epoch, each
/// written once (write, fsync, rename, fsync the directory). In memory, only a ``SessionSummary``
/// per session (its current members, epoch count, size and last hash), so that the gateway's memory
/// does not grow with every log: a chain is read from disk, an epoch at a time, when a member asks.
public actor FileSessionStore: SessionStore {
    public typealias Summary = SessionSummary

    private let directory: URL
    private let rules: EpochRules
    private var summaries: [SessionID: Summary] = [:]
    private var created: [UserID: Int] = [:]
    /// Sessions with an epoch being written: a second one waits for no one and is told to retry.
    private var writing: Set<SessionID> = []
    /// Each session's current members, readable without a hop to the actor: an upload checks it
    /// for every part it appends. Updated once an epoch is durable, before it is acknowledged.
    private nonisolated let currentMembers = Mutex<[SessionID: Set<UserID>]>([:])

    public init(directory: String, accountName: @escaping @Sendable (UserID) async throws -> String? = { _ in nil }) throws {
        self.directory = URL(fileURLWithPath: directory)
        rules = EpochRules(accountName: accountName)
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
    public nonisolated func isMember(_ user: UserID, of session: SessionID) async -> Bool {
        currentMembers.withLock { $0[session]?.contains(user) ?? false }
    }

    public func summary(_ id: SessionID) -> Summary? { summaries[id] }

    /// Every session, by id (for `safechat migrate`).
    public func allSummaries() -> [Summary] {
        summaries.values.sorted { $0.sessionID.value < $1.sessionID.value }
    }

    public func sessions(of user: UserID) -> [Summary] {
        summaries.values.filter { $0.members.contains(user) }.sorted { $0.sessionID.value < $1.sessionID.value }
    }

    public func epochDocument(_ id: SessionID, number: Int) async throws -> Data? {
        guard let summary = summaries[id], (0..<summary.epochCount).contains(number) else { return nil }
        let file = Self.file(id, number, in: directory)
        return try await blockingIO { try Data(contentsOf: file) }
    }

    public func create(_ epoch: EpochWire, encodedBytes: Int, by creator: UserID) async throws -> Summary {
        let id = try EpochRules.newSessionID(epoch)
        // Marked before the checks (which wait for the accounts), so a second post waits for no one.
        guard summaries[id] == nil, writing.insert(id).inserted else { throw EpochRules.sessionExists }
        defer { writing.remove(id) }
        guard created[creator, default: 0] < SessionLimits.sessionsPerAccount else { throw EpochRules.tooManySessions }
        // Counted at once, so creations under way together cannot pass the limit; given back if refused.
        created[creator, default: 0] += 1
        do {
            let summary = try await rules.first(epoch, session: id, encodedBytes: encodedBytes, by: creator)
            try await save(epoch, as: summary)
            return summary
        } catch {
            created[creator, default: 0] -= 1
            throw error
        }
    }

    public func append(_ epoch: EpochWire, encodedBytes: Int, to id: SessionID, by poster: UserID) async throws -> Summary {
        guard let summary = summaries[id], summary.members.contains(poster) else { throw GatewayError.notFound("session") }
        guard writing.insert(id).inserted else { throw EpochRules.busy }
        defer { writing.remove(id) }
        let updated = try await rules.next(epoch, after: summary, encodedBytes: encodedBytes, by: poster)
        try await save(epoch, as: updated)
        return updated
    }

    /// Writes `epoch` off the actor's thread (the caller marked its session `writing`, so no other
    /// epoch of it can start meanwhile). Once it is durable, `summary` (and the members everyone reads) take effect.
    private func save(_ epoch: EpochWire, as summary: Summary) async throws {
        let id = summary.sessionID
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

    // MARK: Files

    private static func file(_ id: SessionID, _ epoch: Int, in directory: URL) -> URL {
        directory.appendingPathComponent(id.value).appendingPathComponent(String(format: "%08d.json", epoch))
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
