/// SafeChatClient: talking to a SafeChat gateway — login and the stored token, resumable sealed
/// uploads and downloads, and listing and deleting files. Files are sealed and opened on this
/// machine; the gateway only ever sees sealed bytes.
import Foundation
import SealedStream

/// Where the client keeps its state: `$XDG_CONFIG_HOME/safechat` (default `~/.config/safechat`),
/// mode 0700, every file in it 0600.
public struct ClientDirectory: Sendable {
    public let path: String

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        let base = environment["XDG_CONFIG_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (environment["HOME"] ?? NSHomeDirectory()) + "/.config"
        path = base + "/safechat"
    }

    func ensure(_ sub: String = "") throws -> String {
        let dir = sub.isEmpty ? path : path + "/" + sub
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        return dir
    }

    func write(_ value: some Encodable, to file: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        let writer = try AtomicFileWriter(destination: file, permissions: 0o600)
        try writer.write(Array(try encoder.encode(value)))
        try writer.commit()
    }

    /// The decoded file, or nil if it is missing or damaged (callers then start from scratch).
    func read<T: Decodable>(_ type: T.Type, from file: String) -> T? {
        guard let data = FileManager.default.contents(atPath: file) else { return nil }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try? decoder.decode(type, from: data)
    }
}

/// The gateway this machine is logged in to, and the token it gave.
public struct ClientSession: Codable, Sendable {
    public var server: String
    public var user: String
    public var token: String
    public var expiresAt: Date
    /// The account's stable id (hex); nil in a session saved before ids existed (log in again).
    public var userID: String?

    static func file(_ directory: ClientDirectory) -> String { directory.path + "/session.json" }

    public static func load(from directory: ClientDirectory) throws -> ClientSession {
        guard let session = directory.read(ClientSession.self, from: file(directory)) else {
            throw ClientError.notLoggedIn
        }
        guard session.expiresAt > Date() else { throw ClientError.sessionExpired(session.server) }
        return session
    }

    /// Removes the stored session (after logging out).
    public static func forget(in directory: ClientDirectory) throws {
        guard unlink(file(directory)) == 0 || errno == ENOENT else { throw FileError(path: file(directory), operation: "delete", errno: errno) }
    }

    public func save(to directory: ClientDirectory) throws {
        _ = try directory.ensure()
        try directory.write(self, to: Self.file(directory))
    }
}

/// Errors the client reports as one line.
public enum ClientError: Error, CustomStringConvertible {
    case notLoggedIn
    case sessionExpired(String)
    case server(status: Int, code: String, message: String)
    case protocolViolation(String)
    case fileChanged(String)
    case outputExists(String)
    case connectionLost(String)
    case noIdentity
    case identityExists(String)
    case identityMismatch(String)
    case keyChanged(user: String, pinned: String, offered: String, context: String? = nil)
    /// What the gateway served does not pass a check that binds it to what was asked for (another
    /// file under an id, another stream on a resume, conflicting keys): nothing of it was kept.
    case refused(String)

    public var description: String {
        switch self {
        case .notLoggedIn: "not logged in: run `safechat login --server URL --user NAME` first"
        case .sessionExpired(let server): "your session with \(server) expired: run `safechat login` again"
        case .server(let status, let code, let message): "gateway answered \(status) \(code): \(message)"
        case .protocolViolation(let what): "unexpected answer from the gateway: \(what)"
        case .outputExists(let path): "\(path) already exists; choose another name with -o, or pass --force to replace it"
        case .fileChanged(let path): "\(path) changed while it was being uploaded; run the command again to start over"
        case .connectionLost(let why): "connection to the gateway lost (\(why)); run the same command again to resume"
        case .noIdentity: "no identity on this device: run `safechat keys init`, or `safechat keys import FILE` to bring yours from another device"
        case .identityExists(let path): "an identity already exists at \(path); it is never overwritten (move it away first if you mean to replace it)"
        case .identityMismatch(let why): why
        case .refused(let why): "REFUSED: \(why)"
        case .keyChanged(let user, let pinned, let offered, let context):
            "REFUSED: \(user)'s key has changed\(context.map { " (\($0) lists another key for them)" } ?? ""). Pinned fingerprint: \(pinned). "
                + "Offered now: \(offered). Someone (the gateway included) may be impersonating \(user). Compare fingerprints with \(user) "
                + "out of band; only if they confirm the new one, run `safechat keys trust \(user) <the fingerprint they read to you>`"
        }
    }
}
