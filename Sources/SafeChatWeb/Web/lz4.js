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
    // Short runs are copied a byte at a time: a subarray per sequence costs more than the copy.
    if (literals > 32) {
      out.set(src.subarray(s, s + literals), d);
      s += literals;
      d += literals;
    } else {
      for (let i = 0; i < literals; i++) out[d++] = src[s++];
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
/** Knuth's multiplicative hash constant 2654435761, as the signed 32-bit value Math.imul works with. */
const HASH_PRIME = -1640531535;

/** The hash-table slot of the 4 bytes at `i`. */
const slot = (src, i) => Math.imul(src[i] | (src[i + 1] << 8) | (src[i + 2] << 16) | (src[i + 3] << 24), HASH_PRIME) >>> (32 - HASH_LOG);

/** The most bytes compressBlock can produce for `n` input bytes. */
export const compressBound = (n) => n + Math.ceil(n / 255) + 16;

let hashTable = null;  // compressBlock's, reused (it runs to the end before anyone else can use it)

/**
 * Compresses `src` (Uint8Array) as one LZ4 block; the result may be longer than `src`. It is
 * written into `into` when that holds compressBound(src.length) bytes (a buffer reused from call
 * to call), else into a new array. Its state lives in locals and its helpers are module functions,
 * not closures: a closure that updates the output position keeps it in a heap context, and with
 * that the same compressor ran at 70–90 MiB/s on text instead of 220–270 (Node's V8).
 */
export function compressBlock(src, into) {
  const n = src.length;
  const out = into && into.length >= compressBound(n) ? into : new Uint8Array(compressBound(n));
  let op = 0;
  let anchor = 0;
  if (n > MF_LIMIT) {
    // One table per thread, reused: a new one per block was garbage V8 collects late.
    const table = (hashTable ??= new Int32Array(1 << HASH_LOG)).fill(-1);
    const matchStartLimit = n - MF_LIMIT;
    const matchEndLimit = n - LAST_LITERALS;
    let ip = 0;
    while (ip < matchStartLimit) {
      const h = slot(src, ip);
      const ref = table[h];
      table[h] = ip;
      if (ref < 0 || ip - ref > MAX_OFFSET
          || src[ref] !== src[ip] || src[ref + 1] !== src[ip + 1] || src[ref + 2] !== src[ip + 2] || src[ref + 3] !== src[ip + 3]) {
        // Skip faster through data that does not compress (liblz4's acceleration step).
        ip += 1 + ((ip - anchor) >>> 6);
        continue;
      }
      let start = ip;
      let from = ref;
      while (start > anchor && from > 0 && src[start - 1] === src[from - 1]) { start--; from--; }
      let end = start + MIN_MATCH;
      let at = from + MIN_MATCH;
      while (end < matchEndLimit && src[end] === src[at]) { end++; at++; }
      op = writeSequence(src, out, op, anchor, start, end - start, start - from);
      ip = end;
      anchor = ip;
      if (ip - 2 < matchStartLimit) table[slot(src, ip - 2)] = ip - 2;
    }
  }
  op = writeSequence(src, out, op, anchor, n, 0, 0);
  return out.subarray(0, op);
}

/** Writes one sequence: the literals src[anchor..<literalEnd], then a match (none if matchLength is 0). */
function writeSequence(src, out, op, anchor, literalEnd, matchLength, offset) {
  const literals = literalEnd - anchor;
  const tokenAt = op++;
  let token = (literals >= 15 ? 15 : literals) << 4;
  if (literals >= 15) {
    let rest = literals - 15;
    while (rest >= 255) { out[op++] = 255; rest -= 255; }
    out[op++] = rest;
  }
  if (literals > 32) out.set(src.subarray(anchor, literalEnd), op);
  else for (let i = 0; i < literals; i++) out[op + i] = src[anchor + i];
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
  return op;
}
