// The page's client: the same checks as the CLI (docs/KEYS.md 7.4, docs/FORMAT.md 6), against a
// gateway it does not trust. Identity and pins live in IndexedDB (./store.js); files are opened
// chunk by chunk as they download and written to the origin-private file system, so memory stays
// flat whatever the size, and a file that fails to verify is deleted, never offered.
import { concat, fromHex, hex, u32be, utf8, utf8Prefix } from './bytes.js';
import { fingerprint, loadIdentity, newIdentityFile, openExport, sealExport, verifyBundle } from './keys.js';
import { epochHash, openWrap, signedBytes, verifyChain } from './epochs.js';
import { seal as hpkeSeal } from './hpke.js';
import { RecordPool } from './pool.js';
import { boundFileID, openStream, sealStream, sealingContext } from './stream.js';
import * as store from './store.js';

export class Gateway {
  constructor(token) { this.token = token; }

  async request(method, path, body) {
    const headers = this.token ? { Authorization: `Bearer ${this.token}` } : {};
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const response = await fetch(path, { method, headers, body: body === undefined ? undefined : (typeof body === 'string' ? body : JSON.stringify(body)) });
    const text = await response.text();
    let json = {};
    try { json = text ? JSON.parse(text) : {}; } catch { /* not JSON: the status says it */ }
    if (!response.ok) {
      const error = new Error(json.message || `the gateway answered ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return json;
  }
}

/** This device's identity for `userID`, or null. */
export const savedIdentity = (userID) => store.get(`identity:${userID}`);

/**
 * Imports a `safechat keys export` file. The identity must belong to the logged-in account, and
 * its key must be the one the gateway publishes for it (else the import is refused, loudly).
 */
export async function importIdentity(gateway, login, exportText, passphrase) {
  const identity = await loadIdentity(await openExport(exportText, passphrase));
  if (hex(identity.userID) !== login.userID) throw new Error('this identity belongs to another account');
  let published = null;
  try { published = await gateway.request('GET', `/keys/${encodeURIComponent(login.user)}`); } catch (e) { if (e.status !== 404) throw e; }
  if (published && published.bundle.signing_key !== hex(identity.signingKey)) {
    throw new Error('the gateway publishes a different key for you; refusing the import (run `safechat keys show` to compare)');
  }
  if (!published) throw new Error('publish your identity first with the CLI (`safechat keys init`)');
  await store.put(`identity-export:${login.userID}`, exportText);
  await store.put(`identity:${login.userID}`, identity);
  return identity;
}

/**
 * Checks members against the pins (KEYS.md 7.4, 8): a pinned member must carry the pinned key (a
 * changed key is refused with both fingerprints); one met for the first time must carry the key the
 * gateway's bundle for them has (conflicting evidence is refused with both, and pins nothing).
 * Newcomers are pinned only by `commit()`, once whatever they came in (a log) has verified.
 */
async function pinnedCheck(gateway, me) {
  const pins = (await store.get(`pins:${me}`)) || {};
  const met = {};
  const check = async (member) => {
    let pin = pins[member.name] ?? met[member.name];
    const listed = await fingerprint(fromHex(member.signing_key, 32));
    if (!pin) {
      const entry = await gateway.request('GET', `/keys/${encodeURIComponent(member.name)}`);
      const bundle = await verifyBundle(JSON.stringify(entry.bundle));
      pin = { user_id: hex(bundle.userID), signing_key: hex(bundle.signingKey), fingerprint: await fingerprint(bundle.signingKey), verified: false };
      if (pin.user_id !== member.user_id || pin.signing_key !== member.signing_key) {
        throw new Error(`REFUSED: the session's log lists ${member.name} with safety number ${listed}, but the gateway serves ${member.name}'s identity `
          + `with ${pin.fingerprint}: one of them is not ${member.name}'s key, and nothing was pinned. Compare safety numbers out of band.`);
      }
      met[member.name] = pin;
    }
    if (pin.user_id !== member.user_id || pin.signing_key !== member.signing_key) {
      throw new Error(`WARNING: ${member.name}'s key changed: pinned ${pin.fingerprint}, now ${listed}. `
        + 'Compare safety numbers out of band before trusting it.');
    }
    return true;
  };
  check.commit = async () => {
    if (!Object.keys(met).length) return;
    Object.assign(pins, met);
    await store.put(`pins:${me}`, pins);
  };
  return check;
}

