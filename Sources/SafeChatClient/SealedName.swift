import Foundation
import SafeChatAPI
import SealedStream

/// A file's name as the gateway stores it: a one-chunk sealed stream under the session key, base64
/// in the upload's `name` metadata. The gateway keeps it without being able to read it. The sealed
/// plaintext is the file's stream salt (32 bytes) followed by the name, so a name opens only beside
/// the file it was sealed for: a gateway that swaps two files' names is caught.
public enum SealedName {
    public static let metadataKey = Tus.MetadataKey.name
    /// Names longer than this (in UTF-8 bytes) are cut before sealing.
    static let maxLength = 1024

    static func seal(_ name: String, key: SessionKey, boundTo file: StreamHeader) async throws -> [UInt8] {
        var sealed = [UInt8]()
        let sealer = try Sealer(key: key, options: SealOptions(chunkSize: ChunkSize.minimum, compress: false))
        for try await piece in sealer.seal(ArrayByteSource(file.salt + utf8Prefix(name, maxLength))) { sealed += piece }
        return sealed
    }

    /// What a file's `name` metadata gives with a key: the name, or why there is none to show.
    public enum Outcome: Sendable, Equatable {
        case name(String)
        /// The uploader sent no name.
        case none
        /// There is a name, but it does not open as one; `why` says what a person can act on.
        case unopened(why: String)

        public var name: String? { if case .name(let name) = self { name } else { nil } }

        /// How a listing shows it: the name, or "(sealed: why)".
        public var shown: String {
            switch self {
            case .name(let name): name
            case .none: "(no name)"
            case .unopened(let why): "(sealed: \(why))"
            }
        }
    }

    /// The name in `metadata` if `key` opens it and it was sealed for the file whose stream header
    /// is `file`, else why not.
    public static func open(_ metadata: [String: String], key: SessionKey, boundTo file: StreamHeader) async -> Outcome {
        guard let text = metadata[metadataKey] else { return .none }
        guard text.utf8.count <= 4096, let sealed = Data(base64Encoded: text) else { return .unopened(why: "its name is not base64 of a sealed name") }
        var plaintext = [UInt8]()
        do {
            for try await piece in Opener(key: key).open(ArrayByteSource(Array(sealed))) { plaintext += piece }
        } catch SealedStreamError.wrongKey {
            return .unopened(why: "its name is sealed under another key than this file's")
        } catch {
            return .unopened(why: "its name was altered or is not a sealed name (\(error))")
        }
        guard plaintext.count <= file.salt.count + maxLength, plaintext.starts(with: file.salt) else {
            return .unopened(why: "its name was sealed for another file")
        }
        guard let name = String(validating: plaintext.dropFirst(file.salt.count), as: UTF8.self) else {
            return .unopened(why: "its name is not UTF-8")
        }
        return .name(name)
    }

    /// `name` reduced to something safe to create in the current directory: its last path
    /// component, without control characters; nil if nothing usable is left (empty, `.`, `..`).
    public static func safeBaseName(_ name: String) -> String? {
        let lastComponent = name.split(whereSeparator: { $0 == "/" || $0 == "\\" }).last.map(String.init) ?? ""
        let cleaned = String(String.UnicodeScalarView(lastComponent.unicodeScalars.filter {
            !CharacterSet.controlCharacters.contains($0) && $0 != "\u{7F}"
        })).trimmingCharacters(in: .whitespaces)
        guard !cleaned.isEmpty, cleaned != ".", cleaned != "..", cleaned.utf8.count <= 255 else { return nil }
        return cleaned
    }
}

/// A session's name as its log carries it: a one-chunk sealed stream under the epoch's key of
/// "SafeChat session name v1" || 0x00 || session id || u32be(epoch) || name, so it opens only for
/// members, and only as the name of that session at that epoch (docs/KEYS.md 7.1).
public enum SessionName {
    static func label(_ sessionID: [UInt8], _ epoch: UInt32) -> [UInt8] {
        Array("SafeChat session name v1".utf8) + [0] + sessionID + [UInt8(epoch >> 24), UInt8((epoch >> 16) & 0xFF), UInt8((epoch >> 8) & 0xFF), UInt8(epoch & 0xFF)]
    }

    static func seal(_ name: String, key: SessionKey, sessionID: [UInt8], epoch: UInt32) async throws -> [UInt8] {
        var sealed = [UInt8]()
        let sealer = try Sealer(key: key, options: SealOptions(chunkSize: ChunkSize.minimum, compress: false))
        for try await piece in sealer.seal(ArrayByteSource(label(sessionID, epoch) + utf8Prefix(name, 256))) { sealed += piece }
        return sealed
    }

    /// The name, or nil (none, another key, or sealed for another session or epoch).
    public static func open(_ sealed: [UInt8], key: SessionKey, sessionID: [UInt8], epoch: UInt32) async -> String? {
        guard !sealed.isEmpty else { return nil }
        var plaintext = [UInt8]()
        do {
            for try await piece in Opener(key: key).open(ArrayByteSource(sealed)) { plaintext += piece }
        } catch { return nil }
        let prefix = label(sessionID, epoch)
        guard plaintext.starts(with: prefix) else { return nil }
        return String(validating: plaintext.dropFirst(prefix.count), as: UTF8.self)
    }
}

/// The UTF-8 of `text`'s longest prefix of whole characters that fits in `maxBytes` (a name cut
/// inside a character would not open as text).
func utf8Prefix(_ text: String, _ maxBytes: Int) -> [UInt8] {
    var out: [UInt8] = []
    for character in text {
        let bytes = Array(String(character).utf8)
        guard out.count + bytes.count <= maxBytes else { break }
        out += bytes
    }
    return out
}

extension Optional {
    /// `map` for an async transform.
    public func asyncMap<T>(_ transform: (Wrapped) async throws -> T) async rethrows -> T? {
        switch self {
        case .some(let value): try await transform(value)
        case .none: nil
        }
    }
}
