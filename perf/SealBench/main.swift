// safechat-bench: seal/open throughput of the `safechat` CLI beside what its parts allow.
//
// For each data set (random, text-like, mixed; --size-mib each) it measures, in one run:
//   - `safechat seal FILE /dev/null` and `safechat open FILE.sealed /dev/null` (median of --runs,
//     each run alternating with a run of the ceiling below so that both see the same conditions on a
//     shared machine whose speed drifts; peak RSS of the child process from wait4),
//   - raw OpenSSL AES-256-GCM encrypt/decrypt and raw liblz4 compress/decompress on the same bytes,
//     one core each, and the same per-chunk LZ4+GCM work spread over every core with no I/O at all
//     (the ceiling the pipeline is compared against),
//   - `age` encrypting and decrypting the same file (X25519 recipient), when installed,
// and prints the ratios and the issue's targets. Run it through perf/seal-bench.sh (release build).
import COpenSSL
import CLZ4
import Dispatch
import Foundation
import SafeChatAPI
import SafeChatGateway
import SealedStream
import Synchronization

struct Options {
    var sizeMiB = 1024
    var runs = 5
    var dataDir = "perf/.data"
    var safechat = ".build/release/safechat"
    var datasets = ["random", "text", "mixed"]
    /// Only write the data sets and print their paths (for perf/gateway-bench.sh).
    var prepareOnly = false
    /// Only measure registry write latency with this many files recorded.
    var registryFiles: Int?
    /// Only measure making and verifying a session of this many members.
    var sessionMembers: Int?

    init(_ args: [String]) {
        var i = 1
        func value() -> String { i += 1; guard i < args.count else { fail("missing value for \(args[i - 1])") }; return args[i] }
        while i < args.count {
            switch args[i] {
            case "--size-mib": guard let n = Int(value()), n > 0 else { fail("--size-mib takes a positive number") }; sizeMiB = n
            case "--runs": guard let n = Int(value()), n > 0 else { fail("--runs takes a positive number") }; runs = n
            case "--data-dir": dataDir = value()
            case "--safechat": safechat = value()
            case "--datasets": datasets = value().split(separator: ",").map(String.init)
            case "--prepare-only": prepareOnly = true
            case "--registry-files": guard let n = Int(value()), n > 0 else { fail("--registry-files takes a positive number") }; registryFiles = n
            case "--session-members": guard let n = Int(value()), (1...1000).contains(n) else { fail("--session-members takes 1 to 1000") }; sessionMembers = n
            default: fail("usage: safechat-bench [--size-mib N] [--runs N] [--data-dir DIR] [--safechat PATH] [--datasets random,text,mixed] [--prepare-only] [--registry-files N] [--session-members N]")
            }
            i += 1
        }
    }
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("safechat-bench: \(message)\n".utf8))
    exit(1)
}

let chunkSize = 1 << 20
let options = Options(CommandLine.arguments)
let cores = ProcessInfo.processInfo.activeProcessorCount

// MARK: data

/// Writes the data set file if it is missing or has the wrong size.
func prepare(_ name: String) throws -> String {
    try FileManager.default.createDirectory(atPath: options.dataDir, withIntermediateDirectories: true)
    let path = "\(options.dataDir)/\(name)-\(options.sizeMiB)MiB.bin"
    let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? nil
    if size == options.sizeMiB << 20 { return path }
    FileManager.default.createFile(atPath: path, contents: nil)
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
    var random = [UInt8](repeating: 0, count: chunkSize)
    var line = 0
    for i in 0..<options.sizeMiB {
        let kind = name == "mixed" ? (i % 2 == 0 ? "random" : "text") : name
        var chunk: [UInt8]
        if kind == "random" {
            random.withUnsafeMutableBytes { _ = RAND_bytes($0.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(chunkSize)) }
            chunk = random
        } else {
            chunk = []
            chunk.reserveCapacity(chunkSize + 200)
            while chunk.count < chunkSize {
                chunk += Array("2026-11-26T12:\(line % 60):\(line % 59) INFO request id=\(line &* 2654435761 % 1000003) user=user\(line % 977) path=/files/\(line % 4099) status=200 bytes=\(line % 65536)\n".utf8)
                line += 1
            }
            chunk.removeLast(chunk.count - chunkSize)
        }
        try handle.write(contentsOf: Data(chunk))
    }
    try handle.close()
    return path
}

