import Foundation
import SafeChatGateway
import SafeChatTestSupport
import Testing

/// /readyz on a gateway whose sealed bytes are on an object store of its own and whose state is in
/// a PostgreSQL of its own: it turns false when either stops, naming which, and true again when it
/// is back; /healthz stays true throughout (the process is alive).
@Suite struct ReadinessTests {
    @Test func readinessFollowsTheObjectStoreAndTheDatabase() async throws {
        let weed = try PrivateSeaweedFS()
        defer { weed.remove() }
        try await weed.start()
        try await weed.makeBucket("ready")
        let postgres = try await PrivatePostgres()
        try await postgres.start()
        let server = try await TestGateway.start(blobs: try weed.blobStore(bucket: "ready"), database: try postgres.settings()) {
            $0.operationsAddress = ("127.0.0.1", 0)
            $0.minimumFreeSpace = 0
        }
        do {
            let operations = HTTP(base: "http://127.0.0.1:\(try #require(server.operationsPort))")
            /// Polls /readyz until it says `ready` (up to 60 s: a restarted store takes a while to answer).
            func readiness(becomes ready: Bool) async throws -> (status: Int, checks: [String: String]) {
                var last: (Int, [String: String]) = (0, [:])
                for _ in 0..<240 {
                    let reply = try await operations.send(.GET, "/readyz", timeout: .seconds(10))
                    last = (reply.status, reply.json["checks"] as? [String: String] ?? [:])
                    if (reply.status == 200) == ready { break }
                    try await Task.sleep(for: .milliseconds(250))
                }
                return last
            }
            let up = try await readiness(becomes: true)
            #expect(up.status == 200 && up.checks == ["registry": "ok", "blob_store": "ok", "disk": "ok", "database": "ok"], "\(up)")

            weed.stop()
            let storeDown = try await readiness(becomes: false)
            #expect(storeDown.status == 503 && storeDown.checks["blob_store"] != "ok" && storeDown.checks["database"] == "ok", "\(storeDown)")
            #expect(try await operations.send(.GET, "/healthz").status == 200)
            try await weed.start()
            let storeBack = try await readiness(becomes: true)
            #expect(storeBack.status == 200, "\(storeBack)")

            try await postgres.stop()
            let databaseDown = try await readiness(becomes: false)
            #expect(databaseDown.status == 503 && databaseDown.checks["database"] != "ok" && databaseDown.checks["blob_store"] == "ok",
                    "\(databaseDown)")
            #expect(try await operations.send(.GET, "/healthz").status == 200)
            try await postgres.start()
            let databaseBack = try await readiness(becomes: true)
            #expect(databaseBack.status == 200, "\(databaseBack)")

            // The failures were counted, by store.
            let metrics = try await operations.send(.GET, "/metrics").text
            for store in ["blob_store", "database"] {
                let prefix = "safechat_store_errors_total{store=\"\(store)\"} "
                let line = metrics.split(separator: "\n").first { $0.hasPrefix(prefix) }.map(String.init) ?? ""
                let count = Double(line.dropFirst(prefix.count)) ?? 0
                #expect(count > 0, "\(store): \(line)")
            }
        } catch {
            Issue.record(error)
        }
        await server.stop()
        server.removeData()
        await postgres.remove()
    }
}
