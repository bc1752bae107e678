import Foundation
import Testing
@testable import SealedStream

/// The primitives, checked against published vectors: if OpenSSL is linked or called wrongly,
/// these fail before anything built on them is trusted.
@Suite struct KnownAnswerTests {
    struct GCMCase: Sendable {
        let name: String, key: String, iv: String, aad: String, plaintext: String, ciphertext: String, tag: String
    }

    // McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)", test cases 13-16 (AES-256).
    static let gcmSpecCases = [
        GCMCase(name: "case 13", key: String(repeating: "00", count: 32), iv: String(repeating: "00", count: 12),
                aad: "", plaintext: "", ciphertext: "", tag: "530f8afbc74536b9a963b4f1c4cb738b"),
        GCMCase(name: "case 14", key: String(repeating: "00", count: 32), iv: String(repeating: "00", count: 12),
                aad: "", plaintext: String(repeating: "00", count: 16),
                ciphertext: "cea7403d4d606b6e074ec5d3baf39d18", tag: "d0d1c8a799996bf0265b98b5d48ab919"),
        GCMCase(name: "case 15", key: "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
                iv: "cafebabefacedbaddecaf888", aad: "",
                plaintext: "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
                ciphertext: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
                tag: "b094dac5d93471bdec1a502270e3cc6c"),
        GCMCase(name: "case 16", key: "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
                iv: "cafebabefacedbaddecaf888", aad: "feedfacedeadbeeffeedfacedeadbeefabaddad2",
                plaintext: "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
                ciphertext: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
                tag: "76fc6ece0f4e1768cddf8853bb2d551b"),
    ]

    static func gcmSeal(key: [UInt8], iv: [UInt8], aad: [UInt8], plaintext: [UInt8]) -> (ciphertext: [UInt8], tag: [UInt8]) {
        var ciphertext = [UInt8](repeating: 0, count: plaintext.count)
        var tag = [UInt8](repeating: 0, count: 16)
        key.withUnsafeBytes { k in iv.withUnsafeBytes { n in aad.withUnsafeBytes { a in plaintext.withUnsafeBytes { p in
            ciphertext.withUnsafeMutableBytes { c in tag.withUnsafeMutableBytes { t in
                OpenSSL.aesGCMSeal(key: k, nonce: n, aad: a, plaintext: p, ciphertext: c.baseAddress ?? t.baseAddress!, tag: t.baseAddress!)
            } }
        } } } }
        return (ciphertext, tag)
    }

    static func gcmOpen(key: [UInt8], iv: [UInt8], aad: [UInt8], ciphertext: [UInt8], tag: [UInt8]) -> [UInt8]? {
        var plaintext = [UInt8](repeating: 0, count: ciphertext.count + 1)
        let ok = key.withUnsafeBytes { k in iv.withUnsafeBytes { n in aad.withUnsafeBytes { a in ciphertext.withUnsafeBytes { c in
            tag.withUnsafeBytes { t in plaintext.withUnsafeMutableBytes { p in
                OpenSSL.aesGCMOpen(key: k, nonce: n, aad: a, ciphertext: c, tag: t, plaintext: p.baseAddress!)
            } }
        } } } }
        return ok ? Array(plaintext.prefix(ciphertext.count)) : nil
    }

    @Test(arguments: gcmSpecCases)
    func aesGCMSpecVectors(_ c: GCMCase) {
        let (ciphertext, tag) = Self.gcmSeal(key: hexBytes(c.key), iv: hexBytes(c.iv), aad: hexBytes(c.aad), plaintext: hexBytes(c.plaintext))
        #expect(hexString(ciphertext) == c.ciphertext, "\(c.name) ciphertext")
        #expect(hexString(tag) == c.tag, "\(c.name) tag")
        let opened = Self.gcmOpen(key: hexBytes(c.key), iv: hexBytes(c.iv), aad: hexBytes(c.aad), ciphertext: ciphertext, tag: tag)
        #expect(opened == hexBytes(c.plaintext))
        var badTag = tag
        badTag[0] ^= 1
        #expect(Self.gcmOpen(key: hexBytes(c.key), iv: hexBytes(c.iv), aad: hexBytes(c.aad), ciphertext: ciphertext, tag: badTag) == nil)
    }

