import Foundation
import SafeChatAPI
import SealedFormat

/// Where sessions live: each one's chain of epoch documents, opaque to the gateway but for who is a
/// member now and how the chain links. The embedded ``FileSessionStore`` keeps them in the data
/// directory; a server-grade backend (SafeChatPostgres) shares them between gateways.
///
/// Every implementation applies ``EpochRules`` to what it stores, and stores an epoch only as the
/// next one of its chain: of two epochs posted at once with the same number, one is stored and the
/// other is refused with 409 (`epoch_conflict`), whichever gateways they reached.
public protocol SessionStore: Sendable {
    /// Whether `user` is a current member of `session`, as of the last epoch stored.
    func isMember(_ user: UserID, of session: SessionID) async throws -> Bool
    func summary(_ id: SessionID) async throws -> SessionSummary?
    /// The sessions `user` is a current member of, by id.
    func sessions(of user: UserID) async throws -> [SessionSummary]
    /// Epoch `number` of `id` as stored (the JSON of an ``EpochWire``); nil if there is none.
    func epochDocument(_ id: SessionID, number: Int) async throws -> Data?
    /// Epoch 0 of a new session, posted by `creator`.
    func create(_ epoch: EpochWire, encodedBytes: Int, by creator: UserID) async throws -> SessionSummary
    /// The next epoch of `id`, posted by `poster`, who must be a current member.
    func append(_ epoch: EpochWire, encodedBytes: Int, to id: SessionID, by poster: UserID) async throws -> SessionSummary
}

extension SessionStore {
    /// Every epoch of `id` (tests and tools use it; routes stream one document at a time instead).
    public func chain(_ id: SessionID) async throws -> [EpochWire]? {
        guard let summary = try await summary(id) else { return nil }
        var out: [EpochWire] = []
        for number in 0..<summary.epochCount {
            guard let document = try await epochDocument(id, number: number) else { return nil }
            out.append(try WireCoding.decoder.decode(EpochWire.self, from: document))
        }
        return out
    }

    /// The newest wrap of `keyEpoch`'s key for `user` in `id`, read an epoch at a time, newest first
    /// (a later epoch may have shared an old key with a newcomer).
    public func wrap(for user: UserID, keyEpoch: UInt32, in id: SessionID) async throws -> EpochWire.Wrap? {
        guard let summary = try await summary(id) else { return nil }
        for number in (Int(keyEpoch)..<summary.epochCount).reversed() {
            guard let document = try await epochDocument(id, number: number) else { continue }
            let epoch = try WireCoding.decoder.decode(EpochWire.self, from: document)
            if let wrap = epoch.wraps.first(where: { $0.userID == user.value && $0.keyEpoch == keyEpoch }) { return wrap }
        }
        return nil
    }
}

/// What the gateway knows of one session without reading its chain.
public struct SessionSummary: Sendable, Equatable {
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

    public init(sessionID: SessionID, creator: UserID, epochCount: Int, members: Set<UserID>, lastHash: [UInt8], bytes: Int) {
        self.sessionID = sessionID
        self.creator = creator
        self.epochCount = epochCount
        self.members = members
        self.lastHash = lastHash
        self.bytes = bytes
    }
}

/// What the gateway checks of an epoch before storing it, whatever stores it: what it needs to
/// decide who may see a session and to refuse garbage early (docs/KEYS.md 7.4, docs/API.md
/// "Limits"). It never verifies signatures: clients do, and trust nothing here.
public struct EpochRules: Sendable {
    /// The account name of a user id (nil: no such account); an epoch's names must be its accounts'.
    public let accountName: @Sendable (UserID) async throws -> String?

    public init(accountName: @escaping @Sendable (UserID) async throws -> String?) {
        self.accountName = accountName
    }

    /// The id of the session a new epoch 0 makes, or 400.
    public static func newSessionID(_ epoch: EpochWire) throws -> SessionID {
        guard let id = SessionID(epoch.sessionID) else { throw GatewayError(.badRequest, .invalidID, "a session id is 32 lowercase hexadecimal digits") }
        return id
    }

    public static var sessionExists: GatewayError {
        GatewayError(.conflict, .sessionExists, "a session with this id exists; make a new random id")
    }

    public static var tooManySessions: GatewayError {
        GatewayError(.tooManyRequests, .limitReached, "an account may create at most \(SessionLimits.sessionsPerAccount) sessions")
    }

    public static var busy: GatewayError {
        GatewayError(.conflict, .epochConflict, "another epoch is being added to this session; fetch the chain and try again")
    }

    /// Epoch 0 of a new session: its summary once stored.
    public func first(_ epoch: EpochWire, session id: SessionID, encodedBytes: Int, by creator: UserID) async throws -> SessionSummary {
        let (members, hash) = try await check(epoch, session: id, number: 0, previous: [UInt8](repeating: 0, count: 32), signers: nil, poster: creator)
        return SessionSummary(sessionID: id, creator: creator, epochCount: 1, members: members, lastHash: hash, bytes: encodedBytes)
    }

    /// The next epoch after `summary` (whose members include `poster`, or 404): the summary once stored.
    public func next(_ epoch: EpochWire, after summary: SessionSummary, encodedBytes: Int, by poster: UserID) async throws -> SessionSummary {
        guard summary.members.contains(poster) else { throw GatewayError.notFound("session") }
        let next = UInt32(summary.epochCount)
        guard epoch.epoch == next else {
            throw GatewayError(.conflict, .epochConflict, "the next epoch is \(next), not \(epoch.epoch); fetch the chain and try again")
        }
        guard summary.epochCount < SessionLimits.epochsPerSession, summary.bytes + encodedBytes <= SessionLimits.sessionBytes else {
            throw GatewayError(.tooManyRequests, .limitReached, "a session holds at most \(SessionLimits.epochsPerSession) epochs and "
                               + "\(SessionLimits.sessionBytes >> 20) MiB of them; create a new session")
        }
        let (members, hash) = try await check(epoch, session: summary.sessionID, number: next, previous: summary.lastHash,
                                              signers: summary.members, poster: poster)
        var updated = summary
        updated.epochCount += 1
        updated.members = members
        updated.lastHash = hash
        updated.bytes += encodedBytes
        return updated
    }

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
}
