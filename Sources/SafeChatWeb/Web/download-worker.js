// Downloads one sealed file and opens it chunk by chunk into the origin-private file system
// (docs/BROWSER.md section 3), off the page's thread, writing through a synchronous access handle.
// Every chunk is verified (docs/FORMAT.md 6) before it is written; on any failure the partial file
// is deleted and the message names the chunk.
import { HEADER_SIZE, RECORD_OVERHEAD, openingContext, recordHeader } from './stream.js';
import { RecordPool } from './pool.js';

/**
 * The body read straight into buffers of our own (a BYOB reader): no buffer is allocated per
 * network read, and the record buffers go round between this worker and the pool, so a long
 * download makes little garbage.
 */
class BodyReader {
  constructor(body) { this.reader = body.getReader({ mode: 'byob' }); }

  /**
   * Reads `length` bytes into `buffer` at `offset`. Returns the buffer (a read hands it over and
   * back, so it is a new ArrayBuffer object) and how many bytes came: fewer only at the end.
   */
  async read(buffer, offset, length) {
    let got = 0;
    while (got < length) {
      const { value, done } = await this.reader.read(new Uint8Array(buffer, offset + got, length - got))
        .catch((e) => { throw new Interrupted(`the download broke off: ${e.message}`); });
      if (value) buffer = value.buffer;
      if (done) break;
      got += value.byteLength;
    }
    return { buffer, got };
  }

  cancel() { return this.reader.cancel().catch(() => {}); }
}

/** A failure that leaves what was verified in place, to resume from (the stream ended early or the
 *  network failed); anything else (a chunk that fails verification) deletes the partial file. */
class Interrupted extends Error {}

self.onmessage = async ({ data: { url, token, key, partial, resume } }) => {
  const root = await navigator.storage.getDirectory();
  let access = null;
  let reader = null;
  let pool = null;
  // What is verified and written so far: the stream header, the next record's index and offset,
  // and the plaintext bytes written. Sent to the page after every record, so a retry resumes there.
  let at = resume ?? null;
  try {
    const headers = { Authorization: `Bearer ${token}` };
    if (at) { headers.Range = `bytes=${at.offset}-`; headers['If-Range'] = at.etag; }
    const response = await fetch(url, { headers }).catch((e) => { throw new Interrupted(`the download failed: ${e.message}`); });
    if (at && response.status !== 206) throw new Error(`the gateway did not resume the download (${response.status}); start it again`);
    if (!at && response.status !== 200) throw new Error(`the gateway answered ${response.status}`);
    access = await (await root.getFileHandle(partial, { create: true })).createSyncAccessHandle();
    reader = new BodyReader(response.body);
    let ctx;
    if (at) {
      ctx = await openingContext(key, Uint8Array.from(at.header));
      access.truncate(at.written);
    } else {
      access.truncate(0);
      const { buffer, got } = await reader.read(new ArrayBuffer(HEADER_SIZE), 0, HEADER_SIZE);
      if (got < HEADER_SIZE) throw new Interrupted('the download ended inside the stream header');
      const header = new Uint8Array(buffer);
      ctx = await openingContext(key, header);
      at = { header: [...header], etag: response.headers.get('ETag'), index: 0, offset: HEADER_SIZE, written: 0 };
    }
    // Records are read here in order, opened in parallel by a pool, and written in order; a few are
    // in flight at once, each in a buffer of the largest record's size that comes back to be reused,
    // so memory stays a handful of chunks whatever the file's size.
    // One opening worker: WebCrypto and the LZ4 decoder open records faster than the body and the
    // file system move them here (the download ran as fast with two), and each worker's heap is
    // part of the renderer's peak (for 1 GiB, 262-267 MiB with two, 252-253 with one: docs/BROWSER.md).
    pool = new RecordPool(ctx, 1);
    const depth = 2 * pool.size;
    const spare = [];
    // Written plaintexts go back to the pool (to be opened into, or dropped there), so the garbage
    // of a long download is left in the pool's short-lived workers, not here.
    const written = [];
    const pending = [];
    let parsed = { index: at.index, final: false };
    while (pending.length || !parsed.final) {
      while (!parsed.final && pending.length < depth) {
        const index = parsed.index;
        let { buffer, got } = await reader.read(spare.pop() ?? new ArrayBuffer(ctx.chunkSize + RECORD_OVERHEAD), 0, 16);
        if (got < 16) throw new Interrupted(got ? `chunk ${index} is cut short` : 'the download ended before the final chunk');
        const info = recordHeader(ctx, new Uint8Array(buffer, 0, 16), 0, index);
        ({ buffer, got } = await reader.read(buffer, 16, info.size - 16));
        if (got < info.size - 16) throw new Interrupted(`chunk ${index} is cut short`);
        const opened = pool.open(index, info, new Uint8Array(buffer, 0, info.size), written.pop());
        opened.catch(() => {});  // awaited in order below; a later one failing first must not go unhandled
        pending.push({ opened, info });
        parsed = { index: index + 1, final: info.final };
        if (info.final && (await reader.read(new ArrayBuffer(1), 0, 1)).got) throw new Error('bytes follow the final chunk');
      }
      const { opened, info } = pending.shift();
      const { plain, record } = await opened;
      spare.push(record.buffer);
      access.write(plain, { at: at.written });
      written.push(plain.buffer);
      at = { ...at, index: at.index + 1, offset: at.offset + info.size, written: at.written + plain.length };
      // A checkpoint is only ever a point whose bytes are flushed; a flush per 16 records, not per record.
      if (at.index % 16 === 0 || !pending.length) {
        access.flush();
        postMessage({ progress: at.written, checkpoint: at });
      }
    }
    access.close();
    access = null;
    pool.close();
    postMessage({ done: true, size: at.written });
  } catch (error) {
    if (error instanceof Interrupted && access && at) {
      // What is written is kept: flushed, it becomes the point to resume from.
      access.flush();
      postMessage({ progress: at.written, checkpoint: at });
    }
    access?.close();
    pool?.close();
    reader?.cancel();
    if (error instanceof Interrupted && at) {
      postMessage({ error: `${error.message}; choose Download again to resume`, resumable: true });
    } else {
      await root.removeEntry(partial).catch(() => {});
      postMessage({ error: error.message });
    }
  }
};
