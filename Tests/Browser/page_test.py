"""The browser client in a real browser: Debian's Chromium driven by Playwright (PyPI), against a
running gateway. Checks what the gateway sends (the page, its Content-Security-Policy, cached
assets), logging in and out through the labelled form, and the page's own crypto modules against
Fixtures/ (the sealed-stream golden file, the identity fixtures) and against liblz4 (the `lz4`
PyPI package) both ways. Exit status 0 if every check holds.

  page_test.py BASE_URL FIXTURES_DIR
"""
import faulthandler, base64, os, random, re, sys, urllib.error, urllib.request

# A hang becomes a failure with the stack of where it hung, not a stuck CI job.
faulthandler.dump_traceback_later(240, exit=True)
from pathlib import Path
import lz4.block
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pyhpke import AEADId, CipherSuite, KDFId, KEMId
from playwright.sync_api import sync_playwright

base, fixtures = sys.argv[1], Path(sys.argv[2])
golden, keys = fixtures / "golden-v1", fixtures / "keys-v1"
b64 = lambda data: base64.b64encode(data).decode()


def check(condition, what):
    if not condition:
        sys.exit(f"FAILED: {what}")


# What the gateway sends: the page with a strict policy, assets under a content version.
page_reply = urllib.request.urlopen(base + "/")
csp = page_reply.headers["Content-Security-Policy"] or ""
for directive in ["default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'"]:
    check(directive in csp, f"CSP has {directive}: {csp}")
check("unsafe" not in csp, "CSP allows no inline script or eval")
check(page_reply.headers["Cache-Control"] == "no-cache", "the page is revalidated")
html = page_reply.read().decode()
check("<script>" not in html and "onclick" not in html, "no inline script in the page")
version = re.search(r"/assets/([0-9a-f]{16})/app\.js", html).group(1)
asset = urllib.request.urlopen(f"{base}/assets/{version}/stream.js")
check("immutable" in asset.headers["Cache-Control"], "versioned assets are cached for good")
check(asset.headers["Content-Type"].startswith("text/javascript"), "modules are served as JavaScript")
try:
    urllib.request.urlopen(f"{base}/assets/0000000000000000/stream.js")
    check(False, "an asset of another version is not served")
except urllib.error.HTTPError as error:
    check(error.code == 404, "an old asset version is 404")

# LZ4 inputs: empty-ish, tiny, text, repetitive, random, a full 1 MiB chunk of mixed data.
rng = random.Random(7)
text = " ".join(rng.choice(["alpha", "beta", "gamma", "delta", "chunk", "sealed", "stream"]) for _ in range(60000)).encode()
inputs = [b"a", b"ab", b"abcabcabcabcabc", bytes(13), bytes(100000), text[:70000], rng.randbytes(5000),
          (text[:300000] + rng.randbytes(300000) + bytes(448576))[:1 << 20]]

