// Downloads one sealed file and opens it chunk by chunk, off the page's thread, into the
// origin-private file system through a synchronous access handle, or, where the browser has no such
// file system, into a Service Worker's response that the browser saves (docs/BROWSER.md section 3).
// Every chunk is verified (docs/FORMAT.md 6) before it is written; on any failure the partial file
// is deleted (or the browser's download fails) and the message names the chunk.
import { HEADER_SIZE, RECORD_OVERHEAD, openRecord, openingContext, recordHeader } from './stream.js';
import { RecordPool } from './pool.js';

/**
 * How much of the sealed file one worker downloads into the private file system before it hands
 * over to a fresh one (the page resumes with Range from its checkpoint): each worker here costs
 * about 35 MiB of the renderer, and WebCrypto's outputs pile up in its heap until V8 collects them,
 * so this worker opens the records itself and is short-lived instead of feeding a pool.
 */
const SEGMENT_BYTES = 32 << 20;

/** Opens records on this worker's own thread (WebCrypto still decrypts off it), for a segment. */
class InlineOpener {
  constructor(ctx) { this.ctx = ctx; }
  async open(index, info, record, spare) {
    return { plain: await openRecord(this.ctx, info, record, index, spare), record };
  }
  close() {}
}

/**
 * The body read straight into buffers of our own (a BYOB reader): no buffer is allocated per
 * network read, and the record buffers come back to be read into again, so a long download makes
 * little garbage.
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

/** Writes into the origin-private file system through a synchronous access handle. */
class FileSink {
  constructor(access) { this.access = access; }
  truncate(length) { this.access.truncate(length); }
  async write(plain, at) { this.access.write(plain, { at }); }
  flush() { this.access.flush(); }
  close() { this.access.close(); }
}

/**
 * Streams into a Service Worker's response (./sw.js), which the browser saves as a download: a
 * chunk is sent only when the response asks for one, so a slow disk slows the download instead of
 * filling memory. The plaintext is copied out, since its buffer goes back to the pool.
 */
class PortSink {
  constructor(port) {
    this.port = port;
    this.sent = 0;
    this.asked = 0;
    this.wake = null;
    this.cancelled = false;
    port.onmessage = ({ data }) => {
      if (data === 'pull') this.asked++;
      else if (data === 'cancel') this.cancelled = true;
      this.wake?.();
    };
  }

  truncate(length) {
    // Resumed within one response: what was sent cannot be taken back, so it must be all there is.
    if (length !== this.sent) throw new Error('the download cannot resume at this point; start it again');
  }

  async write(plain) {
    while (!this.asked && !this.cancelled) await new Promise((resolve) => { this.wake = resolve; });
    if (this.cancelled) throw new Error('the download was cancelled in the browser');
    this.asked--;
    const copy = plain.slice();
    this.port.postMessage({ chunk: copy.buffer }, [copy.buffer]);
    this.sent += plain.length;
  }

  flush() {}
  close() { this.port.postMessage({ done: true }); }
  /** The response fails, so the browser never offers the file as complete. */
  fail(message) { this.port.postMessage({ error: message }); }
}

/**
 * Fetches from `at` (null: the start) and writes every verified record to `sink`, in order, until
 * the final record or, with `segment`, the first record boundary `segment` sealed bytes on.
 * `makeOpener(ctx)` makes what opens the records (`open` as RecordPool's, and `close`). Returns `{ at, complete }`, where `at` is the position
 * reached (its bytes flushed); throws Interrupted with `at` where it stopped, or another error (a
 * chunk that does not verify).
 */
