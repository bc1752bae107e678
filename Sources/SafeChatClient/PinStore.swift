import Foundation
import SafeChatKeys
import SealedStream

/// The identities this device has seen for other users (trust on first use), in
/// `$XDG_DATA_HOME/safechat/pins.json`, 0600. A pinned user whose key changes is refused loudly,
/// with both fingerprints, until the user accepts the change (`safechat keys trust`) or verifies
/// the new key out of band (`safechat keys verify`).
public struct PinStore: Sendable {
    public let path: String

    public init(identities: IdentityStore = IdentityStore()) { path = identities.directory + "/pins.json" }

    public struct Pin: Codable, Sendable, Equatable {
        public let userID: String
        public let signingKey: String
        public let fingerprint: String
        public var verified: Bool
        public let pinnedAt: Date
    }

    struct File: Codable { var version = 1; var pins: [String: Pin] }

    /// How a checked identity stands.
    public enum Trust: Sendable, Equatable {
        /// Seen for the first time, and pinned now.
        case newlyPinned
        /// The pinned key; `verified` if its fingerprint was confirmed out of band.
        case pinned(verified: Bool)
    }

    public func pin(for user: String) throws -> Pin? { try read().pins[user] }

    /// Checks `bundle` (already verified as self-signed) against the pin for `user`, pinning it if
    /// there is none. A different key, or the same name on another account, is ``ClientError/keyChanged``.
    public func check(_ user: String, _ bundle: PublicIdentity) throws -> Trust {
        var file = try read()
        guard let pin = file.pins[user] else {
            file.pins[user] = Pin(userID: Secrets.hex(bundle.userID), signingKey: Secrets.hex(bundle.signingKey.rawRepresentation),
                                  fingerprint: bundle.fingerprint.description, verified: false, pinnedAt: Date())
            try write(file)
            return .newlyPinned
        }
        guard pin.signingKey == Secrets.hex(bundle.signingKey.rawRepresentation), pin.userID == Secrets.hex(bundle.userID) else {
            throw ClientError.keyChanged(user: user, pinned: pin.fingerprint, offered: bundle.fingerprint.description)
        }
        return .pinned(verified: pin.verified)
    }

    /// Marks `user`'s pinned key verified if `fingerprint` is its fingerprint.
    public func verify(_ user: String, fingerprint: Fingerprint) throws {
        var file = try read()
        guard var pin = file.pins[user] else { throw ClientError.identityMismatch("no key pinned for \(user) yet: run `safechat keys fingerprint \(user)` first") }
        guard pin.fingerprint == fingerprint.description else {
            throw ClientError.identityMismatch("that is not \(user)'s pinned fingerprint (\(pin.fingerprint)); do not trust this key")
        }
        pin.verified = true
        file.pins[user] = pin
        try write(file)
    }

    /// Accepts `bundle` as `user`'s key from now on (a deliberate decision after a key change);
    /// `verified` when its fingerprint was confirmed out of band.
    public func trust(_ user: String, _ bundle: PublicIdentity, verified: Bool) throws {
        var file = try read()
        file.pins[user] = Pin(userID: Secrets.hex(bundle.userID), signingKey: Secrets.hex(bundle.signingKey.rawRepresentation),
                              fingerprint: bundle.fingerprint.description, verified: verified, pinnedAt: Date())
        try write(file)
    }

    private func read() throws -> File {
        guard let data = FileManager.default.contents(atPath: path) else { return File(pins: [:]) }
        guard data.count <= 16 << 20, let file = try? WireJSON.decoder.decode(File.self, from: data), file.version == 1 else {
            throw ClientError.identityMismatch("\(path) is damaged; it holds the keys you trust, so it is not replaced silently: inspect or remove it")
        }
        return file
    }

    private func write(_ file: File) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let writer = try AtomicFileWriter(destination: path, permissions: 0o600)
        try writer.write(Array(try WireJSON.encoder.encode(file)))
        try writer.commit()
    }
}

enum WireJSON {
    static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }
    static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }
}
