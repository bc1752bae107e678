import Foundation
import SafeChatGateway

extension GatewayStateStores {
    /// Every store on `database`: what many gateways behind one load balancer share.
    public static func postgres(_ database: PostgresDatabase, clock: @escaping @Sendable () -> Date = { Date() }) -> GatewayStateStores {
        let accounts = PostgresAccountStore(database: database)
        let bus = PostgresChatBus(database: database)
        return GatewayStateStores(registry: PostgresRegistry(database: database), accounts: accounts,
                                  revocations: PostgresRevocationStore(database: database, clock: clock),
                                  loginAttempts: PostgresLoginAttempts(database: database, clock: clock),
                                  uploadLocks: PostgresUploadLocks(database: database),
                                  sessions: PostgresSessionStore(database: database, accounts: accounts),
                                  chatBus: bus,
                                  chatQueue: { limits, _ in PostgresChatQueue(database: database, limits: limits, bus: bus, origin: bus.origin) },
                                  chatTickets: PostgresChatTickets(database: database),
                                  quota: { PostgresQuotaStore(database: database, quota: $0) },
                                  leases: PostgresClusterLeases(database: database),
                                  readinessChecks: [Readiness.Check(name: "database") { try await database.ping() }])
    }
}
