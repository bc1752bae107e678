import SealedFormat

/// The bytes an epoch's signature covers and its hash (docs/KEYS.md 7.2), keyless: clients sign and
/// verify them, and the gateway checks that a new epoch's `previous` is the hash of the one before.
public enum EpochLayout {
    static let label = Array("SafeChat epoch v1".utf8) + [0]

    public struct Member: Sendable {
        public let userID: [UInt8], signingKey: [UInt8], name: [UInt8]
        public init(userID: [UInt8], signingKey: [UInt8], name: [UInt8]) {
            self.userID = userID
            self.signingKey = signingKey
            self.name = name
        }
    }

    public struct Wrap: Sendable {
        public let userID: [UInt8], keyEpoch: UInt32, enc: [UInt8], ciphertext: [UInt8]
        public init(userID: [UInt8], keyEpoch: UInt32, enc: [UInt8], ciphertext: [UInt8]) {
            self.userID = userID
            self.keyEpoch = keyEpoch
            self.enc = enc
            self.ciphertext = ciphertext
        }
    }

    public static func signedBytes(sessionID: [UInt8], epoch: UInt32, previous: [UInt8], signer: [UInt8], members: [Member], wraps: [Wrap],
                                   sealedName: [UInt8]) -> [UInt8] {
        var out = label + sessionID + be32(epoch) + previous + signer + be16(UInt16(members.count))
        for member in members { out += member.userID + member.signingKey + [UInt8(member.name.count)] + member.name }
        out += be16(UInt16(wraps.count))
        for wrap in wraps { out += wrap.userID + be32(wrap.keyEpoch) + wrap.enc + be16(UInt16(wrap.ciphertext.count)) + wrap.ciphertext }
        return out + be16(UInt16(sealedName.count)) + sealedName
    }

    /// SHA-256(signed bytes || signature): what the next epoch's `previous` must be.
    public static func hash(signedBytes: [UInt8], signature: [UInt8]) -> [UInt8] { SHA256Hasher.hash(signedBytes + signature) }

    static func be16(_ value: UInt16) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xFF)] }
    static func be32(_ value: UInt32) -> [UInt8] { [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)] }
}

extension EpochWire {
    /// The hash of this document (docs/KEYS.md 7.2), or nil if a field is not hex of its length.
    public var hash: [UInt8]? {
        func hex(_ text: String, _ count: Int) -> [UInt8]? { Secrets.bytes(fromHex: text, count: count) }
        guard let session = hex(sessionID, 16), let previous = hex(previous, 32), let signer = hex(signer, 16),
              let signature = hex(signature, 64), let sealed = Secrets.bytes(fromHex: sealedName), sealed.count <= UInt16.max,
              members.count <= UInt16.max, wraps.count <= UInt16.max else { return nil }
        var layoutMembers: [EpochLayout.Member] = []
        for member in members {
            guard let id = hex(member.userID, 16), let key = hex(member.signingKey, 32), (1...255).contains(member.name.utf8.count) else { return nil }
            layoutMembers.append(.init(userID: id, signingKey: key, name: Array(member.name.utf8)))
        }
        var layoutWraps: [EpochLayout.Wrap] = []
        for wrap in wraps {
            guard let id = hex(wrap.userID, 16), let enc = hex(wrap.enc, 32), let ciphertext = hex(wrap.ciphertext, 48) else { return nil }
            layoutWraps.append(.init(userID: id, keyEpoch: wrap.keyEpoch, enc: enc, ciphertext: ciphertext))
        }
        let signed = EpochLayout.signedBytes(sessionID: session, epoch: epoch, previous: previous, signer: signer, members: layoutMembers,
                                             wraps: layoutWraps, sealedName: sealed)
        return EpochLayout.hash(signedBytes: signed, signature: signature)
    }
}
