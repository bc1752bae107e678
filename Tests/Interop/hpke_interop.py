"""Cross-implementation check of SafeChat's HPKE (RFC 9180 base mode, DHKEM(X25519, HKDF-SHA256),
HKDF-SHA256, AES-256-GCM) against the independent pyhpke.

  hpke_interop.py seal PK INFO AAD PT          -> "<enc hex> <ct hex>"   (all arguments hex)
  hpke_interop.py open SK ENC CT INFO AAD      -> "<pt hex>", or exit 1 if it does not open
"""
import sys
from pyhpke import AEADId, CipherSuite, KDFId, KEMId

suite = CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.AES256_GCM)
h = bytes.fromhex
cmd = sys.argv[1]
if cmd == "seal":
    pk, info, aad, pt = map(h, sys.argv[2:6])
    enc, sender = suite.create_sender_context(suite.kem.deserialize_public_key(pk), info=info)
    print(enc.hex(), sender.seal(pt, aad=aad).hex())
elif cmd == "open":
    sk, enc, ct, info, aad = map(h, sys.argv[2:7])
    try:
        recipient = suite.create_recipient_context(enc, suite.kem.deserialize_private_key(sk), info=info)
        print(recipient.open(ct, aad=aad).hex())
    except Exception as error:
        print("does not open:", error, file=sys.stderr)
        sys.exit(1)
