// LZ4 block format (lz4_Block_format.md): the raw block, no frame and no size prefix, as
// docs/FORMAT.md section 5.2 uses it. decompressBlock accepts every conforming block and refuses,
// without reading or writing out of bounds, any block that does not decompress to exactly the
// expected length. compressBlock is a greedy single-hash compressor that keeps the end-of-block
// rules (the last 5 bytes are literals; no match starts in the last 12 bytes).

export class LZ4Error extends Error {}

/**
 * Decompresses `src` (Uint8Array), which must produce exactly `outputLength` bytes: into the start
 * of `into` (an ArrayBuffer of at least that length) if given, else into a new buffer.
 */
export function decompressBlock(src, outputLength, into) {
  const out = into && into.byteLength >= outputLength ? new Uint8Array(into, 0, outputLength) : new Uint8Array(outputLength);
  const n = src.length;
  let s = 0;
  let d = 0;
  for (;;) {
    if (s >= n) throw new LZ4Error('the block ends mid-sequence');
    const token = src[s++];
    let literals = token >>> 4;
    if (literals === 15) {
      let b;
      do {
        if (s >= n) throw new LZ4Error('a literal length overruns the block');
        b = src[s++];
        literals += b;
      } while (b === 255);
    }
    if (literals > n - s || literals > outputLength - d) throw new LZ4Error('literals overrun the block or the output');
    if (literals > 0) {
      out.set(src.subarray(s, s + literals), d);
      s += literals;
      d += literals;
    }
    if (s === n) break; // the last sequence has literals only
    if (n - s < 2) throw new LZ4Error('the block ends inside an offset');
    const offset = src[s] | (src[s + 1] << 8);
    s += 2;
    if (offset === 0 || offset > d) throw new LZ4Error('a match offset points before the output');
    let length = token & 15;
    if (length === 15) {
      let b;
      do {
        if (s >= n) throw new LZ4Error('a match length overruns the block');
        b = src[s++];
        length += b;
      } while (b === 255);
    }
    length += 4;
    if (length > outputLength - d) throw new LZ4Error('a match overruns the output');
    let from = d - offset;
    if (offset >= length && length > 32) {
      out.copyWithin(d, from, from + length);
      d += length;
    } else {
      // Overlapping matches repeat the bytes just written, one at a time.
      const end = d + length;
      while (d < end) out[d++] = out[from++];
    }
  }
  if (d !== outputLength) throw new LZ4Error(`the block decompresses to ${d} bytes, not ${outputLength}`);
  return out;
}

const HASH_LOG = 16;
const MIN_MATCH = 4;
const LAST_LITERALS = 5;
const MF_LIMIT = 12;
const MAX_OFFSET = 65535;

/** The most bytes compressBlock can produce for `n` input bytes. */
export const compressBound = (n) => n + Math.ceil(n / 255) + 16;

let hashTable = null;  // compressBlock's, reused (it runs to the end before anyone else can use it)

/**
 * Compresses `src` (Uint8Array) as one LZ4 block; the result may be longer than `src`. It is
 * written into `into` when that holds compressBound(src.length) bytes (a buffer reused from call
 * to call), else into a new array.
 */
export function compressBlock(src, into) {
  const n = src.length;
  const out = into && into.length >= compressBound(n) ? into : new Uint8Array(compressBound(n));
  let op = 0;
  let anchor = 0;

  const emit = (literalEnd, matchLength, offset) => {
    const literals = literalEnd - anchor;
    const tokenAt = op++;
    let token = (literals >= 15 ? 15 : literals) << 4;
    if (literals >= 15) {
      let rest = literals - 15;
      while (rest >= 255) { out[op++] = 255; rest -= 255; }
      out[op++] = rest;
    }
    out.set(src.subarray(anchor, literalEnd), op);
    op += literals;
    if (matchLength > 0) {
      out[op++] = offset & 0xff;
      out[op++] = offset >>> 8;
      const code = matchLength - MIN_MATCH;
      token |= code >= 15 ? 15 : code;
      if (code >= 15) {
        let rest = code - 15;
        while (rest >= 255) { out[op++] = 255; rest -= 255; }
        out[op++] = rest;
      }
    }
    out[tokenAt] = token;
  };

  if (n > MF_LIMIT) {
    // One table per thread, reused: a new one per block was garbage V8 collects late.
    const table = (hashTable ??= new Int32Array(1 << HASH_LOG)).fill(-1);
    const read32 = (i) => src[i] | (src[i + 1] << 8) | (src[i + 2] << 16) | (src[i + 3] << 24);
    const hash = (v) => Math.imul(v, 2654435761) >>> (32 - HASH_LOG);
    const matchStartLimit = n - MF_LIMIT;
    const matchEndLimit = n - LAST_LITERALS;
    let ip = 0;
    while (ip < matchStartLimit) {
      const sequence = read32(ip);
      const h = hash(sequence);
      const ref = table[h];
      table[h] = ip;
      if (ref >= 0 && ip - ref <= MAX_OFFSET && read32(ref) === sequence) {
        let start = ip;
        let from = ref;
        while (start > anchor && from > 0 && src[start - 1] === src[from - 1]) { start--; from--; }
        let length = MIN_MATCH;
        while (start + length < matchEndLimit && src[start + length] === src[from + length]) length++;
        emit(start, length, start - from);
        ip = start + length;
        anchor = ip;
        if (ip - 2 >= 0 && ip - 2 < matchStartLimit) table[hash(read32(ip - 2))] = ip - 2;
      } else {
        // Skip faster through data that does not compress (liblz4's acceleration step).
        ip += 1 + ((ip - anchor) >>> 6);
      }
    }
  }
  emit(n, 0, 0);
  return out.subarray(0, op);
}
