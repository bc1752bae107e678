/// SafeChatAPI: the wire types gateway and client share (docs/API.md): ids, manifests, listings,
/// the login reply, error codes and tus constants. No networking and no keys: both sides import it,
/// so neither can drift from the other.
import Foundation
import SealedFormat

/// What an ``Identifier`` names; only its word for error messages differs.
public protocol IdentifierKind: Sendable { static var noun: String { get } }
public enum FileKind: IdentifierKind { public static let noun = "file id" }
public enum UserKind: IdentifierKind { public static let noun = "user id" }
public enum SessionKind: IdentifierKind { public static let noun = "session id" }

/// 128 random bits as 32 lowercase hex digits. Anything else is refused before any path is built
/// from it.
public struct Identifier<Kind: IdentifierKind>: Hashable, Sendable, Codable, CustomStringConvertible {
    public let value: String

    public init?(_ text: some StringProtocol) {
        guard text.utf8.count == 32, text.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else {
            return nil
        }
        value = String(text)
    }

    public static func random() -> Self { Self(Secrets.randomHex(16))! }
    public var description: String { value }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let id = Self(text) else { throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "bad \(Kind.noun)")) }
        self = id
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(value)
    }
}

/// A file (or upload) id.
public typealias FileID = Identifier<FileKind>

extension Identifier where Kind == FileKind {
    /// The id bound to the stream that starts with `header` (docs/FORMAT.md section 11).
    public init(boundTo header: StreamHeader) { self.init(StreamIdentity.fileID(for: header))! }

    /// Whether this id is the one bound to `header`: the file it names is that stream and no other.
    public func isBound(to header: StreamHeader) -> Bool { value == StreamIdentity.fileID(for: header) }
}
/// A user account's stable id: what owns files, uploads and memberships.
public typealias UserID = Identifier<UserKind>
/// A session's id: 128 random bits made by its creator's client.
public typealias SessionID = Identifier<SessionKind>

/// Who a request acts for: an account's stable id and its current name.
public struct Principal: Sendable, Hashable {
    public let id: UserID
    public let name: String

    public init(id: UserID, name: String) {
        self.id = id
        self.name = name
    }
}

