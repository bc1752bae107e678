/// Background work that must run once per cluster, not once per gateway (sweeping expired uploads,
/// deleting removed accounts' files): whichever gateway takes the work's lease first runs it, and
/// the others skip that round. Alone, a gateway always runs it (``ProcessLeases``).
public protocol ClusterLeases: Sendable {
    /// Runs `body` unless another gateway is running the work named `name`; returns whether it ran.
    func runAlone(_ name: String, _ body: @Sendable () async throws -> Void) async throws -> Bool
}

/// One gateway alone: every round runs.
public struct ProcessLeases: ClusterLeases {
    public init() {}

    public func runAlone(_ name: String, _ body: @Sendable () async throws -> Void) async throws -> Bool {
        try await body()
        return true
    }
}
