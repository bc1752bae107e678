import Foundation
import HTTPTypes
import Logging
import SealedFormat
import Synchronization

/// What the request log line tells about one request beyond its head and answer, filled in by the
/// layers that know it: the authenticated account (AuthenticationMiddleware), the body bytes an
/// upload accepted and a download sent. A reference in ``GatewayContext``, because routes get
/// copies of the context and the line is written by ``FrontResponder`` once the body is sent.
final class RequestRecord: Sendable {
    private struct Values { var userID: String?; var bytesIn: Int64?; var bytesOut: Int64? }
    private let values = Mutex(Values())

    var userID: String? {
        get { values.withLock { $0.userID } }
        set { values.withLock { $0.userID = newValue } }
    }
    var bytesIn: Int64? {
        get { values.withLock { $0.bytesIn } }
        set { values.withLock { $0.bytesIn = newValue } }
    }
    var bytesOut: Int64? {
        get { values.withLock { $0.bytesOut } }
        set { values.withLock { $0.bytesOut = newValue } }
    }
}

/// The id that ties a request's log lines together and is echoed in `X-Request-Id`.
enum RequestID {
    static let header = HTTPField.Name("X-Request-Id")!

    /// The proxy's id when the request comes from a trusted proxy and the id is plain (1 to 128 of
    /// letters, digits and `._:-`, so that it cannot forge a log field); otherwise a new random one.
    static func choose(offered: String?, from address: String, trustedProxies: Set<String>) -> String {
        if let offered, trustedProxies.contains(address), (1...128).contains(offered.utf8.count),
           offered.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || "._:-".utf8.contains($0) }) {
            return offered
        }
        return Secrets.randomHex(8)
    }
}
