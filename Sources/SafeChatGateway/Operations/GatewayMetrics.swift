import CoreMetrics
import Foundation
import Prometheus

/// The gateway's metrics, recorded through swift-metrics and exported by swift-prometheus.
///
/// Each gateway owns its registry (rather than bootstrapping the process-wide `MetricsSystem`), so
/// that gateways sharing a process, as in the tests, count only their own traffic.
public final class GatewayMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let factory: CatalogMetricsFactory
    private let uploadBytes, downloadBytes, chatMessages, chatDeliveries, chatDrops: CoreMetrics.Counter
    private let uploadsActive, downloadsActive, chatConnections, chatQueueDepth: Meter

    public enum LoginResult: String, Sendable, CaseIterable { case success, failure, throttled }
    public enum Store: String, Sendable, CaseIterable { case registry, blob = "blob_store", database }

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        let factory = CatalogMetricsFactory(registry: registry)
        self.factory = factory
        func counter(_ definition: MetricDefinition) -> CoreMetrics.Counter { CoreMetrics.Counter(label: definition.name, factory: factory) }
        func meter(_ definition: MetricDefinition) -> Meter { Meter(label: definition.name, factory: factory) }
        uploadBytes = counter(MetricCatalog.uploadBytes)
        downloadBytes = counter(MetricCatalog.downloadBytes)
        chatMessages = counter(MetricCatalog.chatMessages)
        chatDeliveries = counter(MetricCatalog.chatDeliveries)
        chatDrops = counter(MetricCatalog.chatDropped)
        uploadsActive = meter(MetricCatalog.uploadsActive)
        downloadsActive = meter(MetricCatalog.downloadsActive)
        chatConnections = meter(MetricCatalog.chatConnections)
        chatQueueDepth = meter(MetricCatalog.chatQueueDepth)
        // Series with fixed label values exist from the start (at zero), so that rates and alerts
        // over them work before the first event.
        for result in LoginResult.allCases { _ = loginCounter(result) }
        for store in Store.allCases {
            _ = storeErrorCounter(store)
            _ = storeTimer(store)
        }
    }

    /// The metrics in the Prometheus text exposition format.
    public func exposition() -> [UInt8] { registry.emitToBuffer() }

    // MARK: Requests

    /// One answered request. `route` is the matched route's template, or nil when none matched.
    func requestAnswered(route: String?, method: String, status: Int, duration: Duration) {
        let route = route.flatMap { $0 == "NotFound" ? nil : $0 } ?? "unmatched"
        let method = Self.knownMethods.contains(method) ? method : "other"
        CoreMetrics.Counter(label: MetricCatalog.requests.name, dimensions: [("route", route), ("method", method), ("status", "\(status)")],
                factory: factory).increment()
        CoreMetrics.Timer(label: MetricCatalog.requestDuration.name, dimensions: [("route", route), ("method", method)], factory: factory)
            .recordNanoseconds(Self.nanoseconds(duration))
    }

    private static let knownMethods: Set<String> = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

    // MARK: Transfers

    func uploadStarted() { uploadsActive.increment() }
    func uploadEnded(acceptedBytes: Int64) {
        uploadsActive.decrement()
        if acceptedBytes > 0 { uploadBytes.increment(by: acceptedBytes) }
    }
    func downloadStarted() { downloadsActive.increment() }
    func downloadEnded(sentBytes: Int64?) {
        downloadsActive.decrement()
        if let sentBytes, sentBytes > 0 { downloadBytes.increment(by: sentBytes) }
    }

    // MARK: Chat

    func chatConnected() { chatConnections.increment() }
    func chatDisconnected() { chatConnections.decrement() }
    func chatMessageAccepted() { chatMessages.increment() }
    func chatDelivered(_ count: Int) { if count > 0 { chatDeliveries.increment(by: count) } }
    func chatDropped(_ count: UInt64) { if count > 0 { chatDrops.increment(by: Int64(clamping: count)) } }
    func chatQueue(depth: Int) { chatQueueDepth.set(depth) }

    // MARK: Logins and stores

    func login(_ result: LoginResult) { loginCounter(result).increment() }

    /// Records one operation on a backing store; a server-grade backend (SafeChatPostgres) reports
    /// its own through ``storeOperation(_:duration:failed:)``.
    public func storeOperation(_ store: Store, duration: Duration, failed: Bool) {
        storeTimer(store).recordNanoseconds(Self.nanoseconds(duration))
        if failed { storeErrorCounter(store).increment() }
    }

    /// Runs `body`, recording its time and whether it threw, as an operation on `store`.
    func measure<T>(_ store: Store, _ body: () async throws -> T) async throws -> T {
        let start = ContinuousClock.now
        do {
            let value = try await body()
            storeOperation(store, duration: ContinuousClock.now - start, failed: false)
            return value
        } catch {
            storeOperation(store, duration: ContinuousClock.now - start, failed: true)
            throw error
        }
    }

    private func loginCounter(_ result: LoginResult) -> CoreMetrics.Counter {
        CoreMetrics.Counter(label: MetricCatalog.logins.name, dimensions: [("result", result.rawValue)], factory: factory)
    }
    private func storeErrorCounter(_ store: Store) -> CoreMetrics.Counter {
        CoreMetrics.Counter(label: MetricCatalog.storeErrors.name, dimensions: [("store", store.rawValue)], factory: factory)
    }
    private func storeTimer(_ store: Store) -> CoreMetrics.Timer {
        CoreMetrics.Timer(label: MetricCatalog.storeDuration.name, dimensions: [("store", store.rawValue)], factory: factory)
    }

    private static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}

