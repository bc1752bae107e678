// Identities as docs/KEYS.md defines them: public bundles, fingerprints (safety numbers) and
// passphrase exports, on WebCrypto (Ed25519, SHA-256, PBKDF2, AES-GCM).
import { concat, fromHex, sha256, utf8 } from './bytes.js';

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

/** Opens a `safechat keys export` file with its passphrase (section 5); returns the identity file's bytes. */
export async function openExport(text, passphrase) {
  const e = JSON.parse(text);
  if (e.version !== 1 || e.kdf !== 'pbkdf2-hmac-sha256' || !Number.isInteger(e.iterations)
      || e.iterations < 600000 || e.iterations > 10000000) throw new Error('not a SafeChat identity export');
  const base = await crypto.subtle.importKey('raw', utf8.encode(passphrase), 'PBKDF2', false, ['deriveKey']);
  const key = await crypto.subtle.deriveKey({ name: 'PBKDF2', hash: 'SHA-256', salt: fromHex(e.salt, 16), iterations: e.iterations },
    base, { name: 'AES-GCM', length: 256 }, false, ['decrypt']);
  try {
    return new Uint8Array(await crypto.subtle.decrypt(
      { name: 'AES-GCM', iv: fromHex(e.nonce, 12), additionalData: utf8.encode('SafeChat identity export v1') }, key, fromHex(e.ciphertext)));
  } catch {
    throw new Error('wrong passphrase, or the file was changed');
  }
}
