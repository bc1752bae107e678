import Foundation
import SafeChatAPI
import Synchronization

/// The one-shot chat operations `safechat send` and `safechat recv` run (and tests drive).
public struct ChatClient: Sendable {
    public let login: ClientSession
    public let room: ChatRoom

    public init(login: ClientSession, room: ChatRoom) {
        self.login = login
        self.room = room
    }

    /// Seals and sends `text`; returns once the gateway has stored it (the line is then in history).
    /// If the session moved to a new epoch meanwhile (`stale_epoch`), the log is fetched and verified
    /// again and the text sealed anew under the new key, up to three times.
    public func send(_ text: String) async throws -> ChatLine {
        for attempt in 1...3 {
            let (wire, line) = try await room.seal(text)
            let (answer, closed) = try await ChatSocket.connect(login, session: room.sessionID) { socket -> ChatFrame? in
                try await socket.send(ChatFrame(type: .send, message: wire))
                for try await frame in socket.frames {
                    if frame.type == .sent && frame.messageID == wire.messageID { return frame }
                    if frame.type == .error && frame.messageID == wire.messageID { return frame }
                }
                return nil
            }
            guard let answer = answer ?? nil else { throw ChatClientError.closed(closed) }
            if answer.type == .sent {
                try room.history.append([line])
                return line
            }
            guard answer.error == .staleEpoch, attempt < 3 else {
                throw ChatClientError.refused(code: answer.error?.rawValue ?? "error", text: answer.text ?? "the message was refused")
            }
            try await room.refresh()
        }
        preconditionFailure("the loop returns or throws")
    }

    /// Fetches what is queued (waiting up to `wait` seconds for at least one delivery when none is),
    /// verifies it, stores it in history, then acknowledges it so the gateway deletes it.
    public func receive(wait: Duration = .zero) async throws -> [ChatLine] {
        let room = room
        let (lines, closed) = try await ChatSocket.connect(login, session: room.sessionID) { socket -> [ChatLine] in
            // The socket's frames, plus a nil when the wait is over.
            let (events, feed) = AsyncThrowingStream<ChatFrame?, any Error>.makeStream()
            let pump = Task {
                do {
                    for try await frame in socket.frames { feed.yield(frame) }
                    feed.finish()
                } catch { feed.finish(throwing: error) }
            }
            defer { pump.cancel() }
            var frames = events.makeAsyncIterator()
            guard let ready = try await frames.next() ?? nil, ready.type == .ready else {
                throw ClientError.protocolViolation("the gateway did not start the chat with a ready frame")
            }
            var deliveries: [ChatFrame] = []
            while deliveries.count < ready.queued ?? 0, let frame = try await frames.next() ?? nil {
                if frame.type == .delivery { deliveries.append(frame) }
            }
            if deliveries.isEmpty && wait > .zero {
                let timer = Task {
                    try await Task.sleep(for: wait)
                    feed.yield(nil)
                }
                defer { timer.cancel() }
                while let frame = try await frames.next() ?? nil {
                    if frame.type == .delivery {
                        deliveries.append(frame)
                        break
                    }
                }
            }
            var lines: [ChatLine] = []
            if let dropped = ready.dropped, dropped > 0 {
                lines.append(ChatLine(kind: .warning, sender: "gateway", senderID: "", sentAt: UInt64(Date().timeIntervalSince1970 * 1000),
                                      text: "\(dropped) deliveries expired or overflowed the gateway's queue before you connected"))
            }
            for frame in deliveries { lines += await room.accept(frame) }
            try room.history.append(lines)
            if let last = deliveries.compactMap(\.seq).max() { try await socket.send(ChatFrame(type: .ack, seq: last)) }
            return lines
        }
        guard let lines else { throw ChatClientError.closed(closed) }
        return lines
    }
}

/// Why a chat operation ended without its answer.
public enum ChatClientError: Error, CustomStringConvertible {
    case closed(ChatSocket.Closed)
    /// The gateway answered a send with an `error` frame (docs/PROTOCOL.md section 2).
    case refused(code: String, text: String)

    public var description: String {
        switch self {
        case .closed(let closed):
            "the gateway closed the chat connection" + (closed.code.map { " (\($0)\(closed.reason.map { ": " + $0 } ?? ""))" } ?? "")
                + "; nothing was sent: run the same command again"
        case .refused(let code, let text):
            switch code {
            case ErrorCode.staleEpoch.rawValue: "the session kept moving to new epochs while sending (\(text)); run the same command again"
            case ErrorCode.chatStorageFull.rawValue: "the gateway has no room for more chat right now (\(text)); try again later"
            default: "the gateway refused the message: \(text) (\(code))"
            }
        }
    }
}
