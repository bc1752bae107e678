/// safechat-registry-bench: the file registry's write latency and listing times at a given size,
/// for the embedded JSON registry and for PostgreSQL (perf/cluster-bench.sh runs it).
///
///   safechat-registry-bench json --dir DIR --files N [--writes 1000]
///   safechat-registry-bench postgres --database URL --files N [--writes 1000]   (PGPASSWORD)
///
/// The registry is first filled with N files of 1000 owners (written straight to the JSON
/// directory, or inserted by one SQL statement), then it times WRITES registrations of new files
/// one after another (each durable before the next, as the gateway does), listings of one owner's
/// files (N/1000 of them), the per-owner usage sums a gateway reads at start, and reading every
/// manifest (what `migrate --from-data-dir` does).
import Foundation
import Logging
import SafeChatAPI
import SafeChatGateway
import SafeChatPostgres
import SealedFormat
import SealedStream

let arguments = Array(CommandLine.arguments.dropFirst())
func option(_ name: String) -> String? { arguments.firstIndex(of: name).flatMap { $0 + 1 < arguments.count ? arguments[$0 + 1] : nil } }
guard let backend = arguments.first, ["json", "postgres"].contains(backend), let files = option("--files").flatMap(Int.init), files >= 1000 else {
    FileHandle.standardError.write(Data("usage: safechat-registry-bench json --dir DIR | postgres --database URL, --files N (>= 1000) [--writes N]\n".utf8))
    exit(64)
}
let writes = option("--writes").flatMap(Int.init) ?? 1000

// One real header, 16 records: what a 64 MiB file sealed in 4 MiB chunks records.
let header = try Sealer(key: SessionKey.random(), options: SealOptions(chunkSize: 4 << 20)).header
let owners = (0..<1000).map { _ in UserID.random() }
func manifest(_ id: FileID, owner: UserID) -> FileManifest {
    let records = (0..<16).map { FileManifest.Record(index: UInt32($0), offset: 92 + Int64($0) * 4_194_352, length: 4_194_336, plaintextLength: 4 << 20) }
    return FileManifest(fileID: id, owner: owner, createdAt: Date(), expiresAt: nil, size: 92 + 16 * 4_194_352, plaintextSize: 64 << 20,
                        chunkSize: 4 << 20, header: header, digest: String(repeating: "ab", count: 32), metadata: ["name": "c2VhbGVkIG5hbWU="],
                        records: records)
}

func milliseconds(_ duration: Duration) -> Double { Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15 }
func percentile(_ values: [Double], _ p: Double) -> Double { let sorted = values.sorted(); return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] }

func measure(_ registry: any Registry, opened: Duration) async throws {
    let clock = ContinuousClock()
    var latencies: [Double] = []
    for _ in 0..<writes {
        let item = manifest(FileID.random(), owner: owners.randomElement()!)
        let start = clock.now
        try await registry.putFile(item)
        latencies.append(milliseconds(clock.now - start))
    }
    var listings: [Double] = []
    var listed = 0
    for owner in owners.prefix(20) {
        let start = clock.now
        listed = try await registry.files(ownedBy: owner).count
        listings.append(milliseconds(clock.now - start))
    }
    var start = clock.now
    let owners = try await registry.storedBytesByOwner().count
    let sums = milliseconds(clock.now - start)
    start = clock.now
    let all = try await registry.allFiles().count
    let whole = milliseconds(clock.now - start)
    print(String(format: "%@ %d files: open %.0f ms; write p50 %.2f ms, p99 %.2f ms; one owner's %d files listed in %.1f ms (median); "
                 + "usage of %d owners summed in %.0f ms (start-up); all %d manifests read in %.0f ms",
                 backend, files, milliseconds(opened), percentile(latencies, 0.5), percentile(latencies, 0.99), listed,
                 percentile(listings, 0.5), owners, sums, all, whole))
}

if backend == "json" {
    guard let dir = option("--dir") else { exit(64) }
    let filesDirectory = URL(fileURLWithPath: dir).appendingPathComponent("files")
    try FileManager.default.createDirectory(at: filesDirectory, withIntermediateDirectories: true)
    let encoder = WireCoding.encoder
    for index in 0..<files {
        let id = FileID.random()
        try encoder.encode(manifest(id, owner: owners[index % owners.count])).write(to: filesDirectory.appendingPathComponent("\(id).json"))
    }
    let start = ContinuousClock.now
    let registry = try JSONFileRegistry(directory: dir)
    try await measure(registry, opened: ContinuousClock.now - start)
} else {
    guard let url = option("--database") else { exit(64) }
    let settings = try DatabaseSettings(url: url)
    let database = PostgresDatabase(settings: settings, logger: Logger(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() }))
    let pool = Task { await database.run() }
    try await SchemaMigrations.apply(on: database)
    try fill(url: url, files: files)
    try await measure(PostgresRegistry(database: database), opened: .zero)
    pool.cancel()
    await pool.value
}

/// N files of the 1000 owners in one INSERT … SELECT, through Debian's psql (PGPASSWORD).
func fill(url: String, files: Int) throws {
    let template = String(decoding: try WireCoding.encoder.encode(manifest(FileID.random(), owner: owners[0])), as: UTF8.self)
    let ownerArray = "ARRAY[" + owners.map { "'\($0)'" }.joined(separator: ",") + "]"
    let sql = """
        INSERT INTO files (id, owner, session, created_at, record)
        SELECT md5('file' || i), o, NULL, now() - make_interval(secs => i),
               jsonb_set(jsonb_set($t$\(template)$t$::jsonb, '{fileID}', to_jsonb(md5('file' || i))), '{owner}', to_jsonb(o))
        FROM generate_series(1, \(files)) AS i, LATERAL (SELECT (\(ownerArray))[1 + i % 1000] AS o) AS owner;
        ANALYZE files;
        """
    let psql = Process()
    psql.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    psql.arguments = ["psql", "-q", "-v", "ON_ERROR_STOP=1", url, "-f", "-"]
    let input = Pipe()
    psql.standardInput = input
    try psql.run()
    input.fileHandleForWriting.write(Data(sql.utf8))
    try input.fileHandleForWriting.close()
    psql.waitUntilExit()
    guard psql.terminationStatus == 0 else { throw CocoaError(.fileWriteUnknown) }
}
