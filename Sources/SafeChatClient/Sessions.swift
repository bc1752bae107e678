import Foundation
import SafeChatAPI
import SafeChatKeys
import AsyncHTTPClient
import NIOCore
import SealedStream

/// What this device remembers of each session: the highest epoch it accepted and that epoch's
/// hash (a log that ends lower, or differs there, is refused). `$XDG_DATA_HOME/safechat/sessions.json`, 0600.
public struct SessionStateStore: Sendable {
    public struct Seen: Codable, Sendable {
        public var epoch: UInt32
        public var hash: String
    }
    struct File: Codable { var version = 1; var sessions: [String: Seen] }

    public let path: String
    public init(identities: IdentityStore = IdentityStore()) { path = identities.directory + "/sessions.json" }

    public func seen(_ id: String) throws -> Seen? { try read().sessions[id] }

    public func all() throws -> [String: Seen] { try read().sessions }

    func record(_ id: String, epoch: UInt32, hash: [UInt8]) throws {
        var file = try read()
        file.sessions[id] = Seen(epoch: epoch, hash: Secrets.hex(hash))
        let directory = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let writer = try AtomicFileWriter(destination: path, permissions: 0o600)
        try writer.write(Array(try WireJSON.encoder.encode(file)))
        try writer.commit()
    }

    private func read() throws -> File {
        guard let data = FileManager.default.contents(atPath: path) else { return File(sessions: [:]) }
        guard let file = try? WireJSON.decoder.decode(File.self, from: data), file.version == 1 else {
            throw ClientError.identityMismatch("\(path) is damaged; it records the session logs you accepted, so it is not replaced silently")
        }
        return file
    }
}

/// Sessions from this device's side: every log is verified from epoch 0 against the pins before
/// anything in it is used, and every key comes from a verified epoch.
public struct SessionClient: Sendable {
    public let client: GatewayClient
    public let identity: Identity
    public let user: String
    let pins: PinStore
    let state: SessionStateStore

    public init(session: ClientSession, identity: Identity, identities: IdentityStore = IdentityStore()) {
        client = GatewayClient(session: session)
        self.identity = identity
        user = session.user
        pins = PinStore(identities: identities)
        state = SessionStateStore(identities: identities)
    }

    /// A member entry and agreement key for `name`, from its pinned, verified bundle.
    func member(_ name: String) async throws -> (member: EpochDocument.Member, agreementKey: X25519PublicKey) {
        let bundle: PublicIdentity
        if name == user {
            bundle = identity.publicBundle
        } else {
            (bundle, _) = try await Identities.trusted(name, from: client, pins: pins)
        }
        return (.init(userID: bundle.userID, name: name, signingKey: bundle.signingKey.rawRepresentation), bundle.agreementKey)
    }

    /// Creates a session with `members` (besides this user); returns its id.
    public func create(name: String?, with members: [String]) async throws -> String {
        let sessionID = Secrets.randomBytes(16)
        var entries = [try await member(user)]
        for name in members where name != user && !entries.contains(where: { $0.member.name == name }) { entries.append(try await member(name)) }
        let key = SessionKey.random()
        let sealedName = try await name.asyncMap { try await SessionName.seal($0, key: key, sessionID: sessionID, epoch: 0) } ?? []
        let epoch0 = try EpochDocument.make(sessionID: sessionID, epoch: 0, previous: nil, signer: identity, members: entries, key: key,
                                            sealedName: sealedName)
        _ = try await post("/sessions", epoch0)
        try state.record(Secrets.hex(sessionID), epoch: 0, hash: epoch0.hash)
        return Secrets.hex(sessionID)
    }

