// Identities as docs/KEYS.md defines them: public bundles, fingerprints (safety numbers) and
// passphrase exports, on WebCrypto (Ed25519, SHA-256, PBKDF2, AES-GCM).
import { concat, fromHex, hex, sha256, utf8 } from './bytes.js';

/** Thirty digits in six groups of five from a signing key (section 3). */
export async function fingerprint(signingKey) {
  const d = await sha256(concat(utf8.encode('SafeChat fingerprint v1'), new Uint8Array([0]), signingKey));
  const groups = [];
  for (let i = 0; i < 6; i++) {
    const v = d[5 * i] * 2 ** 32 + d[5 * i + 1] * 2 ** 24 + d[5 * i + 2] * 2 ** 16 + d[5 * i + 3] * 2 ** 8 + d[5 * i + 4];
    groups.push(String(v % 100000).padStart(5, '0'));
  }
  return groups.join(' ');
}

/** A public bundle's JSON, checked (section 2): its fields, and its signature under its own key. */
export async function verifyBundle(text) {
  if (typeof text !== 'string' || text.length > 4096) throw new Error('a bundle is JSON of at most 4096 bytes');
  const b = JSON.parse(text);
  if (b.version !== 1) throw new Error('unsupported bundle version');
  const userID = fromHex(b.user_id, 16);
  const signingKey = fromHex(b.signing_key, 32);
  const agreementKey = fromHex(b.agreement_key, 32);
  const signature = fromHex(b.signature, 64);
  const signed = concat(utf8.encode('SafeChat identity v1'), new Uint8Array([0]), userID, signingKey, agreementKey);
  const key = await crypto.subtle.importKey('raw', signingKey, { name: 'Ed25519' }, false, ['verify']);
  if (!await crypto.subtle.verify({ name: 'Ed25519' }, key, signature, signed)) throw new Error('the bundle signature does not verify');
  return { userID, signingKey, agreementKey };
}

/** An export's AES-256-GCM key: PBKDF2-HMAC-SHA256 of the passphrase (section 5). */
async function exportKey(passphrase, salt, iterations, usage) {
  const base = await crypto.subtle.importKey('raw', utf8.encode(passphrase), 'PBKDF2', false, ['deriveKey']);
  return crypto.subtle.deriveKey({ name: 'PBKDF2', hash: 'SHA-256', salt, iterations }, base, { name: 'AES-GCM', length: 256 }, false, [usage]);
}

/** Opens a `safechat keys export` file with its passphrase (section 5); returns the identity file's bytes. */
export async function openExport(text, passphrase) {
  const e = JSON.parse(text);
  if (e.version !== 1 || e.kdf !== 'pbkdf2-hmac-sha256' || !Number.isInteger(e.iterations)
      || e.iterations < 600000 || e.iterations > 10000000) throw new Error('not a SafeChat identity export');
  const key = await exportKey(passphrase, fromHex(e.salt, 16), e.iterations, 'decrypt');
  try {
    return new Uint8Array(await crypto.subtle.decrypt(
      { name: 'AES-GCM', iv: fromHex(e.nonce, 12), additionalData: utf8.encode('SafeChat identity export v1') }, key, fromHex(e.ciphertext)));
  } catch {
    throw new Error('wrong passphrase, or the file was changed');
  }
}

/**
 * Seals an identity file's bytes under `passphrase` as a `safechat keys export` file (section 5):
 * PBKDF2-HMAC-SHA256 with 600 000 iterations and a random salt, then AES-256-GCM under a random nonce.
 */
export async function sealExport(bytes, passphrase) {
  const salt = crypto.getRandomValues(new Uint8Array(16)), nonce = crypto.getRandomValues(new Uint8Array(12));
  const iterations = 600000;
  const key = await exportKey(passphrase, salt, iterations, 'encrypt');
  const ciphertext = new Uint8Array(await crypto.subtle.encrypt(
    { name: 'AES-GCM', iv: nonce, additionalData: utf8.encode('SafeChat identity export v1') }, key, bytes));
  return `{"version":1,"kdf":"pbkdf2-hmac-sha256","iterations":${iterations},"salt":"${hex(salt)}","nonce":"${hex(nonce)}",`
    + `"ciphertext":"${hex(ciphertext)}"}\n`;
}

/** A new identity file's bytes (section 4): fresh random keys for `userID` (hex). */
export function newIdentityFile(userID) {
  const random = () => hex(crypto.getRandomValues(new Uint8Array(32)));
  return utf8.encode(`{"version":1,"user_id":"${userID}","signing_seed":"${random()}","agreement_private":"${random()}",`
    + `"history_key":"${random()}"}\n`);
}

const ED25519_PKCS8_PREFIX = new Uint8Array([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]);
const X25519_PKCS8_PREFIX = new Uint8Array([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20]);
const fromBase64url = (t) => Uint8Array.from(atob(t.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0));

/** A private key (raw 32 bytes) as a non-extractable WebCrypto key, and its raw public key. */
async function importPrivate(raw, prefix, algorithm, usages) {
  // WebCrypto derives the public key only through an export; the extractable copy lives only here.
  const extractable = await crypto.subtle.importKey('pkcs8', concat(prefix, raw), { name: algorithm }, true, usages);
  const publicRaw = fromBase64url((await crypto.subtle.exportKey('jwk', extractable)).x);
  const privateKey = await crypto.subtle.importKey('pkcs8', concat(prefix, raw), { name: algorithm }, false, usages);
  return { privateKey, publicRaw };
}

/** An identity file's bytes (section 4) as keys the page can use and never export. */
export async function loadIdentity(bytes) {
  if (bytes.length > 4096) throw new Error('an identity file is at most 4096 bytes');
  const f = JSON.parse(new TextDecoder().decode(bytes));
  if (f.version !== 1) throw new Error('unsupported identity file version');
  const seed = fromHex(f.signing_seed, 32), agreement = fromHex(f.agreement_private, 32);
  const signing = await importPrivate(seed, ED25519_PKCS8_PREFIX, 'Ed25519', ['sign']);
  const agree = await importPrivate(agreement, X25519_PKCS8_PREFIX, 'X25519', ['deriveBits']);
  seed.fill(0);
  agreement.fill(0);
  return {
    userID: fromHex(f.user_id, 16), signing: signing.privateKey, signingKey: signing.publicRaw,
    agreement: agree, historyKey: fromHex(f.history_key, 32),
  };
}
