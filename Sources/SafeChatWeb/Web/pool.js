// Sealing in parallel: a few Web Workers (./record-worker.js), each with the stream's context (its
// AES key is a non-extractable CryptoKey, which workers can be handed). Callers keep order
// themselves by awaiting the promises in the order they asked; the pool only spreads work.
//
// A worker is retired after `retireAfter` records and a fresh one takes its place: its leftover
// garbage is freed with its heap, instead of piling up until V8 collects it, which in one worker
// alone was 300 MiB (docs/BROWSER.md section 6). (Downloads open records in their own short-lived
// workers: download-worker.js.)
import { SealedStreamError } from './stream.js';

export class RecordPool {
  /**
   * `ctx` from sealingContext; `size` workers (default: one per core, 2 to 4), each replaced after
   * `retireAfter` records: fewer keeps less garbage, more starts fewer workers. Never replaced, a
   * 4 GiB upload's renderer grew to 339 MiB; every 32 records, it peaked at 224–230 MiB
   * (docs/BROWSER.md section 6).
   */
  constructor(ctx, size = Math.min(4, Math.max(2, navigator.hardwareConcurrency || 2)), { retireAfter = 32 } = {}) {
    this.ctx = ctx;
    this.size = size;
    this.retireAfter = retireAfter;
    this.jobs = new Map();
    this.nextID = 0;
    this.retiring = new Set();
    this.workers = Array.from({ length: size }, () => this.spawn());
  }

  spawn() {
    const worker = new Worker(new URL('./record-worker.js', import.meta.url), { type: 'module' });
    worker.busy = 0;
    worker.handed = 0;
    worker.onmessage = ({ data }) => {
      const job = this.jobs.get(data.id);
      this.jobs.delete(data.id);
      worker.busy--;
      this.endRetired();
      if (data.error) job.reject(new SealedStreamError(data.code, data.error));
      else job.resolve(data);
    };
    worker.onerror = (event) => {
      event.preventDefault();
      for (const job of this.jobs.values()) job.reject(new Error(event.message || 'a sealing worker failed'));
      this.jobs.clear();
    };
    worker.postMessage({ ctx: this.ctx });
    return worker;
  }

  endRetired() {
    for (const worker of this.retiring) {
      if (worker.busy === 0) { worker.terminate(); this.retiring.delete(worker); }
    }
  }

  run(message) {
    let slot = 0;
    for (let i = 1; i < this.workers.length; i++) if (this.workers[i].busy < this.workers[slot].busy) slot = i;
    const worker = this.workers[slot];
    worker.busy++;
    if (++worker.handed === this.retireAfter) {
      // It finishes what it was handed; new work goes to its successor, which starts now.
      this.retiring.add(worker);
      this.workers[slot] = this.spawn();
    }
    const id = this.nextID++;
    return new Promise((resolve, reject) => {
      this.jobs.set(id, { resolve, reject });
      worker.postMessage({ ...message, id });
    });
  }

  /**
   * Record `index` sealed from `blob` (a slice of the file, read by the worker): `{ header, sealed }`,
   * the record's two parts. A Blob made of them must be used where they stay: when the buffers were
   * handed on once the Blob was made, or the Blob was made in the worker, Chromium now and then
   * failed the PATCH with ERR_BLOB_REFERENCED_BLOB_BROKEN. The page hands them to a send worker.
   */
  seal(index, blob, final) { return this.run({ index, blob, final }); }

  close() {
    for (const worker of [...this.workers, ...this.retiring]) worker.terminate();
    this.retiring.clear();
  }
}
