// The sealed-stream format, version 1 (docs/FORMAT.md), on WebCrypto: HKDF-SHA256 for the key
// schedule, AES-256-GCM per record, LZ4 blocks from ./lz4.js. Records are sealed and opened one
// at a time, so a caller streams files of any size with one chunk in memory per worker.
import { compressBlock, decompressBlock } from './lz4.js';
import { concat, equalConstantTime, hex, readU32, sha256, u32be, utf8 } from './bytes.js';

export const HEADER_SIZE = 92;
export const RECORD_OVERHEAD = 32;
const MAGIC = utf8.encode('SAFECHAT');
const SCHEDULE_INFO = utf8.encode('SafeChat sealed stream v1');

/** A reading rule that failed; `code` is the name docs/FORMAT.md section 6 gives it. */
export class SealedStreamError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

const FILE_ID_LABEL = concat(utf8.encode('SafeChat file id v1'), new Uint8Array([0]));

/** The file id bound to the stream that starts with `header` (section 11): SHA-256(label || header), first 16 bytes, hex. */
export async function boundFileID(header) {
  return hex((await sha256(concat(FILE_ID_LABEL, header.subarray(0, HEADER_SIZE)))).subarray(0, 16));
}

/** The stream digest's first link (section 10): SHA-256(header). */
export const digestStart = (header) => sha256(header.subarray(0, HEADER_SIZE));

/** The next link: SHA-256(previous || record header (16) || tag (16)). */
export const digestStep = (previous, record) =>
  sha256(concat(previous, record.subarray(0, 16), record.subarray(record.length - 16)));

/** Checks a header without the key (section 6.1, rules 1 to 5). */
export async function parseHeader(header) {
  if (header.length === 0) throw new SealedStreamError('emptyInput', 'the input is empty');
  for (let i = 0; i < Math.min(8, header.length); i++) {
    if (header[i] !== MAGIC[i]) throw new SealedStreamError('notASealedStream', 'this is not a SafeChat sealed stream');
  }
  if (header.length < HEADER_SIZE) throw new SealedStreamError('truncatedHeader', 'the stream header is cut short');
  header = header.subarray(0, HEADER_SIZE);
  if (header[8] !== 1) throw new SealedStreamError('unsupportedVersion', `unsupported format version ${header[8]}`);
  if (header[9] !== 1) throw new SealedStreamError('unsupportedAlgorithm', `unsupported algorithm ${header[9]}`);
  if (header[10] > 1) throw new SealedStreamError('unsupportedCodec', `unsupported codec ${header[10]}`);
  if (header[11] < 16 || header[11] > 24) throw new SealedStreamError('invalidChunkSize', `invalid chunk size 2^${header[11]}`);
  const check = (await sha256(header.subarray(0, 76))).subarray(0, 16);
  if (!equalConstantTime(check, header.subarray(76, 92))) throw new SealedStreamError('headerCorrupted', 'the stream header is corrupted');
  return {
    bytes: header.slice(),
    codec: header[10],
    chunkSize: 2 ** header[11],
    salt: header.slice(12, 44),
    commitment: header.slice(44, 76),
  };
}

/** HKDF key schedule (section 4): the record key, the base nonce and the commitment. */
async function schedule(sessionKey, salt, params) {
  const ikm = await crypto.subtle.importKey('raw', sessionKey, 'HKDF', false, ['deriveBits']);
  const okm = new Uint8Array(await crypto.subtle.deriveBits(
    { name: 'HKDF', hash: 'SHA-256', salt, info: concat(SCHEDULE_INFO, params) }, ikm, 76 * 8));
  const key = await crypto.subtle.importKey('raw', okm.subarray(0, 32), 'AES-GCM', false, ['encrypt', 'decrypt']);
  const result = { key, baseNonce: okm.slice(32, 44), commitment: okm.slice(44, 76) };
  okm.fill(0);
  return result;
}

function nonce(baseNonce, index) {
  const n = baseNonce.slice();
  const i = u32be(index);
  for (let k = 0; k < 4; k++) n[8 + k] ^= i[k];
  return n;
}

/** A stream opened with its key: checks the commitment (rule 6.1.6) before any record. */
export async function openingContext(sessionKey, header) {
  const parsed = await parseHeader(header);
  const s = await schedule(sessionKey, parsed.salt, parsed.bytes.subarray(0, 12));
  if (!equalConstantTime(s.commitment, parsed.commitment)) {
    throw new SealedStreamError('wrongKey', 'wrong key: this stream was sealed under another session key');
  }
  return { ...parsed, key: s.key, baseNonce: s.baseNonce };
}