func readWhole(_ path: String) -> [UInt8] {
    guard let data = FileManager.default.contents(atPath: path) else { fail("cannot read \(path)") }
    return Array(data)
}

// MARK: timing

struct Measurement { let seconds: Double; let peakRSS: Int }

/// Runs a command with stdout/stderr to /dev/null; wall time and the child's peak RSS.
func runMeasured(_ argv: [String], stdoutTo: String = "/dev/null") -> Measurement {
    var actions: posix_spawn_file_actions_t = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    posix_spawn_file_actions_addopen(&actions, 1, stdoutTo, O_WRONLY | O_TRUNC | O_CREAT, 0o644)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    let cargs = argv.map { strdup($0) } + [nil]
    defer { cargs.forEach { free($0) } }
    var pid: pid_t = 0
    let start = DispatchTime.now().uptimeNanoseconds
    guard posix_spawnp(&pid, argv[0], &actions, nil, cargs, environ) == 0 else { fail("cannot run \(argv[0])") }
    var status: Int32 = 0
    var usage = rusage()
    wait4(pid, &status, 0, &usage)
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    posix_spawn_file_actions_destroy(&actions)
    guard status == 0 else { fail("\(argv.joined(separator: " ")) failed with status \(status)") }
    return Measurement(seconds: seconds, peakRSS: usage.ru_maxrss * 1024)
}

/// Puts `path` in the page cache the way reading it once does: dropped, then read in order.
/// This machine's proactive reclaim (DAMON) pages out files left idle for a second or two, and a
/// file faulted back in piece by piece is cached in 4 KiB pages, which costs a reader that maps it
/// several times the kernel time of the large folios that sequential reads produce (1 GiB seal:
/// 0.23 s against 0.17 s). Every timed run, `safechat` and `age` alike, starts from this state.
func recache(_ path: String) {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { fail("cannot open \(path)") }
    defer { close(fd) }
    _ = fdatasync(fd)  // dirty pages cannot be dropped
    _ = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
    let length = 8 << 20
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: length, alignment: 4096)
    defer { buffer.deallocate() }
    while read(fd, buffer, length) > 0 {}
}

/// `argv` timed with its input file freshly cached (see ``recache(_:)``).
func runFromCache(_ argv: [String], input: String) -> Measurement {
    recache(input)
    return runMeasured(argv)
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

func timeMedian(_ runs: Int, _ body: () -> Void) -> Double {
    median((0..<runs).map { _ in
        let start = DispatchTime.now().uptimeNanoseconds
        body()
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    })
}

// MARK: raw baselines (the same calls the pipeline makes, without the pipeline)

nonisolated(unsafe) let gcm = EVP_CIPHER_fetch(nil, "AES-256-GCM", nil)!
let rawKey = [UInt8](repeating: 7, count: 32)
let rawNonce = [UInt8](repeating: 9, count: 12)

func gcmSeal(_ input: UnsafeRawBufferPointer, into out: UnsafeMutableRawPointer) {
    let ctx = EVP_CIPHER_CTX_new()
    var n: Int32 = 0
    EVP_EncryptInit_ex2(ctx, gcm, rawKey, rawNonce, nil)
    EVP_EncryptUpdate(ctx, out.assumingMemoryBound(to: UInt8.self), &n, input.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(input.count))
    EVP_EncryptFinal_ex(ctx, out.assumingMemoryBound(to: UInt8.self) + Int(n), &n)
    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, out + input.count)
    EVP_CIPHER_CTX_free(ctx)
}

func gcmOpen(_ input: UnsafeRawBufferPointer, into out: UnsafeMutableRawPointer) -> Bool {
    let ctx = EVP_CIPHER_CTX_new()
    var n: Int32 = 0
    let body = input.count - 16
    EVP_DecryptInit_ex2(ctx, gcm, rawKey, rawNonce, nil)
    EVP_DecryptUpdate(ctx, out.assumingMemoryBound(to: UInt8.self), &n, input.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(body))
    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, UnsafeMutableRawPointer(mutating: input.baseAddress! + body))
    let ok = EVP_DecryptFinal_ex(ctx, out.assumingMemoryBound(to: UInt8.self) + Int(n), &n) == 1
    EVP_CIPHER_CTX_free(ctx)
    return ok
}

