import Foundation
import Testing
@testable import SafeChatKeys
import SafeChatAPI
import SealedStream

/// The membership log against a gateway that lies: every forgery the issue lists is refused by the
/// client's rules (EpochChain.verify) or by HPKE's binding of each wrap.
@Suite struct EpochTests {
    struct User {
        let name: String
        let identity: Identity
        var member: EpochDocument.Member { .init(userID: identity.userID, name: name, signingKey: identity.signingKey.publicKey.rawRepresentation) }
        var entry: (member: EpochDocument.Member, agreementKey: X25519PublicKey) { (member, identity.agreementKey.publicKey) }
    }

    let alice = User(name: "alice", identity: try! Identity.generate(userID: Secrets.randomBytes(16)))
    let bob = User(name: "bob", identity: try! Identity.generate(userID: Secrets.randomBytes(16)))
    let carol = User(name: "carol", identity: try! Identity.generate(userID: Secrets.randomBytes(16)))
    let gateway = User(name: "bob", identity: try! Identity.generate(userID: Secrets.randomBytes(16)))
    let sessionID = Secrets.randomBytes(16)
    let keys = (0..<4).map { _ in SessionKey.random() }

    /// The pins of an honest client: the real keys of alice, bob and carol.
    func trusted(_ member: EpochDocument.Member) -> Bool {
        [alice, bob, carol].contains { $0.identity.userID == member.userID && $0.member.signingKey == member.signingKey }
    }

    /// Epoch 0: alice creates with bob. 1: bob adds carol (history shared with her). 2: alice removes bob.
    func chain() throws -> [EpochDocument] {
        let e0 = try EpochDocument.make(sessionID: sessionID, epoch: 0, previous: nil, signer: alice.identity, members: [alice.entry, bob.entry], key: keys[0])
        let e1 = try EpochDocument.make(sessionID: sessionID, epoch: 1, previous: e0, signer: bob.identity,
                                        members: [alice.entry, bob.entry, carol.entry], key: keys[1],
                                        history: [(0, keys[0])], historyFor: [carol.identity.userID])
        let e2 = try EpochDocument.make(sessionID: sessionID, epoch: 2, previous: e1, signer: alice.identity, members: [alice.entry, carol.entry], key: keys[2])
        return [e0, e1, e2]
    }

    func key(_ key: SessionKey) -> [UInt8] { key.rawBytes }

