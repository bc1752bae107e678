import Foundation
import SafeChatAPI
import SealedStream

/// One epoch of a session's membership log (docs/KEYS.md section 7): who is in, the hash of the
/// epoch before, the new session key wrapped for each member, signed by the member who made it.
public struct EpochDocument: Sendable, Equatable {
    public struct Member: Sendable, Equatable {
        public let userID: [UInt8]
        public let name: String
        /// The member's Ed25519 identity key (its fingerprint is what users compare).
        public let signingKey: [UInt8]
        public init(userID: [UInt8], name: String, signingKey: [UInt8]) {
            self.userID = userID
            self.name = name
            self.signingKey = signingKey
        }
    }

    /// A session key wrapped for one member: the key of epoch `keyEpoch` (this epoch's, or an
    /// earlier one's when history is shared), HPKE-sealed to the member's agreement key.
    public struct Wrap: Sendable, Equatable {
        public let userID: [UInt8]
        public let keyEpoch: UInt32
        public let encapsulatedKey: [UInt8]
        public let ciphertext: [UInt8]
    }

    public let sessionID: [UInt8]
    public let epoch: UInt32
    /// SHA-256 hash of the previous epoch (``hash``), 32 zero bytes for epoch 0.
    public let previous: [UInt8]
    public let signer: [UInt8]
    public let members: [Member]
    public let wraps: [Wrap]
    /// The session's name, sealed by the client under this epoch's key (empty if none): members
    /// read it, the gateway cannot.
    public let sealedName: [UInt8]
    public let signature: [UInt8]

    public init(sessionID: [UInt8], epoch: UInt32, previous: [UInt8], signer: [UInt8], members: [Member], wraps: [Wrap],
                sealedName: [UInt8] = [], signature: [UInt8]) {
        self.sessionID = sessionID
        self.epoch = epoch
        self.previous = previous
        self.signer = signer
        self.members = members
        self.wraps = wraps
        self.sealedName = sealedName
        self.signature = signature
    }

    public static let maxSealedName = SessionLimits.sealedNameBytes
    static let wrapLabel = Array("SafeChat wrap v1".utf8) + [0]

    /// The bytes the signature covers (docs/KEYS.md 7.2).
    public var signedBytes: [UInt8] {
        Self.signedBytes(sessionID: sessionID, epoch: epoch, previous: previous, signer: signer, members: members, wraps: wraps,
                         sealedName: sealedName)
    }

    static func signedBytes(sessionID: [UInt8], epoch: UInt32, previous: [UInt8], signer: [UInt8], members: [Member], wraps: [Wrap],
                            sealedName: [UInt8]) -> [UInt8] {
        EpochLayout.signedBytes(sessionID: sessionID, epoch: epoch, previous: previous, signer: signer,
                                members: members.map { .init(userID: $0.userID, signingKey: $0.signingKey, name: Array($0.name.utf8)) },
                                wraps: wraps.map { .init(userID: $0.userID, keyEpoch: $0.keyEpoch, enc: $0.encapsulatedKey, ciphertext: $0.ciphertext) },
                                sealedName: sealedName)
    }

    /// What the next epoch's `previous` must be: SHA-256 of the signed bytes and the signature.
    public var hash: [UInt8] { EpochLayout.hash(signedBytes: signedBytes, signature: signature) }

    /// The HPKE `info` for a wrap: label || session id || key epoch (u32) || recipient's Ed25519 key.
    /// It binds the wrapped key to its session, its epoch and the member it is for.
    public static func wrapInfo(sessionID: [UInt8], keyEpoch: UInt32, recipientSigningKey: [UInt8]) -> [UInt8] {
        wrapLabel + sessionID + be32(keyEpoch) + recipientSigningKey
    }

    /// Makes and signs epoch `epoch` of `sessionID`: `key` is wrapped for every member, and each
    /// `(epoch, key)` in `history` for the members in `historyFor` as well.
    public static func make(sessionID: [UInt8], epoch: UInt32, previous: EpochDocument?, signer: Identity,
                            members: [(member: Member, agreementKey: X25519PublicKey)], key: SessionKey,
                            history: [(epoch: UInt32, key: SessionKey)] = [], historyFor: Set<[UInt8]> = [],
                            sealedName: [UInt8] = [], ephemeralSeed: (([UInt8], UInt32) -> [UInt8])? = nil) throws(KeyError) -> EpochDocument {
        guard sessionID.count == 16, members.count <= 1000, sealedName.count <= maxSealedName else {
            throw .invalidKey("a session id is 16 bytes; at most 1000 members; a sealed name of at most \(maxSealedName) bytes")
        }
        guard members.allSatisfy({ $0.member.name.utf8.count <= 64 && $0.member.userID.count == 16 && $0.member.signingKey.count == 32 }) else {
            throw .invalidKey("member names are at most 64 bytes")
        }
        var wraps: [Wrap] = []
        for (member, agreementKey) in members {
            for (keyEpoch, wrapped) in [(epoch, key)] + (historyFor.contains(member.userID) ? history : []) {
                var raw = wrapped.rawBytes
                defer { Secrets.cleanse(&raw) }
                // A fixed ephemeral seed only for known-answer vectors; real wraps draw one at random.
                let sealed = try HPKE.seal(raw, for: agreementKey,
                                           info: wrapInfo(sessionID: sessionID, keyEpoch: keyEpoch, recipientSigningKey: member.signingKey), aad: [],
                                           ephemeralSeed: ephemeralSeed?(member.userID, keyEpoch))
                wraps.append(Wrap(userID: member.userID, keyEpoch: keyEpoch, encapsulatedKey: sealed.encapsulatedKey, ciphertext: sealed.ciphertext))
            }
        }
        let previousHash = previous?.hash ?? [UInt8](repeating: 0, count: 32)
        let list = members.map(\.member)
        let bytes = signedBytes(sessionID: sessionID, epoch: epoch, previous: previousHash, signer: signer.userID, members: list, wraps: wraps,
                                sealedName: sealedName)
        return EpochDocument(sessionID: sessionID, epoch: epoch, previous: previousHash, signer: signer.userID, members: list,
                             wraps: wraps, sealedName: sealedName, signature: signer.signingKey.signature(for: bytes))
    }

    /// Opens the key of `keyEpoch` wrapped in this document for `identity`.
    public func openKey(epoch keyEpoch: UInt32, for identity: Identity) throws(KeyError) -> SessionKey {
        guard let wrap = wraps.first(where: { $0.userID == identity.userID && $0.keyEpoch == keyEpoch }) else { throw .openFailed }
        let info = Self.wrapInfo(sessionID: sessionID, keyEpoch: keyEpoch, recipientSigningKey: identity.signingKey.publicKey.rawRepresentation)
        var raw = try HPKE.open(.init(encapsulatedKey: wrap.encapsulatedKey, ciphertext: wrap.ciphertext), with: identity.agreementKey,
                                info: info, aad: [])
        defer { Secrets.cleanse(&raw) }
        do { return try SessionKey(bytes: raw) } catch { throw .openFailed }
    }
}

func be16(_ value: UInt16) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xFF)] }
func be32(_ value: UInt32) -> [UInt8] { [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)] }
