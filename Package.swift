// swift-tools-version: 6.1
import PackageDescription

// Layers point one way: safechat (CLI) -> SafeChatS3, SafeChatPostgres (server-grade backends) -> SafeChatGateway / SafeChatClient -> SafeChatAPI (wire types)
// and SealedStream (keys + pipeline) -> SealedFormat (the keyless format) -> COpenSSL / CLZ4 (C shims).
// The gateway links SealedFormat, never SealedStream: it has no code that could open content.
let package = Package(
    name: "SafeChat",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "safechat", targets: ["safechat"]),
        .library(name: "SealedFormat", targets: ["SealedFormat"]),
        .library(name: "SealedStream", targets: ["SealedStream"]),
        .library(name: "SafeChatAPI", targets: ["SafeChatAPI"]),
        .library(name: "SafeChatKeys", targets: ["SafeChatKeys"]),
        .library(name: "SafeChatGateway", targets: ["SafeChatGateway"]),
        .library(name: "SafeChatClient", targets: ["SafeChatClient"]),
        .library(name: "SafeChatS3", targets: ["SafeChatS3"]),
        .library(name: "SafeChatPostgres", targets: ["SafeChatPostgres"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.7.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", from: "2.8.1"),
        .package(url: "https://github.com/hummingbird-project/swift-websocket.git", from: "1.6.2"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-configuration.git", from: "1.4.0", traits: [.defaults, "YAML"]),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
    ],
    targets: [
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        .systemLibrary(
            name: "CLZ4",
            pkgConfig: "liblz4",
            providers: [.apt(["liblz4-dev"])]
        ),
        .systemLibrary(name: "CMalloc"),
        .target(
            name: "SealedFormat",
            dependencies: ["COpenSSL"]
        ),
        .target(
            name: "SealedStream",
            dependencies: ["SealedFormat", "COpenSSL", "CLZ4"]
        ),
        // Keys that never leave users' devices (HPKE wraps, X25519); the gateway does not link it.
        .target(
            name: "SafeChatKeys",
            dependencies: ["SealedStream", "SafeChatAPI", "COpenSSL"]
        ),
        .target(
            name: "SafeChatAPI",
            dependencies: ["SealedFormat"]
        ),
        // The browser client's static files; the gateway serves them as bytes.
        .target(
            name: "SafeChatWeb",
            dependencies: ["SealedFormat"],
            resources: [.copy("Web")]
        ),
        .target(
            name: "SafeChatGateway",
            dependencies: [
                "SealedFormat", "SafeChatAPI", "SafeChatWeb",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "WSCore", package: "swift-websocket"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // Sealed files on S3-compatible object storage, behind the gateway's BlobStore protocol;
        // the gateway does not import it, `safechat serve` wires it in.
        .target(
            name: "SafeChatS3",
            dependencies: [
                "SafeChatGateway", "SafeChatAPI", "SealedFormat", "COpenSSL",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        // The gateway's state in PostgreSQL, behind the gateway's storage protocols (Registry); like
        // SafeChatS3, the gateway does not import it and `safechat serve --database` wires it in.
        .target(
            name: "SafeChatPostgres",
            dependencies: [
                "SafeChatGateway", "SafeChatAPI", "SealedFormat",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .target(
            name: "SafeChatClient",
            dependencies: [
                "SealedStream", "SafeChatAPI", "SafeChatKeys",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "WSClient", package: "swift-websocket"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "safechat",
            dependencies: [
                "SealedStream", "SafeChatAPI", "SafeChatKeys", "SafeChatGateway", "SafeChatClient", "SafeChatS3", "SafeChatPostgres", "CMalloc",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .executableTarget(
            name: "safechat-bench",
            dependencies: ["SealedStream", "SafeChatAPI", "SafeChatKeys", "SafeChatGateway", "COpenSSL", "CLZ4"],
            path: "perf/SealBench"
        ),
        .executableTarget(
            name: "safechat-chat-bench",
            dependencies: [
                "SafeChatClient", "SafeChatKeys", "SafeChatAPI", "SealedFormat", "CEpoll",
            ],
            path: "perf/ChatBench"
        ),
        .executableTarget(
            name: "safechat-registry-bench",
            dependencies: ["SafeChatGateway", "SafeChatPostgres", "SafeChatAPI", "SealedFormat", "SealedStream",
                           .product(name: "Logging", package: "swift-log")],
            path: "perf/RegistryBench"
        ),
        .target(name: "CEpoll", path: "perf/CEpoll"),
        .testTarget(
            name: "SealedStreamTests",
            dependencies: [
                "SealedStream", "CLZ4",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]
        ),
        .testTarget(
            name: "SafeChatCLITests",
            dependencies: ["safechat", "SealedStream"]
        ),
        // Shared by the test targets that talk to a real gateway: scoped gateway lifecycle, HTTP
        // helper, sealed test streams, subprocess and raw-socket helpers.
        .target(
            name: "SafeChatTestSupport",
            dependencies: [
                "SafeChatGateway", "SafeChatS3", "SafeChatPostgres", "SafeChatAPI", "SealedStream",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/SafeChatTestSupport"
        ),
        .testTarget(
            name: "SafeChatGatewayTests",
            dependencies: [
                "SafeChatGateway", "SafeChatClient", "SafeChatAPI", "SafeChatKeys", "SealedStream", "SafeChatTestSupport", "safechat",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .testTarget(
            name: "SafeChatClientTests",
            dependencies: [
                "SafeChatClient", "SafeChatGateway", "SafeChatAPI", "SafeChatKeys", "SealedStream", "SafeChatTestSupport", "safechat",
                .product(name: "WSClient", package: "swift-websocket"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "SafeChatS3Tests",
            dependencies: [
                "SafeChatS3", "SafeChatGateway", "SafeChatAPI", "SealedFormat", "SealedStream", "SafeChatTestSupport", "safechat",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]
        ),
        .testTarget(
            name: "SafeChatPostgresTests",
            dependencies: [
                "SafeChatPostgres", "SafeChatGateway", "SafeChatAPI", "SafeChatKeys", "SealedStream", "SafeChatTestSupport", "safechat",
                .product(name: "WSClient", package: "swift-websocket"),
            ]
        ),
        .testTarget(
            name: "SafeChatKeysTests",
            dependencies: ["SafeChatKeys", "SafeChatAPI", "SealedStream"]
        ),
        .testTarget(
            name: "SealedStreamHeavyTests",
            dependencies: ["SealedStream"]
        ),
    ]
)