    @Test func anHonestLogVerifiesAndEachMemberOpensOnlyTheirKeys() throws {
        let log = try chain()
        _ = try EpochChain.verify(log, sessionID: sessionID, isTrusted: trusted)
        #expect(key(try log[0].openKey(epoch: 0, for: bob.identity)) == key(keys[0]))
        #expect(key(try log[1].openKey(epoch: 1, for: carol.identity)) == key(keys[1]))
        #expect(key(try log[1].openKey(epoch: 0, for: carol.identity)) == key(keys[0]), "history shared with carol")
        #expect(throws: KeyError.openFailed) { _ = try log[1].openKey(epoch: 0, for: alice.identity) }
        // The removed member gets no wrap of the new key, and a wrap for someone else does not open for him.
        #expect(throws: KeyError.openFailed) { _ = try log[2].openKey(epoch: 2, for: bob.identity) }
        // Round trip through the wire form.
        for document in log { #expect(try EpochDocument(document.wire) == document) }
    }

    @Test func withoutSharedHistoryANewcomerGetsOnlyTheNewKey() throws {
        let e0 = try EpochDocument.make(sessionID: sessionID, epoch: 0, previous: nil, signer: alice.identity, members: [alice.entry], key: keys[0])
        let e1 = try EpochDocument.make(sessionID: sessionID, epoch: 1, previous: e0, signer: alice.identity, members: [alice.entry, carol.entry], key: keys[1])
        #expect(key(try e1.openKey(epoch: 1, for: carol.identity)) == key(keys[1]))
        #expect(throws: KeyError.openFailed) { _ = try e1.openKey(epoch: 0, for: carol.identity) }
        #expect(throws: KeyError.openFailed) { _ = try e0.openKey(epoch: 0, for: carol.identity) }
    }

    @Test func forgeriesAreRefused() throws {
        let log = try chain()
        func expectRefused(_ documents: [EpochDocument], _ expected: EpochError, seen: (UInt32, [UInt8])? = nil,
                           sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(throws: expected, sourceLocation: sourceLocation) {
                _ = try EpochChain.verify(documents, sessionID: sessionID, seen: seen, isTrusted: trusted)
            }
        }
        // An epoch adding a member that no member signed: the gateway signs it itself.
        let unsigned = try EpochDocument.make(sessionID: sessionID, epoch: 3, previous: log[2], signer: gateway.identity,
                                              members: [alice.entry, carol.entry, gateway.entry], key: keys[3])
        expectRefused(log + [unsigned], .untrustedMember(epoch: 3, name: "bob"))
        let unsignedTrusted = try EpochDocument.make(sessionID: sessionID, epoch: 3, previous: log[2], signer: gateway.identity,
                                                     members: [alice.entry, carol.entry], key: keys[3])
        expectRefused(log + [unsignedTrusted], .signerNotMember(epoch: 3))
        // An epoch signed by a removed member (bob was removed in epoch 2) adding himself back.
        let byRemoved = try EpochDocument.make(sessionID: sessionID, epoch: 3, previous: log[2], signer: bob.identity,
                                               members: [alice.entry, bob.entry, carol.entry], key: keys[3])
        expectRefused(log + [byRemoved], .signerNotMember(epoch: 3))
        // An epoch 0 signed by someone it does not list: it has no epoch before, and says so.
        let strangerCreated = try EpochDocument.make(sessionID: sessionID, epoch: 0, previous: nil, signer: gateway.identity,
                                                     members: [alice.entry, bob.entry], key: keys[0])
        #expect(throws: EpochError.signerNotMember(epoch: 0)) {
            _ = try EpochChain.verify([strangerCreated], sessionID: sessionID, isTrusted: trusted)
        }
        #expect(EpochError.signerNotMember(epoch: 0).description == "epoch 0 is signed by someone who is not among its members (a session's creator signs it)")
        #expect(EpochError.signerNotMember(epoch: 3).description == "epoch 3 is signed by someone who was not a member of epoch 2")
        // A substituted public key: bob listed with a key the gateway holds.
        let substituted = try EpochDocument.make(sessionID: sessionID, epoch: 3, previous: log[2], signer: alice.identity,
                                                 members: [alice.entry, carol.entry, (gateway.member, gateway.identity.agreementKey.publicKey)], key: keys[3])
        expectRefused(log + [substituted], .untrustedMember(epoch: 3, name: "bob"))
        // A rolled-back log, and a forked one.
        expectRefused(Array(log.prefix(2)), .rolledBack(seen: 2, offered: 1), seen: (2, log[2].hash))
        let otherE1 = try EpochDocument.make(sessionID: sessionID, epoch: 1, previous: log[0], signer: alice.identity,
                                             members: [alice.entry, bob.entry], key: keys[1])
        expectRefused([log[0], otherE1], .forked(epoch: 1), seen: (1, log[1].hash))
        // An epoch from another session.
        let elsewhere = try EpochDocument.make(sessionID: Secrets.randomBytes(16), epoch: 3, previous: log[2], signer: alice.identity,
                                               members: [alice.entry, carol.entry], key: keys[3])
        expectRefused(log + [elsewhere], .wrongSession(epoch: 3))
        // Numbers that skip, links that break, a signature over other bytes.
        expectRefused([log[0], log[2]], .notConsecutive(expected: 1, found: 2))
        let relinked = EpochDocument(sessionID: sessionID, epoch: 1, previous: Secrets.randomBytes(32), signer: log[1].signer,
                                     members: log[1].members, wraps: log[1].wraps, signature: log[1].signature)
        expectRefused([log[0], relinked], .badSignature(epoch: 1))
        // A wrap the gateway made itself (for bob, under a key it knows), or a tampered one.
        let forgedWrap = try HPKE.seal(key(keys[3]), for: bob.identity.agreementKey.publicKey,
                                       info: EpochDocument.wrapInfo(sessionID: sessionID, keyEpoch: 1, recipientSigningKey: bob.member.signingKey), aad: [])
        var wraps = log[1].wraps
        let bobsWrap = wraps.firstIndex { $0.userID == bob.identity.userID }!
        wraps[bobsWrap] = .init(userID: bob.identity.userID, keyEpoch: 1, encapsulatedKey: forgedWrap.encapsulatedKey, ciphertext: forgedWrap.ciphertext)
        let injected = EpochDocument(sessionID: sessionID, epoch: 1, previous: log[1].previous, signer: log[1].signer,
                                     members: log[1].members, wraps: wraps, signature: log[1].signature)
        expectRefused([log[0], injected], .badSignature(epoch: 1))
    }

