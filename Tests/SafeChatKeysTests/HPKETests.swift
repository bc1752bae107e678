import Foundation
import Testing
@testable import SafeChatKeys
import SealedStream

func bytes(_ hex: String) -> [UInt8] {
    var out: [UInt8] = []
    var index = hex.startIndex
    while index < hex.endIndex {
        let next = hex.index(index, offsetBy: 2)
        out.append(UInt8(hex[index..<next], radix: 16)!)
        index = next
    }
    return out
}

/// RFC 9180 Appendix A.1.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, base mode. The
/// KEM and KDF are the ones SafeChat uses; only the AEAD's key length differs from its suite.
@Suite struct HPKEKnownAnswerTests {
    static let info = bytes("4f6465206f6e2061204772656369616e2055726e")
    static let ikmE = bytes("7268600d403fce431561aef583ee1613527cff655c1343f29812e66706df3234")
    static let ikmR = bytes("6db9df30aa07dd42ee5e8181afdb977e538f5e1fec8a06223f33f7013e525037")

    @Test func deriveKeyPairMatchesTheRFC() throws {
        let ephemeral = try HPKE.deriveKeyPair(ikm: Self.ikmE)
        #expect(Secrets.hex(ephemeral.rawRepresentation) == "52c4a758a802cd8b936eceea314432798d5baf2d7e9235dc084ab1b9cfa2f736")
        #expect(Secrets.hex(ephemeral.publicKey.rawRepresentation) == "37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431")
        let recipient = try HPKE.deriveKeyPair(ikm: Self.ikmR)
        #expect(Secrets.hex(recipient.rawRepresentation) == "4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8")
        #expect(Secrets.hex(recipient.publicKey.rawRepresentation) == "3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d")
    }

    @Test func theKeyScheduleAndTheFirstCiphertextMatchTheRFC() throws {
        let recipient = try HPKE.deriveKeyPair(ikm: Self.ikmR)
        let aad = bytes("436f756e742d30")  // "Count-0"
        let plaintext = bytes("4265617574792069732074727574682c20747275746820626561757479")
        let sealed = try HPKE.seal(plaintext, for: recipient.publicKey, info: Self.info, aad: aad, aead: .aes128GCM, ephemeralSeed: Self.ikmE)
        #expect(Secrets.hex(sealed.encapsulatedKey) == "37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431")
        #expect(Secrets.hex(sealed.ciphertext) == "f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a96d8770ac83d07bea87e13c512a")
        let context = try HPKE.receiverContext(sealed.encapsulatedKey, recipient: recipient, info: Self.info, aead: .aes128GCM)
        #expect(Secrets.hex(context.sharedSecret) == "fe0e18c9f024ce43799ae393c7e8fe8fce9d218875e8227b0187c04e7d2ea1fc")
        #expect(Secrets.hex(context.key) == "4531685d41d65f03dc48f6b8302c05b0")
        #expect(Secrets.hex(context.baseNonce) == "56d890e5accaaf011cff4b7d")
        #expect(Secrets.hex(context.exporterSecret) == "45ff1c2e220db587171952c0592d5f5ebe103f1561a2614e38f2ffd47e99e3f8")
        #expect(try HPKE.open(sealed, with: recipient, info: Self.info, aad: aad, aead: .aes128GCM) == plaintext)
    }
}

@Suite struct HPKEMisuseTests {
    let recipient = X25519PrivateKey()
    let key = Secrets.randomBytes(32)
    let info = Array("SafeChat wrap v1 session=abc epoch=3".utf8)
    let aad = Array("recipient=fp".utf8)

