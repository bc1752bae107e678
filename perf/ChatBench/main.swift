// safechat-chat-bench: chat load against a running gateway, from a second process.
//
// Set-up (not timed): logs in --users users, gives each an identity, and has them create, in turn,
// --sessions sessions with all of them; each (user, session) pair is one WebSocket connection, so
// the defaults are 1000 connections across 100 sessions of 10 members. Every message is sealed and
// signed exactly as `safechat send` does (ChatMessage.seal, under the epoch's chat key), ahead of
// the run so that the generator's CPU goes to the sockets; received messages are not opened
// (the gateway is what is measured). Latency runs from just before a send frame is written to the
// arrival of each recipient's delivery frame, on this process's monotonic clock.
//
// Each run: connect every connection, send at --rate messages per second in total (evenly spread,
// each connection at rate/connections per second, cumulative acks as a client makes them), for
// --seconds; then, when --beside is given, run that shell command alone (timed), and again while the
// same chat load runs (timed, chat measured while it runs). Prints each run and the medians.
// Run it through perf/chat-bench.sh (release gateway, 1 GiB upload beside).
import Foundation
import SafeChatAPI
import SafeChatClient
import SafeChatKeys
import SealedFormat

struct Options {
    var server = "http://127.0.0.1:18402"
    /// Gateways the chat connections spread over (member by member, so each session has members on
    /// every one): gateways of one cluster, sharing accounts and a signing key. Default: `server`.
    var servers: [String] = []
    var users = 10
    var password = "password123"
    var sessions = 100
    var rate = 5000.0
    var seconds = 20.0
    var runs = 3
    var textBytes = 100
    var gatewayPID: Int32?
    var beside: String?
    var besideBytes: Int?
    var cleanup: String?
    var workDirectory = NSTemporaryDirectory() + "safechat-chat-bench"

    init(_ args: [String]) {
        var i = 1
        func value() -> String { i += 1; guard i < args.count else { fail("missing value for \(args[i - 1])") }; return args[i] }
        func number(_ range: ClosedRange<Double>) -> Double {
            let name = args[i]
            guard let n = Double(value()), range.contains(n) else { fail("\(name) takes a number in \(range)") }
            return n
        }
        while i < args.count {
            switch args[i] {
            case "--server": server = value()
            case "--servers":
                servers = value().split(separator: ",").map(String.init)
                guard let first = servers.first, servers.allSatisfy({ URL(string: $0)?.port != nil }) else { fail("--servers takes URLs with ports, comma-separated") }
                server = first
            case "--users": users = Int(number(2...50))
            case "--password": password = value()
            case "--sessions": sessions = Int(number(1...1000))
            case "--rate": rate = number(1...100_000)
            case "--seconds": seconds = number(1...600)
            case "--runs": runs = Int(number(1...20))
            case "--text-bytes": textBytes = Int(number(1...16_000))
            case "--gateway-pid": gatewayPID = Int32(number(1...4_194_304))
            case "--beside": beside = value()
            case "--beside-bytes": besideBytes = Int(number(1...1e13))
            case "--cleanup": cleanup = value()
            case "--work-dir": workDirectory = value()
            default:
                fail("usage: safechat-chat-bench [--server URL | --servers URL,URL…] [--users N] [--password P] [--sessions N] [--rate MSG/S] [--seconds S] "
                    + "[--runs N] [--text-bytes N] [--gateway-pid PID] [--beside CMD --beside-bytes N [--cleanup CMD]] [--work-dir DIR]")
            }
            i += 1
        }
    }
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("safechat-chat-bench: \(message)\n".utf8))
    exit(1)
}

func log(_ message: String) { FileHandle.standardError.write(Data("\(message)\n".utf8)) }

let options = Options(CommandLine.arguments)

// MARK: - Set-up

/// One member of the benchmark: a logged-in user with an identity on its own "device" directory.
struct Member: Sendable {
    let name: String
    let login: ClientSession
    let identity: Identity
    let sessions: SessionClient
}

/// A session and the key its messages are sealed under.
struct BenchSession: Sendable {
    let id: String
    let idBytes: [UInt8]
    let epoch: UInt32
    let chatKey: [UInt8]
}

