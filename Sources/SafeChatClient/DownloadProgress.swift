import Foundation
import SafeChatAPI
import SealedStream

/// How a download is split into stripes (runs of records fetched over their own connections), and
/// how far each has got: kept beside the partial file so an interrupted download resumes every
/// stripe from its last verified chunk, and only of the stream it began with.
///
/// The file is text, one fixed-width line per stripe, so a stripe's progress is rewritten in place
/// with one small write after each chunk:
///
/// ```
/// safechat-download 2 <stream digest> <stream header, 184 hex digits> <stripe count>
/// <first record> <end record> <next record>      (10 digits each)
/// ```
/// A file that does not parse (or an older version's) is ignored and the download starts over. One
/// that parses but names another header or digest than the manifest now served means the gateway
/// serves another stream under the id than the one the partial file came from: the download is
/// refused. It is not fsynced: after a crash of the whole machine (not just of the command), delete
/// the partial file to be safe.
struct DownloadProgress: Sendable {
    struct Stripe: Equatable, Sendable {
        let first: Int
        let end: Int
        var next: Int
    }

    /// The stripes as they were when the file was written.
    let stripes: [Stripe]
    let path: String
    private let descriptor: Int32
    private let headerLength: Int

    static let magic = "safechat-download 2"
    private static let lineLength = 33

    /// Splits `recordCount` records into `count` stripes of nearly equal length.
    static func fresh(recordCount: Int, stripes count: Int) -> [Stripe] {
        let count = max(1, min(count, recordCount))
        return (0..<count).map { i in
            Stripe(first: recordCount * i / count, end: recordCount * (i + 1) / count, next: recordCount * i / count)
        }
    }

    /// The stripes recorded at `path`, or nil if there is no progress file that parses (start over).
    /// Throws ``ClientError/refused(_:)`` if it records another stream than `manifest`'s.
    static func load(_ path: String, manifest: FileManifest) throws -> [Stripe]? {
        guard let data = FileManager.default.contents(atPath: path), data.count < 1 << 20,
              let text = String(data: data, encoding: .utf8) else { return nil }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.last == "" else { return nil }
        lines.removeLast()
        let fields = lines.first?.split(separator: " ") ?? []
        guard fields.count == 5, "\(fields[0]) \(fields[1])" == magic, fields[4] == "\(lines.count - 1)" else { return nil }
        guard fields[2] == manifest.digest, fields[3] == Secrets.hex(manifest.header.encoded()) else {
            throw ClientError.refused("the gateway now serves another stream under file \(manifest.fileID) than the one this partial "
                                      + "download came from (its header or digest differs); the partial file was deleted")
        }
        var stripes: [Stripe] = []
        for line in lines.dropFirst() {
            let numbers = line.split(separator: " ").compactMap { Int($0) }
            guard line.utf8.count == lineLength - 1, numbers.count == 3 else { return nil }
            stripes.append(Stripe(first: numbers[0], end: numbers[1], next: numbers[2]))
        }
        // The stripes must cover the records exactly, in order.
        var expectedFirst = 0
        for stripe in stripes {
            guard stripe.first == expectedFirst, stripe.first < stripe.end, (stripe.first...stripe.end).contains(stripe.next)
            else { return nil }
            expectedFirst = stripe.end
        }
        guard !stripes.isEmpty, expectedFirst == manifest.records.count else { return nil }
        return stripes
    }

    /// Writes a new progress file (0600) for `stripes` of `manifest`'s stream.
    init(creating path: String, manifest: FileManifest, stripes: [Stripe]) throws {
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileError(path: path, operation: "create", errno: errno) }
        descriptor = fd
        self.path = path
        self.stripes = stripes
        let header = "\(Self.magic) \(manifest.digest) \(Secrets.hex(manifest.header.encoded())) \(stripes.count)\n"
        headerLength = header.utf8.count
        let text = header + stripes.map(Self.line).joined()
        do {
            try FileSink(descriptor: fd, path: path).write(Array(text.utf8), at: 0)
        } catch {
            _ = Glibc.close(fd)
            throw error
        }
    }

    /// Records that stripe `index` has verified and written every record before `next`.
    /// Stripes write their own lines, so they may call this concurrently.
    func record(stripe index: Int, next: Int) throws {
        var stripe = stripes[index]
        stripe.next = next
        let offset = Int64(headerLength + index * Self.lineLength)
        try FileSink(descriptor: descriptor, path: path).write(Array(Self.line(stripe).utf8), at: offset)
    }

    func close() { _ = Glibc.close(descriptor) }

    private static func line(_ stripe: Stripe) -> String {
        func padded(_ n: Int) -> String { String(repeating: "0", count: max(0, 10 - String(n).count)) + String(n) }
        return "\(padded(stripe.first)) \(padded(stripe.end)) \(padded(stripe.next))\n"
    }
}

/// Each verified record's contribution to the stream digest (its header and tag, 32 bytes at
/// `index × 32`), kept beside the partial file while stripes arrive in any order, so that once every
/// record is in, the digest of what was opened (first attempt and resumes alike) is checked against
/// the one the download began with (docs/FORMAT.md section 10).
struct RecordDigests: Sendable {
    static let entryLength = 32
    let path: String
    private let descriptor: Int32

    /// Opens (creating, 0600) the file at `path`; `unlinked` removes its name at once (a download
    /// into a device, which is never resumed).
    init(path: String, unlinked: Bool = false) throws {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileError(path: path, operation: "create", errno: errno) }
        if unlinked { unlink(path) }
        descriptor = fd
        self.path = path
    }

    /// Whether the file holds an entry for every record before each stripe's `next`.
    func covers(_ stripes: [DownloadProgress.Stripe]) -> Bool {
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { return false }
        let needed = stripes.filter { $0.next > $0.first }.map { $0.next }.max() ?? 0
        return Int64(info.st_size) >= Int64(needed * Self.entryLength)
    }

    func reset() throws {
        guard ftruncate(descriptor, 0) == 0 else { throw FileError(path: path, operation: "truncate", errno: errno) }
    }

    /// Records what record `index` adds to the digest. Stripes write their own entries, so they may
    /// call this concurrently.
    func record(_ index: UInt32, _ input: [UInt8]) throws {
        precondition(input.count == Self.entryLength)
        try FileSink(descriptor: descriptor, path: path).write(input, at: Int64(index) * Int64(Self.entryLength))
    }

    /// The stream digest (hex) of `header` followed by the `count` recorded records.
    func digest(header: StreamHeader, count: Int) throws -> String {
        var chain = StreamIdentity.digestStart(header: header.encoded())
        var buffer = [UInt8](repeating: 0, count: 2048 * Self.entryLength)
        var index = 0
        while index < count {
            let want = min(2048, count - index) * Self.entryLength
            let got = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, want, off_t(index * Self.entryLength)) }
            guard got == want else { throw FileError(path: path, operation: "read", errno: got < 0 ? errno : EIO) }
            for entry in stride(from: 0, to: want, by: Self.entryLength) {
                chain = StreamIdentity.digestStep(chain, recordHeader: buffer[entry..<entry + 16], tag: buffer[entry + 16..<entry + 32])
            }
            index += want / Self.entryLength
        }
        return Secrets.hex(chain)
    }

    func close() { _ = Glibc.close(descriptor) }
}