    /// Even inside a validly signed epoch, a wrap opens only for the recipient, session and epoch
    /// its HPKE info names.
    @Test func wrapsAreBoundToRecipientSessionAndEpoch() throws {
        let log = try chain()
        let carolsWrap = log[1].wraps.first { $0.userID == carol.identity.userID && $0.keyEpoch == 1 }!
        func opens(_ wrap: EpochDocument.Wrap, as user: User, session: [UInt8], epoch: UInt32) -> Bool {
            (try? HPKE.open(.init(encapsulatedKey: wrap.encapsulatedKey, ciphertext: wrap.ciphertext), with: user.identity.agreementKey,
                            info: EpochDocument.wrapInfo(sessionID: session, keyEpoch: epoch, recipientSigningKey: user.member.signingKey), aad: [])) != nil
        }
        #expect(opens(carolsWrap, as: carol, session: sessionID, epoch: 1))
        #expect(!opens(carolsWrap, as: bob, session: sessionID, epoch: 1), "another recipient")
        #expect(!opens(carolsWrap, as: carol, session: Secrets.randomBytes(16), epoch: 1), "another session")
        #expect(!opens(carolsWrap, as: carol, session: sessionID, epoch: 2), "another epoch")
        var tampered = carolsWrap.ciphertext
        tampered[3] ^= 1
        #expect(!opens(.init(userID: carolsWrap.userID, keyEpoch: 1, encapsulatedKey: carolsWrap.encapsulatedKey, ciphertext: tampered),
                       as: carol, session: sessionID, epoch: 1), "tampered")
    }

    @Test func malformedWireDocumentsAreRefusedBeforeAnyCrypto() throws {
        let wire = try chain()[0].wire
        let bad = [
            EpochWire(version: 2, sessionID: wire.sessionID, epoch: 0, previous: wire.previous, signer: wire.signer, members: wire.members, wraps: wire.wraps, signature: wire.signature),
            EpochWire(sessionID: "zz", epoch: 0, previous: wire.previous, signer: wire.signer, members: wire.members, wraps: wire.wraps, signature: wire.signature),
            EpochWire(sessionID: wire.sessionID, epoch: 0, previous: wire.previous, signer: wire.signer,
                      members: [.init(userID: wire.members[0].userID, name: "", signingKey: wire.members[0].signingKey)], wraps: wire.wraps, signature: wire.signature),
            EpochWire(sessionID: wire.sessionID, epoch: 0, previous: wire.previous, signer: wire.signer, members: wire.members,
                      wraps: [.init(userID: wire.wraps[0].userID, keyEpoch: 0, enc: wire.wraps[0].enc, ciphertext: "00")], signature: wire.signature),
        ]
        for document in bad { #expect(throws: EpochError.self) { _ = try EpochDocument(document) } }
    }
}