func setUp() async throws -> (members: [Member], sessions: [BenchSession]) {
    // The work directory is kept: it holds the users' identities, which the gateway already has
    // when the bench runs again against it.
    var members: [Member] = []
    for n in 1...options.users {
        let name = "user\(n)"
        let device = options.workDirectory + "/\(name)"
        let environment = ["XDG_DATA_HOME": device + "/share", "XDG_CONFIG_HOME": device + "/config"]
        let login = try await GatewayClient(server: options.server).login(user: name, password: options.password)
        let store = IdentityStore(environment: environment)
        let (identity, _) = try await Identities.ensure(for: login, store: store)
        members.append(Member(name: name, login: login, identity: identity, sessions: SessionClient(session: login, identity: identity, identities: store)))
    }
    var sessions: [BenchSession] = []
    for n in 0..<options.sessions {
        // Made by each member in turn: repeated runs stay within the sessions an account may create.
        let creator = members[n % members.count]
        let others = members.filter { $0.name != creator.name }.map(\.name)
        let id = try await creator.sessions.create(name: "bench \(n)", with: others)
        let (epoch, key) = try await creator.sessions.key(id)
        let idBytes = Secrets.bytes(fromHex: id, count: 16)!
        sessions.append(BenchSession(id: id, idBytes: idBytes, epoch: epoch,
                                     chatKey: ChatMessage.chatKey(key, sessionID: idBytes, epoch: epoch)))
    }
    return (members, sessions)
}

// MARK: - One run

/// When each message was sent, by the first 8 bytes of its id, one table per session.
final class SendTimes {
    private var table: [UInt64: UInt64] = [:]
    func record(_ key: UInt64, at time: UInt64) { table[key] = time }
    func time(of key: UInt64) -> UInt64? { table[key] }
}

/// What one connection measured.
struct ConnectionResult {
    var latencies: [UInt32] = []  // microseconds, one per delivery of a message sent in the measured window
    var delivered = 0             // deliveries received
    var sent = 0                  // send frames written
    var sentMeasured = 0          // of them, in the measured window
    var confirmed = 0             // `sent` answers
    var errors = 0                // `error` answers
}

func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

/// First 8 bytes of a 32-hex-digit id.
func idKey<S: Sequence>(_ hex: S) -> UInt64 where S.Element == UInt8 {
    var value: UInt64 = 0
    for (i, digit) in hex.enumerated() where i < 16 {
        let nibble: UInt8 = digit >= 97 ? digit - 87 : digit - 48
        value = value << 4 | UInt64(nibble)
    }
    return value
}

/// The bytes after the first `marker` in `text`, up to `length` of them.
func field(_ marker: [UInt8], in text: UnsafeBufferPointer<UInt8>, length: Int) -> UnsafeBufferPointer<UInt8>? {
    guard text.count >= marker.count else { return nil }
    var i = 0
    let last = text.count - marker.count
    while i <= last {
        if text[i] == marker[0] {
            var j = 1
            while j < marker.count && text[i + j] == marker[j] { j += 1 }
            if j == marker.count {
                let start = i + marker.count
                return UnsafeBufferPointer(rebasing: text[start..<min(text.count, start + length)])
            }
        }
        i += 1
    }
    return nil
}

/// Seals `count` messages from `member` into `session` as send frames (what `safechat send` writes).
func sealFrames(_ count: Int, from member: Member, into session: BenchSession, run: Int) throws -> [(key: UInt64, text: [UInt8])] {
    let sender = Secrets.hex(member.identity.userID)
    var sentAt = UInt64(Date().timeIntervalSince1970 * 1000)
    return try (0..<count).map { n in
        sentAt += 1
        let prefix = "run \(run) message \(n) from \(member.name): "
        let text = prefix + String(repeating: "x", count: max(0, options.textBytes - prefix.utf8.count))
        let message = try ChatMessage.seal(text, sessionID: session.idBytes, epoch: session.epoch, chatKey: session.chatKey,
                                           from: member.identity, sentAt: sentAt)
        let messageID = Secrets.hex(message.messageID)
        let wire = ChatMessageWire(sessionID: session.id, epoch: session.epoch, sender: sender, messageID: messageID, sentAt: sentAt,
                                   ciphertext: Secrets.hex(message.ciphertext), signature: Secrets.hex(message.signature))
        return (idKey(messageID.utf8), Array(ChatFrame(type: .send, message: wire).jsonText.utf8))
    }
}

// MARK: - Gateway process figures

/// Resident set of the gateway, in MiB (VmRSS of /proc/PID/status).
func gatewayRSS() -> Double? {
    guard let pid = options.gatewayPID, let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
          let kib = Double(line.split(separator: " ").dropFirst().first ?? "")
    else { return nil }
    return kib / 1024
}

/// CPU seconds the gateway has used (utime + stime of /proc/PID/stat).
func gatewayCPU() -> Double? {
    guard let pid = options.gatewayPID, let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return nil }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// CPU seconds the hypervisor gave to others while this virtual machine had work (the `steal`
