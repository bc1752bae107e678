import Foundation

/// A published identity as it travels (docs/KEYS.md section 2). The gateway checks only its shape
/// (version, lengths, hex, that it names the caller); clients verify its signature themselves.
public struct IdentityBundle: Codable, Sendable, Equatable {
    public let version: Int
    public let userID: String
    public let signingKey: String
    public let agreementKey: String
    public let signature: String

    public init(version: Int, userID: String, signingKey: String, agreementKey: String, signature: String) {
        self.version = version
        self.userID = userID
        self.signingKey = signingKey
        self.agreementKey = agreementKey
        self.signature = signature
    }

    enum CodingKeys: String, CodingKey {
        case version, userID = "user_id", signingKey = "signing_key", agreementKey = "agreement_key", signature
    }

    /// Version 1 with every field lowercase hex of its length: 16, 32, 32 and 64 bytes.
    public var isWellFormed: Bool {
        func hex(_ text: String, bytes: Int) -> Bool {
            text.utf8.count == bytes * 2 && text.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
        }
        return version == 1 && hex(userID, bytes: 16) && hex(signingKey, bytes: 32) && hex(agreementKey, bytes: 32) && hex(signature, bytes: 64)
    }
}

/// GET /keys/{user}: the account's name, id and published bundle.
public struct KeyDirectoryEntry: Codable, Sendable, Equatable {
    public let user: String
    public let userID: String
    public let bundle: IdentityBundle
    public let updatedAt: Date

    public init(user: String, userID: String, bundle: IdentityBundle, updatedAt: Date) {
        self.user = user
        self.userID = userID
        self.bundle = bundle
        self.updatedAt = updatedAt
    }

    enum CodingKeys: String, CodingKey { case user, userID = "user_id", bundle, updatedAt = "updated_at" }
}