/** A session's verified log, its name, members with fingerprints, and a way to its keys. */
export async function openSession(gateway, login, identity, sessionID) {
  const { epochs } = await gateway.request('GET', `/sessions/${sessionID}`);
  const seenKey = `seen:${login.userID}:${sessionID}`;
  const pinned = await pinnedCheck(gateway, login.userID);
  const { docs, head } = await verifyChain(sessionID, epochs, { pinned, seen: await store.get(seenKey) });
  await pinned.commit();
  await store.put(seenKey, head);
  const current = docs[docs.length - 1];
  const key = async (epoch) => {
    const doc = [...docs].reverse().find((d) => d.wraps.some((w) => w.user_id === login.userID && w.key_epoch === epoch));
    if (!doc) throw new Error(`you hold no key for epoch ${epoch} of this session`);
    return openWrap(doc, epoch, identity);
  };
  let name = '';
  if (current.sealed_name) {
    const label = concat(utf8.encode('SafeChat session name v1'), new Uint8Array([0]), fromHex(sessionID, 16), u32be(current.epoch));
    const plain = await openStream(await key(current.epoch), fromHex(current.sealed_name));
    if (plain.length >= label.length && label.every((b, i) => plain[i] === b)) name = new TextDecoder().decode(plain.subarray(label.length));
  }
  const members = await Promise.all(current.members.map(async (m) => ({ name: m.name, fingerprint: await fingerprint(fromHex(m.signing_key, 32)) })));
  const member = (epoch, userID) => docs[epoch]?.members.find((m) => m.user_id === userID) ?? null;
  // The epoch after `epoch` that first left `userID` out, and who signed it, if they are not a
  // member of the newest verified epoch: a removed member's message under an older key is refused.
  const removal = (userID, epoch) => {
    if (current.members.some((m) => m.user_id === userID)) return null;
    const doc = docs.find((d) => d.epoch > epoch && !d.members.some((m) => m.user_id === userID));
    return doc ? { epoch: doc.epoch, by: docs[doc.epoch - 1].members.find((m) => m.user_id === doc.signer)?.name ?? null } : null;
  };
  const memberName = (userID) => [...docs].reverse().flatMap((d) => d.members).find((m) => m.user_id === userID)?.name ?? null;
  return {
    id: sessionID, name, epoch: current.epoch, members, key, member, memberName, removal, me: login.user, hash: hex(await epochHash(current)),
    current,
    fileName: async (event) => fileName({ metadata: { name: event.sealed_name }, header: event.header }, await key(event.epoch)),
  };
}

/** Whether a listed or announced file's id is the one bound to its header (FORMAT.md section 11). */
export async function isBound(fileID, header) {
  const bytes = typeof header === 'string' ? fromHex(header) : Uint8Array.from(header ?? []);
  return bytes.length === 92 && await boundFileID(bytes) === fileID;
}

/** A file's name: its sealed `name` metadata, opened with the epoch key and bound to the file's salt. */
export async function fileName(entry, key) {
  try {
    const sealed = Uint8Array.from(atob(entry.metadata?.name || ''), (c) => c.charCodeAt(0));
    if (!sealed.length) return null;
    const plain = await openStream(key, sealed);
    const header = typeof entry.header === 'string' ? fromHex(entry.header) : Uint8Array.from(entry.header);
    const salt = header.subarray(12, 44);
    if (plain.length < 32 || !salt.every((b, i) => plain[i] === b)) return null;
    // Cleaned as the CLI cleans it (API.md, "Names"): the last path component, without control
    // characters, at most 255 bytes, never empty, "." or "..".
    const name = new TextDecoder('utf-8', { fatal: true }).decode(plain.subarray(32)).split(/[\\/]/).pop().replace(/[\u0000-\u001f\u007f-\u009f]/g, '').trim();
    return name && name !== '.' && name !== '..' && utf8.encode(name).length <= 255 ? name : null;
  } catch {
    return null;
  }
}

