/// Where the gateway keeps its state besides sealed bytes. Each store left nil is the embedded
/// default: the data directory (registry, accounts, revocations) or this process's memory (login
/// counts, upload locks). A server-grade backend fills them all (SafeChatPostgres), so that many
/// gateways share one state.
public struct GatewayStateStores: Sendable {
    /// Files, uploads in progress, identity bundles (default ``JSONFileRegistry``).
    public var registry: (any Registry)?
    /// Accounts and their token generations (default ``UserStore``).
    public var accounts: (any AccountStore)?
    /// Tokens logged out one by one (default ``TokenRevocations``).
    public var revocations: (any RevocationStore)?
    /// The login throttle's counts (default ``LoginThrottle``, in memory).
    public var loginAttempts: (any LoginAttempts)?
    /// One append at a time per upload across gateways (alone, none is needed).
    public var uploadLocks: (any UploadLocks)?
    /// Sessions: epoch chains and their members (default ``FileSessionStore``).
    public var sessions: (any SessionStore)?
    /// Live chat deliveries (default ``LocalChatBus``, this process's connections only).
    public var chatBus: (any ChatBus)?
    /// The offline queue, made with the gateway's limits and bus (default ``ChatLog``).
    public var chatQueue: (@Sendable (ChatQueueLimits, any ChatBus) throws -> any ChatQueue)?
    /// Browsers' WebSocket tickets (default ``ChatTickets``, in memory).
    public var chatTickets: (any ChatTicketStore)?
    /// Each user's storage, made with the gateway's per-user quota (default ``QuotaLedger``, in memory).
    public var quota: (@Sendable (Int64) -> any QuotaStore)?
    /// Who runs background work this round (default ``ProcessLeases``: this gateway, always).
    public var leases: (any ClusterLeases)?
    /// What /readyz probes besides the registry, the blob store and the disk (the database).
    public var readinessChecks: [Readiness.Check]

    public init(registry: (any Registry)? = nil, accounts: (any AccountStore)? = nil, revocations: (any RevocationStore)? = nil,
                loginAttempts: (any LoginAttempts)? = nil, uploadLocks: (any UploadLocks)? = nil, sessions: (any SessionStore)? = nil,
                chatBus: (any ChatBus)? = nil, chatQueue: (@Sendable (ChatQueueLimits, any ChatBus) throws -> any ChatQueue)? = nil,
                chatTickets: (any ChatTicketStore)? = nil, quota: (@Sendable (Int64) -> any QuotaStore)? = nil,
                leases: (any ClusterLeases)? = nil, readinessChecks: [Readiness.Check] = []) {
        self.readinessChecks = readinessChecks
        self.quota = quota
        self.leases = leases
        self.sessions = sessions
        self.chatBus = chatBus
        self.chatQueue = chatQueue
        self.chatTickets = chatTickets
        self.registry = registry
        self.accounts = accounts
        self.revocations = revocations
        self.loginAttempts = loginAttempts
        self.uploadLocks = uploadLocks
    }
}
