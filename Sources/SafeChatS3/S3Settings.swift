import Foundation

/// Where sealed files go and how to reach it: `--blob-store s3://BUCKET[/PREFIX]`,
/// `--s3-endpoint URL`, `--s3-region R`, and credentials from the environment or a credentials file.
public struct S3Settings: Sendable {
    public var bucket: String
    /// Prepended to every key: empty, or ending in "/".
    public var prefix: String
    public var endpoint: S3Endpoint
    public var region: String
    public var credentials: S3Credentials
    /// The largest file the gateway accepts: part sizes are chosen so that it fits in 10 000 parts.
    public var maxObjectSize: Int64
    /// Upload bytes held in memory at once, over all uploads (parts being filled and sent); an
    /// upload past it waits for room. Raised to two of the largest parts if smaller.
    public var uploadMemory: Int = 256 << 20

    public init(location: String, endpoint: String, region: String?, credentials: S3Credentials, maxObjectSize: Int64) throws {
        (bucket, prefix) = try Self.parse(location: location)
        self.endpoint = try S3Endpoint(endpoint)
        let region = region ?? "us-east-1"
        guard !region.isEmpty, region.count <= 64, region.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) else {
            throw S3ConfigurationError("--s3-region must be a region name such as us-east-1")
        }
        self.region = region
        self.credentials = credentials
        self.maxObjectSize = maxObjectSize
    }

    /// `s3://BUCKET[/PREFIX]`: a bucket name as S3 allows it (3 to 63 of a-z 0-9 . -), and a prefix
    /// of letters, digits and `. _ - /` (no `..`), at most 512 bytes.
    static func parse(location: String) throws -> (bucket: String, prefix: String) {
        guard location.hasPrefix("s3://") else { throw S3ConfigurationError("--blob-store must be s3://BUCKET or s3://BUCKET/PREFIX") }
        let rest = location.dropFirst(5)
        let bucket = String(rest.prefix { $0 != "/" })
        let prefix = rest.dropFirst(bucket.count).split(separator: "/").joined(separator: "/")
        guard (3...63).contains(bucket.count),
              bucket.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-" || $0 == ".") }),
              bucket.first!.isLetter || bucket.first!.isNumber
        else { throw S3ConfigurationError("the bucket in --blob-store must be 3 to 63 characters of a-z, 0-9, '.' and '-'") }
        guard prefix.utf8.count <= 512, !prefix.split(separator: "/").contains(".."),
              prefix.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-/".contains($0)) })
        else { throw S3ConfigurationError("the prefix in --blob-store may hold only letters, digits and . _ - /, without '..'") }
        return (bucket, prefix.isEmpty ? "" : prefix + "/")
    }
}

/// The store's base URL (path-style addressing: `ENDPOINT/BUCKET/KEY`).
public struct S3Endpoint: Sendable, CustomStringConvertible {
    public let scheme: String
    public let host: String
    public let port: Int
    /// The Host header, with the port unless it is the scheme's default.
    public let hostHeader: String

    public init(_ text: String) throws {
        guard let url = URLComponents(string: text), let scheme = url.scheme?.lowercased(), ["http", "https"].contains(scheme),
              let host = url.host, !host.isEmpty, url.query == nil, url.fragment == nil, url.path.isEmpty || url.path == "/"
        else { throw S3ConfigurationError("--s3-endpoint must be a URL such as https://s3.us-east-1.amazonaws.com or http://127.0.0.1:8333") }
        // Credentials never go on a command line (they would be in ps and shell history).
        guard url.user == nil, url.password == nil else {
            throw S3ConfigurationError("--s3-endpoint must not hold credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead")
        }
        self.scheme = scheme
        self.host = host
        let defaultPort = scheme == "https" ? 443 : 80
        port = url.port ?? defaultPort
        hostHeader = port == defaultPort ? host : "\(host):\(port)"
    }

    public var description: String { "\(scheme)://\(hostHeader)" }
}

/// An access key and its secret (and a session token with temporary credentials). Its description
/// names the key id only: the secret is never printed or logged.
public struct S3Credentials: Sendable, CustomStringConvertible {
    public let accessKeyID: String
    let secretAccessKey: String
    let sessionToken: String?

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }

    public var description: String { "access key \(accessKeyID)" }

    /// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) if set; else the profile
    /// AWS_PROFILE (or `default`) of the credentials file AWS_SHARED_CREDENTIALS_FILE (or
    /// ~/.aws/credentials), which must not be readable by others.
    public static func load(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> S3Credentials {
        let id = environment["AWS_ACCESS_KEY_ID"].flatMap { $0.isEmpty ? nil : $0 }
        let secret = environment["AWS_SECRET_ACCESS_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        let token = environment["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        switch (id, secret) {
        case let (id?, secret?): return try checked(id, secret, token)
        case (nil, nil): break
        default: throw S3ConfigurationError("set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither (to use a credentials file)")
        }
        let home = environment["HOME"] ?? NSHomeDirectory()
        let path = environment["AWS_SHARED_CREDENTIALS_FILE"] ?? home + "/.aws/credentials"
        let profile = environment["AWS_PROFILE"] ?? "default"
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw S3ConfigurationError("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or write them to \(path)")
        }
        guard info.st_mode & 0o077 == 0 else {
            throw S3ConfigurationError("\(path) holds secrets and is readable by others: chmod 600 it")
        }
        guard info.st_size <= 65_536, let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw S3ConfigurationError("\(path) is not a credentials file (a small UTF-8 text file)")
        }
        let values = parseProfile(profile, in: text)
        guard let id = values["aws_access_key_id"], let secret = values["aws_secret_access_key"] else {
            throw S3ConfigurationError("profile [\(profile)] of \(path) has no aws_access_key_id and aws_secret_access_key")
        }
        return try checked(id, secret, values["aws_session_token"] ?? token)
    }

    private static func checked(_ id: String, _ secret: String, _ token: String?) throws -> S3Credentials {
        func plain(_ text: String, _ limit: Int) -> Bool { text.utf8.count <= limit && text.allSatisfy { $0.isASCII && !$0.isWhitespace && !$0.isNewline } }
        guard plain(id, 128), plain(secret, 256), token.map({ plain($0, 8192) }) ?? true else {
            throw S3ConfigurationError("the S3 credentials must be printable ASCII without spaces")
        }
        return S3Credentials(accessKeyID: id, secretAccessKey: secret, sessionToken: token)
    }

    /// `key = value` lines of section `[profile]` of an INI file.
    static func parseProfile(_ profile: String, in text: String) -> [String: String] {
        var values: [String: String] = [:]
        var inside = false
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") {
                inside = line.dropFirst().dropLast().trimmingCharacters(in: .whitespaces) == profile
                continue
            }
            guard inside, let equals = line.firstIndex(of: "=") else { continue }
            values[line[..<equals].trimmingCharacters(in: .whitespaces).lowercased()] = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
        }
        return values
    }
}

/// The S3 settings cannot work (bad flag, missing credentials): one line that says what to fix.
public struct S3ConfigurationError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
