// One worker of a RecordPool (./pool.js): seals or opens the records it is handed under the one
// stream context it was given (docs/FORMAT.md 5.2, 6.2). WebCrypto hands back every result in a
// new buffer, and V8 lets a few hundred MiB of such garbage build up before it collects: so opened
// plaintexts come back here once written (to be opened into, or dropped), and the pool replaces
// a worker after a few records, which frees its heap at once.
import { compressBound } from './lz4.js';
import { openRecord, sealRecordParts } from './stream.js';

let ctx = null;
let scratch = null;

async function seal({ index, final, blob }) {
  // The worker reads its own chunk of the file: the plaintext never crosses threads.
  const plain = new Uint8Array(await blob.arrayBuffer());
  scratch ??= new Uint8Array(compressBound(ctx.chunkSize));
  const [header, sealed] = await sealRecordParts(ctx, index, plain, final, scratch);
  return { reply: { header, sealed }, transfer: [header.buffer, sealed.buffer] };
}

async function open({ index, info, record, spare }) {
  // WebCrypto's output is a new buffer, never the record's: both go back.
  const plain = await openRecord(ctx, info, record, index, spare);
  return { reply: { plain, record }, transfer: [plain.buffer, record.buffer] };
}

self.onmessage = async ({ data }) => {
  if (data.ctx) { ctx = data.ctx; return; }
  try {
    const { reply, transfer } = await (data.op === 'seal' ? seal(data) : open(data));
    postMessage({ id: data.id, ...reply }, transfer);
  } catch (error) {
    postMessage({ id: data.id, error: error.message, code: error.code });
  }
};
