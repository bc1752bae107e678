#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NIOCore
import SafeChatAPI
import SealedFormat

/// The chat log's file: records as JSON lines, snapshots of the live state, rewrites beside the
/// appends, durable appends, and deleted entries overwritten in place.
extension ChatLog {
    /// A deleted entry's record, as it is overwritten in place: `{"op":"gone","seq":N,"session":…}`
    /// (its seq stays taken after a restart), padded with spaces to the record's length (JSON allows
    /// the whitespace). An entry's record is always longer.
    static func goneRecord(_ key: EntryKey, length: Int) -> [UInt8] {
        let gone = line(Record(op: .gone, session: key.session, seq: key.seq)).dropLast()
        return gone + [UInt8](repeating: UInt8(ascii: " "), count: max(0, length - gone.count - 1)) + [UInt8(ascii: "\n")]
    }

    static func overwrite(_ records: [(key: EntryKey, range: Range<Int>)], in descriptor: Int32) throws {
        for (key, range) in records {
            let gone = goneRecord(key, length: range.count)
            let written = gone.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, off_t(range.lowerBound)) }
            guard written == gone.count else { throw FileError(path: "chat log", operation: "overwrite a delivered entry", errno: errno) }
        }
    }

    /// One record as a JSON line (written by hand: see ``ChatJSONWriter``; read back with JSONDecoder).
    static func line(_ record: Record) -> [UInt8] {
        var json = ChatJSONWriter(capacity: 256 + (record.entry?.message?.ciphertext.utf8.count ?? 0))
        json.object { json in
            json.field("entry", object: record.entry.map { entry in { entry.write(to: &$0) } })
            json.field("op", record.op.rawValue)
            json.field("seq", record.seq)
            json.field("session", record.session?.value)
            json.field("user", record.user?.value)
        }
        return json.bytes + [UInt8(ascii: "\n")]
    }

    /// The whole live state as log records: each session's last seq, the drop counts not yet
    /// reported, and, where deliveries are still waiting, the cursors and those deliveries (whose
    /// records' places are returned too).
    static func snapshot(of queues: [SessionID: Queue]) -> (bytes: [UInt8], lines: [EntryKey: Range<Int>]) {
        var bytes: [UInt8] = []
        var lines: [EntryKey: Range<Int>] = [:]
        for (session, queue) in queues.sorted(by: { $0.key.value < $1.key.value }) where queue.head > 0 {
            for (user, count) in queue.dropped.sorted(by: { $0.key.value < $1.key.value }) {
                bytes += line(Record(op: .dropped, session: session, user: user, seq: count))
            }
            if !queue.live.isEmpty {
                for (user, seq) in queue.cursors.sorted(by: { $0.key.value < $1.key.value }) {
                    bytes += line(Record(op: .ack, session: session, user: user, seq: seq))
                }
                for entry in queue.live {
                    let record = line(Record(op: .entry, entry: entry))
                    lines[EntryKey(entry)] = bytes.count..<bytes.count + record.count
                    bytes += record
                }
            }
            // After the entries: replay skips an entry at or below the head it has read, so a head
            // written first made a second restart lose every waiting delivery.
            bytes += line(Record(op: .head, session: session, seq: queue.head))
        }
        return (bytes, lines)
    }

    /// Writes `bytes` as the new log (write, fsync, rename, fsync the directory) and opens it for
    /// appending.
    static func replaceLog(at path: String, with bytes: [UInt8]) throws -> Int32 {
        try LogRewrite(path: path, snapshot: bytes, lines: [:]).commit(appending: [], overwriting: [])
    }

    /// A new log written beside the old one: the snapshot first (off the actor, fsynced), then
    /// what was appended to the old log meanwhile, then it takes the old log's name. Held by one
    /// task at a time: the one writing the snapshot, then the flush loop. Its temporary file is
    /// removed if it is dropped before `commit`.
    final class LogRewrite: @unchecked Sendable {
        private let writer: AtomicFileWriter
        let snapshotBytes: Int
        /// Where the snapshot holds each entry's record.
        let lines: [EntryKey: Range<Int>]

        init(path: String, snapshot: [UInt8], lines: [EntryKey: Range<Int>]) throws {
            writer = try AtomicFileWriter(destination: path, permissions: 0o600)
            try writer.write(snapshot)
            try writer.sync()
            snapshotBytes = snapshot.count
            self.lines = lines
        }

        /// Appends `tail`, overwrites the records at `stale` (entries deleted since the snapshot),
        /// makes the file durable, renames it over the log, and returns it opened for appending
        /// (opened before the rename: once it is in place, the old log must not be appended to any more).
        func commit(appending tail: [UInt8], overwriting stale: [(key: EntryKey, range: Range<Int>)]) throws -> Int32 {
            if !tail.isEmpty { try writer.write(tail) }
            // Not O_APPEND: records are written at the log's length, and deleted ones overwritten in place.
            let descriptor = open(writer.temporaryPath, O_WRONLY | O_CLOEXEC)
            guard descriptor >= 0 else { throw FileError(path: writer.temporaryPath, operation: "open", errno: errno) }
            do {
                try ChatLog.overwrite(stale, in: descriptor)
                try writer.commit()
            } catch {
                close(descriptor)
                throw error
            }
            return descriptor
        }
    }

    /// Writes `bytes` at `length` (the log's end) and fsyncs; on failure cuts the file back to
    /// `length`, so a torn record cannot glue itself to the next one.
    static func appendDurably(_ bytes: [UInt8], to descriptor: Int32, truncatingTo length: Int) throws {
        var written = 0
        let failure: Int32? = bytes.withUnsafeBytes { buffer in
            while written < buffer.count {
                let count = pwrite(descriptor, buffer.baseAddress! + written, buffer.count - written, off_t(length + written))
                if count < 0 {
                    if errno == EINTR { continue }
                    return errno
                }
                written += count
            }
            return fsync(descriptor) == 0 ? nil : errno
        }
        if let failure {
            _ = ftruncate(descriptor, off_t(length))
            throw FileError(path: "chat log", operation: "append", errno: failure)
        }
    }
}
