#!/usr/bin/env python3
"""An independent sealer and opener for the SafeChat sealed-stream format v1, written from
docs/FORMAT.md alone (Python `cryptography` for AES-256-GCM/HKDF/SHA-256, `lz4.block` for LZ4).

    sealed_stream_v1.py open KEYFILE SEALED OUT
    sealed_stream_v1.py seal KEYFILE PLAIN OUT [--chunk-log2 N] [--no-compress]

Exit status 0 on success, 2 with one line on stderr when the input is rejected.
The Swift test suite runs it against `safechat` in both directions.
"""
import hashlib
import os
import struct
import sys

import lz4.block
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import constant_time, hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"SAFECHAT"
INFO = b"SafeChat sealed stream v1"


class Rejected(Exception):
    pass


def read_key(path):
    with open(path, "rb") as f:
        text = f.read(257)
    if len(text) > 256:
        raise Rejected("key file too large")
    digits = bytes(c for c in text if c not in b" \t\r\n")
    if len(digits) != 64:
        raise Rejected("key file must hold 64 hex digits")
    return bytes.fromhex(digits.decode("ascii"))


def schedule(key, salt, params):
    okm = HKDF(algorithm=hashes.SHA256(), length=76, salt=salt, info=INFO + params).derive(key)
    return okm[0:32], okm[32:44], okm[44:76]


def nonce(base, i):
    return base[:8] + bytes(a ^ b for a, b in zip(base[8:], struct.pack(">I", i)))


def read_exact(f, n):
    data = f.read(n)
    return data


def open_stream(key, f, out):
    header = read_exact(f, 92)
    if not header:
        raise Rejected("empty input")
    if not MAGIC.startswith(header[:8]) or header[:8] != MAGIC[: len(header[:8])]:
        raise Rejected("not a sealed stream")
    if len(header) < 92:
        raise Rejected("truncated header")
    version, algorithm, codec, log2 = header[8], header[9], header[10], header[11]
    if version != 1 or algorithm != 1 or codec not in (0, 1) or not 16 <= log2 <= 24:
        raise Rejected("unsupported header")
    if hashlib.sha256(header[:76]).digest()[:16] != header[76:92]:
        raise Rejected("header corrupted")
    chunk_size = 1 << log2
    stream_key, base_nonce, commitment = schedule(key, header[12:44], header[:12])
    if not constant_time.bytes_eq(commitment, header[44:76]):
        raise Rejected("wrong key")
    aead = AESGCM(stream_key)
    expected = 0
    while True:
        rh = read_exact(f, 16)
        if not rh:
            raise Rejected(f"missing final chunk after {expected} chunks")
        if len(rh) < 16:
            raise Rejected(f"chunk {expected}: truncated")
        index, flags, plain_len, body_len = struct.unpack(">IB3xII", rh)
        if flags & ~0x03 or rh[5:8] != b"\0\0\0":
            raise Rejected(f"chunk {expected}: reserved bits set")
        if index != expected:
            raise Rejected(f"chunk {expected}: found chunk {index}")
        final, compressed = bool(flags & 1), bool(flags & 2)
        if plain_len > chunk_size:
            raise Rejected(f"chunk {index}: plaintext length too large")
        if compressed and (codec != 1 or not 1 <= body_len < plain_len):
            raise Rejected(f"chunk {index}: bad compressed length")
        if not compressed and body_len != plain_len:
            raise Rejected(f"chunk {index}: bad stored length")
        if final and plain_len == 0 and index != 0:
            raise Rejected(f"chunk {index}: empty final chunk")
        if not final and (index == 0xFFFFFFFF or plain_len != chunk_size):
            raise Rejected(f"chunk {index}: short non-final chunk")
        sealed = read_exact(f, body_len + 16)
        if len(sealed) < body_len + 16:
            raise Rejected(f"chunk {index}: truncated")
        if final and f.read(1):
            raise Rejected(f"data after final chunk {index}")
        try:
            body = aead.decrypt(nonce(base_nonce, index), sealed, rh)
        except InvalidTag:
            raise Rejected(f"chunk {index}: authentication failed")
        if compressed:
            try:
                body = lz4.block.decompress(body, uncompressed_size=plain_len)
            except Exception:
                raise Rejected(f"chunk {index}: bad LZ4 body")
            if len(body) != plain_len:
                raise Rejected(f"chunk {index}: bad LZ4 body")
        out.write(body)
        if final:
            return
        expected += 1


def seal_stream(key, f, out, log2=20, compress=True):
    salt = os.urandom(32)
    params = MAGIC + bytes([1, 1, 1 if compress else 0, log2])
    stream_key, base_nonce, commitment = schedule(key, salt, params)
    head = params + salt + commitment
    out.write(head + hashlib.sha256(head).digest()[:16])
    aead = AESGCM(stream_key)
    chunk_size = 1 << log2
    index = 0
    current = f.read(chunk_size)
    while True:
        following = f.read(chunk_size) if len(current) == chunk_size else b""
        final = not following
        body, flags = current, (1 if final else 0)
        if compress and len(current) >= 2:
            c = lz4.block.compress(current, store_size=False)
            if len(c) < len(current):
                body, flags = c, flags | 2
        rh = struct.pack(">IB3xII", index, flags, len(current), len(body))
        out.write(rh + aead.encrypt(nonce(base_nonce, index), body, rh))
        if final:
            return
        current, index = following, index + 1


def main(argv):
    if len(argv) < 5 or argv[1] not in ("open", "seal"):
        print(__doc__, file=sys.stderr)
        return 64
    try:
        key = read_key(argv[2])
        with open(argv[3], "rb") as f, open(argv[4], "wb") as out:
            if argv[1] == "open":
                open_stream(key, f, out)
            else:
                log2 = int(argv[argv.index("--chunk-log2") + 1]) if "--chunk-log2" in argv else 20
                seal_stream(key, f, out, log2, "--no-compress" not in argv)
    except Rejected as e:
        os.unlink(argv[4])
        print(f"rejected: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
