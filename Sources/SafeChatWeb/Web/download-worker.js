// Downloads one sealed file and opens it chunk by chunk, off the page's thread, into the
// origin-private file system through a synchronous access handle, or, where the browser has no such
// file system, into a Service Worker's response that the browser saves (docs/BROWSER.md section 3).
// Every chunk is verified (docs/FORMAT.md 6) before it is written; on any failure the partial file
// is deleted (or the browser's download fails) and the message names the chunk.
import { hex, readInto } from './bytes.js';
import { HEADER_SIZE, RECORD_OVERHEAD, boundFileID, digestStart, digestStep, openRecord, openingContext, recordHeader } from './stream.js';

/**
 * How much of the sealed file one worker downloads into the private file system before it hands
 * over to a fresh one (the page resumes with Range from its checkpoint): each worker here costs
 * about 35 MiB of the renderer, and WebCrypto's outputs pile up in its heap until V8 collects them,
 * so this worker opens the records itself (WebCrypto decrypts off its thread) and is short-lived:
 * one such worker kept the renderer lower than a long-lived one feeding a pool of opening workers
 * (docs/BROWSER.md section 6).
 */
const SEGMENT_BYTES = 32 << 20;

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
  read(buffer, offset, length) {
    return readInto(this.reader, buffer, offset, length)
      .catch((e) => { throw new Interrupted(`the download broke off: ${e.message}`); });
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
  async write(plain, at) { this.access.write(plain, { at }); return plain.buffer; }
  flush() { this.access.flush(); }
  close() { this.access.close(); }
}

/**
 * Streams into a Service Worker's response (./sw.js), which the browser saves as a download: a
 * chunk is sent only when the response asks for one, so a slow disk slows the download instead of
 * filling memory. Each plaintext's buffer is handed over, not copied, and the Service Worker hands
 * it back once the browser is done with it, so neither side makes a buffer per chunk. `state`
 * carries what the sink knows from one segment's worker to the next.
 */
