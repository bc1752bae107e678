/// A bounded queue of chunk jobs that run in parallel and are collected in submission order.
///
/// The window is the pipeline's memory bound: at most `capacity` chunks are in flight, and the
/// producer only reads more input when the consumer has taken a result out.
struct OrderedWindow<Output: Sendable> {
    let capacity: Int
    private var jobs: [Task<Output, any Error>] = []
    private var head = 0

    init(capacity: Int) {
        precondition(capacity >= 1)
        self.capacity = capacity
    }

    var isFull: Bool { jobs.count - head >= capacity }
    var isEmpty: Bool { head == jobs.count }

    mutating func submit(_ work: @escaping @Sendable () throws -> Output) {
        if head > capacity { jobs.removeFirst(head); head = 0 }
        jobs.append(Task { try work() })
    }

    /// The oldest job's result.
    mutating func next() async throws -> Output? {
        guard !isEmpty else { return nil }
        let job = jobs[head]
        head += 1
        return try await job.value
    }

    /// Cancels what is still queued (used once the consumer has failed).
    mutating func cancelAll() {
        for job in jobs[head...] { job.cancel() }
        jobs.removeAll()
        head = 0
    }

    /// Chunks in flight for streams of `chunkSize`: one per core plus one being read or written
    /// (measured: a deeper window only adds cache misses), and no more than about 24 MiB of buffers
    /// whatever the chunk size (each job holds its input and output).
    static func defaultCapacity(chunkSize: Int) -> Int {
        let cores = max(1, Self.activeProcessorCount)
        let byMemory = (24 << 20) / max(1, 2 * chunkSize)
        return max(2, min(cores + 1, byMemory))
    }

    private static var activeProcessorCount: Int {
        #if canImport(Glibc)
        Int(sysconfGlibc(Int32(_SC_NPROCESSORS_ONLN)))
        #else
        4
        #endif
    }
}

#if canImport(Glibc)
import Glibc
private func sysconfGlibc(_ name: Int32) -> Int { sysconf(name) }
#endif
