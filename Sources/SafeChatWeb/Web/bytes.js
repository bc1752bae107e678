// Byte helpers shared by the page's modules.

export const utf8 = new TextEncoder();

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

export function u32be(n) {
  return new Uint8Array([(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]);
}

export function readU32(b, at) {
  return ((b[at] << 24) >>> 0) + (b[at + 1] << 16) + (b[at + 2] << 8) + b[at + 3];
}

export function hex(bytes) {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

/** Lowercase or uppercase hex of exactly `length` bytes (if given); throws otherwise. */
export function fromHex(text, length) {
  if (typeof text !== 'string' || text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text)) throw new Error('not hex');
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.substr(2 * i, 2), 16);
  if (length !== undefined && out.length !== length) throw new Error(`expected ${length} bytes of hex`);
  return out;
}

/** Compares without an early exit, for secrets and commitments. */
export function equalConstantTime(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/** The UTF-8 of `text`'s longest prefix of whole code points within `maxBytes` (never cut inside one). */
export function utf8Prefix(text, maxBytes) {
  let bytes = 0, end = 0;
  for (const ch of text) {
    const n = utf8.encode(ch).length;
    if (bytes + n > maxBytes) break;
    bytes += n;
    end += ch.length;
  }
  return utf8.encode(text.slice(0, end));
}

export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
}

/**
 * Reads up to `length` bytes from a BYOB `reader` into `buffer` at `offset`, so that no buffer is
 * allocated per read. Returns the buffer (each read hands it over and back, so it is a new
 * ArrayBuffer object) and how many bytes came: fewer only if the stream ended.
 */
export async function readInto(reader, buffer, offset, length) {
  let got = 0;
  while (got < length) {
    const { value, done } = await reader.read(new Uint8Array(buffer, offset + got, length - got));
    if (value) buffer = value.buffer;
    if (done) break;
    got += value.byteLength;
  }
  return { buffer, got };
}