/// column of /proc/stat's `cpu` line, all CPUs): on a shared host, a run with much of it measures
/// the host, not the gateway.
func hostSteal() -> Double? {
    guard let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
          let line = stat.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") }) else { return nil }
    let fields = line.split(separator: " ")
    guard fields.count > 8, let steal = Double(fields[8]) else { return nil }
    return steal / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// Runs `command` under /bin/sh; returns its wall time in seconds.
func runShell(_ command: String) throws -> Double {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = ["-c", command]
    let begin = now()
    try process.run()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { fail("`\(command)` exited with \(process.terminationStatus)") }
    return Double(now() - begin) / 1e9
}

// MARK: - Runs

struct RunFigures {
    var sentPerSecond: Double
    var deliveriesPerSecond: Double
    var delivered: Int
    var expected: Int
    var p50: Double  // ms
    var p99: Double
    var max: Double
    var peakRSS: Double?
    var gatewayCores: Double?
    var stolenPercent: Double?
    var errors: Int
    var closed: [UInt16: Int]
    var besideSeconds: Double?

    var line: String {
        var text = String(format: "%6.0f msg/s sent, %7.0f deliveries/s (%d of %d), latency p50 %.2f ms p99 %.2f ms max %.1f ms",
                          sentPerSecond, deliveriesPerSecond, delivered, expected, p50, p99, max)
        if let peakRSS { text += String(format: ", gateway RSS %.0f MiB", peakRSS) }
        if let gatewayCores { text += String(format: ", gateway %.2f cores", gatewayCores) }
        if let stolenPercent { text += String(format: ", host steal %.1f%%", stolenPercent) }
        if errors > 0 { text += ", \(errors) error frames" }
        if !closed.isEmpty { text += ", closed early: \(closed.sorted { $0.key < $1.key }.map { "\($0.value)×\($0.key)" }.joined(separator: " "))" }
        return text
    }
}

func percentile(_ sorted: [UInt32], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return .nan }
    return Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]) / 1000
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.isEmpty ? .nan : sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

/// One chat run over every (member, session) connection: a two-second warm-up, then `seconds`
/// measured; or, when `beside` is given, measured while that command runs.
func chatRun(_ members: [Member], _ sessions: [BenchSession], run: Int, seconds: Double, beside: String?) throws -> RunFigures {
    let connectionCount = members.count * sessions.count
    let perConnection = options.rate / Double(connectionCount)
    let interval = UInt64(1e9 / perConnection)
    let warmup: UInt64 = 2_000_000_000
    // Beside a command, enough for it to take twice as long as it did alone.
    let count = Int((2 + seconds * (beside == nil ? 1 : 2)) * perConnection) + 2
    let ports = (options.servers.isEmpty ? [options.server] : options.servers).map { UInt16(URL(string: $0)?.port ?? 80) }
    var connections: [LoadConnection] = []
    for (number, member) in members.enumerated() {
        for (index, session) in sessions.enumerated() {
            let frames = try sealFrames(count, from: member, into: session, run: run)
            let fd = try openChat(port: ports[number % ports.count], session: session.id, token: member.login.token)
            connections.append(LoadConnection(fd: fd, session: index, frames: frames, phase: UInt64.random(in: 0..<interval)))
        }
    }
    defer { for connection in connections { close(connection.fd) } }
    let times = sessions.map { _ in SendTimes() }
    let start = now() + 200_000_000
    let measureFrom = start + warmup
    var cpuBefore: Double?
    var stealBefore: Double?
    var windowStart: UInt64 = 0
    var windowEnd: UInt64 = 0
    var peak = 0.0
    var process: Process?
    var besideSeconds: Double?
    let endSends = beside == nil ? measureFrom + UInt64(seconds * 1e9) : UInt64.max
    runLoad(connections, times: times, start: start, interval: interval, measureFrom: measureFrom, endSends: endSends, drain: 2_000_000_000,
            stop: {
                if let running = process, !running.isRunning {
                    if besideSeconds == nil { besideSeconds = Double(now() - windowStart) / 1e9 }
                    return true
                }
                return false
            },
            onTick: {
                let clock = now()
                if cpuBefore == nil && clock >= measureFrom {
                    cpuBefore = gatewayCPU() ?? 0
                    stealBefore = hostSteal()
                    windowStart = clock
                    if let beside {
                        let started = Process()
                        started.executableURL = URL(fileURLWithPath: "/bin/sh")
                        started.arguments = ["-c", beside]
                        try? started.run()
                        process = started
                    }
                }
                if cpuBefore != nil && windowEnd == 0 { peak = max(peak, gatewayRSS() ?? 0) }
            })
    windowEnd = now() - 2_000_000_000
    let window = Double(windowEnd - windowStart) / 1e9
    let cores = cpuBefore.flatMap { before in gatewayCPU().map { ($0 - before) / (window + 2) } }
    // As a share of both CPUs' time over the same window.
    let stolen = stealBefore.flatMap { before in hostSteal().map { 100 * ($0 - before) / ((window + 2) * Double(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) } }
    if let process {
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { fail("`\(beside!)` exited with \(process.terminationStatus)") }
    }
    let latencies = connections.flatMap(\.result.latencies).sorted()
    let sent = connections.reduce(0) { $0 + $1.result.sent }
    var closed: [UInt16: Int] = [:]
    for connection in connections { if let code = connection.closedWith { closed[code, default: 0] += 1 } }
    return RunFigures(
        sentPerSecond: Double(connections.reduce(0) { $0 + $1.result.sentMeasured }) / window, deliveriesPerSecond: Double(latencies.count) / window,
        delivered: connections.reduce(0) { $0 + $1.result.delivered }, expected: sent * (members.count - 1),
        p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99), max: percentile(latencies, 1),
        peakRSS: options.gatewayPID == nil ? nil : peak, gatewayCores: cores, stolenPercent: stolen, errors: connections.reduce(0) { $0 + $1.result.errors },
        closed: closed, besideSeconds: besideSeconds)
}

