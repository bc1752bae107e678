// Chat in the page (docs/PROTOCOL.md): messages sealed with AES-256-GCM under a per-message key
// from the epoch's chat key and signed with the sender's Ed25519 identity; the gateway relays
// ciphertext over GET /chat (a WebSocket opened with a single-use ticket, since a browser cannot
// send an Authorization header). A delivery is shown only if it passes the checks of PROTOCOL.md
// section 3; anything else becomes a visible warning. History stays in IndexedDB, each line
// sealed under a key derived from the identity's history key.
import { concat, fromHex, hex, u32be, utf8 } from './bytes.js';
import { expand } from './hpke.js';
import * as store from './store.js';
import { boundFileID } from './stream.js';

const u64be = (n) => { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, BigInt(n)); return b; };
const MESSAGE_LABEL = concat(utf8.encode('SafeChat message v1'), new Uint8Array([0]));

/** The epoch's chat key: HKDF-SHA256(session key, salt "", info "SafeChat chat v1" || 0 || session id || u32be(epoch)). */
export async function chatKey(sessionKey, sessionID, epoch) {
  const ikm = await crypto.subtle.importKey('raw', sessionKey, 'HKDF', false, ['deriveBits']);
  return new Uint8Array(await crypto.subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0),
    info: concat(utf8.encode('SafeChat chat v1'), new Uint8Array([0]), fromHex(sessionID, 16), u32be(epoch)) }, ikm, 256));
}

function aad(m) {
  return concat(MESSAGE_LABEL, fromHex(m.session_id, 16), u32be(m.epoch), fromHex(m.sender, 16), fromHex(m.message_id, 16), u64be(m.sent_at));
}

async function messageKey(key, messageID, usage) {
  const raw = await expand(key, concat(MESSAGE_LABEL, fromHex(messageID, 16)), 32);
  return crypto.subtle.importKey('raw', raw, 'AES-GCM', false, [usage]);
}

/** Seals and signs `text` from `identity` (the wire message of PROTOCOL.md section 1). */
export async function sealMessage(text, { sessionID, epoch, key, identity, sentAt }) {
  const plain = utf8.encode(text);
  if (plain.length > 16384) throw new Error('a message holds at most 16 KiB of text');
  const m = { session_id: sessionID, epoch, sender: hex(identity.userID), message_id: hex(crypto.getRandomValues(new Uint8Array(16))), sent_at: sentAt };
  const a = aad(m);
  // One message per key: the fixed nonce cannot repeat under it.
  const ciphertext = new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv: new Uint8Array(12), additionalData: a },
    await messageKey(key, m.message_id, 'encrypt'), plain));
  const signature = new Uint8Array(await crypto.subtle.sign({ name: 'Ed25519' }, identity.signing, concat(a, ciphertext)));
  return { ...m, ciphertext: hex(ciphertext), signature: hex(signature) };
}

/** The text of `m` if `signingKey` (the sender's key as its epoch lists it) signed it and it opens; throws why not. */
export async function openMessage(m, { key, signingKey }) {
  const a = aad(m);
  const ciphertext = fromHex(m.ciphertext), signature = fromHex(m.signature, 64);
  const verifier = await crypto.subtle.importKey('raw', signingKey, { name: 'Ed25519' }, false, ['verify']);
  if (!await crypto.subtle.verify({ name: 'Ed25519' }, verifier, signature, concat(a, ciphertext))) {
    throw new Error('its signature does not verify: tampered with, or not from its claimed sender');
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(await crypto.subtle.decrypt(
      { name: 'AES-GCM', iv: new Uint8Array(12), additionalData: a }, await messageKey(key, m.message_id, 'decrypt'), ciphertext));
  } catch {
    throw new Error('it does not decrypt under the epoch key');
  }
}

/** This device's history of one session: lines sealed under HKDF(history key, session id), in IndexedDB. */
export class History {
  constructor(identity, sessionID) {
    this.name = `history:${hex(identity.userID)}:${sessionID}`;
    this.keyPromise = crypto.subtle.importKey('raw', identity.historyKey, 'HKDF', false, ['deriveKey']).then((base) =>
      crypto.subtle.deriveKey({ name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0),
        info: concat(utf8.encode('SafeChat browser history v1'), new Uint8Array([0]), fromHex(sessionID, 16)) },
      base, { name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']));
  }

  async lines() {
    const key = await this.keyPromise;
    const stored = (await store.get(this.name)) || [];
    return Promise.all(stored.map(async ({ nonce, sealed }) =>
      JSON.parse(new TextDecoder().decode(await crypto.subtle.decrypt({ name: 'AES-GCM', iv: nonce }, key, sealed)))));
  }

  async append(line) {
    const key = await this.keyPromise;
    const nonce = crypto.getRandomValues(new Uint8Array(12));
    const sealed = new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv: nonce }, key, utf8.encode(JSON.stringify(line))));
    const stored = (await store.get(this.name)) || [];
    stored.push({ nonce, sealed });
    await store.put(this.name, stored);
  }

  clear() { return store.remove(this.name); }
}

/**
 * One session's chat: connects, shows what arrives through `onLine(line)` after the recipient's
 * checks, stores accepted lines in the history and acknowledges them. `room` gives the verified
 * log: `room.member(epoch, userID)` and `room.key(epoch)`.
 */
export class ChatRoom {
  constructor(gateway, identity, room, onLine) {
    Object.assign(this, { gateway, identity, room, onLine });
    this.history = new History(identity, room.id);
    this.latest = new Map();
    this.lastSentAt = 0;
    this.pending = new Map();
  }

