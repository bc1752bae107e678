import CLZ4

/// One chunk as a single independent LZ4 block (liblz4's block format, no frame).
enum LZ4Block {
    /// Compresses `source` into `destination` only if the result is strictly smaller than the
    /// source. Returns the compressed length, or nil when the chunk should be stored raw.
    ///
    /// Giving liblz4 a destination one byte shorter than the input makes it stop as soon as
    /// compression would not pay, so incompressible data costs little.
    static func compressIfSmaller(
        _ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer
    ) -> Int? {
        guard source.count > 1, let src = source.baseAddress, let dst = destination.baseAddress else { return nil }
        precondition(source.count <= Int(LZ4_MAX_INPUT_SIZE))
        let capacity = min(destination.count, source.count - 1)
        let written = LZ4_compress_default(
            src.assumingMemoryBound(to: CChar.self), dst.assumingMemoryBound(to: CChar.self),
            Int32(source.count), Int32(capacity))
        return written > 0 ? Int(written) : nil
    }

    /// Decompresses `source` into `destination`, succeeding only if it yields exactly
    /// `destination.count` bytes. liblz4's safe decoder never reads or writes outside the buffers
    /// whatever the input, so a malformed or "bomb" block is just an error here.
    static func decompress(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) -> Bool {
        guard let src = source.baseAddress, source.count > 0, source.count <= Int(Int32.max),
              destination.count <= Int(Int32.max)
        else { return false }
        let dst = destination.baseAddress ?? UnsafeMutableRawPointer(mutating: src)
        let produced = LZ4_decompress_safe(
            src.assumingMemoryBound(to: CChar.self), dst.assumingMemoryBound(to: CChar.self),
            Int32(source.count), Int32(destination.count))
        return Int(produced) == destination.count
    }
}
