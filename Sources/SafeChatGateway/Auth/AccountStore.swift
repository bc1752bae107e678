import Foundation
import NIOPosix
import SafeChatAPI
import SealedFormat

/// Accounts: names, password hashes, and the token generation that a password change moves on
/// (revoking every earlier token). The routes only see this protocol: ``UserStore`` keeps accounts
/// in the data directory, a server-grade backend (SafeChatPostgres) in a database that every
/// gateway shares.
public protocol AccountStore: Sendable {
    func add(_ name: String, password: String) async throws
    func setPassword(_ name: String, password: String) async throws
    /// Revokes every token of the account `id` issued so far (its token generation moves on).
    func revokeTokens(of id: UserID) async throws
    /// Removes the account. With `keepingFiles`, its id is not marked removed, so the gateway's
    /// sweep leaves its files (and uploads, until they expire) in place.
    func remove(_ name: String, keepingFiles: Bool) async throws
    /// Turns the account's logins off (every token revoked at once) or back on.
    func setDisabled(_ name: String, _ disabled: Bool) async throws
    /// Every account, by name (`safechat admin users`).
    func accounts() async throws -> [AccountSummary]
    func contains(_ name: String) async throws -> Bool
    /// The account `name` logs in as, if `password` is its password. Unknown names must cost the
    /// same work as known ones (``PasswordHash/decoy``); the token generation is read before the
    /// password is checked, so a password changed meanwhile yields a token already revoked.
    func verify(_ name: String, password: String) async throws -> (principal: Principal, tokenGeneration: Int)?
    /// The principal a token names, if that account still exists at the token's generation.
    func principal(id: UserID, tokenGeneration: Int) async throws -> Principal?
    func name(of id: UserID) async throws -> String?
    func id(of name: String) async throws -> UserID?
    /// Ids of removed accounts (the gateway deletes what belonged to them).
    func removedIDs() async throws -> Set<UserID>
}

extension AccountStore {
    public func remove(_ name: String) async throws { try await remove(name, keepingFiles: false) }
}

/// What operators see of one account: never its password hash.
public struct AccountSummary: Sendable {
    public let id: UserID
    public let name: String
    public let createdAt: Date
    public let disabled: Bool

    public init(id: UserID, name: String, createdAt: Date, disabled: Bool) {
        self.id = id
        self.name = name
        self.createdAt = createdAt
        self.disabled = disabled
    }
}

/// One account as a store keeps it (for copying accounts between stores).
public struct AccountRecord: Sendable {
    public let id: UserID
    public let name: String
    public let password: PasswordHash
    public let createdAt: Date
    public let tokenGeneration: Int
}

/// What a user name may be.
public enum AccountName {
    /// Names that cannot be accounts: `me` is what `/keys/me` means, so that account could never be named.
    static let reserved: Set<String> = ["me"]

    public static func validate(_ name: String) throws {
        guard !reserved.contains(name) else { throw UserStoreError.reservedName(name) }
        guard (1...64).contains(name.utf8.count),
              name.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) || $0 == 0x2D || $0 == 0x5F || $0 == 0x2E })
        else { throw UserStoreError.invalidName(name) }
    }
}

/// A password's scrypt hash, as every account store keeps it.
public struct PasswordHash: Codable, Equatable, Sendable {
    var algorithm = "scrypt"
    var n: UInt64
    var r: UInt64
    var p: UInt64
    var salt: String
    var hash: String

    /// scrypt cost: N = 2^15, r = 8, p = 1 (32 MiB, about 0.1 s): OWASP's minimum for scrypt.
    static let cost = (n: UInt64(1 << 15), r: UInt64(8), p: UInt64(1))

    /// The threads that run scrypt: a pool of their own, so that logins never wait behind the
    /// disk syncs on NIO's shared pool (``blockingIO``), nor those behind a burst of logins.
    static let threads: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: max(2, ProcessInfo.processInfo.activeProcessorCount))
        pool.start()
        return pool
    }()

    /// Checked against when a name does not exist, so that a wrong name costs the same time.
    public static let decoy = PasswordHash(unchecked: Secrets.randomHex(16))

    /// Hashes `password` with a fresh salt; refuses one shorter than 8 or longer than 1024 bytes.
    public init(password: String) throws {
        guard (8...1024).contains(password.utf8.count) else { throw UserStoreError.weakPassword }
        self.init(unchecked: password)
    }

    private init(unchecked password: String) {
        let salt = Secrets.randomBytes(16)
        let derived = Secrets.scrypt(password: Array(password.utf8), salt: salt, n: Self.cost.n, r: Self.cost.r, p: Self.cost.p, length: 32)!
        self.init(n: Self.cost.n, r: Self.cost.r, p: Self.cost.p, salt: Secrets.hex(salt), hash: Secrets.hex(derived))
    }

    init(n: UInt64, r: UInt64, p: UInt64, salt: String, hash: String) {
        (self.n, self.r, self.p, self.salt, self.hash) = (n, r, p, salt, hash)
    }

    /// Whether `password` is the one hashed: scrypt on NIO's thread pool (not on the tasks that move
    /// uploads), compared in constant time. Costs beyond bounds (a tampered store) never match.
    public func matches(_ password: String) async throws -> Bool {
        try await Self.threads.runIfActive { [self] in
            guard algorithm == "scrypt", n <= 1 << 20, r <= 32, p <= 16,
                  let salt = Secrets.bytes(fromHex: salt), let expected = Secrets.bytes(fromHex: hash),
                  let derived = Secrets.scrypt(password: Array(password.utf8), salt: salt, n: n, r: r, p: p, length: expected.count)
            else { return false }
            return Secrets.constantTimeEqual(derived, expected)
        }
    }
}

public enum UserStoreError: Error, Equatable, CustomStringConvertible {
    case invalidName(String)
    case reservedName(String)
    case exists(String)
    case unknown(String)
    case weakPassword

    public var description: String {
        switch self {
        case .invalidName(let name): "'\(name)' is not a valid user name (1-64 letters, digits, '.', '-', '_')"
        case .reservedName(let name): "'\(name)' is reserved (GET /keys/\(name) means the caller); choose another name"
        case .exists(let name): "user '\(name)' already exists"
        case .unknown(let name): "no user '\(name)'"
        case .weakPassword: "a password must be 8 to 1024 bytes long"
        }
    }
}
