import ArgumentParser
import Foundation
import SafeChatAPI
import SafeChatClient
import SafeChatKeys
import SealedStream
import Synchronization

/// The logged-in account, and a chat room for `session` on this device's identity.
private func chatClient(_ session: String) async throws -> ChatClient {
    let login = try ClientSession.load(from: ClientDirectory())
    let room = try await ChatRoom(sessions: SessionClient(session: login, identity: try IdentityStore().load()), sessionID: session)
    return ChatClient(login: login, room: room)
}

/// The local history of `session` on this device (no gateway needed).
private func localHistory(_ session: String) throws -> ChatHistory {
    guard let bytes = Secrets.bytes(fromHex: session, count: 16) else {
        throw CLIError(description: "'\(session)' is not a session id", exitStatus: ExitStatus.rejectedInput)
    }
    return ChatHistory(identity: try IdentityStore().load(), sessionID: bytes)
}

private func show(_ line: ChatLine, json: Bool) {
    if json {
        print(String(decoding: (try? WireCoding.encoder.encode(line)) ?? Data(), as: UTF8.self))
    } else {
        showLine(line.rendered)
    }
}

struct SendCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send", abstract: "Send one chat message to a session (TEXT, or standard input).",
        discussion: "The message is sealed and signed here; the gateway stores it for members who are offline.")
    @Argument(help: "The session id.") var session: String
    @Argument(help: "The message (default: standard input).") var text: String?

    func run() async throws {
        try await reportingFailures("send") {
            let body = text ?? String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
                .trimmingCharacters(in: .newlines)
            guard !body.isEmpty else { throw CLIError(description: "nothing to send", exitStatus: ExitStatus.rejectedInput) }
            _ = try await chatClient(session).send(body)
        }
    }
}

struct ReceiveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recv", abstract: "Fetch a session's queued messages, print them and store them in the local history.",
        discussion: "Each line shows time, sender and text; a rejected message (tampered, replayed, impersonated) prints a WARNING line. Fetched messages are acknowledged, and the gateway deletes them.")
    @Argument(help: "The session id.") var session: String
    @Option(help: "If nothing is queued, wait up to this many seconds for a message.") var wait: Double = 0
    @Flag(help: "JSON lines instead of text.") var json = false

    func validate() throws {
        guard wait >= 0, wait <= 3600 else { throw ValidationError("--wait takes 0 to 3600 seconds") }
    }

    func run() async throws {
        try await reportingFailures("recv") {
            for line in try await chatClient(session).receive(wait: .milliseconds(Int(wait * 1000))) { show(line, json: json) }
        }
    }
}

struct HistoryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history", abstract: "Print a session's local chat history (kept only on this device, encrypted at rest).")
    @Argument(help: "The session id.") var session: String
    @Flag(help: "JSON lines instead of text.") var json = false

    func run() async throws {
        try await reportingFailures("history") {
            for line in try localHistory(session).read() { show(line, json: json) }
        }
    }
}

struct ClearHistoryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clear-history", abstract: "Delete a session's local chat history (the prototype's Clear history).")
    @Argument(help: "The session id.") var session: String

    func run() async throws {
        try await reportingFailures("clear-history") {
            try localHistory(session).clear()
            printError("history of \(session) cleared")
        }
    }
}

struct ChatCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat", abstract: "Chat in a session: type a line to send it.",
        discussion: """
            Incoming lines show time, sender and a ✓ for a verified message; rejected ones print a WARNING. \
            Commands: /files, /upload PATH, /download ID, /clear (delete the local history), /quit. \
            The connection is re-opened with backoff when it drops, and queued messages are picked up.
            """)
    @Argument(help: "The session id.") var session: String

    func run() async throws {
        try await reportingFailures("chat") {
            let client = try await chatClient(session)
            for line in try client.room.history.read().suffix(20) { showLine(line.rendered) }
            let typing = ChatTyping(client: client)
            // Typed lines are read for the whole run; connections come and go beneath them.
            Task {
                for await line in StandardInputLines().lines {
                    if try await typing.handle(line) == .quit { break }
                }
                // A line typed just before /quit is on its way: exiting now could drop it unsent.
                await typing.waitForConfirmations(upTo: .seconds(10))
                Foundation.exit(0)
            }
            var backoff = 1.0
            while true {
                let started = ContinuousClock.now
                let closed: ChatSocket.Closed
                do {
                    (_, closed) = try await ChatSocket.connect(client.login, session: session) { socket in
                        typing.socket.withLock { $0 = socket }
                        printError("connected to \(session); type a line to send it, /quit to leave")
                        defer { typing.socket.withLock { $0 = nil } }
                        try await typing.receive(socket)
                    }
                } catch where Self.isPassing(error) {
                    printError("cannot reach the gateway (\(error)); retrying in \(Int(backoff)) s")
                    try await Task.sleep(for: .seconds(backoff))
                    backoff = min(backoff * 2, 30)
                    continue
                }
                if ContinuousClock.now - started > .seconds(30) { backoff = 1 }
                // A gateway going away (shutting down) hands over at once: behind a load balancer the
                // next connection reaches another one.
                let wait = closed.code == ChatCloseCode.goingAway.rawValue ? 0 : backoff
                printError("disconnected\(closed.code.map { " (\($0)\(closed.reason.map { ": " + $0 } ?? ""))" } ?? ""); reconnecting in \(Int(wait)) s")
                try await Task.sleep(for: .seconds(wait))
                if wait > 0 { backoff = min(backoff * 2, 30) }
            }
        }
    }
}

