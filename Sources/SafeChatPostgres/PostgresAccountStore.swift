import Foundation
import PostgresNIO
import SafeChatAPI
import SafeChatGateway

/// Accounts in PostgreSQL, shared by every gateway on the database: an account added, a password
/// changed or an account removed (by any gateway or by `safechat user … --database`) holds on
/// every gateway at its next request, since each token check reads the account's row.
public struct PostgresAccountStore: AccountStore {
    let database: PostgresDatabase

    public init(database: PostgresDatabase) {
        self.database = database
    }

    private static func json(_ hash: PasswordHash) throws -> String {
        String(decoding: try JSONEncoder().encode(hash), as: UTF8.self)
    }

    public func add(_ name: String, password: String) async throws {
        try AccountName.validate(name)
        let hash = try Self.json(try PasswordHash(password: password))
        let id = UserID.random().description
        let inserted = try await database.perform("add account") { client in
            try await client.query("""
                INSERT INTO accounts (id, name, password) VALUES (\(id), \(name), \(hash)::jsonb)
                ON CONFLICT (name) DO NOTHING RETURNING id
                """).collect().count
        }
        guard inserted == 1 else { throw UserStoreError.exists(name) }
    }

    public func setPassword(_ name: String, password: String) async throws {
        let hash = try Self.json(try PasswordHash(password: password))
        let updated = try await database.perform("change password") { client in
            try await client.query("""
                UPDATE accounts SET password = \(hash)::jsonb, token_generation = token_generation + 1
                WHERE name = \(name) RETURNING id
                """).collect().count
        }
        guard updated == 1 else { throw UserStoreError.unknown(name) }
    }

    public func revokeTokens(of id: UserID) async throws {
        try await database.perform("revoke tokens") { client in
            _ = try await client.query("UPDATE accounts SET token_generation = token_generation + 1 WHERE id = \(id.description)")
        }
    }

    public func remove(_ name: String, keepingFiles: Bool) async throws {
        let removed = try await database.transaction("remove account") { connection in
            let rows = try await connection.query("DELETE FROM accounts WHERE name = \(name) RETURNING id", logger: database.logger)
            var ids: [String] = []
            for try await id in rows.decode(String.self) { ids.append(id) }
            for id in ids where !keepingFiles {
                try await connection.query("INSERT INTO removed_accounts (id) VALUES (\(id)) ON CONFLICT DO NOTHING", logger: database.logger)
            }
            return ids.count
        }
        guard removed == 1 else { throw UserStoreError.unknown(name) }
    }

    public func setDisabled(_ name: String, _ disabled: Bool) async throws {
        // Disabling moves the token generation on: every token is refused at its next request.
        let updated = try await database.perform("disable account") { client in
            try await client.query("""
                UPDATE accounts SET token_generation = token_generation + (CASE WHEN \(disabled) AND NOT disabled THEN 1 ELSE 0 END),
                    disabled = \(disabled)
                WHERE name = \(name) RETURNING id
                """).collect().count
        }
        guard updated == 1 else { throw UserStoreError.unknown(name) }
    }

    public func accounts() async throws -> [AccountSummary] {
        try await database.perform("list accounts") { client in
            var accounts: [AccountSummary] = []
            for try await (id, name, created, disabled) in try await client.query(
                "SELECT id, name, created_at, disabled FROM accounts ORDER BY name").decode((String, String, Date, Bool).self) {
                if let id = UserID(id) { accounts.append(AccountSummary(id: id, name: name, createdAt: created, disabled: disabled)) }
            }
            return accounts
        }
    }

    public func contains(_ name: String) async throws -> Bool {
        try await id(of: name) != nil
    }

    public func verify(_ name: String, password: String) async throws -> (principal: Principal, tokenGeneration: Int)? {
        // A name no account can have (a NUL byte, which PostgreSQL refuses) costs the same scrypt work.
        guard (try? AccountName.validate(name)) != nil else {
            _ = try await PasswordHash.decoy.matches(password)
            return nil
        }
        let account = try await database.perform("read account") { client -> (String, Int, String, Bool)? in
            var found: (String, Int, String, Bool)?
            for try await row in try await client.query(
                "SELECT id, token_generation, password::text, disabled FROM accounts WHERE name = \(name)").decode((String, Int, String, Bool).self) {
                found = row
            }
            return found
        }
        let stored = try account.map { try JSONDecoder().decode(PasswordHash.self, from: Data($0.2.utf8)) } ?? PasswordHash.decoy
        guard try await stored.matches(password), let account, !account.3, let id = UserID(account.0) else { return nil }
        return (Principal(id: id, name: name), account.1)
    }

    public func principal(id: UserID, tokenGeneration: Int) async throws -> Principal? {
        let name = try await database.perform("check token") { client -> String? in
            var name: String?
            for try await value in try await client.query("""
                SELECT name FROM accounts WHERE id = \(id.description) AND token_generation = \(tokenGeneration) AND NOT disabled
                """).decode(String.self) {
                name = value
            }
            return name
        }
        return name.map { Principal(id: id, name: $0) }
    }

    public func name(of id: UserID) async throws -> String? {
        try await database.perform("read account") { client -> String? in
            var name: String?
            for try await value in try await client.query("SELECT name FROM accounts WHERE id = \(id.description)").decode(String.self) {
                name = value
            }
            return name
        }
    }

    public func id(of name: String) async throws -> UserID? {
        guard (try? AccountName.validate(name)) != nil else { return nil }
        return try await database.perform("read account") { client -> UserID? in
            var id: UserID?
            for try await value in try await client.query("SELECT id FROM accounts WHERE name = \(name)").decode(String.self) {
                id = UserID(value)
            }
            return id
        }
    }

    public func removedIDs() async throws -> Set<UserID> {
        try await database.perform("read removed accounts") { client in
            var ids: Set<UserID> = []
            for try await value in try await client.query("SELECT id FROM removed_accounts").decode(String.self) {
                if let id = UserID(value) { ids.insert(id) }
            }
            return ids
        }
    }

    /// Copies accounts as they are (same ids, hashes and token generations, so tokens issued by the
    /// old gateway stay valid); an account whose id or name is already here is left alone. Returns
    /// how many were added.
    public func importRecords(_ accounts: [AccountRecord], removed: [UserID]) async throws -> Int {
        var added = 0
        for account in accounts {
            let hash = try Self.json(account.password)
            added += try await database.perform("import account") { client in
                try await client.query("""
                    INSERT INTO accounts (id, name, password, created_at, token_generation)
                    VALUES (\(account.id.description), \(account.name), \(hash)::jsonb, \(account.createdAt), \(account.tokenGeneration))
                    ON CONFLICT DO NOTHING RETURNING id
                    """).collect().count
            }
        }
        for id in removed {
            try await database.perform("import removed account") { client in
                _ = try await client.query("INSERT INTO removed_accounts (id) VALUES (\(id.description)) ON CONFLICT DO NOTHING")
            }
        }
        return added
    }
}