async function transfer(url, token, key, sink, at, report, makeOpener, segment = Infinity) {
  let reader = null;
  let opener = null;
  try {
    const headers = { Authorization: `Bearer ${token}` };
    if (at) { headers.Range = `bytes=${at.offset}-`; headers['If-Range'] = at.etag; }
    const response = await fetch(url, { headers }).catch((e) => { throw new Interrupted(`the download failed: ${e.message}`); });
    if (at && response.status !== 206) throw new Error(`the gateway did not resume the download (${response.status}); start it again`);
    if (!at && response.status !== 200) throw new Error(`the gateway answered ${response.status}`);
    reader = new BodyReader(response.body);
    let ctx;
    if (at) {
      ctx = await openingContext(key, Uint8Array.from(at.header));
      sink.truncate(at.written);
    } else {
      sink.truncate(0);
      const { buffer, got } = await reader.read(new ArrayBuffer(HEADER_SIZE), 0, HEADER_SIZE);
      if (got < HEADER_SIZE) throw new Interrupted('the download ended inside the stream header');
      const header = new Uint8Array(buffer);
      ctx = await openingContext(key, header);
      at = { header: [...header], etag: response.headers.get('ETag'), index: 0, offset: HEADER_SIZE, written: 0 };
    }
    // Records are read here in order, opened by `opener`, and written in order; two are in flight
    // at once, each in a buffer of the largest record's size that comes back to be reused, so
    // memory stays a handful of chunks whatever the file's size.
    opener = makeOpener(ctx);
    const depth = 2;
    const stopAt = at.offset + segment;
    const spare = [];
    // Written plaintexts go back to the opener (a compressed record is opened into one), so with a
    // pool the garbage of a long download is left in its short-lived workers.
    const written = [];
    const pending = [];
    let parsed = { index: at.index, offset: at.offset, final: false };
    try {
      while (pending.length || (!parsed.final && parsed.offset < stopAt)) {
        while (!parsed.final && parsed.offset < stopAt && pending.length < depth) {
          const index = parsed.index;
          let { buffer, got } = await reader.read(spare.pop() ?? new ArrayBuffer(ctx.chunkSize + RECORD_OVERHEAD), 0, 16);
          if (got < 16) throw new Interrupted(got ? `chunk ${index} is cut short` : 'the download ended before the final chunk');
          const info = recordHeader(ctx, new Uint8Array(buffer, 0, 16), 0, index);
          ({ buffer, got } = await reader.read(buffer, 16, info.size - 16));
          if (got < info.size - 16) throw new Interrupted(`chunk ${index} is cut short`);
          const opened = opener.open(index, info, new Uint8Array(buffer, 0, info.size), written.pop());
          opened.catch(() => {});  // awaited in order below; a later one failing first must not go unhandled
          pending.push({ opened, info });
          parsed = { index: index + 1, offset: parsed.offset + info.size, final: info.final };
          if (info.final && (await reader.read(new ArrayBuffer(1), 0, 1)).got) throw new Error('bytes follow the final chunk');
        }
        const { opened, info } = pending.shift();
        const { plain, record } = await opened;
        spare.push(record.buffer);
        await sink.write(plain, at.written);
        written.push(plain.buffer);
        at = { ...at, index: at.index + 1, offset: at.offset + info.size, written: at.written + plain.length };
        // A checkpoint is only ever a point whose bytes are flushed; a flush per 16 records, not per record.
        if (at.index % 16 === 0 || !pending.length) {
          sink.flush();
          report(at);
        }
      }
    } catch (error) {
      if (error instanceof Interrupted) {
        // What is written is kept: flushed, it becomes the point to resume from.
        sink.flush();
        report(at);
        error.at = at;
      }
      throw error;
    }
    return { at, complete: parsed.final };
  } catch (error) {
    if (error instanceof Interrupted && !error.at) error.at = at;
    throw error;
  } finally {
    opener?.close();
    reader?.cancel();
  }
}

const report = (at) => postMessage({ progress: at.written, checkpoint: at });

self.onmessage = async ({ data: { url, token, key, partial, resume, port } }) => {
  if (port) return streamToPort(url, token, key, new PortSink(port));
  const root = await navigator.storage.getDirectory();
  let sink = null;
  try {
    sink = new FileSink(await (await root.getFileHandle(partial, { create: true })).createSyncAccessHandle());
    const { at, complete } = await transfer(url, token, key, sink, resume ?? null, report, (ctx) => new InlineOpener(ctx), SEGMENT_BYTES);
    sink.close();
    sink = null;
    postMessage({ done: complete, checkpoint: at, size: at.written });
  } catch (error) {
    sink?.close();
    if (error instanceof Interrupted && error.at) {
      postMessage({ error: `${error.message}; choose Download again to resume`, resumable: true });
    } else {
      await root.removeEntry(partial).catch(() => {});
      postMessage({ error: error.message });
    }
  }
};

/**
 * The Service Worker path: one browser download, which cannot be resumed by a later click, so a
 * download that breaks off is resumed here with a Range request, up to five times (1, 2, 4, 8 and
 * 16 s apart), while the browser's download waits. A chunk that fails to verify fails the
 * download, so the browser never keeps it as complete.
 */
async function streamToPort(url, token, key, sink) {
  let at = null;
  for (let attempt = 0; ; attempt++) {
    try {
      // One long-lived worker here (the port cannot follow a segment to a fresh one), so records
      // are opened by a pool of one short-lived worker.
      ({ at } = await transfer(url, token, key, sink, at, report, (ctx) => new RecordPool(ctx, 1)));
      sink.close();
      postMessage({ done: true, size: at.written });
      return;
    } catch (error) {
      if (error instanceof Interrupted && error.at && attempt < 5) {
        at = error.at;
        await new Promise((resolve) => setTimeout(resolve, 1000 * 2 ** attempt));
        continue;
      }
      sink.fail(error.message);
      postMessage({ error: error.message });
      return;
    }
  }
}
