// swift-tools-version: 6.1
import PackageDescription

// Layers point one way: safechat (CLI) -> SealedStream (format + pipeline) -> COpenSSL / CLZ4 (C shims).
let package = Package(
    name: "SafeChat",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "safechat", targets: ["safechat"]),
        .library(name: "SealedStream", targets: ["SealedStream"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
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
        .target(
            name: "SealedStream",
            dependencies: ["COpenSSL", "CLZ4"]
        ),
        .executableTarget(
            name: "safechat",
            dependencies: [
                "SealedStream",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "safechat-bench",
            dependencies: ["SealedStream", "COpenSSL", "CLZ4"],
            path: "perf/SealBench"
        ),
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
        .testTarget(
            name: "SealedStreamHeavyTests",
            dependencies: ["SealedStream"]
        ),
    ]
)