let members: [Member], sessions: [BenchSession]
do { (members, sessions) = try await setUp() } catch { fail("set-up failed: \(error)") }
log("set up: \(members.count) users, \(sessions.count) sessions, \(members.count * sessions.count) connections, "
    + "\(options.rate) msg/s for \(options.seconds) s per run")
print("chat on \(members.count * sessions.count) connections across \(sessions.count) sessions of \(members.count) members"
      + (options.servers.count > 1 ? " spread over \(options.servers.count) gateways, " : ", ")
      + "\(Int(options.rate)) msg/s offered, \(options.textBytes)-byte messages, \(options.runs) runs")

var alone: [RunFigures] = []
var besideRuns: [RunFigures] = []
var uploadAlone: [Double] = []
do {
    for run in 1...options.runs {
        let figures = try chatRun(members, sessions, run: run, seconds: options.seconds, beside: nil)
        print("run \(run) chat alone:  \(figures.line)")
        alone.append(figures)
        if let beside = options.beside, let bytes = options.besideBytes {
            let seconds = try runShell(beside)
            if let cleanup = options.cleanup { _ = try runShell(cleanup) }
            uploadAlone.append(Double(bytes) / 1e6 / seconds)
            print(String(format: "run %d upload alone: %.0f MB/s", run, Double(bytes) / 1e6 / seconds))
            let together = try chatRun(members, sessions, run: run + 100, seconds: seconds, beside: beside)
            if let cleanup = options.cleanup { _ = try runShell(cleanup) }
            besideRuns.append(together)
            print(String(format: "run %d chat + upload: upload %.0f MB/s; chat ", run, Double(bytes) / 1e6 / together.besideSeconds!) + together.line)
        }
    }
} catch {
    fail("\(error)")
}

func summary(_ runs: [RunFigures]) -> String {
    String(format: "median of %d: %.0f msg/s sent, %.0f deliveries/s, p50 %.2f ms, p99 %.2f ms", runs.count,
           median(runs.map(\.sentPerSecond)), median(runs.map(\.deliveriesPerSecond)), median(runs.map(\.p50)), median(runs.map(\.p99)))
        + (runs.first?.peakRSS != nil ? String(format: ", gateway RSS %.0f MiB (peak)", runs.map { $0.peakRSS ?? 0 }.max()!) : "")
        + (runs.first?.gatewayCores != nil ? String(format: ", gateway %.2f cores", median(runs.map { $0.gatewayCores ?? 0 })) : "")
        + (runs.first?.stolenPercent != nil ? String(format: ", host steal %.1f%%", median(runs.map { $0.stolenPercent ?? 0 })) : "")
}

print("chat alone:         " + summary(alone))
let p99Target = 20.0
print(String(format: "  target: p99 under %.0f ms at %.0f msg/s sent: %@", p99Target, options.rate,
             median(alone.map(\.p99)) < p99Target && median(alone.map(\.sentPerSecond)) >= 0.98 * options.rate ? "met" : "NOT met"))
// A diagnostic, not the verdict: the same figures from the runs the host did not slow down.
let quiet = alone.filter { ($0.stolenPercent ?? 100) < 1 }
if !quiet.isEmpty && quiet.count < alone.count { print("  runs with host steal under 1%: " + summary(quiet)) }
if !besideRuns.isEmpty, let bytes = options.besideBytes {
    let together = median(besideRuns.map { Double(bytes) / 1e6 / $0.besideSeconds! })
    let ratio = together / median(uploadAlone)
    print("chat beside upload: " + summary(besideRuns))
    print(String(format: "upload: %.0f MB/s alone, %.0f MB/s beside chat (median of %d): %.2f of alone; target 0.90: %@", median(uploadAlone),
                 together, besideRuns.count, ratio, ratio >= 0.9 ? "met" : "NOT met"))
    print(String(format: "  chat p99 beside the upload %.2f ms; target under %.0f ms: %@", median(besideRuns.map(\.p99)), p99Target,
                 median(besideRuns.map(\.p99)) < p99Target ? "met" : "NOT met"))
}
