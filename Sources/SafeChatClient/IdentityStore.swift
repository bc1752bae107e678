import Foundation
import SafeChatAPI
import SafeChatKeys
import SealedStream

/// This device's identity: `$XDG_DATA_HOME/safechat/identity.json` (default
/// `~/.local/share/safechat`), created 0600 and never overwritten. docs/KEYS.md section 4.
public struct IdentityStore: Sendable {
    public let directory: String
    public var path: String { directory + "/identity.json" }

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        let base = environment["XDG_DATA_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (environment["HOME"] ?? NSHomeDirectory()) + "/.local/share"
        directory = base + "/safechat"
    }

    public var exists: Bool { FileManager.default.fileExists(atPath: path) }

    public func load() throws -> Identity {
        guard let data = FileManager.default.contents(atPath: path) else { throw ClientError.noIdentity }
        return try IdentityFile.decode(Array(data))
    }

    /// Writes `identity` if there is none yet (the file is linked into place, so a concurrent writer
    /// cannot be overwritten either).
    public func create(_ identity: Identity) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        guard !exists else { throw ClientError.identityExists(path) }
        let temporary = directory + "/.identity.\(Secrets.randomHex(8)).tmp"
        let writer = try AtomicFileWriter(destination: temporary, permissions: 0o600)
        try writer.write(IdentityFile.encode(identity))
        try writer.commit()
        defer { unlink(temporary) }
        guard link(temporary, path) == 0 else {
            if errno == EEXIST { throw ClientError.identityExists(path) }
            throw FileError(path: path, operation: "create", errno: errno)
        }
        syncDirectory(of: path)
    }
}

/// Identity tasks the commands share.
public enum Identities {
    /// The identity for `session`'s account: loaded, or made and published when neither this device
    /// nor the gateway has one. If the gateway already has a bundle for the account (made on another
    /// device), none is made here: the user imports theirs instead.
    public static func ensure(for session: ClientSession, store: IdentityStore) async throws -> (identity: Identity, created: Bool) {
        let client = GatewayClient(session: session)
        guard let userID = session.userID.flatMap({ Secrets.bytes(fromHex: $0, count: 16) }) else {
            throw ClientError.identityMismatch("this session has no user id; run `safechat login` again")
        }
        if store.exists {
            let identity = try store.load()
            guard identity.userID == userID else {
                throw ClientError.identityMismatch("the identity at \(store.path) belongs to another account (user id \(Secrets.hex(identity.userID)))")
            }
            // A gateway that lost it (a new data directory) gets it again.
            if try await client.identity(of: session.user) == nil { try await client.publish(identity.publicBundle.encoded()) }
            return (identity, false)
        }
        if try await client.identity(of: session.user) != nil {
            throw ClientError.noIdentity
        }
        let identity = try Identity.generate(userID: userID)
        try store.create(identity)
        try await client.publish(identity.publicBundle.encoded())
        return (identity, true)
    }

    /// `user`'s identity as the gateway serves it, verified and checked against this device's pin
    /// (pinned on first use; a changed key is refused).
    public static func trusted(_ user: String, from client: GatewayClient, pins: PinStore) async throws -> (PublicIdentity, PinStore.Trust) {
        let bundle = try await fetch(user, from: client)
        return (bundle, try pins.check(user, bundle))
    }

    /// `user`'s published identity, verified (its own signature) and bound to the account the
    /// gateway says it is; not checked against pins.
    public static func fetch(_ user: String, from client: GatewayClient) async throws -> PublicIdentity {
        guard let entry = try await client.identity(of: user) else {
            throw ClientError.server(status: 404, code: "not_found", message: "\(user) has published no identity")
        }
        let bundle = try PublicIdentity(decoding: Array(try WireCoding.encoder.encode(entry.bundle)))
        guard Secrets.hex(bundle.userID) == entry.userID else {
            throw ClientError.protocolViolation("the bundle served for \(user) names another account")
        }
        return bundle
    }
}