/// Per-chunk work units over `data`, the way the pipeline cuts it.
func chunkRanges(_ count: Int) -> [Range<Int>] {
    stride(from: 0, to: count, by: chunkSize).map { $0..<min(count, $0 + chunkSize) }
}

struct Throughputs {
    var gcmEncrypt = 0.0, gcmDecrypt = 0.0, lz4Compress = 0.0, lz4Decompress = 0.0
    var sealCeiling = 0.0, openCeiling = 0.0
    /// `safechat seal` / `open`, timed alternately with the ceilings.
    var seal = 0.0, open = 0.0
}

/// Runs `command` (returning its wall time) and `ceiling` alternately, `runs` times each, so both
/// see the same machine conditions on a shared, drifting machine; their median seconds.
func interleavedMedians(_ runs: Int, command: () -> Double, ceiling: () -> Void) -> (command: Double, ceiling: Double) {
    var commandSeconds: [Double] = [], ceilingSeconds: [Double] = []
    for _ in 0..<runs {
        commandSeconds.append(command())
        let start = DispatchTime.now().uptimeNanoseconds
        ceiling()
        ceilingSeconds.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }
    return (median(commandSeconds), median(ceilingSeconds))
}

/// The raw numbers for one data set, all in MB/s of plaintext, and the CLI's seal and open timed
/// alternately with the ceilings (`sealCommand` and `openCommand` return wall seconds).
func measureThroughputs(_ data: [UInt8], sealCommand: () -> Double, openCommand: () -> Double) -> Throughputs {
    let ranges = chunkRanges(data.count)
    let bytes = Double(data.count) / 1e6
    let runs = max(3, options.runs)
    var results = Throughputs()
    // Compressed chunks (or nil when stored) for the decompress and open baselines.
    var compressed = [[UInt8]?](repeating: nil, count: ranges.count)
    var sealedChunks = [[UInt8]](repeating: [], count: ranges.count)
    var out = [UInt8](repeating: 0, count: chunkSize + 64)

    data.withUnsafeBytes { all in
        results.gcmEncrypt = bytes / timeMedian(runs) {
            out.withUnsafeMutableBytes { o in for r in ranges { gcmSeal(UnsafeRawBufferPointer(rebasing: all[r]), into: o.baseAddress!) } }
        }
        results.lz4Compress = bytes / timeMedian(runs) {
            out.withUnsafeMutableBytes { o in
                for (i, r) in ranges.enumerated() {
                    let n = LZ4_compress_default(all.baseAddress!.advanced(by: r.lowerBound).assumingMemoryBound(to: CChar.self),
                                                 o.baseAddress!.assumingMemoryBound(to: CChar.self), Int32(r.count), Int32(r.count - 1))
                    if compressed[i] == nil, n > 0 { compressed[i] = Array(o.prefix(Int(n))) }
                }
            }
        }
        // The sealed form of each chunk (compressed when smaller), to time decryption on.
        for (i, r) in ranges.enumerated() {
            let body = compressed[i] ?? Array(all[r])
            var sealed = [UInt8](repeating: 0, count: body.count + 16)
            body.withUnsafeBytes { b in sealed.withUnsafeMutableBytes { gcmSeal(b, into: $0.baseAddress!) } }
            sealedChunks[i] = sealed
        }
        results.gcmDecrypt = bytes / timeMedian(runs) {
            out.withUnsafeMutableBytes { o in
                // Decrypting the plaintext bytes as if they were ciphertext: the tag check fails at the
                // end, but GCM does exactly the same work as on a real record of that size.
                for r in ranges { _ = gcmOpen(UnsafeRawBufferPointer(rebasing: all[r]), into: o.baseAddress!) }
            }
        }
        results.lz4Decompress = bytes / timeMedian(runs) {
            out.withUnsafeMutableBytes { o in
                for (i, r) in ranges.enumerated() {
                    if let c = compressed[i] {
                        _ = c.withUnsafeBytes { LZ4_decompress_safe($0.baseAddress!.assumingMemoryBound(to: CChar.self), o.baseAddress!.assumingMemoryBound(to: CChar.self), Int32(c.count), Int32(r.count)) }
                    } else {
                        o.baseAddress!.copyMemory(from: all.baseAddress! + r.lowerBound, byteCount: r.count)
                    }
                }
            }
        }
        // Ceilings: compress-if-smaller + encrypt (and decrypt + decompress) per chunk on every
        // core, no reading, no writing, no framing.
        let sealedCopy = sealedChunks
        nonisolated(unsafe) let all = all  // read-only for the duration of concurrentPerform
        let compressedFlags = compressed.map { $0 != nil }
        let sealTimes = interleavedMedians(runs, command: sealCommand) {
            let next = Atomic<Int>(0)
            DispatchQueue.concurrentPerform(iterations: cores) { _ in
                var scratch = [UInt8](repeating: 0, count: chunkSize + 64)
                var sealed = [UInt8](repeating: 0, count: chunkSize + 64)
                scratch.withUnsafeMutableBytes { s in sealed.withUnsafeMutableBytes { o in
                    // Chunks are handed out one at a time, so uneven chunks balance across cores.
                    while case let i = next.add(1, ordering: .relaxed).oldValue, i < ranges.count {
                        let r = ranges[i]
                        let n = LZ4_compress_default(all.baseAddress!.advanced(by: r.lowerBound).assumingMemoryBound(to: CChar.self),
                                                     s.baseAddress!.assumingMemoryBound(to: CChar.self), Int32(r.count), Int32(r.count - 1))
                        let source = n > 0 ? UnsafeRawBufferPointer(rebasing: s[0..<Int(n)]) : UnsafeRawBufferPointer(rebasing: all[r])
                        gcmSeal(source, into: o.baseAddress!)
                    }
                } }
            }
        }
        results.sealCeiling = bytes / sealTimes.ceiling
        results.seal = bytes / sealTimes.command
        let openTimes = interleavedMedians(runs, command: openCommand) {
            let next = Atomic<Int>(0)
            DispatchQueue.concurrentPerform(iterations: cores) { _ in
                var scratch = [UInt8](repeating: 0, count: chunkSize + 64)
                var plain = [UInt8](repeating: 0, count: chunkSize + 64)
                scratch.withUnsafeMutableBytes { s in plain.withUnsafeMutableBytes { p in
                    while case let i = next.add(1, ordering: .relaxed).oldValue, i < ranges.count {
                        let sealed = sealedCopy[i]
                        let ok = sealed.withUnsafeBytes { gcmOpen($0, into: compressedFlags[i] ? s.baseAddress! : p.baseAddress!) }
                        precondition(ok, "baseline decrypt failed")
                        if compressedFlags[i] {
                            _ = LZ4_decompress_safe(s.baseAddress!.assumingMemoryBound(to: CChar.self), p.baseAddress!.assumingMemoryBound(to: CChar.self),
                                                    Int32(sealed.count - 16), Int32(ranges[i].count))
                        }
                    }
                } }
            }
        }
        results.openCeiling = bytes / openTimes.ceiling
        results.open = bytes / openTimes.command
    }
    return results
}

