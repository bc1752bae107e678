import COpenSSL
import Foundation
import SealedStream

/// A user's identity, made on their device: an Ed25519 key that signs, an X25519 key that
/// receives wrapped session keys, and a key for the local chat history. docs/KEYS.md specifies
/// every byte.
public struct Identity: Sendable {
    public let userID: [UInt8]
    public let signingKey: Ed25519PrivateKey
    public let agreementKey: X25519PrivateKey
    /// Encrypts this user's local history at rest (chat, later); never leaves the identity file.
    public let historyKey: [UInt8]

    /// A new identity for the account `userID` (16 bytes: the gateway's user id).
    public static func generate(userID: [UInt8]) throws(KeyError) -> Identity {
        guard userID.count == 16 else { throw .invalidKey("a user id is 16 bytes") }
        return Identity(userID: userID, signingKey: Ed25519PrivateKey(), agreementKey: X25519PrivateKey(),
                        historyKey: Secrets.randomBytes(32))
    }

    public init(userID: [UInt8], signingKey: Ed25519PrivateKey, agreementKey: X25519PrivateKey, historyKey: [UInt8]) {
        self.userID = userID
        self.signingKey = signingKey
        self.agreementKey = agreementKey
        self.historyKey = historyKey
    }

    /// What others may know: both public keys, bound to the account by this identity's signature.
    public var publicBundle: PublicIdentity {
        let signing = signingKey.publicKey, agreement = agreementKey.publicKey
        let signature = signingKey.signature(for: PublicIdentity.signedBytes(userID: userID, signing: signing, agreement: agreement))
        return PublicIdentity(userID: userID, signingKey: signing, agreementKey: agreement, signature: signature)
    }
}

/// A published identity (PUT /keys/me, GET /keys/{user}). Accepted only if its signature verifies
/// under its own signing key; whether that key is the one this client pinned is ``PinStore``'s to say.
public struct PublicIdentity: Sendable, Equatable {
    public static let version = 1
    static let signatureLabel = Array("SafeChat identity v1".utf8) + [0]

    public let userID: [UInt8]
    public let signingKey: Ed25519PublicKey
    public let agreementKey: X25519PublicKey
    public let signature: [UInt8]

    /// The bytes the signature covers: label || 0x00 || user id (16) || Ed25519 key (32) || X25519 key (32).
    static func signedBytes(userID: [UInt8], signing: Ed25519PublicKey, agreement: X25519PublicKey) -> [UInt8] {
        signatureLabel + userID + signing.rawRepresentation + agreement.rawRepresentation
    }

    /// The fingerprint (safety number) of the signing key.
    public var fingerprint: Fingerprint { Fingerprint(signingKey: signingKey) }

    /// The bundle as JSON (docs/KEYS.md), keys in this order, no spaces.
    public func encoded() -> [UInt8] {
        Array(("{\"version\":1,\"user_id\":\"\(Secrets.hex(userID))\",\"signing_key\":\"\(Secrets.hex(signingKey.rawRepresentation))\","
            + "\"agreement_key\":\"\(Secrets.hex(agreementKey.rawRepresentation))\",\"signature\":\"\(Secrets.hex(signature))\"}").utf8)
    }

    struct Wire: Codable {
        let version: Int
        let user_id: String
        let signing_key: String
        let agreement_key: String
        let signature: String
    }

    /// Parses and verifies a bundle: version 1, hex fields of the right lengths, and a signature
    /// that verifies under the bundle's own signing key over its user id and both keys.
    public init(decoding data: [UInt8]) throws(KeyError) {
        guard data.count <= 4096, let wire = try? JSONDecoder().decode(Wire.self, from: Data(data)), wire.version == Self.version,
              let userID = hexBytes(wire.user_id, count: 16), let signing = hexBytes(wire.signing_key, count: 32),
              let agreement = hexBytes(wire.agreement_key, count: 32), let signature = hexBytes(wire.signature, count: 64)
        else { throw .invalidKey("not a SafeChat identity bundle (version 1)") }
        let signingKey = try Ed25519PublicKey(rawRepresentation: signing)
        let agreementKey = try X25519PublicKey(rawRepresentation: agreement)
        guard signingKey.isValidSignature(signature, for: Self.signedBytes(userID: userID, signing: signingKey, agreement: agreementKey)) else {
            throw .invalidKey("the identity bundle's signature does not verify")
        }
        self.init(userID: userID, signingKey: signingKey, agreementKey: agreementKey, signature: signature)
    }

    init(userID: [UInt8], signingKey: Ed25519PublicKey, agreementKey: X25519PublicKey, signature: [UInt8]) {
        self.userID = userID
        self.signingKey = signingKey
        self.agreementKey = agreementKey
        self.signature = signature
    }
}

/// A safety number: 30 decimal digits in six groups of five, read aloud to compare identities.
/// SHA-256("SafeChat fingerprint v1" || 0x00 || Ed25519 public key); group i is bytes 5i..<5i+5
/// as a big-endian integer, modulo 100 000, zero-padded.
public struct Fingerprint: Sendable, Hashable, CustomStringConvertible {
    public let description: String

    public init(signingKey: Ed25519PublicKey) {
        let digest = SHA256Hasher.hash(Array("SafeChat fingerprint v1".utf8) + [0] + signingKey.rawRepresentation)
        description = (0..<6).map { group in
            let value = digest[(group * 5)..<(group * 5 + 5)].reduce(UInt64(0)) { $0 << 8 | UInt64($1) } % 100_000
            let digits = String(value)
            return String(repeating: "0", count: 5 - digits.count) + digits
        }.joined(separator: " ")
    }

    /// A fingerprint as a user typed it (spaces optional), if it is 30 digits.
    public init?(typed text: String) {
        let digits = text.filter { !$0.isWhitespace }
        guard digits.count == 30, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        description = stride(from: 0, to: 30, by: 5).map { start in
            String(digits[digits.index(digits.startIndex, offsetBy: start)..<digits.index(digits.startIndex, offsetBy: start + 5)])
        }.joined(separator: " ")
    }
}

func hexBytes(_ text: String, count: Int) -> [UInt8]? { Secrets.bytes(fromHex: text, count: count) }