/**
 * Downloads and opens `fileID` into the origin-private file system as `name`, verifying every
 * chunk before it is written. The work runs in a Web Worker (download-worker.js), which writes
 * through a synchronous access handle: the page's own writable stream kept memory in proportion to
 * the file. `progress(bytes)` is told as it goes. Returns the File on success. If the download
 * breaks off (network, a stream that ends early), what was verified stays and the next call resumes
 * with a Range request from the next record (If-Range: the stream digest); a chunk that fails
 * verification deletes the partial file, and the error says which chunk failed.
 */
export async function download(gateway, fileID, key, name, progress = () => {}) {
  const partial = `${fileID}.partial`;
  // Where an interrupted download of this file stopped (a verified prefix is kept; see the worker).
  const checkpointKey = `download:${fileID}`;
  let resume = await store.get(checkpointKey);
  // One worker per segment of the file (download-worker.js says why); each resumes where the last stopped.
  for (let complete = false; !complete;) {
    const worker = new Worker(new URL('./download-worker.js', import.meta.url), { type: 'module' });
    try {
      ({ complete, resume } = await new Promise((resolve, reject) => {
        let last = resume;
        worker.onmessage = ({ data }) => {
          if (data.progress !== undefined) {
            last = data.checkpoint;
            progress(data.progress);
            // Kept now and then too, so that closing the page mid-way also leaves a point to resume from.
            if (last.index % 32 === 0) store.put(checkpointKey, last);
          } else if (data.error) {
            const keep = data.resumable ? store.put(checkpointKey, last) : store.remove(checkpointKey);
            keep.finally(() => reject(new Error(data.error)));
          } else resolve({ complete: data.done, resume: data.checkpoint });
        };
        worker.onerror = (event) => reject(new Error(event.message || 'the download worker failed'));
        worker.postMessage({ url: `/download/${fileID}`, fileID, token: gateway.token, key, partial, resume });
      }));
    } finally {
      worker.terminate();
    }
  }
  await store.remove(checkpointKey);
  const root = await navigator.storage.getDirectory();
  // Only a file that verified to its end gets its real name.
  await root.removeEntry(name).catch(() => {});
  await (await root.getFileHandle(partial)).move(name);
  return (await root.getFileHandle(name)).getFile();
}

/** Whether this browser has the origin-private file system (else downloads go through `streamDownload`). */
export const hasPrivateFileSystem = () => typeof navigator.storage?.getDirectory === 'function';

/**
 * Downloads and verifies a file straight into the browser's downloads, through a Service Worker
 * stream (./sw.js), for browsers without the origin-private file system: each chunk is verified
 * before the browser gets it, a download that breaks off is resumed with Range inside the same
 * browser download, and a chunk that fails verification fails the browser's download, so it is
 * never kept as complete. `progress(bytes)` is told as it goes; resolves with the plaintext size
 * once the last chunk is handed over.
 */