extension ChatCommand {
    /// A failure to connect that may pass (the gateway restarting, unreachable, overloaded), as
    /// opposed to a refusal that will not (no login, not a member).
    static func isPassing(_ error: any Error) -> Bool {
        guard let error = error as? ClientError else { return true }
        switch error {
        case .server(let status, _, _): return status >= 500 || status == 429 || status == 408
        case .connectionLost: return true
        default: return false
        }
    }
}

/// What `safechat chat` does with the connection of the moment: deliveries are verified, stored,
/// printed and acknowledged; typed lines are sent or run as commands.
private final class ChatTyping: Sendable {
    enum Outcome: Sendable { case quit }
    let client: ChatClient
    let socket = Mutex<ChatSocket?>(nil)
    /// Lines sent on the current connection that the gateway has not yet answered (`sent` or `error`).
    let unconfirmed = Mutex(0)

    init(client: ChatClient) { self.client = client }

    func receive(_ socket: ChatSocket) async throws {
        unconfirmed.withLock { $0 = 0 }
        for try await frame in socket.frames {
            switch frame.type {
            case .delivery:
                let lines = await client.room.accept(frame)
                try client.room.history.append(lines)
                for line in lines { showLine(line.rendered) }
                if let seq = frame.seq { try await socket.send(ChatFrame(type: .ack, seq: seq)) }
            case .sent:
                unconfirmed.withLock { $0 = max(0, $0 - 1) }
            case .error:
                unconfirmed.withLock { $0 = max(0, $0 - 1) }
                printError("the gateway refused: \(frame.text ?? frame.error?.rawValue ?? "error")")
            default: break
            }
        }
    }

    /// Waits until the gateway has answered every line sent, the connection is gone, or `limit` passed.
    func waitForConfirmations(upTo limit: Duration) async {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline, unconfirmed.withLock({ $0 }) > 0, socket.withLock({ $0 }) != nil {
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    func handle(_ line: String) async throws -> Outcome? {
        let words = line.split(separator: " ", maxSplits: 1).map(String.init)
        switch words.first {
        case nil: return nil
        case "/quit": return .quit
        case "/clear":
            try client.room.history.clear()
            printError("history cleared")
        case "/files":
            await runInside(try FilesCommand.parse(["--session", client.room.sessionID]))
        case "/upload" where words.count == 2:
            await runInside(try UploadCommand.parse(["--session", client.room.sessionID, "--quiet", words[1]]))
        case "/download" where words.count == 2:
            await runInside(try DownloadCommand.parse(["--quiet", words[1]]))
        default:
            if line.hasPrefix("/") && !line.hasPrefix("//") {
                printError("commands: /files, /upload PATH, /download ID, /clear, /quit (start a message with // to send a leading /)")
                return nil
            }
            guard let socket = socket.withLock({ $0 }) else {
                printError("not connected; the line was not sent")
                return nil
            }
            do {
                let (wire, sealed) = try await client.room.seal(line.hasPrefix("//") ? String(line.dropFirst()) : line)
                unconfirmed.withLock { $0 += 1 }
                try await socket.send(ChatFrame(type: .send, message: wire))
                try client.room.history.append([sealed])
                showLine(sealed.rendered)
            } catch {
                printError("not sent: \(error)")
            }
        }
        return nil
    }

    /// Runs a CLI command inside the chat; it reports its own failure, and the chat goes on.
    private func runInside(_ command: some AsyncParsableCommand) async {
        var command = command
        try? await command.run()
    }
}

/// Standard input as an async sequence of lines, read on a thread of its own (reads block), shared
/// across reconnections.
final class StandardInputLines: Sendable {
    let lines: AsyncStream<String>

    init() {
        let (stream, continuation) = AsyncStream<String>.makeStream()
        lines = stream
        Thread.detachNewThread {
            while let line = readLine() { continuation.yield(line) }
            continuation.finish()
        }
    }
}

/// Writes a chat line to stdout at once, even into a pipe: someone reading the chat through `tee`
/// or a script sees each message when it arrives, not when a buffer fills.
private func showLine(_ text: String) {
    FileHandle.standardOutput.write(Data((text + "\n").utf8))
}
