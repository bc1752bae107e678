import SafeChatAPI
import SealedStream

/// Why a client refuses a session's log.
public enum EpochError: Error, Equatable, CustomStringConvertible {
    case malformed(String)
    case empty
    case wrongSession(epoch: UInt32)
    case notConsecutive(expected: UInt32, found: UInt32)
    case brokenLink(epoch: UInt32)
    case signerNotMember(epoch: UInt32)
    case badSignature(epoch: UInt32)
    case untrustedMember(epoch: UInt32, name: String)
    case rolledBack(seen: UInt32, offered: UInt32)
    case forked(epoch: UInt32)

    public var description: String {
        switch self {
        case .malformed(let why): "malformed epoch document: \(why)"
        case .empty: "the session has no epochs"
        case .wrongSession(let epoch): "epoch \(epoch) belongs to another session"
        case .notConsecutive(let expected, let found): "expected epoch \(expected), got \(found)"
        case .brokenLink(let epoch): "epoch \(epoch) does not link to the epoch before it (hash mismatch)"
        case .signerNotMember(let epoch):
            epoch == 0 ? "epoch 0 is signed by someone who is not among its members (a session's creator signs it)"
                : "epoch \(epoch) is signed by someone who was not a member of epoch \(epoch - 1)"
        case .badSignature(let epoch): "epoch \(epoch)'s signature does not verify"
        case .untrustedMember(let epoch, let name): "epoch \(epoch) lists \(name) with a key that is not the one pinned for \(name)"
        case .rolledBack(let seen, let offered): "the gateway offered a log ending at epoch \(offered), but epoch \(seen) was seen before (rolled back)"
        case .forked(let epoch): "epoch \(epoch) differs from the one seen before (a forked log)"
        }
    }
}

extension EpochDocument {
    /// Parses a wire document, checking every length (not yet its signature or place in a chain).
    public init(_ wire: EpochWire) throws(EpochError) {
        func hex(_ text: String, _ count: Int, _ what: String) throws(EpochError) -> [UInt8] {
            guard let bytes = Secrets.bytes(fromHex: text, count: count) else { throw .malformed("\(what) is not \(count) bytes of hex") }
            return bytes
        }
        guard wire.version == 1 else { throw .malformed("version \(wire.version)") }
        guard wire.members.count <= SessionLimits.membersPerEpoch, wire.wraps.count <= wire.members.count + SessionLimits.historyWrapsPerEpoch else {
            throw .malformed("too many members or wraps")
        }
        var members: [Member] = []
        for member in wire.members {
            guard (1...64).contains(member.name.utf8.count) else { throw .malformed("a member name is 1 to 64 bytes") }
            members.append(Member(userID: try hex(member.userID, 16, "user_id"), name: member.name, signingKey: try hex(member.signingKey, 32, "signing_key")))
        }
        var wraps: [Wrap] = []
        for wrap in wire.wraps {
            guard wrap.ciphertext.utf8.count == (32 + 16) * 2 else { throw .malformed("a wrapped key is 48 bytes") }
            wraps.append(Wrap(userID: try hex(wrap.userID, 16, "wrap user_id"), keyEpoch: wrap.keyEpoch,
                              encapsulatedKey: try hex(wrap.enc, 32, "enc"), ciphertext: try hex(wrap.ciphertext, 48, "ciphertext")))
        }
        guard wire.sealedName.utf8.count <= 2 * EpochDocument.maxSealedName, let sealedName = Secrets.bytes(fromHex: wire.sealedName) else {
            throw .malformed("sealed_name is hex of at most \(EpochDocument.maxSealedName) bytes")
        }
        self.init(sessionID: try hex(wire.sessionID, 16, "session_id"), epoch: wire.epoch, previous: try hex(wire.previous, 32, "previous"),
                  signer: try hex(wire.signer, 16, "signer"), members: members, wraps: wraps, sealedName: sealedName,
                  signature: try hex(wire.signature, 64, "signature"))
    }

    public var wire: EpochWire {
        EpochWire(sessionID: Secrets.hex(sessionID), epoch: epoch, previous: Secrets.hex(previous), signer: Secrets.hex(signer),
                  members: members.map { .init(userID: Secrets.hex($0.userID), name: $0.name, signingKey: Secrets.hex($0.signingKey)) },
                  wraps: wraps.map { .init(userID: Secrets.hex($0.userID), keyEpoch: $0.keyEpoch, enc: Secrets.hex($0.encapsulatedKey),
                                           ciphertext: Secrets.hex($0.ciphertext)) },
                  sealedName: Secrets.hex(sealedName), signature: Secrets.hex(signature))
    }

    public func member(_ userID: [UInt8]) -> Member? { members.first { $0.userID == userID } }
}

/// The client's acceptance rules for a session's log (docs/KEYS.md 7.4), applied from epoch 0.
public enum EpochChain {
    /// Verifies `documents` as the whole log of `sessionID` and returns it.
    /// - Parameters:
    ///   - isTrusted: whether a listed member's key is the one this client pinned for them; every
    ///     member of every epoch must pass.
    ///   - seen: the highest epoch this client accepted before and its hash: the log must reach it,
    ///     hold it unchanged, and not end below it.
    public static func verify(_ documents: [EpochDocument], sessionID: [UInt8], seen: (epoch: UInt32, hash: [UInt8])? = nil,
                              isTrusted: (EpochDocument.Member) -> Bool) throws(EpochError) -> [EpochDocument] {
        guard !documents.isEmpty else { throw .empty }
        var previous: EpochDocument?
        for (position, document) in documents.enumerated() {
            guard document.sessionID == sessionID else { throw .wrongSession(epoch: document.epoch) }
            guard document.epoch == UInt32(position) else { throw .notConsecutive(expected: UInt32(position), found: document.epoch) }
            for member in document.members where !isTrusted(member) { throw .untrustedMember(epoch: document.epoch, name: member.name) }
            // Epoch 0 is signed by its creator, a member of it; every later one by a member of the
            // epoch before, with the key listed there.
            let authority = previous ?? document
            guard let signer = authority.member(document.signer) else { throw .signerNotMember(epoch: document.epoch) }
            guard let key = try? Ed25519PublicKey(rawRepresentation: signer.signingKey),
                  key.isValidSignature(document.signature, for: document.signedBytes)
            else { throw .badSignature(epoch: document.epoch) }
            let expectedLink = previous?.hash ?? [UInt8](repeating: 0, count: 32)
            guard document.previous == expectedLink else { throw .brokenLink(epoch: document.epoch) }
            previous = document
        }
        if let seen {
            guard let last = documents.last, last.epoch >= seen.epoch else { throw .rolledBack(seen: seen.epoch, offered: documents.last?.epoch ?? 0) }
            guard documents[Int(seen.epoch)].hash == seen.hash else { throw .forked(epoch: seen.epoch) }
        }
        return documents
    }
}
