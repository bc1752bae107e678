"""Checks Fixtures/keys-v1 with the independent `cryptography` package, from docs/KEYS.md alone:
the public keys derive from the stored private keys, the bundle's signature verifies over the
documented bytes, the fingerprint is the documented digest, and the export opens with the
passphrase to the identity file. Exit status 0 if every check holds.

  keys_v1.py FIXTURE_DIR
"""
import hashlib, json, sys
from pathlib import Path
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.hazmat.primitives import hashes, serialization

d = Path(sys.argv[1])
raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
identity_bytes = (d / "identity.json").read_bytes()
identity = json.loads(identity_bytes)
bundle = json.loads((d / "bundle.json").read_bytes())
sign = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(identity["signing_seed"]))
agree = X25519PrivateKey.from_private_bytes(bytes.fromhex(identity["agreement_private"]))
assert sign.public_key().public_bytes(*raw).hex() == bundle["signing_key"], "signing key"
assert agree.public_key().public_bytes(*raw).hex() == bundle["agreement_key"], "agreement key"
assert bundle["user_id"] == identity["user_id"] and bundle["version"] == 1
signed = b"SafeChat identity v1\x00" + bytes.fromhex(bundle["user_id"]) + bytes.fromhex(bundle["signing_key"]) + bytes.fromhex(bundle["agreement_key"])
Ed25519PublicKey.from_public_bytes(bytes.fromhex(bundle["signing_key"])).verify(bytes.fromhex(bundle["signature"]), signed)
digest = hashlib.sha256(b"SafeChat fingerprint v1\x00" + bytes.fromhex(bundle["signing_key"])).digest()
fingerprint = " ".join("%05d" % (int.from_bytes(digest[5 * i:5 * i + 5], "big") % 100000) for i in range(6))
assert fingerprint == (d / "fingerprint.txt").read_text().strip(), "fingerprint"
export = json.loads((d / "export.json").read_bytes())
passphrase = (d / "passphrase.txt").read_text().rstrip("\n").encode()
key = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=bytes.fromhex(export["salt"]), iterations=export["iterations"]).derive(passphrase)
opened = AESGCM(key).decrypt(bytes.fromhex(export["nonce"]), bytes.fromhex(export["ciphertext"]), b"SafeChat identity export v1")
assert opened == identity_bytes, "export"
print("keys-v1 fixtures verified")