with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"), args=["--no-sandbox"])
    page = browser.new_page()
    problems = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(base + "/")

    # Log in and out through the labelled controls; a wrong password shows the gateway's message.
    page.get_by_label("Username").fill("user1")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("alert").filter(has_text="password").wait_for()
    page.get_by_label("Password").fill("password123")
    page.get_by_role("button", name="Log in").click()
    page.get_by_text("Logged in as user1").wait_for()
    # This browser has no identity for user1 yet: the page asks for one before anything else.
    page.get_by_role("button", name="Import identity").wait_for()
    page.get_by_role("button", name="Log out").click()
    page.get_by_role("button", name="Log in").wait_for()

    kat = page.evaluate("""async ([v, key, salt, sealed, plain, bundle, fingerprintText, exportText, passphrase, identity]) => {
        const s = await import(`/assets/${v}/stream.js`);
        const b = await import(`/assets/${v}/bytes.js`);
        const k = await import(`/assets/${v}/keys.js`);
        const un = (t) => Uint8Array.from(atob(t), (c) => c.charCodeAt(0));
        const same = (x, y) => x.length === y.length && x.every((e, i) => e === y[i]);
        const codeOf = async (f) => { try { await f(); return 'none'; } catch (e) { return e.code || e.message; } };
        const r = {};
        const sessionKey = b.fromHex(key.trim()), golden = un(sealed), plaintext = un(plain);
        r.opens = same(await s.openStream(sessionKey, golden), plaintext);
        const resealed = await s.sealStream(sessionKey, plaintext, { chunkLog2: 16, compress: true, salt: b.fromHex(salt.trim()) });
        r.headerSame = same(resealed.subarray(0, 92), golden.subarray(0, 92));
        // The stored final record (28 928 bytes + 32) is reproduced exactly; LZ4 bodies may differ.
        r.finalRecordSame = same(resealed.subarray(resealed.length - 28960), golden.subarray(golden.length - 28960));
        r.resealedOpens = same(await s.openStream(sessionKey, resealed), plaintext);
        const flipped = golden.slice(); flipped[5000] ^= 1;
        r.tampered = await codeOf(() => s.openStream(sessionKey, flipped));
        const wrong = sessionKey.slice(); wrong[0] ^= 1;
        r.wrongKey = await codeOf(() => s.openStream(wrong, golden));
        r.truncated = await codeOf(() => s.openStream(sessionKey, golden.subarray(0, golden.length - 1)));
        r.trailing = await codeOf(() => s.openStream(sessionKey, b.concat(golden, new Uint8Array(1))));
        r.header = await codeOf(() => s.openStream(sessionKey, golden.subarray(0, 50)));
        const parsed = await k.verifyBundle(bundle);
        r.fingerprint = (await k.fingerprint(parsed.signingKey)) === fingerprintText.trim();
        const forged = JSON.parse(bundle); forged.agreement_key = 'ff' + forged.agreement_key.slice(2);
        r.forgedBundle = await codeOf(() => k.verifyBundle(JSON.stringify(forged)));
        r.exportOpens = same(await k.openExport(exportText, passphrase), un(identity));
        r.wrongPassphrase = await codeOf(() => k.openExport(exportText, passphrase + 'x'));
        return r;
    }""", [version, (golden / "key.hex").read_text(), (golden / "salt.hex").read_text(), b64((golden / "sealed.bin").read_bytes()),
           b64((golden / "plaintext.bin").read_bytes()), (keys / "bundle.json").read_text(), (keys / "fingerprint.txt").read_text(),
           (keys / "export.json").read_text(), (keys / "passphrase.txt").read_text().rstrip("\n"), b64((keys / "identity.json").read_bytes())])
    check(kat["opens"], "the page opens the golden stream to its plaintext")
    check(kat["headerSame"] and kat["finalRecordSame"], "the page reseals the golden header and stored record byte for byte")
    check(kat["resealedOpens"], "what the page seals opens again")
    check(kat["tampered"] == "authenticationFailed", f"a flipped bit is refused: {kat['tampered']}")
    check(kat["wrongKey"] == "wrongKey", f"a wrong key is refused: {kat['wrongKey']}")
    check(kat["truncated"] == "truncatedRecord", f"a cut stream is refused: {kat['truncated']}")
    check(kat["trailing"] == "trailingData", f"bytes after the end are refused: {kat['trailing']}")
    check(kat["header"] == "truncatedHeader", f"a cut header is refused: {kat['header']}")
    check(kat["fingerprint"], "the page's fingerprint equals the fixture's")
    check("does not verify" in kat["forgedBundle"], f"a bundle with a swapped agreement key is refused: {kat['forgedBundle']}")
    check(kat["exportOpens"], "the page opens the identity export with its passphrase")
    check("wrong passphrase" in kat["wrongPassphrase"], "a wrong passphrase is refused")

    # Sessions: the epoch fixture's signed bytes and hash, a whole-log check, wraps opened for each
    # member (user1 from its identity file), and HPKE sealed in the page opened by pyhpke.
    recipient = X25519PrivateKey.generate()
    recipient_public = recipient.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    epochs = page.evaluate("""async ([v, epochText, signedHex, hashHex, keyHex, identity, recipients, recipientPublic]) => {
        const e = await import(`/assets/${v}/epochs.js`);
        const b = await import(`/assets/${v}/bytes.js`);
        const k = await import(`/assets/${v}/keys.js`);
        const h = await import(`/assets/${v}/hpke.js`);
        const un = (t) => Uint8Array.from(atob(t), (c) => c.charCodeAt(0));
        const doc = JSON.parse(epochText);
        const r = {};
        r.signed = b.hex(e.signedBytes(doc)) === signedHex.trim();
        r.hash = b.hex(await e.epochHash(doc)) === hashHex.trim();
        const verified = await e.verifyChain(doc.session_id, [doc], { pinned: async () => true });
        r.head = verified.head.hash === hashHex.trim();
        const me = await k.loadIdentity(un(identity));
        r.wrapUser1 = b.hex(await e.openWrap(doc, 0, me)) === keyHex.trim();
        const user2 = doc.members.find((m) => m.name === 'user2');
        const agreement = { privateKey: await h.importAgreementKey(b.fromHex(JSON.parse(recipients)[user2.user_id])), publicRaw: null };
        // user2's public agreement key is not in the fixture: open with the private key's own public half.
        const jwk = await crypto.subtle.exportKey('jwk', await crypto.subtle.importKey('pkcs8', b.concat(new Uint8Array([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20]), b.fromHex(JSON.parse(recipients)[user2.user_id])), { name: 'X25519' }, true, ['deriveBits']));
        agreement.publicRaw = Uint8Array.from(atob(jwk.x.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0));
        r.wrapUser2 = b.hex(await e.openWrap(doc, 0, { userID: b.fromHex(user2.user_id), signingKey: b.fromHex(user2.signing_key), agreement })) === keyHex.trim();
        const codeOf = async (f) => { try { await f(); return 'none'; } catch (err) { return err.message; } };
        r.otherMember = await codeOf(() => e.openWrap(doc, 0, { ...me, signingKey: b.fromHex(user2.signing_key) }));
        const renamed = JSON.parse(epochText); renamed.members[1].name = 'mallory';
        r.renamed = await codeOf(() => e.verifyChain(doc.session_id, [renamed], { pinned: async () => true }));
        r.unpinned = await codeOf(() => e.verifyChain(doc.session_id, [doc], { pinned: async (m) => m.name !== 'user2' }));
        r.rolledBack = await codeOf(() => e.verifyChain(doc.session_id, [doc], { pinned: async () => true, seen: { epoch: 1, hash: 'x' } }));
        const info = b.utf8.encode('SafeChat browser interop');
        const sealed = await h.seal(un(recipientPublic), b.utf8.encode('a session key, say'), info);
        r.sealed = { enc: b.hex(sealed.enc), ciphertext: b.hex(sealed.ciphertext) };
        return r;
    }""", [version, (keys / "epoch0.json").read_text(), (keys / "epoch0.signed.hex").read_text(), (keys / "epoch0.hash.hex").read_text(),
           (keys / "epoch0.key.hex").read_text(), b64((keys / "identity.json").read_bytes()), (keys / "epoch0.recipients.json").read_text(),
           b64(recipient_public)])
    check(epochs["signed"] and epochs["hash"], "the page rebuilds the epoch's signed bytes and hash")
    check(epochs["head"], "the page verifies the fixture's log")
    check(epochs["wrapUser1"] and epochs["wrapUser2"], "the page opens each member's wrap to the session key")
    check("does not open" in epochs["otherMember"], f"a wrap does not open under another member's key: {epochs['otherMember']}")
    check("signature does not verify" in epochs["renamed"], f"a renamed member breaks the signature: {epochs['renamed']}")
    check("not the one pinned" in epochs["unpinned"], f"an unpinned key is refused: {epochs['unpinned']}")
    check("rolled back" in epochs["rolledBack"], f"a rolled-back log is refused: {epochs['rolledBack']}")
    suite = CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.AES256_GCM)
    sk = suite.kem.deserialize_private_key(recipient.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                                                   serialization.NoEncryption()))
    opened = suite.create_recipient_context(bytes.fromhex(epochs["sealed"]["enc"]), sk, info=b"SafeChat browser interop").open(
        bytes.fromhex(epochs["sealed"]["ciphertext"]), aad=b"")
    check(opened == b"a session key, say", "pyhpke opens what the page sealed")

    # LZ4 against liblz4, both ways.
    for data in inputs:
        out = page.evaluate("""async ([v, theirs, plain, n]) => {
            const l = await import(`/assets/${v}/lz4.js`);
            const un = (t) => Uint8Array.from(atob(t), (c) => c.charCodeAt(0));
            const same = (x, y) => x.length === y.length && x.every((e, i) => e === y[i]);
            const mine = l.compressBlock(un(plain));
            let s = ''; for (let i = 0; i < mine.length; i += 8192) s += String.fromCharCode(...mine.subarray(i, i + 8192));
            return { decodesLiblz4: same(l.decompressBlock(un(theirs), n), un(plain)), mine: btoa(s) };
        }""", [version, b64(lz4.block.compress(data, store_size=False)), b64(data), len(data)])
        check(out["decodesLiblz4"], f"the page decodes liblz4's block of {len(data)} bytes")
        mine = base64.b64decode(out["mine"])
        check(lz4.block.decompress(mine, uncompressed_size=len(data)) == data, f"liblz4 decodes the page's block of {len(data)} bytes")
        if len(data) > 1000 and data != inputs[6]:
            check(len(mine) < len(data), f"the page's LZ4 compresses {len(data)} compressible bytes")
    bad = page.evaluate("""async (v) => {
        const l = await import(`/assets/${v}/lz4.js`);
        const tries = [[new Uint8Array([0x1f, 0x61, 0x05, 0x00]), 40], [new Uint8Array([0x40, 0x61]), 4], [new Uint8Array([0x10, 0x61, 0x00, 0x00]), 20],
                       [new Uint8Array([0x00]), 1], [new Uint8Array([0x10, 0x61]), 2]];
        return tries.map(([block, n]) => { try { l.decompressBlock(block, n); return 'accepted'; } catch (e) { return e.name; } });
    }""", version)
    check(all(result != "accepted" for result in bad), f"malformed LZ4 blocks are refused: {bad}")
    # The one failed request the test makes on purpose is the wrong password's 401.
    problems = [m for m in problems if "status of 401" not in m]
    check(not problems, f"no errors in the page: {problems}")
    browser.close()
print("browser checks passed")