/** Reads record `expected`'s header (rules 6.2.2 to 6.2.4) from `bytes` at `at`; returns its lengths. */
export function recordHeader(ctx, bytes, at, expected) {
  if (bytes.length - at < 16) throw new SealedStreamError('truncatedRecord', `chunk ${expected} is cut short`);
  const h = bytes.subarray(at, at + 16);
  const flags = h[4];
  if ((flags & 0xfc) !== 0 || h[5] !== 0 || h[6] !== 0 || h[7] !== 0) {
    throw new SealedStreamError('malformedRecord', `chunk ${expected} has a malformed header`);
  }
  if (readU32(h, 0) !== expected) throw new SealedStreamError('unexpectedIndex', `chunk ${expected} is out of order`);
  const final = (flags & 1) !== 0;
  const lz4 = (flags & 2) !== 0;
  const plainLength = readU32(h, 8);
  const bodyLength = readU32(h, 12);
  const malformed = () => new SealedStreamError('malformedRecord', `chunk ${expected} has impossible lengths`);
  if (plainLength > ctx.chunkSize) throw malformed();
  if (lz4 ? ctx.codec !== 1 || bodyLength < 1 || bodyLength >= plainLength : bodyLength !== plainLength) throw malformed();
  if (final ? plainLength < 1 && expected !== 0 : expected >= 0xffffffff || plainLength !== ctx.chunkSize) throw malformed();
  return { header: h.slice(), final, lz4, plainLength, bodyLength, size: 16 + bodyLength + 16 };
}

/**
 * Verifies and opens one record whose header `info` came from recordHeader (rules 6.2.7, 6.2.8).
 * A compressed record is decompressed into `into` (an ArrayBuffer of chunkSize bytes) if given.
 */
export async function openRecord(ctx, info, recordBytes, index, into) {
  let body;
  try {
    body = new Uint8Array(await crypto.subtle.decrypt(
      { name: 'AES-GCM', iv: nonce(ctx.baseNonce, index), additionalData: info.header, tagLength: 128 },
      ctx.key, recordBytes.subarray(16, info.size)));
  } catch {
    throw new SealedStreamError('authenticationFailed', `chunk ${index} failed authentication: it was changed or belongs to another stream`);
  }
  if (!info.lz4) return body;
  try {
    return decompressBlock(body, info.plainLength, into);
  } catch {
    throw new SealedStreamError('decompressionFailed', `chunk ${index} does not decompress`);
  }
}

/** Opens a whole stream held in memory (tests and small files; files stream through openRecord). */
export async function openStream(sessionKey, bytes) {
  const ctx = await openingContext(sessionKey, bytes);
  const chunks = [];
  let at = HEADER_SIZE;
  for (let index = 0; ; index++) {
    if (at === bytes.length) throw new SealedStreamError('missingFinalChunk', 'the stream ends before its final chunk');
    const info = recordHeader(ctx, bytes, at, index);
    if (bytes.length - at < info.size) throw new SealedStreamError('truncatedRecord', `chunk ${index} is cut short`);
    if (info.final && bytes.length - at > info.size) throw new SealedStreamError('trailingData', 'bytes follow the final chunk');
    chunks.push(await openRecord(ctx, info, bytes.subarray(at, at + info.size), index));
    at += info.size;
    if (info.final) return concat(...chunks);
  }
}

/** A new stream's header and sealing context; `salt` must be fresh random bytes (tests pass one). */
export async function sealingContext(sessionKey, { chunkLog2 = 20, compress = true, salt = crypto.getRandomValues(new Uint8Array(32)) } = {}) {
  const params = concat(MAGIC, new Uint8Array([1, 1, compress ? 1 : 0, chunkLog2]));
  const s = await schedule(sessionKey, salt, params);
  const head = concat(params, salt, s.commitment);
  const header = concat(head, (await sha256(head)).subarray(0, 16));
  return { header, codec: compress ? 1 : 0, chunkSize: 2 ** chunkLog2, key: s.key, baseNonce: s.baseNonce };
}

/**
 * Seals chunk `index` (section 5.2) as its two parts, the 16-byte record header and the body with
 * its tag, so a caller can send them without joining them. `scratch`, if given, is reused for the
 * LZ4 output (at least compressBound(plain.length) bytes), so sealing a file allocates less.
 */
export async function sealRecordParts(ctx, index, plain, final, scratch) {
  let body = plain;
  let flags = final ? 1 : 0;
  if (ctx.codec === 1 && plain.length >= 2) {
    const compressed = compressBlock(plain, scratch);
    if (compressed.length < plain.length) { body = compressed; flags |= 2; }
  }
  const header = concat(u32be(index), new Uint8Array([flags, 0, 0, 0]), u32be(plain.length), u32be(body.length));
  const sealed = new Uint8Array(await crypto.subtle.encrypt(
    { name: 'AES-GCM', iv: nonce(ctx.baseNonce, index), additionalData: header, tagLength: 128 }, ctx.key, body));
  return [header, sealed];
}

/** Seals chunk `index` (section 5.2) as one record. */
export async function sealRecord(ctx, index, plain, final) {
  return concat(...await sealRecordParts(ctx, index, plain, final));
}

/** Seals bytes held in memory (tests and small values such as names). */
export async function sealStream(sessionKey, plain, options) {
  const ctx = await sealingContext(sessionKey, options);
  const parts = [ctx.header];
  const count = Math.max(1, Math.ceil(plain.length / ctx.chunkSize));
  for (let i = 0; i < count; i++) {
    parts.push(await sealRecord(ctx, i, plain.subarray(i * ctx.chunkSize, (i + 1) * ctx.chunkSize), i === count - 1));
  }
  return concat(...parts);
}
