import Foundation
import SafeChatAPI
import SealedStream

/// What this device needs to recognise a replayed or reordered chat message, kept apart from the
/// history so that clearing the history (the prototype's Clear history) does not reopen replays:
/// for every message stored or sent, its id, its sender and its send time, and no text.
///
/// `$XDG_DATA_HOME/safechat/history/<session id>.seen`, 0600, append-only, fsynced with every
/// append: records of `message_id (16) || sender user_id (16) || u64be(sent_at)`, 40 bytes each
/// (docs/PROTOCOL.md section 4). A torn last record (a crash mid-write) is ignored.
public struct ReplayGuard: Sendable {
    static let recordLength = 40
    public let path: String

    public init(identities: IdentityStore = IdentityStore(), sessionID: [UInt8]) {
        path = identities.directory + "/history/\(Secrets.hex(sessionID)).seen"
    }

    /// One message's entry.
    public struct Entry: Sendable, Equatable {
        public let messageID: String
        public let senderID: String
        public let sentAt: UInt64
    }

    /// Every entry, oldest first ([] if there are none).
    public func read() throws -> [Entry] {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        let bytes = [UInt8](data)
        return stride(from: 0, to: bytes.count - bytes.count % Self.recordLength, by: Self.recordLength).map { at in
            Entry(messageID: Secrets.hex(bytes[at..<at + 16]), senderID: Secrets.hex(bytes[at + 16..<at + 32]),
                  sentAt: bytes[at + 32..<at + 40].reduce(0) { $0 << 8 | UInt64($1) })
        }
    }

    /// Appends `entries` durably (one write and one fsync). Entries whose ids are not hex of 16 bytes are skipped.
    public func append(_ entries: [Entry]) throws {
        var out: [UInt8] = []
        for entry in entries {
            guard let id = Secrets.bytes(fromHex: entry.messageID, count: 16), let sender = Secrets.bytes(fromHex: entry.senderID, count: 16)
            else { continue }
            out += id + sender + (0..<8).map { UInt8(truncatingIfNeeded: entry.sentAt >> (56 - 8 * $0)) }
        }
        guard !out.isEmpty else { return }
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw FileError(path: path, operation: "open", errno: errno) }
        defer { close(descriptor) }
        guard flock(descriptor, LOCK_EX) == 0 else { throw FileError(path: path, operation: "lock", errno: errno) }
        // A record torn by a crash is overwritten, so every record stays aligned.
        let size = lseek(descriptor, 0, SEEK_END)
        let end = size - size % off_t(Self.recordLength)
        try FileSink(descriptor: descriptor, path: path).write(out, at: Int64(end))
        guard fsync(descriptor) == 0 else { throw FileError(path: path, operation: "fsync", errno: errno) }
    }
}
