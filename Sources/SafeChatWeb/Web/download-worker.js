// Downloads one sealed file and opens it chunk by chunk into the origin-private file system
// (docs/BROWSER.md section 3), off the page's thread, writing through a synchronous access handle.
// Every chunk is verified (docs/FORMAT.md 6) before it is written; on any failure the partial file
// is deleted and the message names the chunk.
import { HEADER_SIZE, openingContext, openRecord, recordHeader } from './stream.js';

/** Arrived bytes as a list of network chunks, joined only into whole records (appending each chunk
 *  to one growing buffer made garbage of many times the file's size). */
class Incoming {
  constructor(reader) {
    this.reader = reader;
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

self.onmessage = async ({ data: { url, token, key, partial } }) => {
  const root = await navigator.storage.getDirectory();
  let access = null;
  let reader = null;
  try {
    const response = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
    if (!response.ok) throw new Error(`the gateway answered ${response.status}`);
    access = await (await root.getFileHandle(partial, { create: true })).createSyncAccessHandle();
    access.truncate(0);
    reader = response.body.getReader();
    const input = new Incoming(reader);
    if (!await input.fill(HEADER_SIZE)) throw new Error('the download ended inside the stream header');
    const ctx = await openingContext(key, input.take(HEADER_SIZE));
    let written = 0;
    for (let index = 0, done = false; !done; index++) {
      if (!await input.fill(16)) throw new Error(input.length ? `chunk ${index} is cut short` : 'the download ended before the final chunk');
      const info = recordHeader(ctx, input.peek(16), 0, index);
      if (!await input.fill(info.size)) throw new Error(`chunk ${index} is cut short`);
      const plain = await openRecord(ctx, info, input.take(info.size), index);
      if (info.final) {
        if (input.length || await input.fill(1)) throw new Error('bytes follow the final chunk');
        done = true;
      }
      access.write(plain, { at: written });
      written += plain.length;
      postMessage({ progress: written });
    }
    access.flush();
    access.close();
    access = null;
    postMessage({ done: true, size: written });
  } catch (error) {
    access?.close();
    reader?.cancel().catch(() => {});
    await root.removeEntry(partial).catch(() => {});
    postMessage({ error: error.message });
  }
};
