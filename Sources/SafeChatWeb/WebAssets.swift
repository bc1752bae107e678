/// SafeChatWeb: the browser client's files (HTML, CSS and ES modules under `Web/`), as the gateway
/// serves them. The code in them runs in users' browsers and holds their keys there; to the gateway
/// they are bytes, so it links this module without linking any key-holding Swift code.
import Foundation
import SealedFormat

/// The page's files, read once at start-up. Assets are served under `/assets/<version>/`, where
/// `version` is a hash of every file, so browsers may cache them for good; `index.html` names that
/// path and is served fresh.
public struct WebAssets: Sendable {
    public struct Asset: Sendable {
        public let bytes: [UInt8]
        public let contentType: String
    }

    /// The first 16 hex digits of SHA-256 over every file's name and bytes.
    public let version: String
    /// `index.html` with its `{{version}}` placeholders filled in.
    public let index: [UInt8]
    private let assets: [String: Asset]

    public enum LoadError: Error, CustomStringConvertible {
        case missing(String)
        public var description: String {
            switch self { case .missing(let what): "the browser client's files are missing (\(what)); reinstall SafeChat" }
        }
    }

    /// Reads the files shipped beside the executable.
    public static func load() throws -> WebAssets {
        guard let directory = Bundle.module.url(forResource: "Web", withExtension: nil) else { throw LoadError.missing("Web") }
        return try load(from: directory)
    }

    static func load(from directory: URL) throws -> WebAssets {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { !$0.hasPrefix(".") }.sorted()
        var files: [String: [UInt8]] = [:]
        var hasher = SHA256Hasher()
        for name in names {
            let bytes = Array(try Data(contentsOf: directory.appendingPathComponent(name)))
            files[name] = bytes
            hasher.update(Array(name.utf8) + [0] + Array(String(bytes.count).utf8) + [0] + bytes)
        }
        guard let template = files.removeValue(forKey: "index.html") else { throw LoadError.missing("index.html") }
        let version = Secrets.hex(hasher.finalize().prefix(8))
        let index = Array(String(decoding: template, as: UTF8.self).replacingOccurrences(of: "{{version}}", with: version).utf8)
        var assets: [String: Asset] = [:]
        for (name, bytes) in files {
            guard let type = contentTypes[(name as NSString).pathExtension] else { continue }
            assets[name] = Asset(bytes: bytes, contentType: type)
        }
        return WebAssets(version: version, index: index, assets: assets)
    }

    /// The asset `name` of this `version`, if both exist.
    public func asset(_ name: String, version: String) -> Asset? {
        version == self.version ? assets[name] : nil
    }

    static let contentTypes = [
        "js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8", "html": "text/html; charset=utf-8",
        "svg": "image/svg+xml", "png": "image/png",
    ]
}
