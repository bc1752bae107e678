import ArgumentParser
import Configuration
import Foundation

/// One option of `safechat serve`: the single definition behind its flag (`--KEY`), its
/// environment variable (`SAFECHAT_KEY`), its config file key (`KEY`), its `--help` text and the
/// config reference in docs/OPERATIONS.md, so that none of them can drift from the others.
struct ServeSetting: Sendable {
    /// What a value must look like; checked whatever its source.
    enum Kind: Sendable {
        /// A string (a path, a host, a URL).
        case text
        /// A whole number within the range.
        case whole(ClosedRange<Int>)
        /// A byte count written as a string: "1234", "500K", "500M", "64G", "2T".
        case size
        /// true or false (in the environment also 1/0, yes/no).
        case flag
        /// "HOST:PORT".
        case listenAddress
        /// One of the given words.
        case choice([String])
        /// IP addresses separated by commas.
        case addressList
    }

    /// The flag's long name, which is also the config file key.
    let key: String
    let kind: Kind
    /// The value when no source gives one; nil leaves the setting unset.
    let defaultValue: ConfigContent?
    let help: String

    /// `SAFECHAT_` and the key in capitals, dashes as underscores.
    var environmentName: String { "SAFECHAT_" + key.uppercased().replacingOccurrences(of: "-", with: "_") }

    /// The `--help` text: the definition's, with the environment variable a value can also come from.
    var flagHelp: ArgumentHelp { ArgumentHelp("\(help) [\(environmentName)]") }

    /// What a value of this kind looks like, for error messages and the reference.
    var expected: String {
        switch kind {
        case .text: "a string"
        case .whole(let range) where range.upperBound == Int.max: "a whole number from \(range.lowerBound)"
        case .whole(let range): "a whole number from \(range.lowerBound) to \(range.upperBound)"
        case .size: "a size such as \"500M\" or \"64G\" (powers of 1024)"
        case .flag: "true or false"
        case .listenAddress: "HOST:PORT, such as \"127.0.0.1:9090\""
        case .choice(let words): "one of " + words.map { "\"\($0)\"" }.joined(separator: ", ")
        case .addressList: "IP addresses separated by commas, such as \"10.0.0.5,10.0.0.6\""
        }
    }
}

