import Foundation
import NIOPosix
import SealedStream

/// Accounts, in `users.json` (mode 0600) in the data directory, with scrypt password hashes.
///
/// The file is rewritten atomically on every change, and re-read whenever it changed on disk, so
/// `safechat user add|passwd|rm` work while the server runs.
public actor UserStore {
    struct PasswordHash: Codable, Equatable {
        var algorithm = "scrypt"
        var n: UInt64
        var r: UInt64
        var p: UInt64
        var salt: String
        var hash: String
    }

    struct User: Codable {
        var name: String
        var password: PasswordHash
        var createdAt: Date
    }

    struct File: Codable { var users: [User] }

    /// scrypt cost: N = 2^15, r = 8, p = 1 (32 MiB, about 0.1 s): OWASP's minimum for scrypt.
    static let cost = (n: UInt64(1 << 15), r: UInt64(8), p: UInt64(1))

    let path: String
    private var users: [String: User] = [:]
    private var loadedModification: Date?
    /// Verified against when the user does not exist, so a wrong name costs the same time.
    private let decoy: PasswordHash

    public init(path: String) throws {
        self.path = path
        decoy = Self.hash(password: Secrets.randomHex(16))
        if let file = try Self.read(path) {
            users = Dictionary(file.users.map { ($0.name, $0) }, uniquingKeysWith: { $1 })
        }
        loadedModification = Self.modification(path)
    }

    public static func validate(name: String) throws {
        guard (1...64).contains(name.utf8.count),
              name.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) || $0 == 0x2D || $0 == 0x5F || $0 == 0x2E })
        else { throw UserStoreError.invalidName(name) }
    }

    public func add(_ name: String, password: String) throws {
        try Self.validate(name: name)
        try reloadIfChanged()
        guard users[name] == nil else { throw UserStoreError.exists(name) }
        try Self.validate(password: password)
        users[name] = User(name: name, password: Self.hash(password: password), createdAt: Date())
        try save()
    }

    public func setPassword(_ name: String, password: String) throws {
        try reloadIfChanged()
        guard users[name] != nil else { throw UserStoreError.unknown(name) }
        try Self.validate(password: password)
        users[name]!.password = Self.hash(password: password)
        try save()
    }

    public func remove(_ name: String) throws {
        try reloadIfChanged()
        guard users.removeValue(forKey: name) != nil else { throw UserStoreError.unknown(name) }
        try save()
    }

    public func contains(_ name: String) throws -> Bool {
        try reloadIfChanged()
        return users[name] != nil
    }

    /// Whether `password` is `name`'s. Unknown names cost the same scrypt work as known ones, and
    /// the work runs on NIO's thread pool, not on the tasks that move uploads.
    public nonisolated func verify(_ name: String, password: String) async throws -> Bool {
        let (stored, exists) = try await passwordHash(of: name)
        let matches = try await NIOThreadPool.singleton.runIfActive { Self.check(password: password, against: stored) }
        return matches && exists
    }

    private func passwordHash(of name: String) throws -> (PasswordHash, Bool) {
        try reloadIfChanged()
        return (users[name]?.password ?? decoy, users[name] != nil)
    }

    static func validate(password: String) throws {
        guard (8...1024).contains(password.utf8.count) else { throw UserStoreError.weakPassword }
    }

    static func hash(password: String) -> PasswordHash {
        let salt = Secrets.randomBytes(16)
        let derived = Secrets.scrypt(password: Array(password.utf8), salt: salt, n: cost.n, r: cost.r, p: cost.p, length: 32)!
        return PasswordHash(n: cost.n, r: cost.r, p: cost.p, salt: Secrets.hex(salt), hash: Secrets.hex(derived))
    }

    static func check(password: String, against stored: PasswordHash) -> Bool {
        guard stored.algorithm == "scrypt", stored.n <= 1 << 20, stored.r <= 32, stored.p <= 16,
              let salt = fromHex(stored.salt), let expected = fromHex(stored.hash),
              let derived = Secrets.scrypt(password: Array(password.utf8), salt: salt, n: stored.n, r: stored.r, p: stored.p, length: expected.count)
        else { return false }
        return Secrets.constantTimeEqual(derived, expected)
    }

    private func reloadIfChanged() throws {
        let modification = Self.modification(path)
        guard modification != loadedModification else { return }
        users = Dictionary((try Self.read(path)?.users ?? []).map { ($0.name, $0) }, uniquingKeysWith: { $1 })
        loadedModification = modification
    }

    private func save() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        let data = try encoder.encode(File(users: users.values.sorted { $0.name < $1.name }))
        let writer = try AtomicFileWriter(destination: path, permissions: 0o600)
        try writer.write(Array(data))
        try writer.commit()
        loadedModification = Self.modification(path)
    }

    private static func read(_ path: String) throws -> File? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try decoder.decode(File.self, from: data)
    }

    private static func modification(_ path: String) -> Date? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return Date(timeIntervalSince1970: Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9 + Double(info.st_size) * 1e-12)
    }

    static func fromHex(_ text: String) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        for i in stride(from: 0, to: chars.count, by: 2) {
            guard let byte = UInt8(String(decoding: chars[i..<i + 2], as: UTF8.self), radix: 16) else { return nil }
            out.append(byte)
        }
        return out
    }
}

public enum UserStoreError: Error, CustomStringConvertible {
    case invalidName(String)
    case exists(String)
    case unknown(String)
    case weakPassword

    public var description: String {
        switch self {
        case .invalidName(let name): "'\(name)' is not a valid user name (1-64 letters, digits, '.', '-', '_')"
        case .exists(let name): "user '\(name)' already exists"
        case .unknown(let name): "no user '\(name)'"
        case .weakPassword: "a password must be 8 to 1024 bytes long"
        }
    }
}