/// A swift-metrics factory over a Prometheus registry that knows each metric's help text and kind
/// from ``MetricCatalog``: a label missing from the catalog is a programming error, caught by the
/// first test that records it.
struct CatalogMetricsFactory: MetricsFactory {
    let registry: PrometheusCollectorRegistry
    private static let definitions = Dictionary(uniqueKeysWithValues: MetricCatalog.all.map { ($0.name, $0) })
    /// Request times run from under a millisecond (a HEAD) to minutes (a PATCH of gigabytes).
    private static let buckets: [Duration] = [
        .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500),
        .seconds(5), .seconds(10), .seconds(30), .seconds(60), .seconds(300),
    ]

    private func descriptor(_ label: String, _ kind: MetricDefinition.Kind, _ dimensions: [(String, String)]) -> MetricNameDescriptor {
        guard let definition = Self.definitions[label], definition.kind == kind, definition.labels == dimensions.map(\.0) else {
            preconditionFailure("\(label) with labels \(dimensions.map(\.0)) is not a \(kind) in MetricCatalog")
        }
        return MetricNameDescriptor(metricName: definition.name, unitName: "", helpText: definition.help)
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        registry.makeCounter(descriptor: descriptor(label, .counter, dimensions), labels: dimensions)
    }
    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        registry.makeCounter(descriptor: descriptor(label, .counter, dimensions), labels: dimensions)
    }
    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        registry.makeGauge(descriptor: descriptor(label, .gauge, dimensions), labels: dimensions)
    }
    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        registry.makeGauge(descriptor: descriptor(label, .gauge, dimensions), labels: dimensions)
    }
    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        registry.makeDurationHistogram(descriptor: descriptor(label, .histogram, dimensions), labels: dimensions, buckets: Self.buckets)
    }
    // The gateway's metrics live as long as the gateway: nothing is destroyed.
    func destroyCounter(_ handler: any CounterHandler) {}
    func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {}
    func destroyRecorder(_ handler: any RecorderHandler) {}
    func destroyMeter(_ handler: any MeterHandler) {}
    func destroyTimer(_ handler: any TimerHandler) {}
}
