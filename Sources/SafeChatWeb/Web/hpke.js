// HPKE (RFC 9180), base mode, single shot: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM,
// as docs/KEYS.md section 6 uses it to wrap session keys. WebCrypto gives X25519, HMAC and
// AES-GCM; HKDF's Extract and Expand are RFC 5869 over HMAC-SHA256 (WebCrypto's HKDF always runs
// both steps, and HPKE needs them apart).
import { concat, utf8 } from './bytes.js';

const KEM_SUITE = concat(utf8.encode('KEM'), new Uint8Array([0x00, 0x20]));
const HPKE_SUITE = concat(utf8.encode('HPKE'), new Uint8Array([0x00, 0x20, 0x00, 0x01, 0x00, 0x02]));
const VERSION = utf8.encode('HPKE-v1');
const X25519_PKCS8_PREFIX = new Uint8Array([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20]);

async function hmac(key, data) {
  const k = await crypto.subtle.importKey('raw', key.length ? key : new Uint8Array(32), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return new Uint8Array(await crypto.subtle.sign('HMAC', k, data));
}
const extract = (salt, ikm) => hmac(salt, ikm);
export async function expand(prk, info, length) {
  let t = new Uint8Array(0);
  const out = [];
  for (let i = 1; out.reduce((n, b) => n + b.length, 0) < length; i++) {
    t = await hmac(prk, concat(t, info, new Uint8Array([i])));
    out.push(t);
  }
  return concat(...out).slice(0, length);
}
const labeledExtract = (suite, salt, label, ikm) => extract(salt, concat(VERSION, suite, utf8.encode(label), ikm));
const labeledExpand = (suite, prk, label, info, length) =>
  expand(prk, concat(new Uint8Array([length >> 8, length & 0xff]), VERSION, suite, utf8.encode(label), info), length);

/** An X25519 private key (32 raw bytes) as a non-extractable WebCrypto key. */
export function importAgreementKey(raw) {
  return crypto.subtle.importKey('pkcs8', concat(X25519_PKCS8_PREFIX, raw), { name: 'X25519' }, false, ['deriveBits']);
}

async function dh(privateKey, publicRaw) {
  const pub = await crypto.subtle.importKey('raw', publicRaw, { name: 'X25519' }, false, []);
  let shared;
  try {
    shared = new Uint8Array(await crypto.subtle.deriveBits({ name: 'X25519', public: pub }, privateKey, 256));
  } catch {
    throw new Error('HPKE: the key agreement failed (a low-order public key)');
  }
  if (shared.every((b) => b === 0)) throw new Error('HPKE: the key agreement gave all zeros (a low-order public key)');
  return shared;
}

async function keySchedule(sharedSecret, info) {
  const context = concat(new Uint8Array([0]), await labeledExtract(HPKE_SUITE, new Uint8Array(0), 'psk_id_hash', new Uint8Array(0)),
    await labeledExtract(HPKE_SUITE, new Uint8Array(0), 'info_hash', info));
  const secret = await labeledExtract(HPKE_SUITE, sharedSecret, 'secret', new Uint8Array(0));
  const key = await crypto.subtle.importKey('raw', await labeledExpand(HPKE_SUITE, secret, 'key', context, 32), 'AES-GCM', false, ['encrypt', 'decrypt']);
  return { key, nonce: await labeledExpand(HPKE_SUITE, secret, 'base_nonce', context, 12) };
}

async function sharedSecret(dhBytes, enc, recipientPublic) {
  const prk = await labeledExtract(KEM_SUITE, new Uint8Array(0), 'eae_prk', dhBytes);
  return labeledExpand(KEM_SUITE, prk, 'shared_secret', concat(enc, recipientPublic), 32);
}

/** OpenBase: opens `ciphertext` sent to this recipient (`privateKey` a WebCrypto X25519 key, `publicRaw` its 32 bytes). */
export async function open({ privateKey, publicRaw }, enc, ciphertext, info, aad = new Uint8Array(0)) {
  const ss = await sharedSecret(await dh(privateKey, enc), enc, publicRaw);
  const { key, nonce } = await keySchedule(ss, info);
  try {
    return new Uint8Array(await crypto.subtle.decrypt({ name: 'AES-GCM', iv: nonce, additionalData: aad }, key, ciphertext));
  } catch {
    throw new Error('HPKE: the wrap does not open for this identity');
  }
}

/** SealBase to `recipientPublic` (32 bytes) with a fresh ephemeral key; returns { enc, ciphertext }. */
export async function seal(recipientPublic, plaintext, info, aad = new Uint8Array(0)) {
  const ephemeral = await crypto.subtle.generateKey({ name: 'X25519' }, true, ['deriveBits']);
  const enc = new Uint8Array(await crypto.subtle.exportKey('raw', ephemeral.publicKey));
  const ss = await sharedSecret(await dh(ephemeral.privateKey, recipientPublic), enc, recipientPublic);
  const { key, nonce } = await keySchedule(ss, info);
  return { enc, ciphertext: new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv: nonce, additionalData: aad }, key, plaintext)) };
}
