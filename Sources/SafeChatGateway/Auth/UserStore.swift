import Foundation
import NIOPosix
import SafeChatAPI
import SealedFormat

/// The embedded ``AccountStore``: accounts in `users.json` (mode 0600) in the data directory, with
/// scrypt password hashes (``PasswordHash``).
///
/// The file is rewritten atomically on every change, and re-read whenever it changed on disk, so
/// `safechat user add|passwd|rm` work while the server runs.
public actor UserStore: AccountStore {

    struct User: Codable {
        /// The stable principal: files, uploads and memberships belong to it, never to the name, so
        /// a removed and re-created name is a different principal.
        var id: UserID
        var name: String
        var password: PasswordHash
        var createdAt: Date
        /// Tokens carry the generation they were issued under; changing the password bumps it, which
        /// revokes every earlier token at once.
        var tokenGeneration: Int
        /// Logins refused (an operator's `safechat admin disable`); absent in older files.
        var disabled: Bool?

        init(name: String, password: PasswordHash) {
            id = UserID.random()
            self.name = name
            self.password = password
            createdAt = Date()
            tokenGeneration = 0
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            name = try container.decode(String.self, forKey: .name)
            password = try container.decode(PasswordHash.self, forKey: .password)
            createdAt = try container.decode(Date.self, forKey: .createdAt)
            // A users.json from before ids existed: each account gets one the first time it is read
            // (and keeps it once the file is next written).
            id = try container.decodeIfPresent(UserID.self, forKey: .id) ?? UserID.random()
            tokenGeneration = try container.decodeIfPresent(Int.self, forKey: .tokenGeneration) ?? 0
            disabled = try container.decodeIfPresent(Bool.self, forKey: .disabled)
        }
    }

    struct File: Codable {
        var users: [User]
        /// Ids of removed accounts: their files and uploads are deleted by the gateway's sweep.
        var removed: [UserID]
        /// Whether some account was read without an id (and got a new one that must be kept).
        var needsIDs = false

        enum CodingKeys: String, CodingKey { case users, removed }
        init(users: [User], removed: [UserID]) {
            self.users = users
            self.removed = removed
        }
        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            users = try container.decode([User].self, forKey: .users)
            removed = try container.decodeIfPresent([UserID].self, forKey: .removed) ?? []
            struct Probe: Decodable { let id: String? }
            needsIDs = try container.decode([Probe].self, forKey: .users).contains { $0.id == nil }
        }
    }

    static let cost = PasswordHash.cost

    let path: String
    private var users: [String: User] = [:]
    private var removed: [UserID] = []
    private var loadedModification: Date?
    /// Verified against when the user does not exist, so a wrong name costs the same time.
    let decoy: PasswordHash

    public init(path: String) throws {
        self.path = path
        decoy = PasswordHash.decoy
        if let file = try Self.read(path) {
            users = Dictionary(file.users.map { ($0.name, $0) }, uniquingKeysWith: { $1 })
            removed = file.removed
            if file.needsIDs { try Self.write(File(users: file.users, removed: file.removed), to: path) }
        }
        loadedModification = Self.modification(path)
    }

    public static func validate(name: String) throws { try AccountName.validate(name) }

    public func add(_ name: String, password: String) throws {
        try AccountName.validate(name)
        try reloadIfChanged()
        guard users[name] == nil else { throw UserStoreError.exists(name) }
        users[name] = User(name: name, password: try PasswordHash(password: password))
        try save()
    }

    public func setPassword(_ name: String, password: String) throws {
        try reloadIfChanged()
        guard users[name] != nil else { throw UserStoreError.unknown(name) }
        users[name]!.password = try PasswordHash(password: password)
        users[name]!.tokenGeneration += 1
        try save()
    }

    /// Revokes every token of the account `id` issued so far (its token generation moves on).
    public func revokeTokens(of id: UserID) throws {
        try reloadIfChanged()
        guard let name = users.values.first(where: { $0.id == id })?.name else { return }
        users[name]!.tokenGeneration += 1
        try save()
    }

    public func remove(_ name: String, keepingFiles: Bool) throws {
        try reloadIfChanged()
        guard let user = users.removeValue(forKey: name) else { throw UserStoreError.unknown(name) }
        if !keepingFiles { removed.append(user.id) }
        try save()
    }

    public func setDisabled(_ name: String, _ disabled: Bool) throws {
        try reloadIfChanged()
        guard let user = users[name] else { throw UserStoreError.unknown(name) }
        guard (user.disabled ?? false) != disabled else { return }
        users[name]!.disabled = disabled
        // Disabling revokes every token at once (each token names its generation).
        if disabled { users[name]!.tokenGeneration += 1 }
        try save()
    }

    public func accounts() throws -> [AccountSummary] {
        try reloadIfChanged()
        return users.values.sorted { $0.name < $1.name }.map {
            AccountSummary(id: $0.id, name: $0.name, createdAt: $0.createdAt, disabled: $0.disabled ?? false)
        }
    }

    public func contains(_ name: String) throws -> Bool {
        try reloadIfChanged()
        return users[name] != nil
    }

    /// The account `name` logs in as, if `password` is its password. Unknown names cost the same
    /// scrypt work as known ones, and the work runs on NIO's thread pool, not on the tasks that move
    /// uploads. The token generation is read before the password is checked, so a password changed
    /// meanwhile yields a token that is already revoked.
    public nonisolated func verify(_ name: String, password: String) async throws -> (principal: Principal, tokenGeneration: Int)? {
        let (stored, account) = try await passwordHash(of: name)
        let matches = try await stored.matches(password)
        guard matches, let account, account.disabled != true else { return nil }
        return (Principal(id: account.id, name: account.name), account.tokenGeneration)
    }

    /// The principal a token names, if that account still exists and the token is of its current
    /// generation (issued after the last password change).
    public func principal(id: UserID, tokenGeneration: Int) throws -> Principal? {
        try reloadIfChanged()
        guard let user = users.values.first(where: { $0.id == id }), user.tokenGeneration == tokenGeneration, user.disabled != true else { return nil }
        return Principal(id: user.id, name: user.name)
    }

    /// The name of the account `id`, if it exists.
    public func name(of id: UserID) throws -> String? {
        try reloadIfChanged()
        return users.values.first { $0.id == id }?.name
    }

    /// The user id of `name`, if the account exists.
    public func id(of name: String) throws -> UserID? {
        try reloadIfChanged()
        return users[name]?.id
    }

    /// Every account as stored, and the removed ids (what `migrate --from-data-dir` copies).
    public func records() throws -> (accounts: [AccountRecord], removed: [UserID]) {
        try reloadIfChanged()
        let accounts = users.values.sorted { $0.name < $1.name }.map {
            AccountRecord(id: $0.id, name: $0.name, password: $0.password, createdAt: $0.createdAt, tokenGeneration: $0.tokenGeneration)
        }
        return (accounts, removed)
    }

    /// Ids of removed accounts (the gateway deletes what belonged to them).
    public func removedIDs() throws -> Set<UserID> {
        try reloadIfChanged()
        return Set(removed)
    }

    private func passwordHash(of name: String) throws -> (PasswordHash, User?) {
        try reloadIfChanged()
        return (users[name]?.password ?? decoy, users[name])
    }

    private func reloadIfChanged() throws {
        let modification = Self.modification(path)
        guard modification != loadedModification else { return }
        let file = try Self.read(path)
        users = Dictionary((file?.users ?? []).map { ($0.name, $0) }, uniquingKeysWith: { $1 })
        removed = file?.removed ?? []
        loadedModification = modification
        if file?.needsIDs == true { try save() }
    }

    private func save() throws {
        try Self.write(File(users: users.values.sorted { $0.name < $1.name }, removed: removed), to: path)
        loadedModification = Self.modification(path)
    }

    private static func write(_ file: File, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        let writer = try AtomicFileWriter(destination: path, permissions: 0o600)
        try writer.write(Array(try encoder.encode(file)))
        try writer.commit()
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

}
