/// SafeChatPostgres: the gateway's state in PostgreSQL, so that any number of gateways serve the
/// same users. It implements the gateway's storage protocols (``PostgresRegistry`` for
/// ``Registry``); the gateway never imports it, `safechat serve --database` wires it in.
///
/// Layout: ``DatabaseSettings`` reads where the database is; ``PostgresDatabase`` owns the
/// connection pool and turns failures that may pass into ``StorageUnavailable`` (503);
/// ``SchemaMigrations`` brings the schema to this build's version under an advisory lock.
import Foundation
import NIOSSL
import PostgresNIO

/// Where the database is and how to log in: `postgres://USER@HOST[:PORT]/DATABASE[?sslmode=…]`,
/// with the password from `PGPASSWORD` or a file, never from the URL (URLs end up on command
/// lines and in process listings).
public struct DatabaseSettings: Sendable, CustomStringConvertible {
    public enum TLSMode: String, Sendable { case disable, prefer, require }

    public let host: String
    public let port: Int
    public let user: String
    public private(set) var database: String
    public let tls: TLSMode
    let password: String?

    /// The URL without any secret: what logs and errors may show.
    public var description: String { "postgres://\(user)@\(host):\(port)/\(database)" }

    /// - Parameters:
    ///   - url: `postgres://USER@HOST[:PORT]/DATABASE[?sslmode=disable|prefer|require]`.
    ///   - passwordFile: a file holding the password (its first line); else `PGPASSWORD`.
    public init(url: String, passwordFile: String? = nil,
                environment: [String: String] = ProcessInfo.processInfo.environment) throws(DatabaseConfigurationError) {
        guard let parts = URLComponents(string: url), ["postgres", "postgresql"].contains(parts.scheme ?? "") else {
            throw DatabaseConfigurationError("--database takes postgres://USER@HOST[:PORT]/DATABASE, not \(Self.withoutSecrets(url))")
        }
        guard parts.password == nil else {
            throw DatabaseConfigurationError("--database must not hold a password (it would show on the command line): set PGPASSWORD or --database-password-file")
        }
        guard let host = parts.host, !host.isEmpty, let user = parts.user, !user.isEmpty else {
            throw DatabaseConfigurationError("--database names no host or no user: postgres://USER@HOST[:PORT]/DATABASE")
        }
        let database = String(parts.path.drop(while: { $0 == "/" }))
        guard !database.isEmpty, !database.contains("/") else {
            throw DatabaseConfigurationError("--database names no database: postgres://USER@HOST[:PORT]/DATABASE")
        }
        var tls = TLSMode.prefer
        for item in parts.queryItems ?? [] {
            guard item.name == "sslmode", let mode = item.value.flatMap(TLSMode.init(rawValue:)) else {
                throw DatabaseConfigurationError("--database: the only option is sslmode=disable|prefer|require, not \(item.name)")
            }
            tls = mode
        }
        self.host = host
        self.port = parts.port ?? 5432
        self.user = user
        self.database = database
        self.tls = tls
        if let passwordFile {
            guard let text = try? String(contentsOfFile: passwordFile, encoding: .utf8) else {
                throw DatabaseConfigurationError("cannot read the database password file \(passwordFile)")
            }
            password = text.split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init) ?? ""
        } else {
            password = environment["PGPASSWORD"]
        }
    }

    /// The same server, another database (tests make one each).
    public func with(database: String) -> DatabaseSettings {
        var copy = self
        copy.database = database
        return copy
    }

    var clientConfiguration: PostgresClient.Configuration {
        let tlsConfiguration: PostgresClient.Configuration.TLS = switch tls {
        case .disable: .disable
        case .prefer: .prefer(.makeClientConfiguration())
        case .require: .require(.makeClientConfiguration())
        }
        var configuration = PostgresClient.Configuration(host: host, port: port, username: user, password: password,
                                                         database: database, tls: tlsConfiguration)
        configuration.options.connectTimeout = .seconds(5)
        return configuration
    }

    /// The same for one connection of its own (the start-up check).
    func connectionConfiguration() throws -> PostgresConnection.Configuration {
        let tlsConfiguration: PostgresConnection.Configuration.TLS = switch tls {
        case .disable: .disable
        case .prefer: .prefer(try NIOSSLContext(configuration: .makeClientConfiguration()))
        case .require: .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
        }
        var configuration = PostgresConnection.Configuration(host: host, port: port, username: user, password: password,
                                                             database: database, tls: tlsConfiguration)
        configuration.options.connectTimeout = .seconds(5)
        return configuration
    }

    private static func withoutSecrets(_ url: String) -> String {
        guard var parts = URLComponents(string: url) else { return "that" }
        if parts.password != nil { parts.password = "…" }
        return parts.string ?? "that"
    }
}

/// A database setting that cannot work, said in one line.
public struct DatabaseConfigurationError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
