"""Checks Fixtures/keys-v1/epoch0.json and its companions from docs/KEYS.md section 7 alone, with
the independent `cryptography` and `pyhpke` packages: the signed bytes are rebuilt from the JSON,
the signature verifies under the signer's key, the hash matches, and every wrap opens with its
recipient's X25519 key to the session key, and sealing again with the fixture's ephemeral keys
reproduces every wrap byte for byte.

  epoch_v1.py FIXTURE_DIR
"""
import hashlib, json, sys
from pathlib import Path
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pyhpke import AEADId, CipherSuite, KDFId, KEMId

d = Path(sys.argv[1])
doc = json.loads((d / "epoch0.json").read_bytes())
h = bytes.fromhex
signed = b"SafeChat epoch v1\x00" + h(doc["session_id"]) + doc["epoch"].to_bytes(4, "big") + h(doc["previous"]) + h(doc["signer"])
signed += len(doc["members"]).to_bytes(2, "big")
for m in doc["members"]:
    name = m["name"].encode()
    signed += h(m["user_id"]) + h(m["signing_key"]) + bytes([len(name)]) + name
signed += len(doc["wraps"]).to_bytes(2, "big")
for w in doc["wraps"]:
    ct = h(w["ciphertext"])
    signed += h(w["user_id"]) + w["key_epoch"].to_bytes(4, "big") + h(w["enc"]) + len(ct).to_bytes(2, "big") + ct
name = h(doc["sealed_name"])
signed += len(name).to_bytes(2, "big") + name
assert signed.hex() == (d / "epoch0.signed.hex").read_text().strip(), "signed bytes"
signer = next(m for m in doc["members"] if m["user_id"] == doc["signer"])
Ed25519PublicKey.from_public_bytes(h(signer["signing_key"])).verify(h(doc["signature"]), signed)
assert hashlib.sha256(signed + h(doc["signature"])).hexdigest() == (d / "epoch0.hash.hex").read_text().strip(), "hash"
suite = CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.AES256_GCM)
keys = json.loads((d / "epoch0.recipients.json").read_bytes())
session_key = (d / "epoch0.key.hex").read_text().strip()
for w in doc["wraps"]:
    member = next(m for m in doc["members"] if m["user_id"] == w["user_id"])
    info = b"SafeChat wrap v1\x00" + h(doc["session_id"]) + w["key_epoch"].to_bytes(4, "big") + h(member["signing_key"])
    sk = suite.kem.deserialize_private_key(h(keys[w["user_id"]]))
    opened = suite.create_recipient_context(h(w["enc"]), sk, info=info).open(h(w["ciphertext"]), aad=b"")
    assert opened.hex() == session_key, "wrap for " + member["name"]
    # Reproducible: the fixture's ephemeral key pair is DeriveKeyPair(SHA-256("fixture ephemeral" ||
    # user_id || u8(key_epoch))) (docs/KEYS.md section 10), so sealing again gives the same bytes.
    eks = suite.kem.derive_key_pair(hashlib.sha256(b"fixture ephemeral" + h(w["user_id"]) + bytes([w["key_epoch"]])).digest())
    public = X25519PrivateKey.from_private_bytes(h(keys[w["user_id"]])).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    enc, sender = suite.create_sender_context(suite.kem.deserialize_public_key(public), info=info, eks=eks)
    assert enc.hex() == w["enc"] and sender.seal(h(session_key), aad=b"").hex() == w["ciphertext"], "wrap for " + member["name"] + " reproduced"
print("epoch-v1 fixtures verified")
