/// Every metric the gateway exports. The same list registers them (with their help text, which
/// `promtool check metrics` requires) and is what docs/OPERATIONS.md documents; a test holds the
/// two together.
///
/// Label values come from small fixed sets (route templates, methods, status codes, store kinds,
/// login results), never from a request's identifiers, so the number of series stays bounded
/// whatever clients send.
public struct MetricDefinition: Sendable, Hashable {
    public enum Kind: String, Sendable { case counter, gauge, histogram }
    public let name: String
    public let kind: Kind
    public let help: String
    public let labels: [String]
}

public enum MetricCatalog {
    public static let requests = MetricDefinition(
        name: "safechat_http_requests_total", kind: .counter,
        help: "HTTP requests answered, by route template (unmatched for a path no route knows), method and status code.",
        labels: ["route", "method", "status"])
    public static let requestDuration = MetricDefinition(
        name: "safechat_http_request_duration_seconds", kind: .histogram,
        help: "Time from a request's head to its response's head, by route template and method.",
        labels: ["route", "method"])
    public static let uploadBytes = MetricDefinition(
        name: "safechat_upload_bytes_total", kind: .counter,
        help: "Sealed bytes accepted into uploads and made durable (the offsets acknowledged to clients grew by this much).",
        labels: [])
    public static let downloadBytes = MetricDefinition(
        name: "safechat_download_bytes_total", kind: .counter,
        help: "Sealed bytes of downloads and chunk reads whose response body was sent whole.",
        labels: [])
    public static let uploadsActive = MetricDefinition(
        name: "safechat_uploads_active", kind: .gauge,
        help: "Upload requests (PATCH, POST /upload) streaming a body into storage now.",
        labels: [])
    public static let downloadsActive = MetricDefinition(
        name: "safechat_downloads_active", kind: .gauge,
        help: "Download response bodies being sent now.",
        labels: [])
    public static let chatConnections = MetricDefinition(
        name: "safechat_chat_connections", kind: .gauge,
        help: "Chat WebSocket connections open on this gateway.",
        labels: [])
    public static let chatMessages = MetricDefinition(
        name: "safechat_chat_messages_total", kind: .counter,
        help: "Chat sends accepted (durable in the queue and acknowledged to the sender).",
        labels: [])
    public static let chatDeliveries = MetricDefinition(
        name: "safechat_chat_deliveries_total", kind: .counter,
        help: "Chat deliveries written to connections on this gateway, live or from the offline queue.",
        labels: [])
    public static let chatQueueDepth = MetricDefinition(
        name: "safechat_chat_queue_depth", kind: .gauge,
        help: "Chat entries the offline queue holds for recipients (all gateways' queue when it is in PostgreSQL), read once a second.",
        labels: [])
    public static let chatDropped = MetricDefinition(
        name: "safechat_chat_dropped_deliveries_total", kind: .counter,
        help: "Deliveries a member never received because their queue was over its bound or the delivery expired, counted when the member is told so on connecting.",
        labels: [])
    public static let logins = MetricDefinition(
        name: "safechat_logins_total", kind: .counter,
        help: "POST /login attempts by result: success, failure (wrong name or password) or throttled (refused before checking).",
        labels: ["result"])
    public static let storeDuration = MetricDefinition(
        name: "safechat_store_operation_duration_seconds", kind: .histogram,
        help: "Time of one operation on a backing store: the registry (files, uploads, identities), the blob store (sealed bytes) or the database (every query, when PostgreSQL holds the state).",
        labels: ["store"])
    public static let storeErrors = MetricDefinition(
        name: "safechat_store_errors_total", kind: .counter,
        help: "Operations on a backing store that failed, by store.",
        labels: ["store"])

    public static let all: [MetricDefinition] = [
        requests, requestDuration, uploadBytes, downloadBytes, uploadsActive, downloadsActive, chatConnections, chatMessages,
        chatDeliveries, chatQueueDepth, chatDropped, logins, storeDuration, storeErrors,
    ]
}
