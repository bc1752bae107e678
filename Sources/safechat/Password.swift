import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Reads a password from the terminal without echo, or one line from stdin when stdin is not a
/// terminal (scripts, tests). Never from argv, where other users could see it.
func readPassword(prompt: String, confirm: Bool = false) throws -> String {
    if isatty(STDIN_FILENO) == 1 {
        let first = try readHidden(prompt)
        if confirm {
            guard try readHidden("Again: ") == first else { throw CLIError(description: "the passwords do not match") }
        }
        return first
    }
    guard let line = readLine(strippingNewline: true) else { throw CLIError(description: "no password on standard input") }
    return line
}

private func readHidden(_ prompt: String) throws -> String {
    writeStderr(prompt)
    var saved = termios()
    tcgetattr(STDIN_FILENO, &saved)
    var quiet = saved
    quiet.c_lflag &= ~tcflag_t(ECHO)
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet)
    defer {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved)
        writeStderr("\n")
    }
    guard let line = readLine(strippingNewline: true) else { throw CLIError(description: "no password entered") }
    return line
}
