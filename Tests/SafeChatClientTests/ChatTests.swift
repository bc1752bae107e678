import Foundation
import Testing
@testable import SafeChatGateway
import SafeChatAPI
import SafeChatClient
import SafeChatKeys
import SafeChatTestSupport
import SealedStream

/// Chat (issue 11) end to end: `safechat send`, `recv`, `history` and `clear-history` as
/// subprocesses against a real gateway, and the recipient's checks against a gateway that lies.
@Suite struct ChatTests {
    typealias Workspace = ClientCommandTests.Workspace

    /// user1 and user2 logged in, each on their own device, and a session of the two.
    static func pair(_ server: TestGateway, third: Bool = false) async throws -> (one: Workspace, two: Workspace, three: Workspace?, session: String) {
        try await pair(base: server.base, accounts: server.gateway.users, third: third)
    }

    static func pair(base: String, dataDirectory: String, third: Bool = false) async throws
        -> (one: Workspace, two: Workspace, three: Workspace?, session: String) {
        try await pair(base: base, accounts: try UserStore(path: Gateway.usersPath(dataDirectory: dataDirectory)), third: third)
    }

    static func pair(base: String, accounts users: any AccountStore, third: Bool) async throws
        -> (one: Workspace, two: Workspace, three: Workspace?, session: String) {
        try await users.add("user2", password: "password-two")
        if third { try await users.add("user3", password: "password-three") }
        let one = try Workspace()
        #expect(try await one.run(["login", "--server", base, "--user", "user1"], stdin: "password123").status == 0)
        let two = try Workspace()
        #expect(try await two.run(["login", "--server", base, "--user", "user2"], stdin: "password-two").status == 0)
        var three: Workspace?
        if third {
            three = try Workspace()
            #expect(try await three!.run(["login", "--server", base, "--user", "user3"], stdin: "password-three").status == 0)
        }
        let created = try await one.run(["session", "create", "Chat", "--with", third ? "user2,user3" : "user2"])
        #expect(created.status == 0, "\(created.output)")
        return (one, two, three, try #require(created.output.split(separator: "\n").last.map(String.init)))
    }

    /// Stored deliveries on the gateway (in memory, and records in its log file).
    static func storedEntries(_ server: TestGateway) async throws -> (memory: Int, onDisk: Int) {
        let log = try String(contentsOfFile: server.dataDirectory + "/registry/chat/log.jsonl", encoding: .utf8)
        return (await (server.gateway.chat.log as! ChatLog).usage().entries, log.components(separatedBy: "\"op\":\"entry\"").count - 1)
    }

    /// Waits up to 10 s for the gateway to hold `count` deliveries in memory, and returns what it
    /// holds then. `recv` closes its connection right after sending its ack, so the gateway may
    /// read and apply the ack a moment after the command has exited.
    static func entriesInMemory(_ server: TestGateway, become count: Int) async throws -> Int {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if try await storedEntries(server).memory == count { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        return try await storedEntries(server).memory
    }

    @Test func thePrototypesStoryUploadChatDownloadAndClearHistory() async throws {
        try await TestGateway.with { server in
            let (one, two, _, session) = try await Self.pair(server)
            defer { one.remove(); two.remove() }
            // user1 uploads into the session (its key comes through get_chat_key) and chats the id.
            let secret = Secrets.randomBytes(200_000)
            try Data(secret).write(to: URL(fileURLWithPath: one.path("report.iso")))
            let upload = try await one.run(["upload", "-q", "--session", session, "report.iso"])
            #expect(upload.status == 0, "\(upload.output)")
            let file = upload.output.trimmingCharacters(in: .whitespacesAndNewlines)
            let sent = try await one.run(["send", session, "here it is: \(file)"])
            #expect(sent.status == 0, "\(sent.output)")
            #expect(try await one.run(["send", session], stdin: "second line").status == 0)

            // user2 was offline: both messages and the upload event wait for them, in order.
            #expect(try await Self.storedEntries(server).memory == 3)
            let received = try await two.run(["recv", session])
            #expect(received.status == 0, "\(received.output)")
            let lines = received.output.split(separator: "\n").map(String.init)
            #expect(lines.count == 3, "\(received.output)")
            #expect(lines.first?.contains("user1 shared report.iso") == true && lines.first?.contains("safechat download \(file)") == true)
            #expect(lines.dropFirst().first?.contains("user1 ✓: here it is: \(file)") == true, "\(received.output)")
            #expect(lines.last?.contains("user1 ✓: second line") == true, "\(received.output)")
            #expect(!received.output.contains("WARNING"))

            // Acknowledged, so deleted on the gateway: in memory once the ack is read, on disk at the
            // next rewrite.
            #expect(try await Self.entriesInMemory(server, become: 0) == 0)
            try await server.gateway.chat.log.maintain(now: server.gateway.chat.now)
            #expect(try await Self.storedEntries(server).onDisk == 0)
            // Nothing is delivered twice.
            let again = try await two.run(["recv", session])
            #expect(again.status == 0 && again.output.isEmpty, "\(again.output)")

            // user2 downloads and opens the file by the id from the chat.
            #expect(try await two.run(["download", "-q", file, "-o", "got.iso"]).status == 0)
            #expect(try two.fingerprintOf("got.iso") == fingerprint(secret))

            // Local history on both sides; user1 clears theirs and nothing of it is left.
            #expect(try await two.run(["history", session]).output.contains("second line"))
            let mine = try await one.run(["history", session])
            #expect(mine.output.contains("here it is") && mine.output.contains("second line"), "\(mine.output)")
            let historyFile = one.data + "/safechat/history/\(session).log"
            let attributes = try FileManager.default.attributesOfItem(atPath: historyFile)
            #expect((attributes[.posixPermissions] as? Int) == 0o600)
            let stored = try Data(contentsOf: URL(fileURLWithPath: historyFile))
            #expect(stored.range(of: Data("second line".utf8)) == nil, "history is encrypted at rest")
            #expect(try await one.run(["clear-history", session]).status == 0)
            #expect(!FileManager.default.fileExists(atPath: historyFile))
            #expect(try await one.run(["history", session]).output.isEmpty)
        }
    }

    @Test(arguments: [TestStore.local, .postgres])
    func queuedMessagesSurviveARestartAndARemovedMemberGetsNothingNew(store: TestStore) async throws {
        let server = try await TestGateway.start(store: store)
        defer { server.removeData() }
        let (one, two, three, session) = try await Self.pair(server, third: true)
        defer { one.remove(); two.remove(); three?.remove() }
        #expect(try await one.run(["send", session, "before the restart"]).status == 0)
        await server.stop()
        let port = try #require(URL(string: server.base)?.port)
        let restarted = try await TestGateway.start(dataDirectory: server.dataDirectory, store: store) { $0.port = port }
        defer { Task { await restarted.stop() } }
        #expect(try await two.run(["recv", session]).output.contains("user1 ✓: before the restart"))

        // user3 is removed: what is sent after the rotation never reaches them, and they cannot connect.
        #expect(try await one.run(["session", "remove", session, "user3"]).status == 0)
        #expect(try await one.run(["send", session, "after user3 left"]).status == 0)
        #expect(try await two.run(["recv", session]).output.contains("after user3 left"))
        let outsider = try await three!.run(["recv", session])
        #expect(outsider.status == 1 && outsider.output.contains("404"), "\(outsider.output)")
        await restarted.stop()
    }

    @Test func sentMessagesSurviveAKillDashNine() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("chat-kill-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try await ServerProcess(dataDirectory: directory)
        let (one, two, _, session) = try await Self.pair(base: first.base, dataDirectory: directory)
        defer { one.remove(); two.remove() }
        for n in 1...3 { #expect(try await one.run(["send", session, "durable \(n)"]).status == 0) }
        first.kill()
        let second = try await ServerProcess(dataDirectory: directory, port: try #require(URL(string: first.base)?.port))
        defer { second.kill() }
        let got = try await two.run(["recv", session]).output
        for n in 1...3 { #expect(got.contains("user1 ✓: durable \(n)"), "\(got)") }
    }

    @Test(arguments: [TestStore.local, .postgres])
    func threeMembersExchangeMessagesAndEachSendersOrderIsKept(store: TestStore) async throws {
        try await TestGateway.with(store: store) { server in
            let (one, two, three, session) = try await Self.pair(server, third: true)
            defer { one.remove(); two.remove(); three?.remove() }
            for n in 1...4 {
                #expect(try await one.run(["send", session, "one-\(n)"]).status == 0)
                #expect(try await three!.run(["send", session, "three-\(n)"]).status == 0)
            }
            let got = try await two.run(["recv", session]).output
            for sender in ["one", "three"] {
                let order = got.split(separator: "\n").compactMap { line in line.range(of: "\(sender)-").map { String(line[$0.upperBound...]) } }
                #expect(order == ["1", "2", "3", "4"], "\(got)")
            }
            // user1 gets user3's, and none of their own back.
            let toOne = try await one.run(["recv", session]).output
            #expect(toOne.contains("user3 ✓: three-4") && !toOne.contains("one-1"), "\(toOne)")
        }
    }

    @Test func twoInteractiveChatsTalkLive() async throws {
        try await TestGateway.with { server in
            let (one, two, _, session) = try await Self.pair(server)
            defer { one.remove(); two.remove() }
            func chat(_ ws: Workspace) throws -> (Process, Pipe, PipeText, PipeText) {
                let process = Process(), input = Pipe(), output = PipeText(), errors = PipeText()
                process.executableURL = URL(fileURLWithPath: ClientCommandTests.safechat)
                process.arguments = ["chat", session]
                process.environment = ProcessInfo.processInfo.environment.merging(["XDG_CONFIG_HOME": ws.config, "XDG_DATA_HOME": ws.data]) { $1 }
                process.standardInput = input
                process.standardOutput = output.pipe
                process.standardError = errors.pipe
                try process.run()
                return (process, input, output, errors)
            }
            let (p1, in1, out1, err1) = try chat(one), (p2, in2, out2, err2) = try chat(two)
            // Each waits for its own connection, as a user waits for the "connected" line.
            #expect(await err1.wait(for: "connected to"), "\(err1.value)")
            #expect(await err2.wait(for: "connected to"), "\(err2.value)")
            in1.fileHandleForWriting.write(Data("hello from one\n".utf8))
            #expect(await out2.wait(for: "user1 ✓: hello from one"), "\(out2.value)")
            in2.fileHandleForWriting.write(Data("hi from two\n/quit\n".utf8))
            #expect(await out1.wait(for: "user2 ✓: hi from two"), "\(out1.value)")
            in1.fileHandleForWriting.write(Data("/quit\n".utf8))
            await p1.exited()
            await p2.exited()
            #expect(p1.terminationStatus == 0 && p2.terminationStatus == 0)
        }
    }

    /// `safechat chat` in a tmux pane (a real terminal, as a user runs it): an incoming message is
    /// drawn in the pane, a line typed with send-keys reaches the other member, `/quit` ends it.
    @Test func theInteractiveChatWorksUnderTmux() async throws {
        try await TestGateway.with { server in
            let (one, two, _, session) = try await Self.pair(server)
            defer { one.remove(); two.remove() }
            let socket = one.path("tmux.sock")
            func tmux(_ arguments: [String]) async throws -> (status: Int32, output: String) {
                try await runProcess(["tmux", "-S", socket] + arguments, in: one.url)
            }
            // Cleanup only: if tmux could not start, the expectations below have already failed.
            defer { _ = try? Process.run(URL(fileURLWithPath: "/usr/bin/env"), arguments: ["tmux", "-S", socket, "kill-server"]) }
            let command = "env XDG_CONFIG_HOME=\(one.config) XDG_DATA_HOME=\(one.data) \(ClientCommandTests.safechat) chat \(session); echo chat-exited-$?; sleep 60"
            // The tmux server outlives the command that starts it, so it must inherit no descriptor
            // but /dev/null: Foundation learns that a child exited when a socket it shares with the
            // child closes, and an output pipe left open would never end.
            let detached = "for f in /proc/$$/fd/*; do n=${f##*/}; [ \"$n\" -gt 2 ] && eval \"exec $n>&-\"; done; exec \"$@\" </dev/null >/dev/null 2>&1"
            let started = try await runProcess(["bash", "-c", detached, "bash", "tmux", "-S", socket, "new-session", "-d", "-s", "chat", "-x", "120", "-y", "30", command], in: one.url)
            #expect(started.status == 0, "\(started.output)")
            func pane(until text: String) async throws -> String {
                var screen = ""
                for _ in 0..<100 {
                    screen = try await tmux(["capture-pane", "-p", "-t", "chat"]).output
                    if screen.contains(text) { break }
                    try await Task.sleep(for: .milliseconds(100))
                }
                return screen
            }
            // The pane is connected once the first message sent to it shows up there.
            try await Task.sleep(for: .seconds(1))
            #expect(try await two.run(["send", session, "hello to the tmux pane"]).status == 0)
            let shown = try await pane(until: "user2 ✓: hello to the tmux pane")
            #expect(shown.contains("user2 ✓: hello to the tmux pane"), "\(shown)")
            #expect(try await tmux(["send-keys", "-t", "chat", "typed in tmux", "Enter"]).status == 0)
            let received = try await two.run(["recv", session, "--wait", "10"])
            #expect(received.output.contains("user1 ✓: typed in tmux"), "\(received.output)")
            #expect(try await tmux(["send-keys", "-t", "chat", "/quit", "Enter"]).status == 0)
            let ended = try await pane(until: "chat-exited-")
            #expect(ended.contains("chat-exited-0"), "\(ended)")
        }
    }

    @Test func theQueueKeepsItsBoundsAcrossARestartAndExpiresOldDeliveries() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("chatlog-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let session = SessionID.random(), reader = UserID.random()
        func wire(_ n: Int) -> ChatMessageWire {
            ChatMessageWire(sessionID: session.value, epoch: 0, sender: UserID.random().value, messageID: Secrets.randomHex(16), sentAt: UInt64(n),
                            ciphertext: String(repeating: "ab", count: 100), signature: String(repeating: "cd", count: 64))
        }
        let log = try ChatLog(directory: directory, queueLimit: 3, retention: 60, storageLimit: 1 << 20, bus: LocalChatBus())
        for n in 1...5 { _ = try await log.append(session: session, message: wire(n), file: nil, recipients: [reader], now: 1_000) }
        // Full queue: the oldest two were dropped for the reader, and they are told.
        // A restart (the log replayed) keeps exactly that, the count of drops included.
        let reopened = try ChatLog(directory: directory, queueLimit: 3, retention: 60, storageLimit: 1 << 20, bus: LocalChatBus())
        let (waiting, dropped) = await reopened.backlog(session: session, user: reader)
        #expect(waiting.map(\.seq) == [3, 4, 5] && dropped == 2)
        #expect(await reopened.backlog(session: session, user: reader).dropped == 0, "a drop is reported once")
        try await reopened.acknowledge(session: session, user: reader, upTo: 4)
        #expect(await reopened.backlog(session: session, user: reader).entries.map(\.seq) == [5])
        // Once reported, and written with the next commit, a restart does not report it again.
        let restarted = try ChatLog(directory: directory, queueLimit: 3, retention: 60, storageLimit: 1 << 20, bus: LocalChatBus())
        let replayed = await restarted.backlog(session: session, user: reader)
        #expect(replayed.entries.map(\.seq) == [5] && replayed.dropped == 0, "\(replayed.entries.map(\.seq)) \(replayed.dropped)")
        // Past the retention period it is gone, from memory and from the rewritten log.
        try await reopened.maintain(now: 1_000 + 61_000)
        #expect(await reopened.usage().entries == 0)
        let onDisk = try String(contentsOfFile: directory + "/log.jsonl", encoding: .utf8)
        #expect(!onDisk.contains("\"op\":\"entry\""), "\(onDisk)")

        // A torn last line (a crash mid-write) is dropped; damage anywhere else stops the gateway.
        let damaged = directory + "-damaged"
        try FileManager.default.createDirectory(atPath: damaged, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: damaged) }
        try (onDisk + "{\"op\":\"ent").write(toFile: damaged + "/log.jsonl", atomically: true, encoding: .utf8)
        _ = try ChatLog(directory: damaged, queueLimit: 3, retention: 60, storageLimit: 1 << 20, bus: LocalChatBus())
        try ("garbage\n" + onDisk).write(toFile: damaged + "/log.jsonl", atomically: true, encoding: .utf8)
        #expect(throws: ChatLogError.self) { try ChatLog(directory: damaged, queueLimit: 3, retention: 60, storageLimit: 1 << 20, bus: LocalChatBus()) }

        // Beyond the storage limit a send is refused and nothing else changes.
        let small = try ChatLog(directory: directory + "-small", queueLimit: 100, retention: 60, storageLimit: 3_000, bus: LocalChatBus())
        defer { try? FileManager.default.removeItem(atPath: directory + "-small") }
        var stored = 0
        while (try? await small.append(session: session, message: wire(stored), file: nil, recipients: [reader], now: 1)) != nil { stored += 1 }
        let before = await small.usage()
        await #expect(throws: ChatLogError.self) { try await small.append(session: session, message: wire(0), file: nil, recipients: [reader], now: 1) }
        let after = await small.usage()
        #expect(stored > 0 && after.entries == before.entries && after.bytes == before.bytes)
    }

    /// The log is rewritten beside the appends (its snapshot written off the actor, what was
    /// appended meanwhile added after it): with sends and acks from many tasks at once and many
    /// rewrites, a restart finds exactly what was stored and not yet acknowledged.
    @Test func theLogRewrittenBesideConcurrentSendsLosesNothing() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("chatlog-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = try ChatLog(directory: directory, queueLimit: 10_000, retention: 3_600, storageLimit: 64 << 20, bus: LocalChatBus(),
                              rewriteThreshold: 16 << 10)
        let sessions = (0..<8).map { _ in SessionID.random() }
        let prompt = UserID.random(), lagging = UserID.random()
        func wire(_ session: SessionID, _ n: Int) -> ChatMessageWire {
            ChatMessageWire(sessionID: session.value, epoch: 0, sender: UserID.random().value, messageID: Secrets.randomHex(16), sentAt: UInt64(n),
                            ciphertext: String(repeating: "ab", count: 100), signature: String(repeating: "cd", count: 64))
        }
        // Per session: 300 sends; one recipient acknowledges everything as it goes, the other
        // lags 10 behind, so the log keeps outgrowing what it holds.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for session in sessions {
                group.addTask {
                    for n in 1...300 {
                        let entry = try await log.append(session: session, message: wire(session, n), file: nil, recipients: [prompt, lagging], now: 5_000_000)
                        try await log.acknowledge(session: session, user: prompt, upTo: entry.seq, waitForDisk: n % 2 == 0)
                        if n % 5 == 0 && n > 10 { try await log.acknowledge(session: session, user: lagging, upTo: entry.seq - 10) }
                    }
                }
            }
            try await group.waitForAll()
        }
        // Every record written and no rewrite left half done before the log is read again.
        try await log.maintain(now: 5_000_000)
        var usage = await log.usage()
        for _ in 0..<200 where usage.rewriting {
            try await Task.sleep(for: .milliseconds(10))
            usage = await log.usage()
        }
        #expect(!usage.rewriting)
        #expect(usage.rewrites >= 3, "rewrites beside the appends: \(usage.rewrites)")
        #expect(usage.entries == 8 * 10)
        // Through every rewrite, what was delivered left the file: it holds the waiting entries alone.
        let onDisk = try String(contentsOfFile: directory + "/log.jsonl", encoding: .utf8)
        #expect(onDisk.components(separatedBy: "\"op\":\"entry\"").count - 1 == 8 * 10)
        let reopened = try ChatLog(directory: directory, queueLimit: 10_000, retention: 3_600, storageLimit: 64 << 20, bus: LocalChatBus())
        for session in sessions {
            let waiting = await reopened.backlog(session: session, user: lagging).entries.map(\.seq)
            #expect(waiting == Array(291...300), "\(waiting)")
            #expect(await reopened.backlog(session: session, user: prompt).entries.isEmpty)
        }
        #expect(await reopened.usage().entries == 8 * 10)
    }

    /// A gateway that lies: the recipient's checks turn tampered, replayed and impersonated messages
    /// into warnings and show none of them as a message.
    @Test func tamperedReplayedAndImpersonatedMessagesAreRejectedWithAWarning() async throws {
        try await TestGateway.with { server in
            let (one, two, three, session) = try await Self.pair(server, third: true)
            defer { one.remove(); two.remove(); three?.remove() }
            func room(_ ws: Workspace) async throws -> ChatRoom {
                let login = try ClientSession.load(from: ClientDirectory(environment: ["XDG_CONFIG_HOME": ws.config]))
                let identities = IdentityStore(environment: ["XDG_DATA_HOME": ws.data])
                return try await ChatRoom(sessions: SessionClient(session: login, identity: try identities.load(), identities: identities),
                                          sessionID: session, identities: identities)
            }
            let alice = try await room(one), bob = try await room(two), carol = try await room(three!)
            let (wire, _) = try await alice.seal("genuine")
            let delivery = ChatFrame(type: .delivery, seq: 1, time: 1, message: wire)

            // Tampered: one changed ciphertext digit.
            var bytes = Array(wire.ciphertext.utf8)
            bytes[0] = bytes[0] == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
            let tampered = ChatMessageWire(sessionID: wire.sessionID, epoch: wire.epoch, sender: wire.sender, messageID: wire.messageID,
                                           sentAt: wire.sentAt, ciphertext: String(decoding: bytes, as: UTF8.self), signature: wire.signature)
            let rejected = await bob.accept(ChatFrame(type: .delivery, seq: 1, time: 1, message: tampered))
            #expect(rejected.map(\.kind) == [.warning] && rejected[0].text!.contains("rejected"), "\(rejected)")

            // The genuine one is shown; the same message again is a replay.
            let shown = await bob.accept(delivery)
            #expect(shown.map(\.kind) == [.message] && shown[0].text == "genuine" && shown[0].sender == "user1")
            let replayed = await bob.accept(ChatFrame(type: .delivery, seq: 2, time: 2, message: wire))
            #expect(replayed.map(\.kind) == [.warning] && replayed[0].text!.contains("replayed"), "\(replayed)")

            // Impersonated: user3 (a member) seals a message and claims user1 sent it.
            let (forged, _) = try await carol.seal("I am user1")
            let claimed = ChatMessageWire(sessionID: forged.sessionID, epoch: forged.epoch, sender: wire.sender, messageID: forged.messageID,
                                          sentAt: forged.sentAt, ciphertext: forged.ciphertext, signature: forged.signature)
            let impersonated = await bob.accept(ChatFrame(type: .delivery, seq: 3, time: 3, message: claimed))
            #expect(impersonated.map(\.kind) == [.warning] && impersonated[0].text!.contains("signature"), "\(impersonated)")

            // Moved to another session: the AAD binds the session.
            let moved = ChatMessageWire(sessionID: String(repeating: "a", count: 32), epoch: wire.epoch, sender: wire.sender,
                                        messageID: wire.messageID, sentAt: wire.sentAt, ciphertext: wire.ciphertext, signature: wire.signature)
            #expect(await bob.accept(ChatFrame(type: .delivery, seq: 4, time: 4, message: moved)).map(\.kind) == [.warning])
        }
    }
}

extension ChatTests {
    /// Acknowledged chat leaves the disk when it is acknowledged (issue 24), even while another
    /// session's deliveries still wait in the same log: its record is overwritten in place, and a
    /// restart still finds exactly what waits.
    @Test func anAcknowledgedDeliveryLeavesTheLogWhileOthersStillWait() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("chatlog-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let waiting = SessionID.random(), busy = SessionID.random(), offline = UserID.random(), online = UserID.random()
        func wire(_ session: SessionID, _ marker: String) -> ChatMessageWire {
            ChatMessageWire(sessionID: session.value, epoch: 0, sender: UserID.random().value, messageID: Secrets.randomHex(16), sentAt: 1,
                            ciphertext: marker + String(repeating: "ab", count: 60), signature: String(repeating: "cd", count: 64))
        }
        let log = try ChatLog(directory: directory, queueLimit: 100, retention: 3600, storageLimit: 1 << 20, bus: LocalChatBus())
        _ = try await log.append(session: waiting, message: wire(waiting, "77777777"), file: nil, recipients: [offline], now: 1_000)
        for n in 1...20 {
            let marker = String(format: "%08x", 0x1000_0000 + n)
            let entry = try await log.append(session: busy, message: wire(busy, marker), file: nil, recipients: [online], now: 1_000)
            try await log.acknowledge(session: busy, user: online, upTo: entry.seq, waitForDisk: n % 2 == 0)
        }
        // Every acknowledged ciphertext is gone from the file (the last ack is written a moment
        // later, with the next group commit); the waiting one is there.
        var onDisk = ""
        for _ in 0..<100 {
            onDisk = try String(contentsOfFile: directory + "/log.jsonl", encoding: .utf8)
            if !onDisk.contains("10000014") { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        for n in 1...20 { #expect(!onDisk.contains(String(format: "%08x", 0x1000_0000 + n)), "delivery \(n) is still on disk") }
        #expect(onDisk.contains("77777777"))
        #expect(onDisk.contains(#"{"op":"gone","seq":20,"session":"\#(busy.value)"}"#))
        let reopened = try ChatLog(directory: directory, queueLimit: 100, retention: 3600, storageLimit: 1 << 20, bus: LocalChatBus())
        #expect(await reopened.backlog(session: waiting, user: offline).entries.map { $0.message?.ciphertext.prefix(8) } == ["77777777"])
        #expect(await reopened.backlog(session: busy, user: online).entries.isEmpty)
        // A new send in the busy session continues its numbering.
        #expect(try await reopened.append(session: busy, message: wire(busy, "88888888"), file: nil, recipients: [online], now: 2_000).seq == 21)
    }
}

extension ChatTests {
    /// No account can exhaust the chat storage others share (issue 24): accounts filling it at once,
    /// each with messages for a member who never connects, each stop at their own share; another
    /// account still sends, and a share freed by deliveries is usable again.
    @Test func accountsFillingSharedChatStorageAtOnceEachStopAtTheirShare() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("chatlog-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = try ChatLog(directory: directory, queueLimit: 100_000, retention: 3600, storageLimit: 1 << 20, accountLimit: 200_000,
                              bus: LocalChatBus())
        let session = SessionID.random(), absent = UserID.random()
        let senders = (0..<4).map { _ in UserID.random() }
        func wire(from sender: UserID) -> ChatMessageWire {
            ChatMessageWire(sessionID: session.value, epoch: 0, sender: sender.value, messageID: Secrets.randomHex(16), sentAt: 1,
                            ciphertext: String(repeating: "ab", count: 2_000), signature: String(repeating: "cd", count: 64))
        }
        // Four accounts at once, each sending until refused.
        let stored = try await withThrowingTaskGroup(of: (UserID, Int, Bool).self) { group in
            for sender in senders {
                group.addTask {
                    var count = 0
                    while true {
                        do {
                            _ = try await log.append(session: session, message: wire(from: sender), file: nil, recipients: [absent], now: 1)
                            count += 1
                        } catch ChatLogError.accountFull {
                            return (sender, count, true)
                        } catch {
                            return (sender, count, false)
                        }
                    }
                }
            }
            return try await group.reduce(into: [UserID: (Int, Bool)]()) { $0[$1.0] = ($1.1, $1.2) }
        }
        let perMessage = ChatEntry(session: session, seq: 1, time: 1, recipients: [absent], message: wire(from: senders[0]), file: nil).cost
        for sender in senders {
            let (count, refusedForShare) = try #require(stored[sender])
            #expect(refusedForShare, "each account is stopped by its own share, not by the whole storage")
            #expect(count == 200_000 / perMessage, "\(count) messages of \(perMessage) bytes within a share of 200 000")
        }
        // Someone else still sends.
        let other = UserID.random()
        _ = try await log.append(session: session, message: wire(from: other), file: nil, recipients: [absent], now: 1)
        // The absent member reads everything: the shares are free again.
        try await log.acknowledge(session: session, user: absent, upTo: UInt64(senders.reduce(0) { $0 + stored[$1]!.0 } + 1))
        #expect(await log.usage().bytes == 0)
        _ = try await log.append(session: session, message: wire(from: senders[0]), file: nil, recipients: [absent], now: 1)
    }

    /// The same bound through the gateway: `safechat send` past the sender's share is refused with a
    /// message that says whose share is full and why, and another member's sends still go.
    @Test func aSendPastTheSendersShareIsRefusedAndOthersStillSend() async throws {
        try await TestGateway.with(configure: { $0.chatStoragePerAccount = 20_000 }) { server in
            let (one, two, three, session) = try await Self.pair(server, third: true)
            defer { one.remove(); two.remove(); three?.remove() }
            let text = String(repeating: "x", count: 4_000)
            var refused: (status: Int32, output: String)?
            for _ in 0..<10 {
                let sent = try await one.run(["send", session, text])
                if sent.status != 0 { refused = sent; break }
            }
            let refusal = try #require(refused, "user1's sends stop at their share")
            #expect(refusal.output.contains("your share of the gateway's chat storage"), "\(refusal.output)")
            #expect(try await three!.run(["send", session, "user3 still sends"]).status == 0)
            #expect(try await two.run(["recv", session]).output.contains("user3 ✓: user3 still sends"))
            // Once delivered (user2 and user3 acknowledge), user1 may send again.
            _ = try await three!.run(["recv", session])
            #expect(try await one.run(["send", session, "again"]).status == 0)
        }
    }
}
