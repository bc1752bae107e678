import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SafeChatAPI
import SealedFormat

/// One RFC 9110 byte range against a representation of `size` bytes.
enum ByteRange: Equatable {
    case satisfiable(Range<Int64>)
    case unsatisfiable
    /// Not a single byte range we serve (several ranges, another unit, bad syntax): send it all.
    case ignored

    static func parse(_ header: String, size: Int64) -> ByteRange {
        guard header.hasPrefix("bytes="), header.utf8.count < 200 else { return .ignored }
        let spec = header.dropFirst(6).trimmingCharacters(in: .whitespaces)
        guard !spec.contains(","), let dash = spec.firstIndex(of: "-") else { return .ignored }
        let first = spec[..<dash], last = spec[spec.index(after: dash)...]
        if first.isEmpty {
            // "-n": the last n bytes.
            guard let n = Int64(last), n >= 0 else { return .ignored }
            guard n > 0, size > 0 else { return .unsatisfiable }
            return .satisfiable(max(0, size - n)..<size)
        }
        guard let start = Int64(first), start >= 0 else { return .ignored }
        guard start < size else { return .unsatisfiable }
        if last.isEmpty { return .satisfiable(start..<size) }
        guard let end = Int64(last), end >= start else { return .ignored }
        return .satisfiable(start..<(min(end, size - 1) + 1))
    }
}
