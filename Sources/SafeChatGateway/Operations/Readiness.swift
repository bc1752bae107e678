import Foundation
import SealedFormat
import Synchronization

/// What /readyz answers: whether this gateway should be sent traffic. Every backing store must
/// answer a probe, the data directory must have room, and the gateway must not be draining (on
/// SIGTERM it turns not-ready before anything else, so that the load balancer stops sending to it
/// while in-flight requests finish).
public final class Readiness: Sendable {
    /// One named probe; it throws when what it checks cannot be used.
    public struct Check: Sendable {
        public let name: String
        public let probe: @Sendable () async throws -> Void
        public init(name: String, probe: @escaping @Sendable () async throws -> Void) {
            self.name = name
            self.probe = probe
        }
    }

    public struct Report: Sendable, Encodable {
        public let ready: Bool
        public let draining: Bool
        /// "ok", or what failed, by check name.
        public let checks: [String: String]
    }

    private let checks: [Check]
    private let deadline: Duration
    private let drainingFlag = Atomic<Bool>(false)

    init(checks: [Check], deadline: Duration = .seconds(5)) {
        self.checks = checks
        self.deadline = deadline
    }

    var isDraining: Bool { drainingFlag.load(ordering: .acquiring) }
    func startDraining() { drainingFlag.store(true, ordering: .releasing) }

    /// Runs every check at once, each within the deadline.
    public func report() async -> Report {
        let deadline = self.deadline
        let results = await withTaskGroup(of: (String, String).self) { group in
            for check in checks {
                group.addTask {
                    await withTaskGroup(of: String?.self) { race in
                        race.addTask {
                            do { try await check.probe(); return "ok" } catch { return "\(error)" }
                        }
                        race.addTask {
                            try? await Task.sleep(for: deadline)
                            return Task.isCancelled ? nil : "no answer within \(deadline)"
                        }
                        defer { race.cancelAll() }
                        while let result = await race.next() { if let result { return (check.name, result) } }
                        return (check.name, "cancelled")
                    }
                }
            }
            var results: [String: String] = [:]
            for await (name, result) in group { results[name] = result }
            return results
        }
        let draining = isDraining
        return Report(ready: !draining && results.values.allSatisfy { $0 == "ok" }, draining: draining, checks: results)
    }

    /// Fails when the file system holding `path` has fewer than `minimum` bytes free for unprivileged use.
    static func freeSpace(at path: String, minimum: Int64) -> Check {
        Check(name: "disk") {
            var stats = statvfs()
            guard statvfs(path, &stats) == 0 else { throw FileError(path: path, operation: "statvfs", errno: errno) }
            let free = Int64(stats.f_bavail) * Int64(stats.f_frsize)
            guard free >= minimum else {
                throw ReadinessFailure("\(free) bytes free in \(path), below the \(minimum) required (--min-free-space)")
            }
        }
    }
}

struct ReadinessFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