    struct WycheproofFile: Decodable {
        struct Group: Decodable { let keySize: Int; let ivSize: Int; let tagSize: Int; let tests: [Vector] }
        struct Vector: Decodable { let tcId: Int; let key, iv, aad, msg, ct, tag, result: String }
        let testGroups: [Group]
    }

    static let wycheproofPath = packageRoot.deletingLastPathComponent()
        .appendingPathComponent("shared/vectors/wycheproof_aes_gcm_test.json").path

    /// Project Wycheproof's AES-256 / 96-bit IV vectors, when ../shared/vectors is present (it is
    /// in CI): valid ones must match exactly, invalid ones must be rejected.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: wycheproofPath), "needs ../shared/vectors"))
    func wycheproofAES256GCM() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.wycheproofPath))
        let file = try JSONDecoder().decode(WycheproofFile.self, from: data)
        let vectors = file.testGroups.filter { $0.keySize == 256 && $0.ivSize == 96 && $0.tagSize == 128 }.flatMap(\.tests)
        #expect(vectors.count == 66)
        var valid = 0, invalid = 0
        for v in vectors {
            let key = hexBytes(v.key), iv = hexBytes(v.iv), aad = hexBytes(v.aad), msg = hexBytes(v.msg)
            let opened = Self.gcmOpen(key: key, iv: iv, aad: aad, ciphertext: hexBytes(v.ct), tag: hexBytes(v.tag))
            switch v.result {
            case "valid":
                valid += 1
                let (ct, tag) = Self.gcmSeal(key: key, iv: iv, aad: aad, plaintext: msg)
                #expect(hexString(ct) == v.ct, "tcId \(v.tcId) ciphertext")
                #expect(hexString(tag) == v.tag, "tcId \(v.tcId) tag")
                #expect(opened == msg, "tcId \(v.tcId) must open")
            case "invalid":
                invalid += 1
                #expect(opened == nil, "tcId \(v.tcId) must be rejected")
            default:
                Issue.record("tcId \(v.tcId): unexpected result \(v.result)")
            }
        }
        #expect(valid == 39 && invalid == 27)
    }

    struct HKDFCase: Sendable { let name: String; let ikm, salt, info: [UInt8]; let length: Int; let okm: String }

    // RFC 5869, appendix A, test cases 1-3 (SHA-256).
    static let hkdfCases = [
        HKDFCase(name: "A.1", ikm: [UInt8](repeating: 0x0b, count: 22), salt: Array(0x00...0x0c), info: Array(0xf0...0xf9), length: 42,
                 okm: "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"),
        HKDFCase(name: "A.2", ikm: Array(0x00...0x4f), salt: Array(0x60...0xaf), info: Array(0xb0...0xff), length: 82,
                 okm: "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87"),
        HKDFCase(name: "A.3", ikm: [UInt8](repeating: 0x0b, count: 22), salt: [], info: [], length: 42,
                 okm: "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"),
    ]

    @Test(arguments: hkdfCases)
    func hkdfRFC5869(_ c: HKDFCase) {
        var okm = [UInt8](repeating: 0, count: c.length)
        c.ikm.withUnsafeBytes { ikm in c.salt.withUnsafeBytes { salt in c.info.withUnsafeBytes { info in
            okm.withUnsafeMutableBytes { OpenSSL.hkdfSHA256(inputKey: ikm, salt: salt, info: info, output: $0) }
        } } }
        #expect(hexString(okm) == c.okm, "RFC 5869 \(c.name)")
    }

    @Test func sha256KnownAnswers() {
        // FIPS 180-2 examples.
        #expect(hexString(SHA256Hasher.hash(Array("abc".utf8))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(hexString(SHA256Hasher.hash([])) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        var hasher = SHA256Hasher()
        hasher.update(Array("ab".utf8))
        hasher.update(Array("c".utf8))
        #expect(hexString(hasher.finalize()) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }
}