  async start() {
    const seen = await this.history.lines();
    // What recognises a replay outlives Clear history: ids, senders and times, no text (PROTOCOL.md 4).
    this.replayKey = `replay:${hex(this.identity.userID)}:${this.room.id}`;
    this.replay = (await store.get(this.replayKey)) || [];
    this.seen = new Set([...seen.map((l) => l.id).filter(Boolean), ...this.replay.map(([id]) => id)]);
    for (const [, sender, time] of this.replay) this.latest.set(sender, Math.max(this.latest.get(sender) ?? 0, time));
    for (const line of seen) this.onLine(line);
    const { ticket } = await this.gateway.request('POST', '/chat/ticket');
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/chat?session=${this.room.id}`;
    this.socket = new WebSocket(url, ['safechat.v1', `safechat.ticket.${ticket}`]);
    this.socket.onmessage = (event) => this.receive(JSON.parse(event.data)).catch((e) => this.warn(`a frame could not be handled: ${e.message}`));
    this.socket.onclose = (event) => this.onLine({ kind: 'status', text: `chat disconnected (${event.code}${event.reason ? `: ${event.reason}` : ''})` });
    await new Promise((resolve, reject) => { this.socket.onopen = resolve; this.socket.onerror = () => reject(new Error('the chat connection failed')); });
  }

  warn(text) { this.onLine({ kind: 'warning', text }); }

  /** Keeps a message's id, sender and time for the replay check, before its line is stored. */
  async remember(id, sender, time) {
    this.seen.add(id);
    this.replay.push([id, sender, time]);
    await store.put(this.replayKey, this.replay);
  }

  async send(text) {
    const epoch = this.room.epoch;
    this.lastSentAt = Math.max(Date.now(), this.lastSentAt + 1);
    const message = await sealMessage(text, { sessionID: this.room.id, epoch, key: await chatKey(await this.room.key(epoch), this.room.id, epoch),
      identity: this.identity, sentAt: this.lastSentAt });
    this.pending.set(message.message_id, { kind: 'message', id: message.message_id, sender: this.room.me, time: message.sent_at, text, verified: true, outgoing: true });
    this.socket.send(JSON.stringify({ message, type: 'send', v: 1 }));
  }

  async receive(frame) {
    if (frame.type === 'sent') {
      const line = this.pending.get(frame.message_id);
      if (line) {
        this.pending.delete(frame.message_id);
        await this.remember(line.id, hex(this.identity.userID), line.time);
        await this.history.append(line);
        this.onLine(line);
      }
    } else if (frame.type === 'error') {
      this.warn(`the gateway refused a message: ${frame.text}`);
    } else if (frame.type === 'delivery') {
      const line = await this.check(frame);
      if (line.kind === 'message') await this.remember(line.id, frame.message.sender, line.time);
      if (line.kind !== 'warning') await this.history.append(line);
      this.onLine(line);
      this.socket.send(`{"seq":${Number(frame.seq)},"type":"ack","v":1}`);
    }
  }

  /** What a delivery shows: the message or file event, or a warning saying why it was rejected. */
  async check(frame) {
    const warning = (text) => ({ kind: 'warning', text });
    if (frame.file) {
      let header = new Uint8Array(0);
      try { header = fromHex(frame.file.header); } catch { /* refused below */ }
      if (header.length !== 92 || await boundFileID(header) !== frame.file.file_id) {
        return warning(`an announcement of file ${frame.file.file_id} was ignored: its id is not bound to the stream header announced with it (the gateway lies about the file)`);
      }
      const sender = this.room.memberName(frame.file.sender) || frame.file.sender;
      return { kind: 'file', id: `file:${frame.file.file_id}`, sender, time: frame.time, fileID: frame.file.file_id, size: frame.file.size,
        name: await this.room.fileName(frame.file) };
    }
    const m = frame.message;
    if (!m || m.session_id !== this.room.id) return warning('a message for another session was rejected');
    if (m.epoch > this.room.epoch) {
      return warning(`a message was rejected: it claims epoch ${m.epoch}, but the session's verified log ends at epoch ${this.room.epoch} (forged, or the gateway withholds newer epochs)`);
    }
    const member = await this.room.member(m.epoch, m.sender);
    if (!member) return warning(`a message from someone who is not a member of epoch ${m.epoch} was rejected`);
    const removed = this.room.removal?.(m.sender, m.epoch);
    if (removed) {
      return warning(`a message from ${member.name} under epoch ${m.epoch} was refused: ${member.name} was removed from this session in epoch ${removed.epoch}`
        + `${removed.by && removed.by !== member.name ? ` by ${removed.by}` : ''} and may no longer speak in it`);
    }
    if (this.seen.has(m.message_id)) return warning(`a replayed message (claiming to be from ${member.name}) was ignored`);
    let text;
    try {
      text = await openMessage(m, { key: await chatKey(await this.room.key(m.epoch), this.room.id, m.epoch), signingKey: fromHex(member.signing_key, 32) });
    } catch (error) {
      return warning(`a message claiming to be from ${member.name} was rejected: ${error.message}`);
    }
    const late = (this.latest.get(m.sender) ?? 0) >= m.sent_at;
    this.latest.set(m.sender, Math.max(this.latest.get(m.sender) ?? 0, m.sent_at));
    return { kind: 'message', id: m.message_id, sender: member.name, time: m.sent_at, text, verified: true, outOfOrder: late };
  }

  close() { this.socket?.close(1000); }
}
