import Foundation
import JWTKit
import SafeChatAPI
import SealedFormat

/// Login attempts, throttled per account and per client address. The login route sees only this
/// protocol: ``LoginThrottle`` counts in this process, a server-grade backend (SafeChatPostgres)
/// in a database, so that guesses spread over many gateways count together.
///
/// An attempt is counted when it starts, before the password is checked, so any number of
/// concurrent guesses gets at most ``LoginAdmission/freeFailures`` through before the lock. Each
/// further attempt doubles the lock (1 s to 15 min). A successful login takes its own attempt back
/// and clears the account's failures.
public protocol LoginAttempts: Sendable {
    /// Counts an attempt for every key, or refuses it (counting nothing) if any key is locked.
    func begin(_ keys: [String]) async throws -> LoginAdmission
    /// The password was right: the account (the first key) starts afresh; the others get this
    /// attempt back.
    func succeeded(_ keys: [String]) async throws
}

public enum LoginAdmission: Equatable, Sendable {
    case admitted
    /// Try again in this many seconds.
    case refused(Int)

    /// Attempts allowed before a key is locked.
    public static let freeFailures = 5
    /// How long a key with `attempts` counted is locked.
    public static func lock(after attempts: Int) -> TimeInterval {
        attempts >= freeFailures ? min(900, pow(2, Double(attempts - freeFailures))) : 0
    }
}

/// The embedded ``LoginAttempts``, in memory.
///
/// An attempt is counted when it starts, before the password is checked, so any number of
/// concurrent guesses gets at most ``freeFailures`` through before the lock: the lock is decided
/// inside the actor, with no suspension between the check and the count. A successful login takes
/// its own attempt back and clears the account's failures.
actor LoginThrottle: LoginAttempts {
    struct Entry { var attempts: Int; var lockedUntil: Date }
    private var entries: [String: Entry] = [:]
    private let clock: @Sendable () -> Date

    init(clock: @escaping @Sendable () -> Date = { Date() }) { self.clock = clock }
    nonisolated var freeFailures: Int { LoginAdmission.freeFailures }

    func begin(_ keys: [String]) -> LoginAdmission {
        let now = clock()
        let wait = keys.compactMap { entries[$0]?.lockedUntil }.max().map { $0.timeIntervalSince(now) } ?? 0
        if wait > 0 { return .refused(Int(wait.rounded(.up))) }
        if entries.count > 100_000 { entries = entries.filter { $0.value.lockedUntil > now || $0.value.attempts > 0 } }
        for key in keys {
            var entry = entries[key] ?? Entry(attempts: 0, lockedUntil: now)
            entry.attempts += 1
            if entry.attempts >= freeFailures { entry.lockedUntil = now.addingTimeInterval(LoginAdmission.lock(after: entry.attempts)) }
            entries[key] = entry
        }
        return .admitted
    }

    func succeeded(_ keys: [String]) {
        guard let account = keys.first else { return }
        entries[account] = nil
        for key in keys.dropFirst() {
            guard var entry = entries[key] else { continue }
            entry.attempts -= 1
            if entry.attempts < freeFailures { entry.lockedUntil = .distantPast }
            entries[key] = entry.attempts > 0 ? entry : nil
        }
    }
}