    /// The session's whole log, verified (docs/KEYS.md 7.4) and remembered.
    ///
    /// Every member listed must be pinned with exactly that key. A member this device has not met
    /// yet is checked against the identity the gateway publishes for them: the two must agree, and
    /// they are pinned only once the whole log has verified. Conflicting evidence (the log lists one
    /// key, the gateway's bundle is another) pins nothing and refuses the log with both fingerprints.
    public func verifiedChain(_ id: String) async throws -> [EpochDocument] {
        guard let sessionID = Secrets.bytes(fromHex: id, count: 16) else { throw ClientError.protocolViolation("'\(id)' is not a session id") }
        let chain: SessionChain
        do {
            chain = try await client.json(SessionChain.self, try await client.send(client.request(.GET, "/sessions/\(id)")))
        } catch ClientError.server(status: 404, let code, let message) {
            guard let seen = try state.seen(id) else { throw ClientError.server(status: 404, code: code, message: message) }
            throw ClientError.identityMismatch("the gateway no longer shows you session \(id) (you last verified it at epoch \(seen.epoch)): "
                                               + "you were removed from it, or the gateway is withholding it")
        }
        let documents = try chain.epochs.map(EpochDocument.init)
        var newcomers: [String: PublicIdentity] = [:]
        for document in documents {
            for member in document.members where newcomers[member.name] == nil {
                if let bundle = try await firstContact(member, in: document, session: id) { newcomers[member.name] = bundle }
            }
        }
        let seen = try state.seen(id).flatMap { seen in Secrets.bytes(fromHex: seen.hash, count: 32).map { (seen.epoch, $0) } }
        // Every member passed the checks above (pinned, or met now with the key the gateway also serves).
        let verified = try EpochChain.verify(documents, sessionID: sessionID, seen: seen) { _ in true }
        for (name, bundle) in newcomers.sorted(by: { $0.key < $1.key }) { _ = try pins.check(name, bundle) }
        try state.record(id, epoch: verified.last!.epoch, hash: verified.last!.hash)
        return verified
    }

    /// Checks `member` as `document` lists them against this device's pin. Returns the identity to
    /// pin if this is the first time this device meets them (the gateway's bundle, which must carry
    /// the key listed); throws if the listed key is not the pinned one, or conflicts with the bundle.
    private func firstContact(_ member: EpochDocument.Member, in document: EpochDocument, session: String) async throws -> PublicIdentity? {
        let listed = Fingerprint(signingKey: try Ed25519PublicKey(rawRepresentation: member.signingKey)).description
        let place = "epoch \(document.epoch) of session \(session)"
        if member.userID == identity.userID {
            guard member.signingKey == identity.signingKey.publicKey.rawRepresentation else {
                throw ClientError.refused("\(place) lists you (\(member.name)) with a key that is not yours (fingerprint \(listed); yours is "
                                          + "\(identity.publicBundle.fingerprint)): the log is forged")
            }
            return nil
        }
        if let pinned = try pins.pin(for: member.name) {
            guard pinned.signingKey == Secrets.hex(member.signingKey), pinned.userID == Secrets.hex(member.userID) else {
                throw ClientError.keyChanged(user: member.name, pinned: pinned.fingerprint, offered: listed, context: place)
            }
            return nil
        }
        let bundle: PublicIdentity
        do { bundle = try await Identities.fetch(member.name, from: client) } catch {
            throw ClientError.refused("\(place) lists \(member.name) (fingerprint \(listed)), whom this device has not met, and the gateway "
                                      + "serves no identity for them that verifies (\(error)); nothing was pinned")
        }
        guard bundle.signingKey.rawRepresentation == member.signingKey, bundle.userID == member.userID else {
            throw ClientError.refused("\(place) lists \(member.name) with fingerprint \(listed), but the gateway serves \(member.name)'s "
                                      + "identity with fingerprint \(bundle.fingerprint): one of them is not \(member.name)'s key. Nothing was "
                                      + "pinned. Compare fingerprints with \(member.name) out of band; once the gateway serves the one they "
                                      + "confirm, run `safechat keys trust \(member.name) FINGERPRINT`")
        }
        return bundle
    }

    /// The key of `epoch` (the current one by default): the wrap get_chat_key serves must be the
    /// one in the verified log, and only this device's identity opens it.
    public func key(_ id: String, epoch: UInt32? = nil) async throws -> (epoch: UInt32, key: SessionKey) {
        let chain = try await verifiedChain(id)
        let wanted = epoch ?? chain.last!.epoch
        if chain.last!.member(identity.userID) == nil, let removal = chain.first(where: { $0.epoch > 0 && $0.member(identity.userID) == nil }) {
            let by = chain[Int(removal.epoch) - 1].member(removal.signer)?.name
            throw ClientError.identityMismatch("you were removed from session \(id) in epoch \(removal.epoch)"
                                               + (by.map { $0 == user ? " (you left)" : " by \($0)" } ?? ""))
        }
        let reply = try await client.json(WrappedKeyReply.self, try await client.send(
            client.request(.GET, "/get_chat_key?session=\(id)&epoch=\(wanted)")))
        guard let document = chain.last(where: { doc in doc.wraps.contains { $0.userID == identity.userID && $0.keyEpoch == wanted } }),
              let wrap = document.wraps.first(where: { $0.userID == identity.userID && $0.keyEpoch == wanted }),
              Secrets.hex(wrap.encapsulatedKey) == reply.wrap.enc, Secrets.hex(wrap.ciphertext) == reply.wrap.ciphertext
        else { throw ClientError.protocolViolation("the gateway served a wrapped key for epoch \(wanted) that is not in the session's signed log") }
        return (wanted, try document.openKey(epoch: wanted, for: identity))
    }

