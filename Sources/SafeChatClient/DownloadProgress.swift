import Foundation
import SealedStream

/// How a download is split into stripes (runs of records fetched over their own connections), and
/// how far each has got: kept beside the partial file so an interrupted download resumes every
/// stripe from its last verified chunk.
///
/// The file is text, one fixed-width line per stripe, so a stripe's progress is rewritten in place
/// with one small write after each chunk:
///
/// ```
/// safechat-download 1 <stream digest of the sealed file> <stripe count>
/// <first record> <end record> <next record>      (10 digits each)
/// ```
/// A file that does not parse, or does not match the manifest, is ignored and the download starts
/// over. It is not fsynced: after a crash of the whole machine (not just of the command), delete the
/// partial file to be safe.
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

    static let magic = "safechat-download 1"
    private static let lineLength = 33

    /// Splits `recordCount` records into `count` stripes of nearly equal length.
    static func fresh(recordCount: Int, stripes count: Int) -> [Stripe] {
        let count = max(1, min(count, recordCount))
        return (0..<count).map { i in
            Stripe(first: recordCount * i / count, end: recordCount * (i + 1) / count, next: recordCount * i / count)
        }
    }

    /// The stripes recorded at `path` if they belong to this manifest's file, else nil.
    static func load(_ path: String, digest: String, recordCount: Int) -> [Stripe]? {
        guard let data = FileManager.default.contents(atPath: path), data.count < 1 << 20,
              let text = String(data: data, encoding: .utf8) else { return nil }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.last == "" else { return nil }
        lines.removeLast()
        guard let first = lines.first, first == "\(magic) \(digest) \(lines.count - 1)" else { return nil }
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
        guard !stripes.isEmpty, expectedFirst == recordCount else { return nil }
        return stripes
    }

    /// Writes a new progress file (0600) for `stripes`.
    init(creating path: String, digest: String, stripes: [Stripe]) throws {
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileError(path: path, operation: "create", errno: errno) }
        descriptor = fd
        self.path = path
        self.stripes = stripes
        let header = "\(Self.magic) \(digest) \(stripes.count)\n"
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
