import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOWebSocket
import SafeChatAPI
import SealedFormat
import Synchronization
import WSCore

/// Single-use tickets for browsers' WebSocket upgrades: random, valid for 30 seconds, stored by
/// their SHA-256 (the ticket itself is never kept), at most 16 outstanding per user.
public actor ChatTickets: ChatTicketStore {
    public static let lifetime: TimeInterval = 30
    private var issued: [String: (token: TokenClaims, expires: Date)] = [:]

    /// A ticket for the account and token of `token` (its upgrade is refused once that token is).
    public init() {}

    public func issue(for token: TokenClaims, now: Date) -> String {
        issued = issued.filter { $0.value.expires > now }
        let mine = issued.filter { $0.value.token.user == token.user }.sorted { $0.value.expires < $1.value.expires }
        for (key, _) in mine.dropLast(15) { issued[key] = nil }
        let ticket = Secrets.randomHex(32)
        issued[Self.key(ticket)] = (token, now.addingTimeInterval(Self.lifetime))
        return ticket
    }

    public func redeem(_ ticket: String, now: Date) -> TokenClaims? {
        guard ticket.utf8.count == 64, let entry = issued.removeValue(forKey: Self.key(ticket)), entry.expires > now else { return nil }
        return entry.token
    }

    /// What a ticket is kept under: its SHA-256, hex.
    public static func key(_ ticket: String) -> String { Secrets.hex(SHA256Hasher.hash(Array(ticket.utf8))) }
}
