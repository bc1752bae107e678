import Foundation
import Testing
@_spi(Testing) @testable import SealedStream

/// Fixtures/golden-v1 pins the format: a fixed key, salt and plaintext must seal to exactly the
/// committed bytes. Any change to the layout, the key schedule or the codec decisions fails here.
/// To regenerate after a deliberate format change (a new version), run the tests with
/// SAFECHAT_WRITE_GOLDEN=1 and review the diff.
@Suite struct GoldenFileTests {
    static let directory = packageRoot.appendingPathComponent("Fixtures/golden-v1")
    static let key: [UInt8] = Array(0x00...0x1f)
    static let salt: [UInt8] = Array(0x20...0x3f)
    /// 160 000 bytes in 64 KiB chunks: a text chunk (LZ4), a half-text chunk, a random final chunk (stored).
    static let plaintext = textLikeBytes(100_000) + pseudoRandomBytes(60_000, seed: 42)

    func file(_ name: String) -> URL { Self.directory.appendingPathComponent(name) }

    @Test func sealingReproducesTheGoldenFileByteForByte() async throws {
        let key = try SessionKey(bytes: Self.key)
        let sealed = try await seal(Self.plaintext, key: key, chunkSize: 1 << 16, salt: Self.salt)
        if ProcessInfo.processInfo.environment["SAFECHAT_WRITE_GOLDEN"] == "1" {
            try FileManager.default.createDirectory(at: Self.directory, withIntermediateDirectories: true)
            try Data(Self.plaintext).write(to: file("plaintext.bin"))
            try Data(sealed).write(to: file("sealed.bin"))
            try key.hexEncoded().write(to: file("key.hex"), atomically: true, encoding: .utf8)
            try (hexString(Self.salt) + "\n").write(to: file("salt.hex"), atomically: true, encoding: .utf8)
        }
        let golden = Array(try Data(contentsOf: file("sealed.bin")))
        #expect(sealed.count == golden.count)
        #expect(fingerprint(sealed) == fingerprint(golden), "the sealed-stream format drifted from Fixtures/golden-v1/sealed.bin")
        #expect(fingerprint(try Data(contentsOf: file("plaintext.bin"))) == fingerprint(Self.plaintext))
        #expect(try String(contentsOf: file("key.hex"), encoding: .utf8) == key.hexEncoded())
        #expect(try String(contentsOf: file("salt.hex"), encoding: .utf8) == hexString(Self.salt) + "\n")
    }

    @Test func theGoldenFileOpensAndHasTheExpectedShape() async throws {
        let golden = Array(try Data(contentsOf: file("sealed.bin")))
        let key = try SessionKey(hexEncoded: try String(contentsOf: file("key.hex"), encoding: .utf8))
        let (opened, error) = await open(golden, key: key)
        #expect(error == nil)
        #expect(fingerprint(opened) == fingerprint(Self.plaintext))
        let records = try recordTable(golden)
        #expect(records.map(\.index) == [0, 1, 2])
        #expect(records.map(\.isCompressed) == [true, true, false])
        #expect(records.map(\.plaintextLength) == [65536, 65536, 28928])
        #expect(Array(golden.prefix(12)) == Array("SAFECHAT".utf8) + [1, 1, 1, 16])
        // The stream digest (docs/FORMAT.md section 10), computed by an independent script when the
        // vector was made.
        var validator = FramingValidator()
        _ = try validator.consume(golden)
        #expect(validator.digestHex + "\n" == (try String(contentsOf: file("digest.hex"), encoding: .utf8)))
        // The file id bound to its header (docs/FORMAT.md section 11), also computed independently
        // (Python's hashlib) when the vector was made.
        #expect(StreamIdentity.fileID(forHeader: Array(golden.prefix(92))) + "\n" == (try String(contentsOf: file("file-id.hex"), encoding: .utf8)))
    }
}
