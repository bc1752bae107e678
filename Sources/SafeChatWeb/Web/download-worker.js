// Downloads one sealed file and opens it chunk by chunk into the origin-private file system
// (docs/BROWSER.md section 3), off the page's thread, writing through a synchronous access handle.
// Every chunk is verified (docs/FORMAT.md 6) before it is written; on any failure the partial file
// is deleted and the message names the chunk.
import { HEADER_SIZE, openingContext, openRecord, recordHeader } from './stream.js';

/** Arrived bytes as a list of network chunks, joined only into whole records (appending each chunk
 *  to one growing buffer made garbage of many times the file's size). */
class Incoming {
  constructor(reader) {
    this.reader = reader;  // anything with read() → { value, done }
    this.chunks = [];
    this.length = 0;
  }

  /** Waits for `need` bytes; false if the stream ends first. */
  async fill(need) {
    while (this.length < need) {
      const { value, done } = await this.reader.read();
      if (done) return false;
      this.chunks.push(value);
      this.length += value.length;
    }
    return true;
  }

  peek(n) {
    if (this.chunks[0].length >= n) return this.chunks[0].subarray(0, n);
    const out = new Uint8Array(n);
    let at = 0;
    for (const chunk of this.chunks) {
      const part = chunk.subarray(0, Math.min(chunk.length, n - at));
      out.set(part, at);
      at += part.length;
      if (at === n) break;
    }
    return out;
  }

  take(n) {
    const bytes = this.peek(n);
    let left = n;
    while (left > 0) {
      if (this.chunks[0].length <= left) { left -= this.chunks[0].length; this.chunks.shift(); }
      else { this.chunks[0] = this.chunks[0].subarray(left); left = 0; }
    }
    this.length -= n;
    return bytes;
  }
}

/** A failure that leaves what was verified in place, to resume from (the stream ended early or the
 *  network failed); anything else (a chunk that fails verification) deletes the partial file. */
class Interrupted extends Error {}

self.onmessage = async ({ data: { url, token, key, partial, resume } }) => {
  const root = await navigator.storage.getDirectory();
  let access = null;
  let reader = null;
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
    reader = response.body.getReader();
    const input = new Incoming({ read: () => reader.read().catch((e) => { throw new Interrupted(`the download broke off: ${e.message}`); }) });
    let ctx;
    if (at) {
      ctx = await openingContext(key, Uint8Array.from(at.header));
      access.truncate(at.written);
    } else {
      access.truncate(0);
      if (!await input.fill(HEADER_SIZE)) throw new Interrupted('the download ended inside the stream header');
      const header = input.take(HEADER_SIZE);
      ctx = await openingContext(key, header);
      at = { header: [...header], etag: response.headers.get('ETag'), index: 0, offset: HEADER_SIZE, written: 0 };
    }
    for (let done = false; !done;) {
      const index = at.index;
      if (!await input.fill(16)) throw new Interrupted(input.length ? `chunk ${index} is cut short` : 'the download ended before the final chunk');
      const info = recordHeader(ctx, input.peek(16), 0, index);
      if (!await input.fill(info.size)) throw new Interrupted(`chunk ${index} is cut short`);
      const plain = await openRecord(ctx, info, input.take(info.size), index);
      if (info.final) {
        if (input.length || await input.fill(1)) throw new Error('bytes follow the final chunk');
        done = true;
      }
      access.write(plain, { at: at.written });
      access.flush();
      at = { ...at, index: index + 1, offset: at.offset + info.size, written: at.written + plain.length };
      postMessage({ progress: at.written, checkpoint: at });
    }
    access.close();
    access = null;
    postMessage({ done: true, size: at.written });
  } catch (error) {
    access?.close();
    reader?.cancel().catch(() => {});
    if (error instanceof Interrupted && at) {
      postMessage({ error: `${error.message}; choose Download again to resume`, resumable: true });
    } else {
      await root.removeEntry(partial).catch(() => {});
      postMessage({ error: error.message });
    }
  }
};