    @Test func everyChangeIsRefused() throws {
        let sealed = try HPKE.seal(key, for: recipient.publicKey, info: info, aad: aad)
        #expect(try HPKE.open(sealed, with: recipient, info: info, aad: aad) == key)
        var flippedCiphertext = sealed.ciphertext
        flippedCiphertext[0] ^= 1
        var flippedTag = sealed.ciphertext
        flippedTag[flippedTag.count - 1] ^= 0x80
        var flippedEnc = sealed.encapsulatedKey
        flippedEnc[5] ^= 1
        let cases: [(String, HPKE.Sealed, X25519PrivateKey, [UInt8], [UInt8])] = [
            ("ciphertext", .init(encapsulatedKey: sealed.encapsulatedKey, ciphertext: flippedCiphertext), recipient, info, aad),
            ("tag", .init(encapsulatedKey: sealed.encapsulatedKey, ciphertext: flippedTag), recipient, info, aad),
            ("enc", .init(encapsulatedKey: flippedEnc, ciphertext: sealed.ciphertext), recipient, info, aad),
            ("another recipient", sealed, X25519PrivateKey(), info, aad),
            ("another info (session or epoch)", sealed, recipient, Array("SafeChat wrap v1 session=abc epoch=4".utf8), aad),
            ("another aad", sealed, recipient, info, Array("recipient=other".utf8)),
            ("truncated", .init(encapsulatedKey: sealed.encapsulatedKey, ciphertext: Array(sealed.ciphertext.prefix(15))), recipient, info, aad),
            ("short enc", .init(encapsulatedKey: Array(sealed.encapsulatedKey.prefix(31)), ciphertext: sealed.ciphertext), recipient, info, aad),
        ]
        for (name, tampered, key, info, aad) in cases {
            #expect(throws: KeyError.openFailed, "\(name)") { _ = try HPKE.open(tampered, with: key, info: info, aad: aad) }
        }
    }

    @Test func aLowOrderPublicKeyIsRefused() throws {
        // The all-zero point and another of RFC 7748's low-order points give an all-zero secret.
        for point in [[UInt8](repeating: 0, count: 32), [1] + [UInt8](repeating: 0, count: 31)] {
            let key = try X25519PublicKey(rawRepresentation: point)
            #expect(throws: KeyError.self) { _ = try HPKE.seal(Secrets.randomBytes(32), for: key, info: [], aad: []) }
        }
        #expect(throws: KeyError.self) { _ = try X25519PublicKey(rawRepresentation: [1, 2, 3]) }
    }

    @Test func sealingTwiceUsesFreshEphemeralKeys() throws {
        let a = try HPKE.seal(key, for: recipient.publicKey, info: info, aad: aad)
        let b = try HPKE.seal(key, for: recipient.publicKey, info: info, aad: aad)
        #expect(a.encapsulatedKey != b.encapsulatedKey && a.ciphertext != b.ciphertext)
    }
}

/// The AES-256-GCM suite against the independent pyhpke (PyPI), both ways.
@Suite struct HPKEInteropTests {
    func python(_ arguments: [String]) throws -> (status: Int32, output: String) {
        try interop("hpke_interop.py", arguments, stderr: false)
    }

    @Test func pyhpkeOpensWhatSafeChatSealsAndTheReverse() throws {
        let recipient = X25519PrivateKey()
        let info = Array("SafeChat wrap v1".utf8), aad = Array("member".utf8)
        for size in [0, 1, 32, 1000] {
            let plaintext = Secrets.randomBytes(size)
            let ours = try HPKE.seal(plaintext, for: recipient.publicKey, info: info, aad: aad)
            let opened = try python(["open", Secrets.hex(recipient.rawRepresentation), Secrets.hex(ours.encapsulatedKey),
                                     Secrets.hex(ours.ciphertext), Secrets.hex(info), Secrets.hex(aad)])
            #expect(opened.status == 0 && opened.output == Secrets.hex(plaintext), "pyhpke opens ours (\(size) bytes)")

            let theirs = try python(["seal", Secrets.hex(recipient.publicKey.rawRepresentation), Secrets.hex(info), Secrets.hex(aad),
                                     Secrets.hex(plaintext)])
            #expect(theirs.status == 0)
            let parts = theirs.output.split(separator: " ").map(String.init)
            try #require(parts.count == 2)
            let sealed = HPKE.Sealed(encapsulatedKey: bytes(parts[0]), ciphertext: bytes(parts[1]))
            #expect(try HPKE.open(sealed, with: recipient, info: info, aad: aad) == plaintext, "we open pyhpke's (\(size) bytes)")
            // And a wrong aad is refused by pyhpke too.
            let refused = try python(["open", Secrets.hex(recipient.rawRepresentation), Secrets.hex(ours.encapsulatedKey),
                                      Secrets.hex(ours.ciphertext), Secrets.hex(info), Secrets.hex(Array("other".utf8))])
            #expect(refused.status == 1)
        }
    }
}
