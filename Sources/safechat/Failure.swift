import ArgumentParser
import SafeChatClient
import SafeChatKeys
import SealedStream
#if canImport(Glibc)
import Glibc
#endif

/// Exit codes, documented in README.md and in `safechat --help`.
enum ExitStatus {
    static let operationalError: Int32 = 1
    /// What was received failed a check: a sealed stream, a file or stream the gateway passed off as
    /// another, a session log or key that does not verify against what this device trusts.
    static let rejectedInput: Int32 = 2
    /// `serve`'s configuration is refused: a bad value, an unknown key, settings that go together
    /// given apart (EX_CONFIG of sysexits.h).
    static let badConfiguration: Int32 = 78
}

/// A failure the CLI reports as one line on stderr.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    var exitStatus: Int32 = ExitStatus.operationalError
}

/// Runs a command body, turning any error into one line on stderr and the documented exit code.
func reportingFailures(_ action: String, _ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as ExitCode {
        throw error
    } catch let error as SealedStreamError {
        let status = if case .invalidKey = error { ExitStatus.operationalError } else { ExitStatus.rejectedInput }
        printError("\(action) failed: \(error)")
        throw ExitCode(status)
    } catch let error as ClientError {
        // What the gateway served failed a check of authenticity: the same exit as a tampered stream.
        let status = switch error {
        case .refused, .keyChanged: ExitStatus.rejectedInput
        default: ExitStatus.operationalError
        }
        printError("\(action) failed: \(error)")
        throw ExitCode(status)
    } catch let error as EpochError {
        printError("\(action) failed: the session's log is refused: \(error)")
        throw ExitCode(ExitStatus.rejectedInput)
    } catch let error as CLIError {
        printError("\(action) failed: \(error.description)")
        throw ExitCode(error.exitStatus)
    } catch {
        printError("\(action) failed: \(error)")
        throw ExitCode(ExitStatus.operationalError)
    }
}

func printError(_ line: String) {
    Terminal.standardError.clearProgressLine()
    let text = "safechat: \(line)\n"
    writeStderr(text)
}
