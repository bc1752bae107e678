#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SafeChatAPI
import SafeChatKeys
import SealedStream

/// One line of a session's chat as this device keeps and shows it.
public struct ChatLine: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable {
        /// A message that verified: signed by its sender's pinned key, decrypted under the epoch's key.
        case message
        /// A file completed into the session (announced by the gateway).
        case file
        /// Something was rejected (tampered, replayed, impersonated, out of order); `text` says what.
        case warning
    }

    public var kind: Kind
    public var messageID: String?
    public var sender: String
    public var senderID: String
    /// The sender's clock (messages) or the gateway's (files and warnings), ms since 1970.
    public var sentAt: UInt64
    public var text: String?
    public var fileID: String?
    public var fileName: String?
    public var fileSize: Int64?
    /// Sent from this device.
    public var outgoing: Bool

    public init(kind: Kind, messageID: String? = nil, sender: String, senderID: String, sentAt: UInt64, text: String? = nil,
                fileID: String? = nil, fileName: String? = nil, fileSize: Int64? = nil, outgoing: Bool = false) {
        self.kind = kind
        self.messageID = messageID
        self.sender = sender
        self.senderID = senderID
        self.sentAt = sentAt
        self.text = text
        self.fileID = fileID
        self.fileName = fileName
        self.fileSize = fileSize
        self.outgoing = outgoing
    }

    enum CodingKeys: String, CodingKey {
        case kind, messageID = "message_id", sender, senderID = "sender_id", sentAt = "sent_at", text, fileID = "file_id",
             fileName = "file_name", fileSize = "file_size", outgoing
    }

    /// How `safechat chat`, `recv` and `history` print it: time, sender, verification, text.
    /// Control characters from the network are shown escaped, so a message cannot drive the terminal.
    public var rendered: String {
        let time = Self.timeFormatter.string(from: Date(timeIntervalSince1970: Double(sentAt) / 1000))
        switch kind {
        case .message:
            return "[\(time)] \(Self.printable(sender))\(outgoing ? "" : " ✓"): \(Self.printable(text ?? ""))"
        case .file:
            let size = ByteCountFormatter.string(fromByteCount: fileSize ?? 0, countStyle: .decimal)
            return "[\(time)] \(Self.printable(sender)) shared \(Self.printable(fileName ?? "a file")) (\(size)) — safechat download \(fileID ?? "")"
        case .warning:
            return "[\(time)] WARNING: \(Self.printable(text ?? ""))"
        }
    }

    static func printable(_ text: String) -> String {
        String(text.unicodeScalars.map { scalar -> String in
            scalar.properties.generalCategory == .control && scalar != "\t" ? "\\u{\(String(scalar.value, radix: 16))}" : String(scalar)
        }.joined())
    }

    private static let timeFormatter: DateFormatter = {
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
        return formatter
    }()
}

/// A session's local history: `$XDG_DATA_HOME/safechat/history/<session>.log`, 0600, append-only,
/// every record sealed with ``HistoryCipher`` (docs/PROTOCOL.md section 4).
///
/// File: "SCHIST1" 0x00 || salt (16), then records `u32be(length) || sealed record`, each sealed
/// record holding one ``ChatLine`` as JSON. Every append is fsynced; a record torn by a crash is
/// cut off when the file is next opened, so what was written before it survives.
public struct ChatHistory: Sendable {
    static let magic = Array("SCHIST1".utf8) + [0]
    static let maxRecord = 1 << 20
    public let path: String
    let historyKey: [UInt8]
    let sessionID: [UInt8]
    /// Ids, senders and times of the messages stored here, which clearing the history keeps.
    public let replayGuard: ReplayGuard

    public init(identities: IdentityStore = IdentityStore(), identity: Identity, sessionID: [UInt8]) {
        path = identities.directory + "/history/\(Secrets.hex(sessionID)).log"
        historyKey = identity.historyKey
        self.sessionID = sessionID
        replayGuard = ReplayGuard(identities: identities, sessionID: sessionID)
    }