// MARK: run

func mbps(_ bytes: Int, _ seconds: Double) -> Double { Double(bytes) / 1e6 / seconds }
func f(_ v: Double) -> String { String(format: "%8.0f", v) }
func r(_ v: Double) -> String { String(format: "%5.2fx", v) }

if options.prepareOnly {
    for name in options.datasets { print(try prepare(name)) }
    exit(0)
}
if let files = options.registryFiles {
    try await registryBench(files: files)
    exit(0)
}
if let members = options.sessionMembers {
    try sessionBench(members: members, runs: options.runs)
    exit(0)
}

let work = options.dataDir
let keyPath = "\(work)/bench.key"
try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
if !FileManager.default.fileExists(atPath: keyPath) { _ = runMeasured([options.safechat, "keygen", keyPath]) }
let ageAvailable = FileManager.default.isExecutableFile(atPath: "/usr/bin/age") && FileManager.default.isExecutableFile(atPath: "/usr/bin/age-keygen")
let ageIdentity = "\(work)/age-identity.txt"
var ageRecipient = ""
if ageAvailable {
    if !FileManager.default.fileExists(atPath: ageIdentity) { _ = runMeasured(["age-keygen", "-o", ageIdentity]) }
    let text = (try? String(contentsOfFile: ageIdentity, encoding: .utf8)) ?? ""
    ageRecipient = text.split(separator: "\n").first { $0.hasPrefix("# public key: ") }.map { String($0.dropFirst(14)) } ?? ""
}