class PortSink {
  constructor(port, { sent = 0, asked = 0 } = {}) {
    this.port = port;
    this.sent = sent;
    this.asked = asked;
    this.spares = [];
    this.wake = null;
    this.cancelled = false;
    port.onmessage = ({ data }) => {
      if (data === 'pull') this.asked++;
      else if (data === 'cancel') this.cancelled = true;
      else if (data?.back instanceof ArrayBuffer && this.spares.length < 2) this.spares.push(data.back);
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
    this.sent += plain.length;
    this.port.postMessage({ chunk: plain.buffer, length: plain.length }, [plain.buffer]);
    return this.spares.pop() ?? null;
  }

  flush() {}
  close() { this.port.postMessage({ done: true }); }
  /** The response fails, so the browser never offers the file as complete. */
  fail(message) { this.port.postMessage({ error: message }); }
  /** Stops listening and says what the next segment's sink must know. */
  handBack() {
    this.port.onmessage = null;
    return { sent: this.sent, asked: this.asked };
  }
}

/** Refuses a stream whose header is not the one `fileID` is bound to (docs/FORMAT.md section 11). */
async function checkBinding(fileID, header) {
  if (await boundFileID(header) !== fileID) {
    throw new Error(`file ${fileID} is not the stream the gateway serves under that id (its header is another file's); nothing was kept`);
  }
}

/**
 * Fetches from `at` (null: the start) and writes every verified record to `sink`, in order, until
 * the final record or the first record boundary `segment` sealed bytes on. Returns
 * `{ at, complete }`, where `at` is the position reached (its bytes flushed); throws Interrupted
 * with `at` where it stopped, or another error (a chunk that does not verify, a stream that is not
 * the one `fileID` names, or whose digest is not the one the download began with).
 *
 * `at` carries the stream's header and ETag (the stream digest) from the first response, and the
 * digest chain over the records written so far, so a resume continues only that stream: its
 * records must open under that header, and the chain at the end must be that digest.
 */
async function transfer(url, fileID, token, key, sink, at, report, segment) {
  let reader = null;
  try {
    const headers = { Authorization: `Bearer ${token}` };
    if (at) { headers.Range = `bytes=${at.offset}-`; headers['If-Range'] = at.etag; }
    const response = await fetch(url, { headers }).catch((e) => { throw new Interrupted(`the download failed: ${e.message}`); });
    if (at && response.status !== 206) throw new Error(`the gateway did not resume the download (${response.status}); start it again`);
    if (!at && response.status !== 200) throw new Error(`the gateway answered ${response.status}`);
    reader = new BodyReader(response.body);
    let ctx;
    if (at) {
      await checkBinding(fileID, Uint8Array.from(at.header));
      ctx = await openingContext(key, Uint8Array.from(at.header));
      sink.truncate(at.written);
    } else {
      sink.truncate(0);
      const etag = response.headers.get('ETag');
      if (!/^"[0-9a-f]{64}"$/.test(etag ?? '')) throw new Error('the gateway did not name the stream it serves (no stream digest as its ETag)');
      const { buffer, got } = await reader.read(new ArrayBuffer(HEADER_SIZE), 0, HEADER_SIZE);
      if (got < HEADER_SIZE) throw new Interrupted('the download ended inside the stream header');
      const header = new Uint8Array(buffer);
      await checkBinding(fileID, header);
      ctx = await openingContext(key, header);
      at = { header: [...header], etag, chain: [...await digestStart(header)], index: 0, offset: HEADER_SIZE, written: 0 };
    }
    let chain = Uint8Array.from(at.chain);
    // Records are read in order and opened two at a time (a record is read while the one before is
    // decrypted), each in a buffer of the largest record's size that comes back to be reused, so
    // memory stays a handful of chunks whatever the file's size.
    const depth = 2;
    const stopAt = at.offset + segment;
    const spare = [];
    // Written plaintexts' buffers are reused: a compressed record is opened into one.
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
          const record = new Uint8Array(buffer, 0, info.size);
          const opened = openRecord(ctx, info, record, index, written.pop()).then((plain) => ({ plain, record }));
          opened.catch(() => {});  // awaited in order below; a later one failing first must not go unhandled
          pending.push({ opened, info });
          parsed = { index: index + 1, offset: parsed.offset + info.size, final: info.final };
          if (info.final && (await reader.read(new ArrayBuffer(1), 0, 1)).got) throw new Error('bytes follow the final chunk');
        }
        const { opened, info } = pending.shift();
        const { plain, record } = await opened;
        chain = await digestStep(chain, record);
        spare.push(record.buffer);
        // A sink that keeps the plaintext's buffer (so `plain` is empty after) may give another back.
        const length = plain.length;
        const reusable = await sink.write(plain, at.written);
        if (reusable) written.push(reusable);
        at = { ...at, index: at.index + 1, offset: at.offset + info.size, written: at.written + length, chain: [...chain] };
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
    if (parsed.final && `"${hex(chain)}"` !== at.etag) {
      throw new Error(`the chunks of file ${fileID} verified, but their stream digest is not the one its download began with (the gateway mixed streams); nothing was kept`);
    }
    return { at, complete: parsed.final };
  } catch (error) {
    if (error instanceof Interrupted && !error.at) error.at = at;
    throw error;
  } finally {
    reader?.cancel();
  }
}

const report = (at) => postMessage({ progress: at.written, checkpoint: at });

self.onmessage = ({ data }) => (data.port ? segmentToPort(data) : segmentToFile(data));

/** One segment into the origin-private file system: the page starts the next worker from `checkpoint`. */
async function segmentToFile({ url, fileID, token, key, partial, resume }) {
  const root = await navigator.storage.getDirectory();
  let sink = null;
  try {
    sink = new FileSink(await (await root.getFileHandle(partial, { create: true })).createSyncAccessHandle());
    const { at, complete } = await transfer(url, fileID, token, key, sink, resume ?? null, report, SEGMENT_BYTES);
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
}

/**
 * One segment into a Service Worker's stream (the browser's own download). The port goes back to
 * the page with the sink's state, for the next segment's worker or, after an interruption, for a
 * retry. A chunk that fails to verify fails the stream here, so the browser never keeps the file
 * as complete.
 */
async function segmentToPort({ url, fileID, token, key, resume, port, state }) {
  const sink = new PortSink(port, state);
  try {
    const { at, complete } = await transfer(url, fileID, token, key, sink, resume ?? null, report, SEGMENT_BYTES);
    if (complete) sink.close();
    postMessage({ done: complete, checkpoint: at, size: at.written, port, state: sink.handBack() }, [port]);
  } catch (error) {
    if (error instanceof Interrupted && error.at) {
      postMessage({ error: error.message, resumable: true, checkpoint: error.at, port, state: sink.handBack() }, [port]);
    } else {
      sink.fail(error.message);
      postMessage({ error: error.message });
    }
  }
}