export async function streamDownload(gateway, fileID, key, name, progress = () => {}) {
  if (!navigator.serviceWorker) throw new Error('this browser can neither keep files for the page nor stream them to its downloads');
  // Its scope is the save/ URLs alone: no other request of the page or its workers goes through it.
  const registration = await navigator.serviceWorker.register(new URL('./sw.js', import.meta.url), { scope: new URL('./save/', import.meta.url).pathname });
  const sw = registration.active ?? registration.installing ?? registration.waiting;
  if (sw.state !== 'activated') {
    await new Promise((resolve, reject) => sw.addEventListener('statechange', () => {
      if (sw.state === 'activated') resolve();
      else if (sw.state === 'redundant') reject(new Error('the browser did not start the download service worker'));
    }));
  }
  const id = hex(crypto.getRandomValues(new Uint8Array(16)));
  const channel = new MessageChannel(), reply = new MessageChannel();
  const ready = new Promise((resolve) => { reply.port1.onmessage = resolve; });
  registration.active.postMessage({ id, name }, [channel.port2, reply.port2]);
  await ready;
  reply.port1.close();
  const frame = Object.assign(document.createElement('iframe'), { hidden: true, src: new URL(`./save/${id}`, import.meta.url).href });
  // A browser stops a service worker that has had no event for a while (30 s in Chromium), and the
  // chunks reach it on a port, which is not an event: a message every 10 s keeps it serving.
  const keepAlive = setInterval(() => registration.active?.postMessage({ keepAlive: true }), 10_000);
  // One worker per segment, as for download(); the stream's port goes from each to the next. One
  // browser download cannot be resumed by a later click, so a download that breaks off is resumed
  // here with Range, up to five times (1, 2, 4, 8 and 16 s apart), while the browser's download waits.
  let segment = { port: channel.port1, state: undefined, resume: null };
  let retries = 0;
  try {
    for (;;) {
      const outcome = await new Promise((resolve) => {
        const worker = new Worker(new URL('./download-worker.js', import.meta.url), { type: 'module' });
        const end = (value) => { worker.terminate(); resolve(value); };
        worker.onmessage = ({ data }) => {
          if (data.progress !== undefined) progress(data.progress);
          else end(data);
        };
        worker.onerror = (event) => end({ error: event.message || 'the download worker failed' });
        worker.postMessage({ url: `/download/${fileID}`, fileID, token: gateway.token, key, ...segment }, [segment.port]);
        if (!frame.isConnected) document.body.append(frame);
      });
      if (outcome.done) return outcome.size;
      if (!outcome.port) throw new Error(outcome.error);  // the worker failed the stream, or died with its port
      segment = { port: outcome.port, state: outcome.state, resume: outcome.checkpoint };
      if (outcome.error) {
        if (retries === 5) {
          outcome.port.postMessage({ error: outcome.error });
          throw new Error(outcome.error);
        }
        await new Promise((resolve) => setTimeout(resolve, 1000 * 2 ** retries++));
      }
    }
  } finally {
    clearInterval(keepAlive);
    // The browser's download goes on without the frame; it is removed once the last chunk is handed over.
    setTimeout(() => frame.remove(), 60_000);
  }
}

/**
 * Saves a downloaded, verified file (a File from download()) where the user chooses: with the File
 * System Access API's save picker where the browser grants it, streamed from the origin-private
 * file system to the chosen file (flat memory, and the browser only puts the file in place once the
 * stream is closed); else as a browser download of the same on-disk File. The private copy is
 * removed once the picker's copy is complete. Returns 'saved', 'offered' (a browser download was
 * started) or 'cancelled'.
 */
export async function saveFile(file) {
  if (typeof window.showSaveFilePicker !== 'function') {
    offerDownload(file);
    return 'offered';
  }
  let handle;
  try {
    handle = await window.showSaveFilePicker({ suggestedName: file.name });
  } catch (error) {
    if (error.name === 'AbortError') return 'cancelled';
    throw error;
  }
  const writable = await handle.createWritable();
  await file.stream().pipeTo(writable);  // closes the writable when done; aborts it on a failure
  await (await navigator.storage.getDirectory()).removeEntry(file.name).catch(() => {});
  return 'saved';
}

const toBase64 = (bytes) => {
  let s = '';
  for (let i = 0; i < bytes.length; i += 8192) s += String.fromCharCode(...bytes.subarray(i, i + 8192));
  return btoa(s);
};