print("safechat-bench: \(options.sizeMiB) MiB per data set, median of \(options.runs) runs, \(cores) cores, chunk 1 MiB")
print("MB/s are 10^6 bytes of plaintext per second; files are read from the page cache (dropped and read back in\norder before every timed run) and written to /dev/null.\n")
var verdicts: [(String, Bool)] = []

struct CommandResults {
    var sealRSS = 0, openRSS = 0, sealedSize = 0, ageEncrypt = 0.0, ageDecrypt = 0.0
}

// Peak RSS of the child processes first, for every data set: a child's peak RSS (from wait4)
// starts from its parent's at spawn time, so the bench must not have touched the big in-memory
// baselines yet. Their throughput is measured later, alternating with the ceilings.
var commandResults: [String: CommandResults] = [:]
for name in options.datasets {
    let path = try prepare(name)
    let sealedPath = "\(work)/\(name)-\(options.sizeMiB)MiB.sealed"
    _ = runMeasured([options.safechat, "seal", "-q", "--key", keyPath, path, sealedPath])
    let size = options.sizeMiB << 20
    var c = CommandResults()
    let seals = (0..<options.runs).map { _ in runFromCache([options.safechat, "seal", "-q", "--key", keyPath, path, "/dev/null"], input: path) }
    let opens = (0..<options.runs).map { _ in runFromCache([options.safechat, "open", "-q", "--key", keyPath, sealedPath, "/dev/null"], input: sealedPath) }
    c.sealRSS = seals.map(\.peakRSS).max()!
    c.openRSS = opens.map(\.peakRSS).max()!
    c.sealedSize = (try FileManager.default.attributesOfItem(atPath: sealedPath)[.size] as? Int) ?? 0
    if ageAvailable, !ageRecipient.isEmpty {
        let agePath = "\(work)/\(name)-\(options.sizeMiB)MiB.age"
        _ = runMeasured(["age", "-r", ageRecipient, "-o", agePath, path])
        let ageRuns = max(3, options.runs / 2)
        c.ageEncrypt = mbps(size, median((0..<ageRuns).map { _ in runFromCache(["age", "-r", ageRecipient, "-o", "/dev/null", path], input: path).seconds }))
        c.ageDecrypt = mbps(size, median((0..<ageRuns).map { _ in runFromCache(["age", "-d", "-i", ageIdentity, "-o", "/dev/null", agePath], input: agePath).seconds }))
        try? FileManager.default.removeItem(atPath: agePath)
    }
    commandResults[name] = c
}

