import Dispatch
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What the CLI knows about where its messages go.
struct Terminal: Sendable {
    static let standardError = Terminal(descriptor: STDERR_FILENO)
    let descriptor: Int32
    var isInteractive: Bool { isatty(descriptor) == 1 }

    /// Erases a progress line, if one is showing, so an error message starts on a clean line.
    func clearProgressLine() {
        if ProgressBar.lineShowing.load(ordering: .relaxed) && isInteractive {
            writeStderr("\r\u{1B}[2K")
            ProgressBar.lineShowing.store(false, ordering: .relaxed)
        }
    }
}

/// A progress line on stderr (bytes, rate, ETA), shown only when stderr is a terminal.
final class ProgressBar: Sendable {
    static let lineShowing = Atomic<Bool>(false)

    private let label: String
    private let total: Int64?
    private let enabled: Bool
    private let start = DispatchTime.now().uptimeNanoseconds
    private let done = Atomic<Int64>(0)
    private let lastDraw = Atomic<UInt64>(0)

    init(label: String, total: Int64?, enabled: Bool = Terminal.standardError.isInteractive) {
        self.label = label
        self.total = total
        self.enabled = enabled
    }

    func advance(by bytes: Int) {
        let now = DispatchTime.now().uptimeNanoseconds
        let value = done.add(Int64(bytes), ordering: .relaxed).newValue
        guard enabled else { return }
        // Redraw at most ten times a second.
        let last = lastDraw.load(ordering: .relaxed)
        guard now - last > 100_000_000, lastDraw.compareExchange(expected: last, desired: now, ordering: .relaxed).exchanged
        else { return }
        draw(value, now: now)
    }

    func finish() {
        guard enabled else { return }
        draw(done.load(ordering: .relaxed), now: DispatchTime.now().uptimeNanoseconds)
        writeStderr("\n")
        Self.lineShowing.store(false, ordering: .relaxed)
    }

    private func draw(_ value: Int64, now: UInt64) {
        let seconds = max(Double(now - start) / 1e9, 1e-6)
        let rate = Double(value) / seconds
        var line = "\r\u{1B}[2K\(label) \(formatBytes(value))"
        if let total, total > 0 {
            let percent = min(100, Int(Double(value) * 100 / Double(total)))
            line += " / \(formatBytes(total)) \(percent)%"
            let remaining = Double(total - value) / max(rate, 1)
            line += "  \(formatBytes(Int64(rate)))/s  ETA \(formatDuration(remaining))"
        } else {
            line += "  \(formatBytes(Int64(rate)))/s"
        }
        writeStderr(line)
        Self.lineShowing.store(true, ordering: .relaxed)
    }
}

func formatBytes(_ bytes: Int64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(bytes)
    var unit = 0
    while value >= 1024 && unit < units.count - 1 { value /= 1024; unit += 1 }
    return unit == 0 ? "\(bytes) B" : String(format: "%.1f %@", value, units[unit])
}

func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite, seconds >= 0 else { return "--:--" }
    let s = Int(seconds.rounded())
    return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
}

/// Removes partial output files when the user interrupts the command, so an interrupted `open`
/// leaves no plaintext behind.
final class InterruptCleanup: Sendable {
    static let shared = InterruptCleanup()
    private let paths = Mutex<Set<String>>([])
    private let sources = Mutex<[any DispatchSourceSignal]>([])

    func register(_ path: String) {
        installHandlersOnce()
        paths.withLock { _ = $0.insert(path) }
        InputFaultGuard.setPartialOutput(path)
    }

    func unregister(_ path: String) {
        paths.withLock { _ = $0.remove(path) }
        InputFaultGuard.setPartialOutput(nil)
    }

    private func installHandlersOnce() {
        sources.withLock { sources in
            guard sources.isEmpty else { return }
            for signalNumber in [SIGINT, SIGTERM, SIGHUP] {
                signal(signalNumber, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
                source.setEventHandler { [self] in
                    for path in paths.withLock({ $0 }) { unlink(path) }
                    Terminal.standardError.clearProgressLine()
                    writeStderr("safechat: interrupted; partial output removed\n")
                    // _exit, not exit: exit's handlers (OpenSSL's cleanup among them) would run
                    // while the pipeline's threads still use what they tear down, and crash.
                    _exit(128 + signalNumber)
                }
                // The signal is ignored from here on, so until dispatch has registered the source
                // an interrupt would be lost (seen: `open` went on after SIGINT). Wait for it.
                let registered = DispatchSemaphore(value: 0)
                source.setRegistrationHandler { registered.signal() }
                source.resume()
                registered.wait()
                sources.append(source)
            }
        }
    }
}

/// Writes straight to file descriptor 2: unbuffered, so messages and the progress line interleave
/// correctly, and free of C's shared `stderr` stream.
func writeStderr(_ text: String) {
    var text = text
    text.withUTF8 { bytes in
        var offset = 0
        while offset < bytes.count {
            let n = write(STDERR_FILENO, bytes.baseAddress! + offset, bytes.count - offset)
            if n <= 0 { if n < 0 && errno == EINTR { continue }; return }
            offset += n
        }
    }
}

/// Turns SIGBUS, raised when a mapped input file is truncated by another process while it is being
/// read, into a clean failure: the partial output is removed and the command exits 1 with one line.
enum InputFaultGuard {
    /// The partial output path as a C string, readable from the signal handler without locks.
    nonisolated(unsafe) static var partialOutput: UnsafeMutablePointer<CChar>?
    nonisolated(unsafe) static var installed = false

    static func setPartialOutput(_ path: String?) {
        let old = partialOutput
        partialOutput = path.map { strdup($0) }
        free(old)
    }

    static func install() {
        guard !installed else { return }
        installed = true
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in
            if let path = InputFaultGuard.partialOutput { unlink(path) }
            // Only async-signal-safe calls here: unlink, write of a static string, _exit.
            let message: StaticString = "safechat: failed: the input file was truncated while being read\n"
            _ = write(STDERR_FILENO, message.utf8Start, message.utf8CodeUnitCount)
            _exit(1)
        }
        sigemptyset(&action.sa_mask)
        sigaction(SIGBUS, &action, nil)
    }
}
