// One worker of a RecordPool (./pool.js): seals the records it is handed under the one stream
// context it was given (docs/FORMAT.md 5.2). V8 lets a few hundred MiB of garbage build up before
// it collects, so chunks are read into reused buffers, WebCrypto's outputs are handed on (to the
// page, then a send worker), and the pool replaces a worker after some records, which frees its
// heap at once.
import { readInto } from './bytes.js';
import { compressBound } from './lz4.js';
import { sealRecordParts } from './stream.js';

let ctx = null;
let scratch = null;
const inputs = [];  // chunk buffers to read into, reused: a worker may hold a few jobs at once

/**
 * Reads `blob` (at most a chunk) with a BYOB reader into a buffer that is reused, where
 * `blob.arrayBuffer()` would make a new one per chunk: garbage V8 collects late. Give the buffer
 * back to `inputs` once done with it.
 */
async function readChunk(blob) {
  // On a failed read the buffer is lost with the stream; the next read makes a new one.
  const { buffer, got } = await readInto(blob.stream().getReader({ mode: 'byob' }), inputs.pop() ?? new ArrayBuffer(ctx.chunkSize), 0, blob.size);
  if (got !== blob.size) {
    inputs.push(buffer);
    throw new Error('the file changed while it was read; choose it again');
  }
  return new Uint8Array(buffer, 0, got);
}

async function seal({ index, final, blob }) {
  // The worker reads its own chunk of the file: the plaintext never crosses threads.
  const plain = await readChunk(blob);
  scratch ??= new Uint8Array(compressBound(ctx.chunkSize));
  try {
    const [header, sealed] = await sealRecordParts(ctx, index, plain, final, scratch);
    return { reply: { header, sealed }, transfer: [header.buffer, sealed.buffer] };
  } finally {
    inputs.push(plain.buffer);
  }
}

self.onmessage = async ({ data }) => {
  if (data.ctx) { ctx = data.ctx; return; }
  try {
    const { reply, transfer } = await seal(data);
    postMessage({ id: data.id, ...reply }, transfer);
  } catch (error) {
    postMessage({ id: data.id, error: error.message, code: error.code });
  }
};