// Tags are kept in groups of TAG_GROUP records, one IndexedDB value each, so a batch rewrites one
// or two small values: keeping them all in one value rewrote the whole list with every batch,
// which grew with the square of the file's size (4 GiB: about 50 MB written and thrown away).
const TAG_GROUP = 64;
const tagKey = (stateKey, group) => `${stateKey}:tags:${group}`;

async function loadTags(stateKey) {
  const tags = [];
  for (let group = 0; ; group++) {
    const part = await store.get(tagKey(stateKey, group));
    if (!part) return tags;
    tags.push(...part);
    if (part.length < TAG_GROUP) return tags;
  }
}

/** Stores the groups that changed since the first `stored` tags were stored. */
async function storeTags(stateKey, tags, stored) {
  for (let group = Math.floor(stored / TAG_GROUP); group * TAG_GROUP < tags.length; group++) {
    await store.put(tagKey(stateKey, group), tags.slice(group * TAG_GROUP, (group + 1) * TAG_GROUP));
  }
}

async function forgetUpload(stateKey, tagCount) {
  for (let group = 0; group * TAG_GROUP < tagCount; group++) await store.remove(tagKey(stateKey, group));
  await store.remove(stateKey);
}

/**
 * Seals `file` (a File from a picker or a drop) in the page and uploads it into `session` with tus
 * (POST /uploads with a deferred length, then PATCHes of about 8 MiB). Chunks are read from the
 * file one at a time, so memory stays flat. `progress(sentBytes, plainBytesRead, resumedAt)` is told
 * as it goes. Returns the file id.
 *
 * Resuming (after a reload or a dropped network, the same file chosen again) follows the CLI's
 * nonce-safety rule: the upload's URL, stream header and the GCM tag of every record are kept in
 * IndexedDB before the record is sent; the file is re-sealed with the same salt only if its name,
 * size and modification time are unchanged, and every re-sealed record must reproduce its recorded
 * tag, else the old upload is dropped and the file is sealed afresh under a new salt.
 */
