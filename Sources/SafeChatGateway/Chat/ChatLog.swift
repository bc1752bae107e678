#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NIOCore
import SafeChatAPI
import SealedFormat

/// The offline queue: every delivery not yet acknowledged by all its recipients, kept durable in an
/// append-only log (`registry/chat/log.jsonl`, one JSON record per line) and in memory.
///
/// - A send is acknowledged to its sender only after its record is fsynced. Records written
///   together share one fsync (group commit), so throughput does not stop at one fsync per message.
/// - Each member's position is an acknowledged `seq` (a cursor); a delivery is deleted once every
///   recipient's cursor has passed it (or it expires, or is dropped), and its record in the log is
///   overwritten at once, in place, with a `gone` record of the same length, fsynced with the next
///   group commit: acknowledged ciphertext does not stay on disk while other deliveries wait. When
///   nothing is left, the log is rewritten empty; otherwise it is rewritten when it has grown well
///   past what it holds.
/// - Bounds: at most `queueLimit` deliveries wait for one member of one session (the oldest is
///   dropped for that member when a new one arrives), none older than `retention`, at most
///   `accountLimit` bytes of one account's sends, and at most `storageLimit` bytes in all (a send
///   beyond either is refused; nothing is dropped for it). One account whose deliveries wait for
///   members who never connect fills its own share, not everyone's.
/// - Disk work runs on NIO's thread pool, never inside the actor; the flush loop is the only writer.
public actor ChatLog: ChatQueue {
    struct Record: Codable {
        /// `dropped` carries, in `seq`, how many deliveries were dropped for `user` and not yet
        /// reported to them (the latest record wins; 0 once reported).
        enum Op: String, Codable { case entry, ack, head, dropped, gone }
        var op: Op
        var entry: ChatEntry?
        var session: SessionID?
        var user: UserID?
        var seq: UInt64?
    }

    struct Queue: Sendable {
        var entries: [ChatEntry] = []
        /// Entries before this index are deleted (removed in batches, not one by one).
        var start = 0
        /// The last seq made durable.
        var head: UInt64 = 0
        var cursors: [UserID: UInt64] = [:]
        var waiting: [UserID: Int] = [:]
        /// Deliveries dropped for a member since they last connected (kept in the log as `dropped` records).
        var dropped: [UserID: UInt64] = [:]
        var live: ArraySlice<ChatEntry> { entries[start...] }

        /// The index of the first live entry with a seq above `seq`.
        func index(after seq: UInt64) -> Int {
            var low = start, high = entries.count
            while low < high {
                let mid = (low + high) / 2
                if entries[mid].seq <= seq { low = mid + 1 } else { high = mid }
            }
            return low
        }
    }

    let queueLimit: Int
    let retention: TimeInterval
    let storageLimit: Int
    let accountLimit: Int
    let rewriteThreshold: Int
    private let path: String
    private let bus: any ChatBus
    private var descriptor: Int32
    private var logBytes = 0
    /// The log's size when it was last rewritten: nothing was added since while they are equal.
    private var compactedBytes = 0
    private var queues: [SessionID: Queue] = [:]
    private var nextSeq: [SessionID: UInt64] = [:]
    private var storedBytes = 0
    /// What each account's waiting deliveries count against its share.
    private var storedBy: [UserID: Int] = [:]
    /// Where each live entry's record is in the log, so that it can be overwritten once deleted.
    private var lineOf: [EntryKey: Range<Int>] = [:]
    /// Records of deleted entries to overwrite with the next group commit.
    private var pendingScrubs: [(key: EntryKey, range: Range<Int>)] = []
    /// Entry records in `pendingLines`, by their place there.
    private var pendingEntryLines: [(key: EntryKey, range: Range<Int>)] = []
    /// Deleted while a rewrite was under way (its snapshot or its tail still holds them), with where
    /// their records were in the old log.
    private var deletedDuringRewrite: [EntryKey: Range<Int>] = [:]
    /// From the moment a rewrite takes its snapshot until its file is in place (or abandoned):
    /// entries deleted meanwhile must be overwritten in the new file too.
    private var rewriting = false
    /// Where the old log stood when the rewrite under way took its snapshot.
    private var rewriteTailStart = 0

    struct EntryKey: Hashable, Sendable {
        let session: SessionID
        let seq: UInt64
        init(_ entry: ChatEntry) {
            session = entry.session
            seq = entry.seq
        }
    }

    private var pendingLines: [UInt8] = []
    private var pendingEntries: [ChatEntry] = []
    private var waiters: [CheckedContinuation<Void, any Error>] = []
    private var flushing = false
    private var compactionWanted = false
    /// While the log is rewritten beside the appends (``startRewrite()``): what was appended to
    /// the old log since the rewrite's snapshot, which follows the snapshot into the new log.
    private var rewriteTail: [UInt8]?
    /// The rewrite's snapshot, written and fsynced, waiting for the flush loop to put it in place.
    private var rewritten: LogRewrite?
    /// Tells a finished rewrite whether it is still the one wanted (a full compaction supersedes it).
    private var rewriteGeneration = 0
    private var rewrites = 0

    /// - Parameter rewriteThreshold: the log is rewritten once it is larger than this and four
    ///   times larger than what it holds.
    init(directory: String, queueLimit: Int, retention: TimeInterval, storageLimit: Int, accountLimit: Int? = nil, bus: any ChatBus,
         rewriteThreshold: Int = 8 << 20) throws {
        self.accountLimit = accountLimit ?? storageLimit
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        self.rewriteThreshold = rewriteThreshold
        self.queueLimit = queueLimit
        self.retention = retention
        self.storageLimit = storageLimit
        self.bus = bus
        path = directory + "/log.jsonl"
        if let data = FileManager.default.contents(atPath: path) {
            let lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
            for (number, line) in lines.enumerated() where !line.isEmpty {
                do {
                    Self.replay(try JSONDecoder().decode(Record.self, from: line), into: &queues)
                } catch {
                    // Only the last line can be torn by a crash mid-write, and it was never acknowledged.
                    // Anywhere else the log was damaged: the gateway stops rather than lose what it acknowledged.
                    guard number == lines.count - 1 else {
                        throw ChatLogError.damaged("\(path) line \(number + 1) is not a chat log record; restore the file or move it away")
                    }
                }
            }
        }
        for (session, var queue) in queues {
            nextSeq[session] = queue.head
            _ = Self.collect(&queue)
            for entry in queue.live {
                storedBytes += entry.cost
                if let owner = entry.owner { storedBy[owner, default: 0] += entry.cost }
                for user in entry.recipients where queue.cursors[user, default: 0] < entry.seq { queue.waiting[user, default: 0] += 1 }
            }
            queues[session] = queue
        }
        // Rewritten at once: drops torn lines and what was acknowledged, and starts appends on a clean line.
        let snapshot = Self.snapshot(of: queues)
        descriptor = try Self.replaceLog(at: path, with: snapshot.bytes)
        logBytes = snapshot.bytes.count
        lineOf = snapshot.lines
        compactedBytes = logBytes
    }

    private static func replay(_ record: Record, into queues: inout [SessionID: Queue]) {
        switch record.op {
        case .entry:
            guard let entry = record.entry else { return }
            var queue = queues[entry.session] ?? Queue()
            guard entry.seq > queue.head else { return }
            queue.entries.append(entry)
            queue.head = entry.seq
            queues[entry.session] = queue
        case .ack:
            guard let session = record.session, let user = record.user, let seq = record.seq else { return }
            queues[session, default: Queue()].cursors[user] = max(queues[session]?.cursors[user] ?? 0, seq)
        case .head:
            guard let session = record.session, let seq = record.seq else { return }
            queues[session, default: Queue()].head = max(queues[session]?.head ?? 0, seq)
        case .dropped:
            guard let session = record.session, let user = record.user, let count = record.seq else { return }
            queues[session, default: Queue()].dropped[user] = count > 0 ? count : nil
        case .gone:
            // A deleted entry: its seq stays taken.
            guard let session = record.session, let seq = record.seq else { return }
            queues[session, default: Queue()].head = max(queues[session]?.head ?? 0, seq)
        }
    }

    // MARK: - What the routes ask

    /// Stores a delivery for `recipients` and returns it once it is durable and handed to the bus.
    /// - Throws: ``ChatLogError/full`` beyond the storage limit (nothing is stored), or a disk error.
    public func append(session: SessionID, message: ChatMessageWire?, file: ChatFileEvent?, recipients: [UserID], now: UInt64) async throws -> ChatEntry {
        let seq = nextSeq[session, default: 0] + 1
        let entry = ChatEntry(session: session, seq: seq, time: now, recipients: recipients, message: message, file: file)
        guard storedBytes + entry.cost <= storageLimit else { throw ChatLogError.full }
        if let owner = entry.owner {
            guard storedBy[owner, default: 0] + entry.cost <= accountLimit else { throw ChatLogError.accountFull(limit: accountLimit) }
            storedBy[owner, default: 0] += entry.cost
        }
        nextSeq[session] = seq
        storedBytes += entry.cost
        let line = Self.line(Record(op: .entry, entry: entry))
        pendingEntryLines.append((EntryKey(entry), pendingLines.count..<pendingLines.count + line.count))
        pendingLines += line
        pendingEntries.append(entry)
        try await commit()
        return entry
    }

    /// Records that `user` has stored every delivery of `session` up to `seq`; they are not sent
    /// to that member again, and are deleted once every recipient has them. With `waitForDisk`
    /// false it returns before the record is fsynced: a client is not answered for an ack, and
    /// any later `sent` still follows it to disk, since records are written in order.
    public func acknowledge(session: SessionID, user: UserID, upTo seq: UInt64, waitForDisk: Bool) async throws {
        guard var queue = queues[session] else { return }
        let seq = min(seq, queue.head)
        let old = queue.cursors[user, default: 0]
        guard seq > old else { return }
        queues[session] = nil
        for entry in queue.entries[queue.index(after: old)...] where entry.seq <= seq && entry.recipients.contains(user) {
            queue.waiting[user, default: 1] -= 1
        }
        queue.cursors[user] = seq
        collect(&queue)
        queues[session] = queue
        pendingLines += Self.line(Record(op: .ack, session: session, user: user, seq: seq))
        if waitForDisk { try await commit() } else { startFlushing() }
    }

    /// What waits for `user` in `session`, oldest first, and how many deliveries were dropped for
    /// them (queue full or expired) since they last asked.
    public func backlog(session: SessionID, user: UserID) -> (entries: [ChatEntry], dropped: UInt64) {
        guard var queue = queues[session] else { return ([], 0) }
        let cursor = queue.cursors[user, default: 0]
        let waiting = queue.entries[queue.index(after: cursor)...].filter { $0.recipients.contains(user) }
        let dropped = queue.dropped.removeValue(forKey: user) ?? 0
        // Written with the next commit: a count reported just before a crash may be reported again.
        if dropped > 0 { pendingLines += Self.line(Record(op: .dropped, session: session, user: user, seq: 0)) }
        queues[session] = queue
        return (waiting, dropped)
    }

    /// Drops what waits for members who have left `session` (they are sent nothing more).
    public func retain(members: Set<UserID>, of session: SessionID) async throws {
        guard let queue = queues[session] else { return }
        let gone = Set(queue.waiting.filter { $0.value > 0 && !members.contains($0.key) }.keys)
        for user in gone { try await acknowledge(session: session, user: user, upTo: queue.head, waitForDisk: true) }
    }

    /// Deletes deliveries older than the retention period (once a second), and rewrites the log
    /// when it holds only what was already deleted.
    public func maintain(now: UInt64) async throws {
        let cutoff = now &- UInt64(retention * 1000)
        for (session, var queue) in queues {
            var expired = false
            for index in queue.start..<queue.entries.count where queue.entries[index].time < cutoff {
                expired = true
                let entry = queue.entries[index]
                for user in entry.recipients where queue.cursors[user, default: 0] < entry.seq {
                    queue.cursors[user] = entry.seq
                    queue.waiting[user, default: 1] -= 1
                    queue.dropped[user, default: 0] += 1
                    pendingLines += Self.line(Record(op: .ack, session: session, user: user, seq: entry.seq))
                    pendingLines += Self.line(Record(op: .dropped, session: session, user: user, seq: queue.dropped[user]))
                }
            }
            if expired {
                collect(&queue)
                queues[session] = queue
            }
        }
        if logBytes > compactedBytes && storedBytes == 0 && pendingEntries.isEmpty { compactionWanted = true }
        if !pendingLines.isEmpty || !pendingScrubs.isEmpty || compactionWanted { try await commit() }
    }

    /// Everything that waits, for `safechat migrate`: each delivery with the recipients who have not
    /// acknowledged it, each session's last seq, and the drop counts not yet reported.
    func export() -> ChatQueueExport {
        var export = ChatQueueExport()
        for (session, queue) in queues {
            export.heads[session] = queue.head
            for entry in queue.live {
                let pending = entry.recipients.filter { queue.cursors[$0, default: 0] < entry.seq }
                if !pending.isEmpty { export.entries.append((entry, pending)) }
            }
            for (user, count) in queue.dropped where count > 0 { export.dropped[session, default: [:]][user] = count }
        }
        export.entries.sort { ($0.entry.session.value, $0.entry.seq) < ($1.entry.session.value, $1.entry.seq) }
        return export
    }

    /// Opens the chat log of a data directory to read what waits in it (for `safechat migrate`).
    /// Opening it compacts it, as a gateway's start does.
    public static func export(dataDirectory: String) async throws -> ChatQueueExport {
        let log = try ChatLog(directory: dataDirectory + "/registry/chat", queueLimit: .max, retention: .infinity,
                              storageLimit: .max, bus: LocalChatBus())
        return await log.export()
    }

    /// Deliveries stored and their bytes, the log's size, how often it was rewritten beside the
    /// appends and whether such a rewrite is under way; for tests and the operator.
    public func depth() -> Int { usage().entries }

    func usage() -> (entries: Int, bytes: Int, logBytes: Int, rewrites: Int, rewriting: Bool) {
        (queues.values.reduce(0) { $0 + $1.live.count }, storedBytes, logBytes, rewrites, rewriting)
    }

    // MARK: - Durability

    private func commit() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            waiters.append(continuation)
            startFlushing()
        }
    }

    private func startFlushing() {
        guard !flushing else { return }
        flushing = true
        Task { await self.flushLoop() }
    }

    /// Writes what is pending in one write and one fsync, applies the entries it made durable,
    /// publishes them in seq order and wakes their senders; repeats while more arrived meanwhile.
    private func flushLoop() async {
        while !waiters.isEmpty || !pendingLines.isEmpty || !pendingScrubs.isEmpty || compactionWanted || rewritten != nil {
            let lines = pendingLines, entries = pendingEntries, batch = waiters, entryLines = pendingEntryLines
            pendingLines = []
            pendingEntries = []
            pendingEntryLines = []
            waiters = []
            do {
                let base = logBytes
                try await appendToLog(lines)
                for (key, range) in entryLines { lineOf[key] = range.lowerBound + base..<range.upperBound + base }
                var drops: [UInt8] = []
                for entry in entries { apply(entry, droppingInto: &drops) }
                // What the entries dropped (a member's queue over its bound) is durable before anyone
                // is told. Only those records: an entry's record written here while the entry waits
                // for the next turn to be applied would be in neither a rewrite's snapshot nor its tail.
                try await appendToLog(drops)
                if !entries.isEmpty { await bus.publish(entries) }
                // Asked for by maintain(), which returns only once the log is rewritten.
                if compactionWanted { await compact() }
                for waiter in batch { waiter.resume() }
            } catch {
                for entry in entries { uncount(entry) }
                for waiter in batch { waiter.resume(throwing: error) }
            }
            if let ready = rewritten {
                rewritten = nil
                await install(ready)
            } else if rewriteTail == nil && logBytes > rewriteThreshold && logBytes > 4 * storedBytes {
                startRewrite()
            }
        }
        flushing = false
    }

    /// Appends records to the log, overwrites the records of deleted entries, and fsyncs (the
    /// flush loop's only way to write them).
    private func appendToLog(_ lines: [UInt8]) async throws {
        let scrubs = pendingScrubs
        pendingScrubs = []
        guard !lines.isEmpty || !scrubs.isEmpty else { return }
        try await blockingIO { [descriptor, logBytes] in
            try Self.overwrite(scrubs, in: descriptor)
            try Self.appendDurably(lines, to: descriptor, truncatingTo: logBytes)
        }
        logBytes += lines.count
        rewriteTail? += lines
    }

    /// Starts rewriting the log, grown well past what it holds, as the live state alone, without
    /// holding up the appends: the snapshot is taken now and written to a new file off the actor
    /// while records still go to the old log (and to ``rewriteTail``); ``install(_:)`` then adds
    /// those records to the new file and puts it in place. (Rewritten in the flush loop, the log
    /// held every send for the 15-25 ms of the write, every second or two under load: most of the
    /// relay's p99.)
    private func startRewrite() {
        rewriteTail = []
        rewriteTailStart = logBytes
        deletedDuringRewrite = [:]
        rewriting = true
        rewriteGeneration += 1
        let generation = rewriteGeneration, queues = queues, path = path
        Task {
            do {
                let file = try await blockingIO {
                    let snapshot = Self.snapshot(of: queues)
                    return try LogRewrite(path: path, snapshot: snapshot.bytes, lines: snapshot.lines)
                }
                rewriteWritten(file, generation: generation)
            } catch {
                rewriteWritten(nil, generation: generation)
            }
        }
    }

    private func rewriteWritten(_ file: LogRewrite?, generation: Int) {
        guard generation == rewriteGeneration, rewriteTail != nil else { return }
        guard let file else {
            rewriteTail = nil  // tried again after the next write
            rewriting = false
            return
        }
        rewritten = file
        startFlushing()
    }

    /// Adds what was appended since the snapshot to the rewritten log and puts it in place of the
    /// old one. Runs in the flush loop, so nothing is appended meanwhile. On failure the old log is
    /// still whole and still appended to; the rewrite is tried again later.
    private func install(_ rewrite: LogRewrite) async {
        let tail = rewriteTail ?? []
        rewriteTail = nil
        defer {
            rewriting = false
            deletedDuringRewrite = [:]
        }
        // The new file holds entries deleted since the snapshot was taken, in the snapshot or in the
        // tail (copied from the old log before their records there were overwritten): their records
        // in the new file are overwritten, those deleted until now before it takes the log's place,
        // those deleted while it does right after.
        let shift = rewrite.snapshotBytes - rewriteTailStart
        let start = rewriteTailStart
        func inNewFile(_ deleted: [EntryKey: Range<Int>]) -> [(key: EntryKey, range: Range<Int>)] {
            deleted.compactMap { key, old in
                (rewrite.lines[key] ?? (old.lowerBound >= start ? old.lowerBound + shift..<old.upperBound + shift : nil)).map { (key, $0) }
            }
        }
        let stale = inNewFile(deletedDuringRewrite)
        deletedDuringRewrite = [:]
        do {
            let new = try await blockingIO { try rewrite.commit(appending: tail, overwriting: stale) }
            close(descriptor)
            descriptor = new
            logBytes = rewrite.snapshotBytes + tail.count
            compactedBytes = logBytes
            rewrites += 1
            // Overwrites still pending were for the old file; in the new one, those deleted meanwhile.
            pendingScrubs = inNewFile(deletedDuringRewrite)
            var moved: [EntryKey: Range<Int>] = [:]
            for (key, range) in lineOf {
                if let inSnapshot = rewrite.lines[key] { moved[key] = inSnapshot } else if range.lowerBound >= start {
                    moved[key] = range.lowerBound + shift..<range.upperBound + shift
                }
            }
            lineOf = moved
        } catch {}
    }

    /// Rewrites the log as the live state alone, at once (asked for by ``maintain(now:)`` when
    /// nothing is stored, so that delivered ciphertext leaves the disk). A rewrite under way beside
    /// the appends is abandoned: its snapshot may hold what this one deletes. On failure the old
    /// log is still whole and still appended to; the rewrite is tried again later.
    private func compact() async {
        compactionWanted = false
        rewriteTail = nil
        rewriteGeneration += 1
        rewritten = nil
        deletedDuringRewrite = [:]
        rewriting = true
        defer {
            rewriting = false
            deletedDuringRewrite = [:]
        }
        let snapshot = Self.snapshot(of: queues)
        do {
            let old = descriptor
            descriptor = try await blockingIO { [path] in try Self.replaceLog(at: path, with: snapshot.bytes) }
            close(old)
            logBytes = snapshot.bytes.count
            lineOf = snapshot.lines.filter { deletedDuringRewrite[$0.key] == nil }
            // Overwrites still pending were for the old file; in the new one, those deleted meanwhile.
            pendingScrubs = deletedDuringRewrite.compactMap { key, _ in snapshot.lines[key].map { (key, $0) } }
            compactedBytes = logBytes
        } catch {}
    }

    /// Adds a durable entry to its queue, dropping the oldest waiting delivery of any recipient
    /// now over the queue limit (the records saying so go to `drops`).
    private func apply(_ entry: ChatEntry, droppingInto drops: inout [UInt8]) {
        var queue = queues[entry.session] ?? Queue()
        queues[entry.session] = nil
        queue.entries.append(entry)
        queue.head = max(queue.head, entry.seq)
        for user in entry.recipients {
            queue.waiting[user, default: 0] += 1
            guard queue.waiting[user]! > queueLimit else { continue }
            let cursor = queue.cursors[user, default: 0]
            if let oldest = queue.entries[queue.index(after: cursor)...].first(where: { $0.recipients.contains(user) }) {
                queue.cursors[user] = oldest.seq
                queue.waiting[user]! -= 1
                queue.dropped[user, default: 0] += 1
                drops += Self.line(Record(op: .ack, session: entry.session, user: user, seq: oldest.seq))
                drops += Self.line(Record(op: .dropped, session: entry.session, user: user, seq: queue.dropped[user]))
            }
        }
        collect(&queue)
        queues[entry.session] = queue
    }

    /// Deletes leading entries every recipient has, and has their records overwritten in the log.
    private func collect(_ queue: inout Queue) {
        let deleted = Self.collect(&queue)
        for entry in deleted {
            uncount(entry)
            let key = EntryKey(entry)
            guard let range = lineOf.removeValue(forKey: key) else { continue }
            pendingScrubs.append((key, range))
            if rewriting { deletedDuringRewrite[key] = range }
        }
        if !deleted.isEmpty { startFlushing() }
    }

    /// What a deleted (or never stored) entry counted against the limits is given back.
    private func uncount(_ entry: ChatEntry) {
        storedBytes -= entry.cost
        guard let owner = entry.owner else { return }
        storedBy[owner, default: 0] -= entry.cost
        if storedBy[owner] == 0 { storedBy[owner] = nil }
    }

    /// Deletes leading entries every recipient has; returns them.
    private static func collect(_ queue: inout Queue) -> [ChatEntry] {
        var deleted: [ChatEntry] = []
        while queue.start < queue.entries.count {
            let entry = queue.entries[queue.start]
            guard entry.recipients.allSatisfy({ queue.cursors[$0, default: 0] >= entry.seq }) else { break }
            deleted.append(entry)
            queue.start += 1
        }
        if queue.start > 64 && queue.start * 2 > queue.entries.count {
            queue.entries.removeFirst(queue.start)
            queue.start = 0
        }
        return deleted
    }

}
