import ArgumentParser
import SafeChatClient
import SealedStream
#if canImport(Glibc)
import Glibc
#endif

/// Exit codes, documented in README.md and in `safechat --help`.
enum ExitStatus {
    static let operationalError: Int32 = 1
    static let rejectedInput: Int32 = 2
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
        let status = if case .refused = error { ExitStatus.rejectedInput } else { ExitStatus.operationalError }
        printError("\(action) failed: \(error)")
        throw ExitCode(status)
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
