// Sealing and opening in parallel: a few Web Workers (./record-worker.js), each with the stream's
// context (its AES key is a non-extractable CryptoKey, which workers can be handed). Callers keep
// order themselves by awaiting the promises in the order they asked; the pool only spreads work.
import { SealedStreamError } from './stream.js';

export class RecordPool {
  /** `ctx` from sealingContext or openingContext; `size` workers (default: one per core, 2 to 4). */
  constructor(ctx, size = Math.min(4, Math.max(2, navigator.hardwareConcurrency || 2))) {
    this.size = size;
    this.jobs = new Map();
    this.nextID = 0;
    this.workers = Array.from({ length: size }, () => {
      const worker = new Worker(new URL('./record-worker.js', import.meta.url), { type: 'module' });
      worker.busy = 0;
      worker.onmessage = ({ data }) => {
        const job = this.jobs.get(data.id);
        this.jobs.delete(data.id);
        worker.busy--;
        if (data.error) job.reject(new SealedStreamError(data.code, data.error));
        else job.resolve(data);
      };
      worker.onerror = (event) => {
        event.preventDefault();
        for (const job of this.jobs.values()) job.reject(new Error(event.message || 'a sealing worker failed'));
        this.jobs.clear();
      };
      worker.postMessage({ ctx });
      return worker;
    });
  }

  run(message, transfer = []) {
    const worker = this.workers.reduce((a, b) => (b.busy < a.busy ? b : a));
    worker.busy++;
    const id = this.nextID++;
    return new Promise((resolve, reject) => {
      this.jobs.set(id, { resolve, reject });
      worker.postMessage({ ...message, id }, transfer);
    });
  }

  /** Record `index` sealed from `blob` (a slice of the file, read by the worker): `{ header, sealed }`. */
  seal(index, blob, final) { return this.run({ op: 'seal', index, blob, final }); }

  /**
   * Record `index`'s plaintext, verified: `{ plain, record }`, where `record` is the bytes handed
   * in, given back to be reused. `record` must be a view whose buffer the caller gives away; `info`
   * comes from recordHeader.
   */
  open(index, info, record) { return this.run({ op: 'open', index, info, record }, [record.buffer]); }

  close() { for (const worker of this.workers) worker.terminate(); }
}
