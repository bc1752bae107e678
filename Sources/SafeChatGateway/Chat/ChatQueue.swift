import Foundation
import SafeChatAPI

/// The offline queue's seam: every delivery not yet acknowledged by all its recipients, durable
/// before its sender is answered. The embedded ``ChatLog`` keeps it in the data directory; a
/// server-grade backend (SafeChatPostgres) shares it between gateways, so a member reconnecting to
/// any of them receives what waits.
///
/// Every implementation keeps the same bounds (``ChatQueueLimits``), numbers a session's entries
/// 1, 2, 3… in the order they are stored, hands each durable batch to the ``ChatBus`` in that
/// order, and deletes a delivery once every recipient has acknowledged it (or it expires or is
/// dropped).
public protocol ChatQueue: Sendable {
    /// Stores a delivery for `recipients`; returns it once it is durable and handed to the bus.
    /// - Throws: ``ChatLogError/full`` or ``ChatLogError/accountFull(limit:)`` past a storage
    ///   limit (nothing is stored), or the storage's own error.
    func append(session: SessionID, message: ChatMessageWire?, file: ChatFileEvent?, recipients: [UserID], now: UInt64) async throws -> ChatEntry
    /// Records that `user` has every delivery of `session` up to `seq`. With `waitForDisk` false the
    /// implementation may return before it is durable (a client is not answered for an ack).
    func acknowledge(session: SessionID, user: UserID, upTo seq: UInt64, waitForDisk: Bool) async throws
    /// What waits for `user` in `session`, oldest first, and how many deliveries were dropped for
    /// them (queue full or expired) since they last asked.
    func backlog(session: SessionID, user: UserID) async throws -> (entries: [ChatEntry], dropped: UInt64)
    /// Drops what waits for members who have left `session` (they are sent nothing more).
    func retain(members: Set<UserID>, of session: SessionID) async throws
    /// Deletes deliveries older than the retention period; run once a second.
    func maintain(now: UInt64) async throws
    /// Entries held for recipients (the queue-depth metric).
    func depth() async throws -> Int
}

extension ChatQueue {
    /// Records an acknowledgement and returns once it is durable.
    public func acknowledge(session: SessionID, user: UserID, upTo seq: UInt64) async throws {
        try await acknowledge(session: session, user: user, upTo: seq, waitForDisk: true)
    }
}

/// What waits in a chat queue, as one store hands it to another (`safechat migrate`).
public struct ChatQueueExport: Sendable {
    /// Each waiting delivery, in seq order per session, with the recipients who still wait for it.
    public var entries: [(entry: ChatEntry, pending: [UserID])] = []
    /// Each session's last seq: a new store continues after it.
    public var heads: [SessionID: UInt64] = [:]
    /// Deliveries dropped for a member and not yet reported to them.
    public var dropped: [SessionID: [UserID: UInt64]] = [:]

    public init() {}
}

/// The bounds every ``ChatQueue`` keeps (docs/PROTOCOL.md, "The offline queue").
public struct ChatQueueLimits: Sendable {
    /// Deliveries waiting for one member of one session; past it the oldest is dropped for them.
    public var queueLimit: Int
    /// Seconds a delivery waits at most.
    public var retention: TimeInterval
    /// Bytes of waiting deliveries in all, and of one account's sends.
    public var storageLimit: Int
    public var accountLimit: Int

    public init(queueLimit: Int, retention: TimeInterval, storageLimit: Int, accountLimit: Int) {
        self.queueLimit = queueLimit
        self.retention = retention
        self.storageLimit = storageLimit
        self.accountLimit = accountLimit
    }
}

/// Single-use tickets for browsers' WebSocket upgrades (docs/PROTOCOL.md 2.1): issued by one
/// gateway, redeemable once, by whichever gateway the upgrade reaches.
public protocol ChatTicketStore: Sendable {
    /// A new ticket for the account and token of `token`, valid for ``ChatTickets/lifetime``.
    func issue(for token: TokenClaims, now: Date) async throws -> String
    /// The claims of `ticket` if it was issued, has not expired and was not redeemed before; it is
    /// spent either way.
    func redeem(_ ticket: String, now: Date) async throws -> TokenClaims?
}