    /// The session's name as its current epoch carries it, if this device can open it.
    public func name(_ id: String) async throws -> String? {
        let chain = try await verifiedChain(id)
        return try await currentName(chain)
    }

    private func currentName(_ chain: [EpochDocument]) async throws -> String? {
        let last = chain.last!
        // A member who left holds no wrap of the current key: then there is no name to show, not an error.
        guard !last.sealedName.isEmpty, let key = try? last.openKey(epoch: last.epoch, for: identity) else { return nil }
        return await SessionName.open(last.sealedName, key: key, sessionID: last.sessionID, epoch: last.epoch)
    }

    /// Adds `name`: a new epoch with a new key. With `shareHistory`, every earlier key this device
    /// holds is wrapped for them too.
    public func add(_ id: String, _ name: String, shareHistory: Bool) async throws -> UInt32 {
        let chain = try await verifiedChain(id)
        var names = chain.last!.members.map(\.name)
        guard !names.contains(name) else { throw ClientError.identityMismatch("\(name) is already a member") }
        names.append(name)
        var history: [(UInt32, SessionKey)] = []
        if shareHistory {
            for epoch in 0...chain.last!.epoch {
                if let document = chain.last(where: { doc in doc.wraps.contains { $0.userID == identity.userID && $0.keyEpoch == epoch } }) {
                    history.append((epoch, try document.openKey(epoch: epoch, for: identity)))
                }
            }
        }
        return try await rotate(id, chain: chain, members: names, history: history, newcomer: name)
    }

    /// Removes `name` (or this user, to leave): a new epoch whose key they never receive.
    public func remove(_ id: String, _ name: String) async throws -> UInt32 {
        let chain = try await verifiedChain(id)
        let names = chain.last!.members.map(\.name).filter { $0 != name }
        guard names.count < chain.last!.members.count else { throw ClientError.identityMismatch("\(name) is not a member") }
        guard !names.isEmpty else { throw ClientError.identityMismatch("the last member cannot leave") }
        return try await rotate(id, chain: chain, members: names, history: [], newcomer: nil)
    }

    private func rotate(_ id: String, chain: [EpochDocument], members names: [String], history: [(UInt32, SessionKey)], newcomer: String?) async throws -> UInt32 {
        var entries: [(member: EpochDocument.Member, agreementKey: X25519PublicKey)] = []
        for name in names { entries.append(try await member(name)) }
        let historyFor = Set(entries.filter { $0.member.name == newcomer }.map(\.member.userID))
        // The name moves to the new key, so only the new members can read it.
        let key = SessionKey.random(), epoch = chain.last!.epoch + 1
        let sealedName = try await (try await currentName(chain)).asyncMap {
            try await SessionName.seal($0, key: key, sessionID: chain.last!.sessionID, epoch: epoch)
        } ?? []
        let next = try EpochDocument.make(sessionID: chain.last!.sessionID, epoch: epoch, previous: chain.last!, signer: identity,
                                          members: entries, key: key, history: history.map { (epoch: $0.0, key: $0.1) },
                                          historyFor: historyFor, sealedName: sealedName)
        _ = try await post("/sessions/\(id)/epochs", next)
        try state.record(id, epoch: next.epoch, hash: next.hash)
        return next.epoch
    }

    private func post(_ path: String, _ document: EpochDocument) async throws -> HTTPClientResponse {
        var request = client.request(.POST, path, headers: [("Content-Type", "application/json")])
        request.body = .bytes(ByteBuffer(bytes: try WireCoding.encoder.encode(document.wire)))
        return try await client.send(request, timeout: .seconds(60))
    }
}