/// Every option `safechat serve` takes, in the order `--print-config` and the reference list them.
enum ServeSettings {
    static let demo = ServeSetting(key: "demo", kind: .flag, defaultValue: .bool(false),
        help: "Create the prototype's demo account user1 / password123 (never in production).")
    static let host = ServeSetting(key: "host", kind: .text, defaultValue: .string("127.0.0.1"), help: "Address to listen on.")
    static let port = ServeSetting(key: "port", kind: .whole(0...65535), defaultValue: .int(8080), help: "Port; 0 picks a free one.")
    static let dataDir = ServeSetting(key: "data-dir", kind: .text, defaultValue: .string("./safechat-data"),
        help: "Data directory: accounts, the signing key, the registry and (without --blob-store) sealed files.")
    static let directIO = ServeSetting(key: "direct-io", kind: .flag, defaultValue: .bool(true), help: """
        Write and read sealed files around the page cache (O_DIRECT), where the file system allows it: \
        large files do not churn the cache, and uploads cost far less CPU.
        """)
    static let maxFileSize = ServeSetting(key: "max-file-size", kind: .size, defaultValue: .string("64G"), help: "Largest sealed file accepted.")
    static let quota = ServeSetting(key: "quota", kind: .size, defaultValue: .string("256G"), help: "Storage per user.")
    static let tokenLifetime = ServeSetting(key: "token-lifetime", kind: .whole(1...366 * 86400), defaultValue: .int(12 * 3600),
        help: "Token lifetime in seconds.")
    static let uploadExpiry = ServeSetting(key: "upload-expiry", kind: .whole(1...366 * 86400), defaultValue: .int(24 * 3600),
        help: "Seconds before an unfinished upload is removed.")
    static let idleTimeout = ServeSetting(key: "idle-timeout", kind: .whole(1...86400), defaultValue: .int(60),
        help: "Seconds a connection may sit without a complete request head or idle between requests.")
    static let bodyTimeout = ServeSetting(key: "body-timeout", kind: .whole(1...86400), defaultValue: .int(60),
        help: "Seconds a request body may deliver nothing before it is cut off; an upload keeps what arrived.")
    static let chatQueue = ServeSetting(key: "chat-queue", kind: .whole(1...1_000_000), defaultValue: .int(1000),
        help: "Chat deliveries kept for one offline member of one session; beyond it the oldest is dropped.")
    static let chatRetention = ServeSetting(key: "chat-retention", kind: .whole(1...366 * 86400), defaultValue: .int(7 * 86400),
        help: "Seconds a chat delivery waits for an offline member at most.")
    static let chatStorage = ServeSetting(key: "chat-storage", kind: .size, defaultValue: .string("256M"),
        help: "Bytes all chat queues may hold; beyond it sends are refused.")
    static let chatStoragePerAccount = ServeSetting(key: "chat-storage-per-account", kind: .size, defaultValue: .string("32M"),
        help: "Bytes of those one account's messages may hold; beyond it that account's sends are refused.")
    static let metricsListen = ServeSetting(key: "metrics-listen", kind: .listenAddress, defaultValue: nil,
        help: "Where operators' endpoints listen (GET /metrics, /healthz, /readyz); off by default, and never on the public port.")
    static let minFreeSpace = ServeSetting(key: "min-free-space", kind: .size, defaultValue: .string("1G"),
        help: "/readyz fails when the data directory has less free space than this.")
    static let shutdownGrace = ServeSetting(key: "shutdown-grace", kind: .whole(1...3600), defaultValue: .int(30), help: """
        Seconds a SIGTERM leaves in-flight requests to finish (readiness turns false and chat closes first); \
        uploads cut off then resume from their last acknowledged offset.
        """)
    static let signingKey = ServeSetting(key: "signing-key", kind: .text, defaultValue: nil, help: """
        The token signing key file (made, 0600, if missing); by default the data directory's signing.key. \
        Gateways behind one load balancer share one.
        """)
    static let tlsCert = ServeSetting(key: "tls-cert", kind: .text, defaultValue: nil,
        help: "TLS certificate chain (PEM); with tls-key, serves HTTPS on the same port.")
    static let tlsKey = ServeSetting(key: "tls-key", kind: .text, defaultValue: nil, help: "TLS private key (PEM).")
    static let blobStore = ServeSetting(key: "blob-store", kind: .text, defaultValue: nil, help: """
        Where sealed files go: s3://BUCKET[/PREFIX] on the object store at s3-endpoint; by default the data directory's data/. \
        Credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) or the credentials file, never from here.
        """)
    static let s3Endpoint = ServeSetting(key: "s3-endpoint", kind: .text, defaultValue: nil,
        help: "The object store's URL, e.g. https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:8333 (path-style).")
    static let s3Region = ServeSetting(key: "s3-region", kind: .text, defaultValue: nil,
        help: "The store's region for request signatures; else AWS_REGION, else us-east-1.")
    static let database = ServeSetting(key: "database", kind: .text, defaultValue: nil, help: """
        Keep the gateway's state (accounts, tokens, files, uploads, quotas, sessions, chat) in PostgreSQL, shared by every \
        gateway on it: postgres://USER@HOST[:PORT]/DATABASE[?sslmode=disable|prefer|require]; the schema is migrated at start.
        """)
    static let databasePasswordFile = ServeSetting(key: "database-password-file", kind: .text, defaultValue: nil,
        help: "A file (0600) holding the database password; else PGPASSWORD.")
    static let logLevel = ServeSetting(key: "log-level", kind: .choice(["trace", "debug", "info", "notice", "warning", "error", "critical"]),
        defaultValue: .string("info"), help: "The least severe log lines written.")
    static let logFormat = ServeSetting(key: "log-format", kind: .choice(["text", "json"]), defaultValue: .string("text"), help: """
        How log lines are written on standard error: key=value text, or one JSON object per line (time, level, request id, \
        route template, status, bytes, duration, user id).
        """)
    static let trustedProxies = ServeSetting(key: "trusted-proxies", kind: .addressList, defaultValue: nil, help: """
        Proxies (load balancers) whose X-Request-Id is kept as the request's id; from anyone else the gateway makes its own. \
        Either way the id is in the log line and echoed in the response.
        """)

    static let all: [ServeSetting] = [
        demo, host, port, dataDir, directIO, maxFileSize, quota, tokenLifetime, uploadExpiry, idleTimeout, bodyTimeout,
        chatQueue, chatRetention, chatStorage, chatStoragePerAccount, metricsListen, minFreeSpace, shutdownGrace,
        signingKey, tlsCert, tlsKey, blobStore, s3Endpoint, s3Region, database, databasePasswordFile, logLevel, logFormat, trustedProxies,
    ]
    static let byKey = Dictionary(uniqueKeysWithValues: all.map { ($0.key, $0) })
}
