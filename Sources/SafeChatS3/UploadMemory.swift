/// The bytes every upload together may hold in memory (parts being filled and sent). Each upload
/// takes room for the part it fills, waiting if there is none; room for sending a part while it
/// fills the next is only taken if free at once, so an upload never waits for memory while holding
/// some that others wait for: it falls back to waiting for its own sends.
actor UploadMemory {
    private var free: Int
    private var waiting: [(bytes: Int, resume: CheckedContinuation<Void, Never>)] = []

    init(bytes: Int) { free = bytes }

    func take(_ bytes: Int) async {
        if waiting.isEmpty && free >= bytes {
            free -= bytes
            return
        }
        await withCheckedContinuation { waiting.append((bytes, $0)) }
    }

    func takeIfFree(_ bytes: Int) -> Bool {
        guard waiting.isEmpty && free >= bytes else { return false }
        free -= bytes
        return true
    }

    func give(_ bytes: Int) {
        free += bytes
        while let first = waiting.first, free >= first.bytes {
            waiting.removeFirst()
            free -= first.bytes
            first.resume.resume()
        }
    }
}
