import Foundation
import Testing
@testable import SafeChatKeys
import SafeChatAPI
import SealedStream

/// Fixtures/keys-v1: a fixed identity, its bundle, fingerprint and export. SafeChat must reproduce
/// them byte for byte, and an independent implementation (Tests/Interop/keys_v1.py, the Python
/// `cryptography` package) checks them from docs/KEYS.md.
@Suite struct IdentityTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let fixtures = root.appendingPathComponent("Fixtures/keys-v1")
    static let passphrase = "correct horse battery staple"

    static func fixedIdentity() throws -> Identity {
        Identity(userID: Array(0x10...0x1f), signingKey: try Ed25519PrivateKey(seed: Array(0x20...0x3f)),
                 agreementKey: try X25519PrivateKey(rawRepresentation: Array(0x40...0x5f)), historyKey: Array(0x60...0x7f))
    }

    func file(_ name: String) throws -> [UInt8] { Array(try Data(contentsOf: Self.fixtures.appendingPathComponent(name))) }

    @Test func theFixturesAreReproducedByteForByte() throws {
        let identity = try Self.fixedIdentity()
        let export = try IdentityFile.export(identity, passphrase: Self.passphrase, salt: Array(0x80...0x8f), nonce: Array(0x90...0x9b))
        if ProcessInfo.processInfo.environment["SAFECHAT_WRITE_FIXTURES"] == "1" {
            try FileManager.default.createDirectory(at: Self.fixtures, withIntermediateDirectories: true)
            try Data(IdentityFile.encode(identity)).write(to: Self.fixtures.appendingPathComponent("identity.json"))
            try Data(identity.publicBundle.encoded() + [0x0a]).write(to: Self.fixtures.appendingPathComponent("bundle.json"))
            try (identity.publicBundle.fingerprint.description + "\n").write(to: Self.fixtures.appendingPathComponent("fingerprint.txt"), atomically: true, encoding: .utf8)
            try Data(export).write(to: Self.fixtures.appendingPathComponent("export.json"))
            try (Self.passphrase + "\n").write(to: Self.fixtures.appendingPathComponent("passphrase.txt"), atomically: true, encoding: .utf8)
        }
        #expect(IdentityFile.encode(identity) == (try file("identity.json")))
        #expect(identity.publicBundle.encoded() + [0x0a] == (try file("bundle.json")))
        #expect(identity.publicBundle.fingerprint.description + "\n" == String(decoding: try file("fingerprint.txt"), as: UTF8.self))
        #expect(export == (try file("export.json")))
    }

    @Test func anIndependentImplementationAgreesWithTheFixtures() throws {
        let (status, output) = try interop("keys_v1.py", [Self.fixtures.path])
        #expect(status == 0, "\(output)")
    }

    @Test func bundlesRoundTripAndAnyChangeIsRefused() throws {
        let identity = try Identity.generate(userID: Secrets.randomBytes(16))
        let bundle = identity.publicBundle
        let decoded = try PublicIdentity(decoding: bundle.encoded())
        #expect(decoded == bundle)
        #expect(decoded.fingerprint == bundle.fingerprint)
        let other = try Identity.generate(userID: identity.userID)
        let text = String(decoding: bundle.encoded(), as: UTF8.self)
        let forged = [
            // Another agreement key under the original signature: a gateway substituting the key that receives wraps.
            text.replacingOccurrences(of: Secrets.hex(identity.agreementKey.publicKey.rawRepresentation),
                                      with: Secrets.hex(other.agreementKey.publicKey.rawRepresentation)),
            // The bundle moved to another account.
            text.replacingOccurrences(of: Secrets.hex(identity.userID), with: Secrets.hex(Secrets.randomBytes(16))),
            // Another signing key with the original signature.
            text.replacingOccurrences(of: Secrets.hex(identity.signingKey.publicKey.rawRepresentation),
                                      with: Secrets.hex(other.signingKey.publicKey.rawRepresentation)),
            text.replacingOccurrences(of: "\"version\":1", with: "\"version\":2"),
            String(text.dropLast(3)),
            "{}",
        ]
        for bad in forged {
            #expect(throws: KeyError.self, "\(bad.prefix(60))") { _ = try PublicIdentity(decoding: Array(bad.utf8)) }
        }
    }

    @Test func fingerprintsAreThirtyDigitsAndTypedOnesParse() throws {
        let fingerprint = try Identity.generate(userID: Secrets.randomBytes(16)).publicBundle.fingerprint
        #expect(fingerprint.description.count == 35 && fingerprint.description.split(separator: " ").count == 6)
        #expect(Fingerprint(typed: fingerprint.description.replacingOccurrences(of: " ", with: "")) == fingerprint)
        #expect(Fingerprint(typed: "12345") == nil)
        #expect(Fingerprint(typed: String(repeating: "a", count: 30)) == nil)
    }

    @Test func exportsOpenOnlyWithThePassphraseAndRefuseWeakParameters() throws {
        let identity = try Identity.generate(userID: Secrets.randomBytes(16))
        let export = try IdentityFile.export(identity, passphrase: "a long passphrase")
        let imported = try IdentityFile.import(export, passphrase: "a long passphrase")
        #expect(imported.publicBundle == identity.publicBundle && imported.historyKey == identity.historyKey)
        #expect(throws: KeyError.wrongPassphrase) { _ = try IdentityFile.import(export, passphrase: "a long passphrasE") }
        var tampered = export
        let at = tampered.count - 10
        tampered[at] = tampered[at] == 0x30 ? 0x31 : 0x30
        #expect(throws: KeyError.wrongPassphrase) { _ = try IdentityFile.import(tampered, passphrase: "a long passphrase") }
        let weak = String(decoding: export, as: UTF8.self).replacingOccurrences(of: "\"iterations\":600000", with: "\"iterations\":1000")
        #expect(throws: KeyError.self) { _ = try IdentityFile.import(Array(weak.utf8), passphrase: "a long passphrase") }
        let huge = String(decoding: export, as: UTF8.self).replacingOccurrences(of: "\"iterations\":600000", with: "\"iterations\":2000000000")
        #expect(throws: KeyError.self) { _ = try IdentityFile.import(Array(huge.utf8), passphrase: "a long passphrase") }
    }

    /// RFC 8032 section 7.1, test 1: the empty message.
    @Test func ed25519MatchesRFC8032() throws {
        let key = try Ed25519PrivateKey(seed: bytes("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
        #expect(Secrets.hex(key.publicKey.rawRepresentation) == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        let signature = key.signature(for: [])
        #expect(Secrets.hex(signature) == "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
        #expect(key.publicKey.isValidSignature(signature, for: []))
        #expect(!key.publicKey.isValidSignature(signature, for: [0]))
    }
}

/// Fixtures/keys-v1/epoch0.*: a fixed epoch 0 (two members, wraps with fixed ephemeral seeds),
/// reproduced byte for byte here and checked from docs/KEYS.md by Tests/Interop/epoch_v1.py.
@Suite struct EpochFixtureTests {
    func file(_ name: String) throws -> String {
        try String(contentsOf: IdentityTests.fixtures.appendingPathComponent(name), encoding: .utf8)
    }

    static func fixture() throws -> (EpochDocument, SessionKey, [String: String]) {
        let alice = try IdentityTests.fixedIdentity()
        let bob = Identity(userID: Array(0xb0...0xbf), signingKey: try Ed25519PrivateKey(seed: Array(0xc0...0xdf)),
                           agreementKey: try X25519PrivateKey(rawRepresentation: Array(0xe0...0xff)), historyKey: Array(repeating: 0, count: 32))
        let key = try SessionKey(bytes: Array(0x00...0x1f).map { $0 ^ 0x5a })
        let members = [alice, bob].enumerated().map { index, identity in
            (member: EpochDocument.Member(userID: identity.userID, name: index == 0 ? "user1" : "user2",
                                          signingKey: identity.signingKey.publicKey.rawRepresentation),
             agreementKey: identity.agreementKey.publicKey)
        }
        let document = try EpochDocument.make(sessionID: Array(0xa0...0xaf), epoch: 0, previous: nil, signer: alice, members: members, key: key,
                                              ephemeralSeed: { userID, epoch in SHA256Hasher.hash(Array("fixture ephemeral".utf8) + userID + [UInt8(epoch)]) })
        let recipients = [Secrets.hex(alice.userID): Secrets.hex(alice.agreementKey.rawRepresentation),
                          Secrets.hex(bob.userID): Secrets.hex(bob.agreementKey.rawRepresentation)]
        return (document, key, recipients)
    }

    @Test func theEpochFixtureIsReproducedAndCheckedIndependently() throws {
        let (document, key, recipients) = try Self.fixture()
        let json = String(decoding: try WireCoding.encoder.encode(document.wire), as: UTF8.self) + "\n"
        let recipientsJSON = String(decoding: try JSONSerialization.data(withJSONObject: recipients, options: [.sortedKeys]), as: UTF8.self) + "\n"
        if ProcessInfo.processInfo.environment["SAFECHAT_WRITE_FIXTURES"] == "1" {
            let dir = IdentityTests.fixtures
            try json.write(to: dir.appendingPathComponent("epoch0.json"), atomically: true, encoding: .utf8)
            try (Secrets.hex(document.signedBytes) + "\n").write(to: dir.appendingPathComponent("epoch0.signed.hex"), atomically: true, encoding: .utf8)
            try (Secrets.hex(document.hash) + "\n").write(to: dir.appendingPathComponent("epoch0.hash.hex"), atomically: true, encoding: .utf8)
            try (Secrets.hex(key.rawBytes) + "\n").write(to: dir.appendingPathComponent("epoch0.key.hex"), atomically: true, encoding: .utf8)
            try recipientsJSON.write(to: dir.appendingPathComponent("epoch0.recipients.json"), atomically: true, encoding: .utf8)
        }
        #expect(json == (try file("epoch0.json")))
        #expect(Secrets.hex(document.signedBytes) + "\n" == (try file("epoch0.signed.hex")))
        #expect(Secrets.hex(document.hash) + "\n" == (try file("epoch0.hash.hex")))
        // And it verifies and opens here too.
        _ = try EpochChain.verify([try EpochDocument(try WireCoding.decoder.decode(EpochWire.self, from: Data(json.utf8)))],
                                  sessionID: Array(0xa0...0xaf)) { _ in true }

        let (status, output) = try interop("epoch_v1.py", [IdentityTests.fixtures.path])
        #expect(status == 0, "\(output)")
    }
}

/// Runs one of the independent implementations in Tests/Interop (Python) and returns its exit
/// status and output (stdout and stderr).
func interop(_ script: String, _ arguments: [String], stderr: Bool = true) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", IdentityTests.root.appendingPathComponent("Tests/Interop/\(script)").path] + arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = stderr ? pipe : FileHandle.nullDevice
    try process.run()
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, output.trimmingCharacters(in: .whitespacesAndNewlines))
}
