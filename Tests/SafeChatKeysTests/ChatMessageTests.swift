import Foundation
import Testing
@testable import SafeChatKeys
import SealedStream

/// Chat messages (issue 11's core): sealed per message, signed by the sender, bound to session,
/// epoch, sender, id and time.
@Suite struct ChatMessageTests {
    let alice = try! Identity.generate(userID: Secrets.randomBytes(16))
    let bob = try! Identity.generate(userID: Secrets.randomBytes(16))
    let sessionID = Secrets.randomBytes(16)
    let sessionKey = SessionKey.random()
    var chatKey: [UInt8] { ChatMessage.chatKey(sessionKey, sessionID: sessionID, epoch: 3) }

    @Test func aMessageOpensForMembersWithTheSendersKey() throws {
        let message = try ChatMessage.seal("the dataset is file 0123 — 40 GB", sessionID: sessionID, epoch: 3, chatKey: chatKey, from: alice, sentAt: 1_764_000_000_000)
        #expect(try message.open(chatKey: chatKey, senderKey: alice.signingKey.publicKey) == "the dataset is file 0123 — 40 GB")
        #expect(!message.ciphertext.isEmpty && message.ciphertext.count == Array("the dataset is file 0123 — 40 GB".utf8).count + 16)
    }

    @Test func tamperingImpersonationAndOtherKeysAreRejected() throws {
        let message = try ChatMessage.seal("hello", sessionID: sessionID, epoch: 3, chatKey: chatKey, from: alice, sentAt: 1000)
        func with(sender: [UInt8]? = nil, epoch: UInt32? = nil, messageID: [UInt8]? = nil, sentAt: UInt64? = nil,
                  ciphertext: [UInt8]? = nil, signature: [UInt8]? = nil) -> ChatMessage {
            ChatMessage(sessionID: message.sessionID, epoch: epoch ?? message.epoch, sender: sender ?? message.sender,
                        messageID: messageID ?? message.messageID, sentAt: sentAt ?? message.sentAt,
                        ciphertext: ciphertext ?? message.ciphertext, signature: signature ?? message.signature)
        }
        var flipped = message.ciphertext
        flipped[0] ^= 1
        let key = alice.signingKey.publicKey
        #expect(throws: ChatError.badSignature) { _ = try with(ciphertext: flipped).open(chatKey: chatKey, senderKey: key) }
        #expect(throws: ChatError.badSignature) { _ = try with(sentAt: 2000).open(chatKey: chatKey, senderKey: key) }
        #expect(throws: ChatError.badSignature) { _ = try with(epoch: 4).open(chatKey: chatKey, senderKey: key) }
        #expect(throws: ChatError.badSignature) { _ = try with(messageID: Secrets.randomBytes(16)).open(chatKey: chatKey, senderKey: key) }
        // bob claims alice's message as his: his key does not verify alice's signature.
        #expect(throws: ChatError.badSignature) { _ = try with(sender: bob.userID).open(chatKey: chatKey, senderKey: bob.signingKey.publicKey) }
        // bob signs a message that says it is alice's: verified against alice's key, it fails.
        let forged = try ChatMessage.seal("send me the key", sessionID: sessionID, epoch: 3, chatKey: chatKey, from: bob, sentAt: 1000)
        #expect(throws: ChatError.badSignature) { _ = try forged.open(chatKey: chatKey, senderKey: key) }
        // Another epoch's chat key does not decrypt it (the signature is still alice's).
        let other = ChatMessage.chatKey(sessionKey, sessionID: sessionID, epoch: 4)
        #expect(throws: ChatError.authenticationFailed) { _ = try message.open(chatKey: other, senderKey: key) }
        #expect(throws: ChatError.malformed) { _ = try with(signature: [1, 2, 3]).open(chatKey: chatKey, senderKey: key) }
    }

    @Test func everyMessageHasItsOwnKeySoNoNonceRepeatsUnderOne() throws {
        let a = try ChatMessage.seal("same text", sessionID: sessionID, epoch: 3, chatKey: chatKey, from: alice, sentAt: 1)
        let b = try ChatMessage.seal("same text", sessionID: sessionID, epoch: 3, chatKey: chatKey, from: alice, sentAt: 1)
        #expect(a.messageID != b.messageID && a.ciphertext != b.ciphertext)
        #expect(ChatMessage.messageKey(chatKey, messageID: a.messageID) != ChatMessage.messageKey(chatKey, messageID: b.messageID))
    }
}