export async function upload(gateway, session, file, progress = () => {}) {
  const key = await session.key(session.epoch);
  const stateKey = `upload:${session.id}:${session.epoch}:${file.name}:${file.size}:${file.lastModified}`;
  const tus = { Authorization: `Bearer ${gateway.token}`, 'Tus-Resumable': '1.0.0' };
  let saved = await store.get(stateKey);
  let offset = 0;
  if (saved) {
    const head = await fetch(saved.location, { method: 'HEAD', headers: tus });
    if (head.ok) offset = Number(head.headers.get('Upload-Offset'));
    else { await forgetUpload(stateKey, (await loadTags(stateKey)).length); saved = null; }
  }
  const ctx = await sealingContext(key, { chunkLog2: 20, compress: true, ...(saved ? { salt: fromHex(saved.header).subarray(12, 44) } : {}) });
  if (saved && hex(ctx.header) !== saved.header) throw new Error('the stored upload state does not match this session key');
  let location = saved?.location;
  let tags = saved ? await loadTags(stateKey) : [];
  if (saved?.tags) {
    // Kept by an earlier version of the page, all in the one value: moved into groups.
    tags = saved.tags;
    await storeTags(stateKey, tags, 0);
    await store.put(stateKey, { location: saved.location, header: saved.header });
  }
  let tagsStored = tags.length;
  if (!saved) {
    const sealedName = await sealStream(key, concat(ctx.header.subarray(12, 44), utf8Prefix(file.name, 1024)), { chunkLog2: 16, compress: false });
    // The header binds the file's id (FORMAT.md section 11): the gateway must give the upload that id.
    const metadata = [['epoch', utf8.encode(String(session.epoch))], ['header', ctx.header], ['name', sealedName], ['session', utf8.encode(session.id)]]
      .map(([k, v]) => `${k} ${toBase64(v)}`).join(',');
    const created = await fetch('/uploads', { method: 'POST', headers: { ...tus, 'Upload-Defer-Length': '1', 'Upload-Metadata': metadata } });
    if (created.status !== 201) throw new Error(`the gateway refused the upload (${created.status}): ${(await created.text()).slice(0, 200)}`);
    location = created.headers.get('Location');
    if (location !== `/uploads/${await boundFileID(ctx.header)}`) throw new Error(`the gateway gave the upload an id not bound to its stream (${location})`);
    await store.put(stateKey, { location, header: hex(ctx.header) });
  }
  const resumedAt = offset;
  const send = (parts, start) => new Promise((resolve, reject) => {
    // Only what the gateway does not have yet, as a Blob body (Chromium sends it 5× faster than
    // the same bytes as a Uint8Array), from a worker of its own that the records are handed to.
    const worker = new Worker(new URL('./send-worker.js', import.meta.url), { type: 'module' });
    worker.onmessage = ({ data }) => {
      worker.terminate();
      if (data.error) return reject(new Error(`the upload broke off: ${data.error}`));
      if (data.status !== 204) return reject(new Error(`the gateway refused part of the upload (${data.status}): ${data.text}`));
      offset = Number(data.offset);
      resolve();
    };
    worker.onerror = (event) => { event.preventDefault(); worker.terminate(); reject(new Error(event.message || 'the sending worker failed')); };
    const headers = { ...tus, 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': String(offset) };
    worker.postMessage({ url: new URL(location, document.baseURI).href, headers, parts, skip: Math.max(0, offset - start) },
      parts.filter((part) => part !== ctx.header).map((part) => part.buffer));
  });
  const count = Math.max(1, Math.ceil(file.size / ctx.chunkSize));
  // Chunks are sealed in parallel by a pool of workers (each reads its own slice of the file),
  // taken back in order, and sent in batches, one PATCH in flight while the next batch is sealed:
  // a few chunks and two batches in memory whatever the file's size.
  const pool = new RecordPool(ctx);
  const sealed = [];
  let next = 0;
  const sealAhead = () => {
    while (next < count && sealed.length < 2 * pool.size) {
      const i = next++;
      const record = pool.seal(i, file.slice(i * ctx.chunkSize, (i + 1) * ctx.chunkSize), i === count - 1);
      record.catch(() => {});  // awaited in order below
      sealed.push(record);
    }
  };
  let sending = Promise.resolve();
  let batch = [ctx.header];
  let batchStart = 0;
  let position = ctx.header.length;
  try {
    for (let i = 0; i < count; i++) {
      sealAhead();
      const { header, sealed: body } = await sealed.shift();
      const tag = hex(body.subarray(body.length - 16));
      if (i < tags.length && tags[i] !== tag) {
        // Same salt, different plaintext: sending it would reuse nonces. Start afresh under a new salt.
        await sending.catch(() => {});
        await fetch(location, { method: 'DELETE', headers: tus }).catch(() => {});
        await forgetUpload(stateKey, tags.length);
        return upload(gateway, session, file, progress);
      }
      if (i >= tags.length) tags.push(tag);
      batch.push(header, body);
      position += header.length + body.length;
      const last = i === count - 1;
      if (position - batchStart >= 8 << 20 || last) {
        const [parts, start, read] = [batch, batchStart, Math.min(file.size, (i + 1) * ctx.chunkSize)];
        await sending;
        if (position > offset) {
          // Every tag of a batch is recorded before any of it is sent (the nonce-safety rule).
          await storeTags(stateKey, tags, tagsStored);
          tagsStored = tags.length;
          sending = send(parts, start).then(() => progress(offset, read, resumedAt));
          sending.catch(() => {});  // awaited before the next batch, or at the end
        } else progress(offset, read, resumedAt);
        batch = [];
        batchStart = position;
      }
    }
    await sending;
  } finally {
    pool.close();
  }
  await forgetUpload(stateKey, tags.length);
  return location.split('/').pop();
}

/**
 * Makes a new identity in the page for an account that has none yet, and publishes its public
 * bundle (KEYS.md 1, 2, 4). The keys are used only as non-extractable WebCrypto keys; the one copy
 * a user can take elsewhere is an export sealed under `passphrase` (KEYS.md 5), made before the raw
 * keys are dropped and kept beside the identity for "Export identity". An account that already
 * publishes an identity must import it instead (one identity per user).
 */
export async function createIdentity(gateway, login, passphrase) {
  if (utf8.encode(passphrase).length < 10) throw new Error('choose a passphrase of at least 10 characters for your identity\'s export');
  try {
    await gateway.request('GET', `/keys/${encodeURIComponent(login.user)}`);
    throw new Error('your account already has an identity: import it (safechat keys export FILE on a device that has it)');
  } catch (e) {
    if (e.status !== 404) throw e;
  }
  const file = newIdentityFile(login.userID);
  let identity, exported;
  try {
    identity = await loadIdentity(file);
    exported = await sealExport(file, passphrase);
  } finally {
    file.fill(0);
  }
  const signed = concat(utf8.encode('SafeChat identity v1'), new Uint8Array([0]), identity.userID, identity.signingKey, identity.agreement.publicRaw);
  const signature = new Uint8Array(await crypto.subtle.sign({ name: 'Ed25519' }, identity.signing, signed));
  const bundle = `{"version":1,"user_id":"${login.userID}","signing_key":"${hex(identity.signingKey)}",`
    + `"agreement_key":"${hex(identity.agreement.publicRaw)}","signature":"${hex(signature)}"}`;
  await gateway.request('PUT', '/keys/me', bundle);
  await store.put(`identity-export:${login.userID}`, exported);
  await store.put(`identity:${login.userID}`, identity);
  return identity;
}

/**
 * This identity's export file (KEYS.md 5), for `safechat keys import` or another browser: the one
 * made when the identity was created here, or the one it was imported from, under that passphrase.
 */
export async function identityExport(login) {
  const text = await store.get(`identity-export:${login.userID}`);
  if (!text) throw new Error('this browser kept no export of your identity (it was set up before exports were kept); use `safechat keys export` on a device that has it');
  return new File([text], `safechat-identity-${login.user}.export`, { type: 'application/json' });
}

/** Offers `file` (a Blob with a name) as a browser download. */
export function offerDownload(file) {
  const link = Object.assign(document.createElement('a'), { href: URL.createObjectURL(file), download: file.name });
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
}

/** A member entry and agreement key for `name`, from their pinned, verified bundle. */
async function memberFor(gateway, login, identity, name) {
  if (name === login.user) return { member: { user_id: login.userID, name, signing_key: hex(identity.signingKey) }, agreementKey: identity.agreement.publicRaw };
  const entry = await gateway.request('GET', `/keys/${encodeURIComponent(name)}`);
  const bundle = await verifyBundle(JSON.stringify(entry.bundle));
  const member = { user_id: hex(bundle.userID), name, signing_key: hex(bundle.signingKey) };
  const pinned = await pinnedCheck(gateway, login.userID);
  await pinned(member);
  await pinned.commit();
  return { member, agreementKey: bundle.agreementKey };
}

/** Creates a session with `names` (besides this user): epoch 0 made, wrapped and signed in the page (KEYS.md 7). */
export async function createSession(gateway, login, identity, name, names) {
  const sessionID = crypto.getRandomValues(new Uint8Array(16));
  const id = hex(sessionID);
  const entries = [await memberFor(gateway, login, identity, login.user)];
  for (const n of names) {
    if (n && !entries.some((e) => e.member.name === n)) entries.push(await memberFor(gateway, login, identity, n));
  }
  const key = crypto.getRandomValues(new Uint8Array(32));
  const wraps = [];
  for (const { member, agreementKey } of entries) {
    const info = concat(utf8.encode('SafeChat wrap v1'), new Uint8Array([0]), sessionID, u32be(0), fromHex(member.signing_key, 32));
    const { enc, ciphertext } = await hpkeSeal(agreementKey, key, info);
    wraps.push({ user_id: member.user_id, key_epoch: 0, enc: hex(enc), ciphertext: hex(ciphertext) });
  }
  const label = concat(utf8.encode('SafeChat session name v1'), new Uint8Array([0]), sessionID, u32be(0));
  const sealedName = name ? hex(await sealStream(key, concat(label, utf8Prefix(name, 256)), { chunkLog2: 16, compress: false })) : '';
  const doc = { version: 1, session_id: id, epoch: 0, previous: '0'.repeat(64), signer: login.userID,
    members: entries.map((e) => e.member), wraps, sealed_name: sealedName, signature: '' };
  doc.signature = hex(new Uint8Array(await crypto.subtle.sign({ name: 'Ed25519' }, identity.signing, signedBytes(doc))));
  key.fill(0);
  await gateway.request('POST', '/sessions', doc);
  return id;
}

/**
 * Compares a safety number typed by the user (spaces optional) with `name`'s pinned key and marks
 * the pin verified when the 30 digits match (KEYS.md 3, 8). Returns whether they matched.
 */
export async function verifyMember(login, name, typed) {
  const digits = typed.replace(/\s+/g, '');
  if (!/^\d{30}$/.test(digits)) throw new Error('a safety number is 30 digits');
  const pins = (await store.get(`pins:${login.userID}`)) || {};
  const pin = pins[name];
  if (!pin) throw new Error(`${name} is not pinned on this device yet`);
  if (pin.fingerprint.replace(/\s+/g, '') !== digits) return false;
  pin.verified = true;
  await store.put(`pins:${login.userID}`, pins);
  return true;
}

/** Whether `name`'s pin on this device was verified. */
export async function isVerified(login, name) {
  return Boolean(((await store.get(`pins:${login.userID}`)) || {})[name]?.verified);
}

/**
 * Adds `name` to, or removes them from, a session opened with openSession (KEYS.md 7.5): the next
 * epoch with a fresh key wrapped for every member from then on (a removed member gets none), the
 * name sealed again under it, chained to the current epoch and signed in the page.
 */
export async function changeMembers(gateway, login, identity, session, { add, remove }) {
  const current = session.current;
  const names = current.members.map((m) => m.name).filter((n) => n !== remove);
  if (add && !names.includes(add)) names.push(add);
  if (names.length === current.members.length && !add) throw new Error(`${remove} is not a member`);
  const entries = [];
  for (const n of names) entries.push(await memberFor(gateway, login, identity, n));
  const epoch = current.epoch + 1;
  const sessionID = fromHex(session.id, 16);
  const key = crypto.getRandomValues(new Uint8Array(32));
  const wraps = [];
  for (const { member, agreementKey } of entries) {
    const info = concat(utf8.encode('SafeChat wrap v1'), new Uint8Array([0]), sessionID, u32be(epoch), fromHex(member.signing_key, 32));
    const { enc, ciphertext } = await hpkeSeal(agreementKey, key, info);
    wraps.push({ user_id: member.user_id, key_epoch: epoch, enc: hex(enc), ciphertext: hex(ciphertext) });
  }
  const label = concat(utf8.encode('SafeChat session name v1'), new Uint8Array([0]), sessionID, u32be(epoch));
  const sealedName = session.name ? hex(await sealStream(key, concat(label, utf8Prefix(session.name, 256)), { chunkLog2: 16, compress: false })) : '';
  const doc = { version: 1, session_id: session.id, epoch, previous: session.hash, signer: login.userID,
    members: entries.map((e) => e.member), wraps, sealed_name: sealedName, signature: '' };
  doc.signature = hex(new Uint8Array(await crypto.subtle.sign({ name: 'Ed25519' }, identity.signing, signedBytes(doc))));
  key.fill(0);
  await gateway.request('POST', `/sessions/${session.id}/epochs`, doc);
  return epoch;
}
