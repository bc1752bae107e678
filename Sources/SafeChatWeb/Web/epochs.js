// The signed membership log (docs/KEYS.md section 7): an epoch's signed bytes and hash, the checks
// a client makes of a whole log before it trusts any of it (7.4), and opening this member's wrap.
import { concat, equalConstantTime, fromHex, hex, sha256, u32be, utf8 } from './bytes.js';
import { open as hpkeOpen } from './hpke.js';

const u16be = (n) => new Uint8Array([(n >> 8) & 0xff, n & 0xff]);

/** The bytes an epoch's signature covers (7.2). */
export function signedBytes(doc) {
  const parts = [utf8.encode('SafeChat epoch v1'), new Uint8Array([0]), fromHex(doc.session_id, 16), u32be(doc.epoch),
    fromHex(doc.previous, 32), fromHex(doc.signer, 16), u16be(doc.members.length)];
  for (const m of doc.members) {
    const name = utf8.encode(m.name);
    if (name.length < 1 || name.length > 64) throw new Error('a member name is 1 to 64 bytes');
    parts.push(fromHex(m.user_id, 16), fromHex(m.signing_key, 32), new Uint8Array([name.length]), name);
  }
  parts.push(u16be(doc.wraps.length));
  for (const w of doc.wraps) {
    const ct = fromHex(w.ciphertext, 48);
    parts.push(fromHex(w.user_id, 16), u32be(w.key_epoch), fromHex(w.enc, 32), u16be(ct.length), ct);
  }
  const name = fromHex(doc.sealed_name);
  parts.push(u16be(name.length), name);
  return concat(...parts);
}

export async function epochHash(doc) {
  return sha256(concat(signedBytes(doc), fromHex(doc.signature, 64)));
}

async function verifySignature(signingKey, signature, bytes) {
  const key = await crypto.subtle.importKey('raw', signingKey, { name: 'Ed25519' }, false, ['verify']);
  return crypto.subtle.verify({ name: 'Ed25519' }, key, signature, bytes);
}

export class EpochError extends Error {}

/**
 * Verifies a session's whole log from epoch 0 (7.4). `pinned(member)` answers whether the member's
 * user id and signing key are the ones pinned for their name (it pins on first use); `seen` is the
 * highest epoch this device accepted before, as { epoch, hash }. Returns the documents.
 */
export async function verifyChain(sessionID, docs, { pinned, seen }) {
  if (!Array.isArray(docs) || docs.length === 0) throw new EpochError('the session has no epochs');
  let previousHash = new Uint8Array(32);
  let previousMembers = null;
  const hashes = [];
  for (const [n, doc] of docs.entries()) {
    if (doc.version !== 1 || doc.epoch !== n || doc.session_id !== sessionID) throw new EpochError(`epoch ${n} is missing, out of order or of another session`);
    const ids = new Set(doc.members.map((m) => m.user_id));
    if (doc.members.length < 1 || doc.members.length > 1000 || ids.size !== doc.members.length) throw new EpochError(`epoch ${n} lists its members wrongly`);
    for (const m of doc.members) {
      if (!await pinned(m)) throw new EpochError(`epoch ${n} lists ${m.name} with a key that is not the one pinned for them`);
    }
    const signers = previousMembers ?? doc.members;
    const signer = signers.find((m) => m.user_id === doc.signer);
    if (!signer) throw new EpochError(`epoch ${n} is signed by someone who was not a member`);
    const bytes = signedBytes(doc);
    if (!await verifySignature(fromHex(signer.signing_key, 32), fromHex(doc.signature, 64), bytes)) {
      throw new EpochError(`epoch ${n}'s signature does not verify`);
    }
    if (!equalConstantTime(fromHex(doc.previous, 32), previousHash)) throw new EpochError(`epoch ${n} does not follow epoch ${n - 1}`);
    previousHash = await sha256(concat(bytes, fromHex(doc.signature, 64)));
    hashes.push(hex(previousHash));
    previousMembers = doc.members;
  }
  if (seen && (docs.length - 1 < seen.epoch || hashes[seen.epoch] !== seen.hash)) {
    throw new EpochError(`the log was rolled back or forked: this device accepted epoch ${seen.epoch} with another hash`);
  }
  return { docs, head: { epoch: docs.length - 1, hash: hashes[hashes.length - 1] } };
}

/** Opens this member's wrap of `keyEpoch`'s key from a verified document (7.3). */
export async function openWrap(doc, keyEpoch, me) {
  const wrap = doc.wraps.find((w) => w.user_id === hex(me.userID) && w.key_epoch === keyEpoch);
  if (!wrap) throw new EpochError(`epoch ${doc.epoch} holds no key ${keyEpoch} for you`);
  const info = concat(utf8.encode('SafeChat wrap v1'), new Uint8Array([0]), fromHex(doc.session_id, 16), u32be(keyEpoch), me.signingKey);
  return hpkeOpen(me.agreement, fromHex(wrap.enc, 32), fromHex(wrap.ciphertext, 48), info);
}
