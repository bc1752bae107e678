import Foundation

/// An epoch document as it travels and as the gateway stores it (docs/KEYS.md section 7). The
/// gateway reads only `session_id`, `epoch`, `signer` and the members' user ids (to decide who may
/// see the session); clients verify everything else.
public struct EpochWire: Codable, Sendable, Equatable {
    public struct Member: Codable, Sendable, Equatable {
        public let userID: String
        public let name: String
        public let signingKey: String
        public init(userID: String, name: String, signingKey: String) {
            self.userID = userID
            self.name = name
            self.signingKey = signingKey
        }
        enum CodingKeys: String, CodingKey { case userID = "user_id", name, signingKey = "signing_key" }
    }

    public struct Wrap: Codable, Sendable, Equatable {
        public let userID: String
        public let keyEpoch: UInt32
        public let enc: String
        public let ciphertext: String
        public init(userID: String, keyEpoch: UInt32, enc: String, ciphertext: String) {
            self.userID = userID
            self.keyEpoch = keyEpoch
            self.enc = enc
            self.ciphertext = ciphertext
        }
        enum CodingKeys: String, CodingKey { case userID = "user_id", keyEpoch = "key_epoch", enc, ciphertext }
    }

    public let version: Int
    public let sessionID: String
    public let epoch: UInt32
    public let previous: String
    public let signer: String
    public let members: [Member]
    public let wraps: [Wrap]
    /// The session's name sealed under this epoch's key, hex ("" if none).
    public let sealedName: String
    public let signature: String

    public init(version: Int = 1, sessionID: String, epoch: UInt32, previous: String, signer: String, members: [Member],
                wraps: [Wrap], sealedName: String = "", signature: String) {
        self.sealedName = sealedName
        self.version = version
        self.sessionID = sessionID
        self.epoch = epoch
        self.previous = previous
        self.signer = signer
        self.members = members
        self.wraps = wraps
        self.signature = signature
    }

    enum CodingKeys: String, CodingKey {
        case version, sessionID = "session_id", epoch, previous, signer, members, wraps, sealedName = "sealed_name", signature
    }

    /// At most this many members per epoch, and this many bytes per document.
    public static let maxMembers = SessionLimits.membersPerEpoch
    public static let maxEncodedLength = SessionLimits.epochBytes
}

/// What a session may hold (docs/API.md, "Limits"), so that no account can take more than its
/// share of what a gateway keeps. Clients make nothing beyond them.
public enum SessionLimits {
    /// Members listed in one epoch.
    public static let membersPerEpoch = 1000
    /// Wraps in one epoch beyond one per member: history shared with newcomers.
    public static let historyWrapsPerEpoch = 1024
    /// An epoch document as sent, in bytes.
    public static let epochBytes = 1 << 20
    /// Epochs in one session (0 … 1023).
    public static let epochsPerSession = 1024
    /// All of a session's epochs together, in bytes.
    public static let sessionBytes = 64 << 20
    /// Sessions one account may create.
    public static let sessionsPerAccount = 256
    /// A session's sealed name, in bytes.
    public static let sealedNameBytes = 4096
}

/// GET /sessions/{id}: the chain (or the part after `?after=N`).
public struct SessionChain: Codable, Sendable {
    public let sessionID: String
    public let epochs: [EpochWire]
    public init(sessionID: String, epochs: [EpochWire]) {
        self.sessionID = sessionID
        self.epochs = epochs
    }
    enum CodingKeys: String, CodingKey { case sessionID = "session_id", epochs }
}

/// GET /sessions: the caller's sessions and their current epochs.
public struct SessionListing: Codable, Sendable {
    public struct Entry: Codable, Sendable {
        public let sessionID: String
        public let epoch: UInt32
        public let members: Int
        public init(sessionID: String, epoch: UInt32, members: Int) {
            self.sessionID = sessionID
            self.epoch = epoch
            self.members = members
        }
        enum CodingKeys: String, CodingKey { case sessionID = "session_id", epoch, members }
    }
    public let sessions: [Entry]
    public init(sessions: [Entry]) { self.sessions = sessions }
}

/// GET /get_chat_key: the caller's wrap of one epoch's key, which only their private key opens.
public struct WrappedKeyReply: Codable, Sendable {
    public let sessionID: String
    public let epoch: UInt32
    public let wrap: EpochWire.Wrap
    public init(sessionID: String, epoch: UInt32, wrap: EpochWire.Wrap) {
        self.sessionID = sessionID
        self.epoch = epoch
        self.wrap = wrap
    }
    enum CodingKeys: String, CodingKey { case sessionID = "session_id", epoch, wrap }
}