    /// Every line, oldest first ([] if there is no history).
    public func read() throws -> [ChatLine] {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        let bytes = [UInt8](data)
        guard bytes.count >= 24, Array(bytes.prefix(8)) == Self.magic else {
            throw ClientError.protocolViolation("\(path) is not a SafeChat history file")
        }
        let cipher = HistoryCipher(historyKey: historyKey, salt: Array(bytes[8..<24]), sessionID: sessionID)
        var lines: [ChatLine] = [], offset = 24
        while offset + 4 <= bytes.count {
            let length = bytes[offset..<offset + 4].reduce(0) { $0 << 8 | Int($1) }
            guard length <= Self.maxRecord, offset + 4 + length <= bytes.count else { break }
            guard let plaintext = cipher.open(Array(bytes[offset + 4..<offset + 4 + length])),
                  let line = try? JSONDecoder().decode(ChatLine.self, from: Data(plaintext))
            else { throw ClientError.protocolViolation("\(path) does not open with this identity's history key (altered, or another identity's)") }
            lines.append(line)
            offset += 4 + length
        }
        return lines
    }

    /// Appends `lines` durably (one write and one fsync), and each message's id, sender and time to
    /// the replay guard.
    public func append(_ lines: [ChatLine]) throws {
        guard !lines.isEmpty else { return }
        try replayGuard.append(lines.filter { $0.kind == .message }.compactMap { line in
            line.messageID.map { ReplayGuard.Entry(messageID: $0, senderID: line.senderID, sentAt: line.sentAt) }
        })
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw FileError(path: path, operation: "open", errno: errno) }
        defer { close(descriptor) }
        guard flock(descriptor, LOCK_EX) == 0 else { throw FileError(path: path, operation: "lock", errno: errno) }
        let sink = FileSink(descriptor: descriptor, path: path)
        var size = lseek(descriptor, 0, SEEK_END)
        let salt: [UInt8]
        if size < 24 {
            // New (or torn before its header was whole): start it.
            guard ftruncate(descriptor, 0) == 0 else { throw FileError(path: path, operation: "truncate", errno: errno) }
            salt = Secrets.randomBytes(16)
            try sink.write(Self.magic + salt, at: 0)
            size = 24
        } else {
            var header = [UInt8](repeating: 0, count: 24)
            guard pread(descriptor, &header, 24, 0) == 24, Array(header.prefix(8)) == Self.magic else {
                throw ClientError.protocolViolation("\(path) is not a SafeChat history file")
            }
            salt = Array(header[8...])
            size = try Self.endOfLastWholeRecord(descriptor, size: size)
        }
        let cipher = HistoryCipher(historyKey: historyKey, salt: salt, sessionID: sessionID)
        var out: [UInt8] = []
        for line in lines {
            let sealed = cipher.seal(Array(try JSONEncoder().encode(line)))
            out += (0..<4).map { UInt8(truncatingIfNeeded: sealed.count >> (24 - 8 * $0)) } + sealed
        }
        try sink.write(out, at: Int64(size))
        guard ftruncate(descriptor, off_t(size) + off_t(out.count)) == 0, fsync(descriptor) == 0 else {
            throw FileError(path: path, operation: "fsync", errno: errno)
        }
    }

    /// The prototype's Clear history: deletes the file. What the gateway delivered was deleted
    /// there on acknowledgement, so no message text remains anywhere; the replay guard (ids, senders
    /// and times only) stays, so a gateway cannot deliver the same messages again unseen.
    public func clear() throws {
        guard unlink(path) == 0 || errno == ENOENT else { throw FileError(path: path, operation: "delete", errno: errno) }
    }

    /// Walks the record lengths; a torn last record is cut off there.
    private static func endOfLastWholeRecord(_ descriptor: Int32, size: off_t) throws -> off_t {
        var offset: off_t = 24
        var prefix = [UInt8](repeating: 0, count: 4)
        while offset + 4 <= size {
            guard pread(descriptor, &prefix, 4, offset) == 4 else { break }
            let length = prefix.reduce(0) { $0 << 8 | Int($1) }
            guard length <= maxRecord, offset + 4 + off_t(length) <= size else { break }
            offset += 4 + off_t(length)
        }
        return offset
    }
}