for name in options.datasets {
    let path = try prepare(name)
    let size = options.sizeMiB << 20
    let c = commandResults[name]!
    let sealedPath = "\(work)/\(name)-\(options.sizeMiB)MiB.sealed"
    let t = measureThroughputs(readWhole(path),
                         sealCommand: { runFromCache([options.safechat, "seal", "-q", "--key", keyPath, path, "/dev/null"], input: path).seconds },
                         openCommand: { runFromCache([options.safechat, "open", "-q", "--key", keyPath, sealedPath, "/dev/null"], input: sealedPath).seconds })
    try? FileManager.default.removeItem(atPath: sealedPath)
    print("== \(name): \(size >> 20) MiB, sealed \(String(format: "%.1f", Double(c.sealedSize) / Double(size) * 100))% of plaintext")
    print("                                   MB/s")
    print("  safechat seal                \(f(t.seal))   peak RSS \(c.sealRSS >> 20) MiB")
    print("  safechat open                \(f(t.open))   peak RSS \(c.openRSS >> 20) MiB")
    print("  raw AES-256-GCM encrypt 1c   \(f(t.gcmEncrypt))")
    print("  raw AES-256-GCM decrypt 1c   \(f(t.gcmDecrypt))")
    print("  raw LZ4 compress 1c          \(f(t.lz4Compress))")
    print("  raw LZ4 decompress 1c        \(f(t.lz4Decompress))")
    print("  LZ4+GCM ceiling seal \(cores)c      \(f(t.sealCeiling))")
    print("  LZ4+GCM ceiling open \(cores)c      \(f(t.openCeiling))")
    if ageAvailable {
        print("  age encrypt                  \(f(c.ageEncrypt))")
        print("  age decrypt                  \(f(c.ageDecrypt))")
    }
    print("  ratios: seal/ceiling \(r(t.seal / t.sealCeiling))  open/ceiling \(r(t.open / t.openCeiling))", terminator: "")
    if ageAvailable { print("  seal/age \(r(t.seal / c.ageEncrypt))  open/age \(r(t.open / c.ageDecrypt))") } else { print() }
    print()

    verdicts.append(("\(name): seal >= 80% of the LZ4+GCM ceiling", t.seal >= 0.8 * t.sealCeiling))
    verdicts.append(("\(name): open >= 80% of the LZ4+GCM ceiling", t.open >= 0.8 * t.openCeiling))
    verdicts.append(("\(name): peak RSS < 64 MiB", max(c.sealRSS, c.openRSS) < 64 << 20))
    if name == "random" {
        verdicts.append(("random: seal >= 2000 MB/s", t.seal >= 2000))
        verdicts.append(("random: open >= 2500 MB/s", t.open >= 2500))
        if ageAvailable {
            verdicts.append(("random: seal >= 2x age", t.seal >= 2 * c.ageEncrypt))
            verdicts.append(("random: open >= 2x age", t.open >= 2 * c.ageDecrypt))
        }
    }
}

print("targets:")
for (name, ok) in verdicts { print("  \(ok ? "PASS" : "MISS")  \(name)") }

// MARK: registry

/// Records `files` manifests (each with 64 records, like a 64 MiB file) in a fresh JSON registry and
/// reports the latency of each write (fsync included) over the last tenth, i.e. at ~`files` files.
func registryBench(files: Int) async throws {
    let dir = "\(options.dataDir)/registry-bench"
    try? FileManager.default.removeItem(atPath: dir)
    let registry = try JSONFileRegistry(directory: dir)
    let header = try StreamHeader.parse(Array(try Data(contentsOf: URL(fileURLWithPath: "Fixtures/golden-v1/sealed.bin")).prefix(92)))
    let records = (0..<64).map { FileManifest.Record(index: UInt32($0), offset: 92 + Int64($0) * 1_048_608, length: 1_048_608, plaintextLength: 1 << 20) }
    let owners = (0..<100).map { _ in UserID.random() }
    var latencies: [Double] = []
    latencies.reserveCapacity(files)
    let start = DispatchTime.now().uptimeNanoseconds
    for i in 0..<files {
        let manifest = FileManifest(fileID: FileID.random(), owner: owners[i % 100], createdAt: Date(), expiresAt: nil,
                                    size: 92 + 64 * 1_048_608, plaintextSize: 64 << 20, chunkSize: 1 << 20, header: header,
                                    digest: String(repeating: "0", count: 64), metadata: ["name": "c2VhbGVk"], records: records)
        let t0 = DispatchTime.now().uptimeNanoseconds
        try await registry.putFile(manifest)
        latencies.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
        if (i + 1) % 10_000 == 0 { FileHandle.standardError.write(Data("  \(i + 1) files\n".utf8)) }
    }
    let total = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    let tail = Array(latencies.suffix(max(1, files / 10))).sorted()
    let all = latencies.sorted()
    func pct(_ values: [Double], _ p: Double) -> Double { values[min(values.count - 1, Int(Double(values.count) * p))] }
    print("registry: \(files) files in \(String(format: "%.1f", total)) s")
    print(String(format: "  write latency, all writes:        p50 %.2f ms  p99 %.2f ms  max %.2f ms", pct(all, 0.5), pct(all, 0.99), all.last!))
    print(String(format: "  write latency, last %d writes: p50 %.2f ms  p99 %.2f ms  max %.2f ms", tail.count, pct(tail, 0.5), pct(tail, 0.99), tail.last!))
    print("  target p99 < 5 ms at \(files) files: \(pct(tail, 0.99) < 5 ? "PASS" : "MISS")")
    try? FileManager.default.removeItem(atPath: dir)
}
