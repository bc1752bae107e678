import Foundation
import JWTKit
import SafeChatAPI
import SealedFormat

/// Login attempts, throttled per account and per client address.
///
/// An attempt is counted when it starts, before the password is checked, so any number of
/// concurrent guesses gets at most ``freeFailures`` through before the lock: the lock is decided
/// inside the actor, with no suspension between the check and the count. A successful login takes
/// its own attempt back and clears the account's failures.
actor LoginThrottle {
    struct Entry { var attempts: Int; var lockedUntil: Date }
    private var entries: [String: Entry] = [:]
    private let clock: @Sendable () -> Date

    init(clock: @escaping @Sendable () -> Date = { Date() }) { self.clock = clock }
    /// Attempts allowed before a key is locked; each further attempt doubles the lock (1 s to 15 min).
    nonisolated let freeFailures = 5

    enum Admission: Equatable {
        case admitted
        /// Try again in this many seconds.
        case refused(Int)
    }

    /// Counts an attempt for every key, or refuses it (counting nothing) if any key is locked.
    func begin(_ keys: [String]) -> Admission {
        let now = clock()
        let wait = keys.compactMap { entries[$0]?.lockedUntil }.max().map { $0.timeIntervalSince(now) } ?? 0
        if wait > 0 { return .refused(Int(wait.rounded(.up))) }
        if entries.count > 100_000 { entries = entries.filter { $0.value.lockedUntil > now || $0.value.attempts > 0 } }
        for key in keys {
            var entry = entries[key] ?? Entry(attempts: 0, lockedUntil: now)
            entry.attempts += 1
            if entry.attempts >= freeFailures {
                entry.lockedUntil = now.addingTimeInterval(min(900, pow(2, Double(entry.attempts - freeFailures))))
            }
            entries[key] = entry
        }
        return .admitted
    }

    /// The password was right: the account starts afresh; the address gets this attempt back.
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
