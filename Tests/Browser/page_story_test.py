"""The prototype's story entirely in the page, two browser contexts (two people): user1 and user2
log in and each makes an identity in the browser; user1 creates a session with user2, uploads a
file into it and chats its file id; user2 receives the message and the upload event and downloads
the file byte-identical; user1 clears the history and it is gone from IndexedDB. Exit status 0 if
every check holds.

Last, user1 exports the identity made in the page to EXPORT_FILE (sealed under
pages.EXPORT_PASSPHRASE), for the caller to import with the CLI.

  page_story_test.py BASE_URL FILE EXPORT_FILE
"""
import faulthandler, hashlib, os, re, sys

# A hang becomes a failure with the stack of where it hung, not a stuck CI job.
faulthandler.dump_traceback_later(240, exit=True)
from playwright.sync_api import sync_playwright
from pages import EXPORT_PASSPHRASE, check, log_in_with_new_identity

base, path, export_to = sys.argv[1:4]
name = os.path.basename(path)
digest = hashlib.sha256(open(path, "rb").read()).hexdigest()


def person(browser, user, password):
    return log_in_with_new_identity(browser.new_context().new_page(), base, user, password)


history_entries = """async () => {
    const db = await new Promise((ok, no) => { const r = indexedDB.open('safechat', 1); r.onsuccess = () => ok(r.result); r.onerror = () => no(r.error); });
    const keys = await new Promise((ok) => { const r = db.transaction('kv').objectStore('kv').getAllKeys(); r.onsuccess = () => ok(r.result); });
    db.close();
    return keys.filter((k) => String(k).startsWith('history:')).length;
}"""

with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"), args=["--no-sandbox"])
    one = person(browser, "user1", "password123")
    two = person(browser, "user2", "password-two")

    one.get_by_label("Session name").fill("Report")
    one.get_by_label("Members (user names, comma-separated)").fill("user2")
    one.get_by_role("button", name="Create session").click()
    one.get_by_role("button", name="Open Report").click()
    # Two files at once: each has its own progress bar and line, and one bar covers both.
    notes = os.path.join(os.path.dirname(path), "notes.txt")
    with open(notes, "w") as f:
        f.write("what the dataset is\n" * 5000)
    one.get_by_label("Files to send").set_input_files([path, notes])
    one.get_by_role("button", name="Upload", exact=True).click()
    one.get_by_text("Upload complete").wait_for(timeout=120000)
    for sent in (name, "notes.txt"):
        check(one.get_by_label(f"Upload progress for {sent}").evaluate("(bar) => bar.value") == 1, f"{sent}'s bar is full")
        line = one.locator("#uploads li").filter(has_text=f"{sent}: sent, {os.path.getsize(path if sent == name else notes)} bytes")
        check(line.count() == 1, f"{sent}'s line says it was sent: {one.locator('#uploads').inner_text()}")
    check(one.get_by_label("Upload progress, all files").evaluate("(bar) => bar.value") == 1, "the overall bar is full")
    one.get_by_role("button", name="Download notes.txt").wait_for()
    listing = one.locator("#files li").filter(has_text=name).inner_text()
    file_id = re.search(r"file ([0-9a-f]{32})", listing).group(1)
    one.get_by_label("Message").fill(f"here it is: {file_id}")
    one.get_by_role("button", name="Send", exact=True).click()
    one.locator("#chat").get_by_text(f"user1 ✓: here it is: {file_id}").wait_for()

    two.reload()
    two.get_by_role("button", name="Open Report").click()
    # Safety numbers: user2 compares user1's with what user1's own page shows for itself.
    own = one.locator("#members li").filter(has_text="user1 —").inner_text()
    number = re.search(r"safety number ((?:\d{5} ){5}\d{5})", own).group(1)
    two.get_by_label("Safety number for user1").fill("1" * 30)
    two.get_by_role("button", name="Verify user1").click()
    two.get_by_text("DOES NOT MATCH").wait_for()
    two.get_by_label("Safety number for user1").fill(number.replace(" ", ""))
    two.get_by_role("button", name="Verify user1").click()
    two.locator("#members").get_by_text("verified ✓").wait_for()
    chat = two.locator("#chat")
    chat.get_by_text(f"user1 shared {name}").wait_for(timeout=20000)
    chat.get_by_text(f"user1 ✓: here it is: {file_id}").wait_for()
    check(chat.get_by_text("WARNING").count() == 0, "no warnings")
    two.get_by_role("button", name=f"Download {name}").click()
    two.get_by_text("downloaded and verified").wait_for(timeout=120000)
    got = two.evaluate("""async (name) => {
        const file = await (await (await navigator.storage.getDirectory()).getFileHandle(name)).getFile();
        return [...new Uint8Array(await crypto.subtle.digest('SHA-256', await file.arrayBuffer()))].map((b) => b.toString(16).padStart(2, '0')).join('');
    }""", name)
    check(got == digest, "user2's download is byte-identical to user1's file")


    # A gateway that lies, as user2's page sees it: forged chat deliveries are shown as warnings,
    # and a session log listing user1 under a substituted key is refused by the pin.
    lies = two.evaluate("""async () => {
        const v = document.querySelector('script[type=module]').src.split('/')[4];
        const c = await import(`/assets/${v}/client.js`);
        const chat = await import(`/assets/${v}/chat.js`);
        const b = await import(`/assets/${v}/bytes.js`);
        const e = await import(`/assets/${v}/epochs.js`);
        const login = JSON.parse(sessionStorage.getItem('safechat.login'));
        const identity = await c.savedIdentity(login.userID);
        const gateway = new c.Gateway(login.token);
        const { sessions } = await gateway.request('GET', '/sessions');
        const room = await c.openSession(gateway, login, identity, sessions[0].session_id);
        const user1 = room.members.find((m) => m.name === 'user1');
        const user1ID = (await gateway.request('GET', '/keys/user1')).user_id;
        const chatRoom = new chat.ChatRoom(gateway, identity, room, () => {});
        chatRoom.seen = new Set();
        const key = await chat.chatKey(await room.key(room.epoch), room.id, room.epoch);
        const genuine = await chat.sealMessage('genuine', { sessionID: room.id, epoch: room.epoch, key, identity, sentAt: Date.now() });
        const r = {};
        r.genuine = (await chatRoom.check({ type: 'delivery', seq: 1, message: genuine })).kind;
        chatRoom.seen.add(genuine.message_id);  // as receive() does once the line is stored
        r.replayed = (await chatRoom.check({ type: 'delivery', seq: 2, message: genuine })).text;
        const tampered = await chat.sealMessage('tampered', { sessionID: room.id, epoch: room.epoch, key, identity, sentAt: Date.now() + 1 });
        tampered.ciphertext = (tampered.ciphertext[0] === '0' ? '1' : '0') + tampered.ciphertext.slice(1);
        r.tampered = (await chatRoom.check({ type: 'delivery', seq: 3, message: tampered })).text;
        // user2 (a member) signs a message that claims to come from user1.
        const forged = await chat.sealMessage('I am user1', { sessionID: room.id, epoch: room.epoch, key, identity: { ...identity, userID: b.fromHex(user1ID) }, sentAt: Date.now() + 2 });
        r.impersonated = (await chatRoom.check({ type: 'delivery', seq: 4, message: forged })).text;
        const stranger = await chat.sealMessage('hi', { sessionID: room.id, epoch: room.epoch, key, identity: { ...identity, userID: new Uint8Array(16).fill(7) }, sentAt: Date.now() + 3 });
        r.stranger = (await chatRoom.check({ type: 'delivery', seq: 5, message: stranger })).text;
        // A log that lists user1 with another key, signed by that key: what a gateway substituting
        // user1's key would serve.
        const fake = await crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify']);
        const fakeKey = new Uint8Array(await crypto.subtle.exportKey('raw', fake.publicKey));
        const fakeID = b.hex(crypto.getRandomValues(new Uint8Array(16)));
        const doc = { version: 1, session_id: fakeID, epoch: 0, previous: '0'.repeat(64), signer: user1ID,
            members: [{ user_id: user1ID, name: 'user1', signing_key: b.hex(fakeKey) }, { user_id: login.userID, name: 'user2', signing_key: b.hex(identity.signingKey) }],
            wraps: [], sealed_name: '', signature: '' };
        doc.signature = b.hex(new Uint8Array(await crypto.subtle.sign({ name: 'Ed25519' }, fake.privateKey, e.signedBytes(doc))));
        const realFetch = window.fetch;
        window.fetch = async (url, options) => String(url).endsWith(`/sessions/${fakeID}`)
            ? new Response(JSON.stringify({ session_id: fakeID, epochs: [doc] }), { status: 200 }) : realFetch(url, options);
        try { await c.openSession(gateway, login, identity, fakeID); r.substituted = 'accepted'; } catch (err) { r.substituted = err.message; }
        window.fetch = realFetch;
        r.pinned = user1.fingerprint;
        return r;
    }""")
    check(lies["genuine"] == "message", f"a genuine message is accepted: {lies}")
    check("replayed" in lies["replayed"], f"a replayed message is a warning: {lies['replayed']}")
    check("signature does not verify" in lies["tampered"], f"a tampered message is a warning: {lies['tampered']}")
    check("signature does not verify" in lies["impersonated"], f"a message signed by another member is a warning: {lies['impersonated']}")
    check("not a member" in lies["stranger"], f"a message from a non-member is a warning: {lies['stranger']}")
    check("key changed" in lies["substituted"] and lies["pinned"] in lies["substituted"], f"a substituted key is refused by the pin: {lies['substituted']}")

    # An upload cut off by a dropped network resumes after a reload from the gateway's offset, with
    # the same salt, and downloads byte-identical.
    big = os.path.join(os.path.dirname(path), "big.bin")
    with open(big, "wb") as f:
        # 69 chunks, 57 MiB sealed: each sealing worker is replaced at least once, and a download is two segments.
        f.write(os.urandom(56 << 20) + b"compressible text " * (700 << 10))
    big_digest = hashlib.sha256(open(big, "rb").read()).hexdigest()
    patches = []

    def cut_second_patch(route):
        if route.request.method == "PATCH":
            patches.append(route.request.headers.get("upload-offset"))
            if len(patches) == 2:
                return route.abort()
        route.continue_()

    # Never removed (unroute() now and then waited forever once the page's workers had come and
    # gone): after the second PATCH it only counts.
    one.route("**/uploads/*", cut_second_patch)
    one.get_by_label("Files to send").set_input_files(big)
    one.get_by_role("button", name="Upload", exact=True).click()
    one.get_by_text("Upload failed").wait_for(timeout=120000)
    one.reload()
    one.get_by_role("button", name="Open Report").click()
    one.get_by_label("Files to send").set_input_files(big)
    one.get_by_role("button", name="Upload", exact=True).click()
    one.get_by_text("resumed at byte").wait_for(timeout=120000)
    one.get_by_text("Upload complete").wait_for(timeout=120000)
    check(int(patches[2]) > 0, f"the resumed upload starts at the gateway's offset, not 0: {patches}")
    two.reload()
    two.get_by_role("button", name="Open Report").click()
    two.get_by_role("button", name="Download big.bin").click()
    two.get_by_text("big.bin: ").filter(has_text="downloaded and verified").wait_for(timeout=120000)
    got = two.evaluate("""async () => {
        const file = await (await (await navigator.storage.getDirectory()).getFileHandle('big.bin')).getFile();
        return [...new Uint8Array(await crypto.subtle.digest('SHA-256', await file.arrayBuffer()))].map((b) => b.toString(16).padStart(2, '0')).join('');
    }""")
    check(got == big_digest, "the resumed upload downloads byte-identical")
    # Where the browser has no save picker, Save starts a browser download of the verified file.
    two.evaluate("() => { delete window.showSaveFilePicker; window.showSaveFilePicker = undefined; }")
    with two.expect_download(timeout=60000) as saving:
        two.get_by_role("button", name="Save big.bin").click()
    saved_path = os.path.join(os.path.dirname(path), "saved-big.bin")
    saving.value.save_as(saved_path)
    check(saving.value.suggested_filename == "big.bin", f"the download keeps the file's name: {saving.value.suggested_filename}")
    check(hashlib.sha256(open(saved_path, "rb").read()).hexdigest() == big_digest, "the browser download of the file is byte-identical")

    # user2 on a second browser that has no origin-private file system: the identity exported from
    # the first browser is imported, and downloads stream through the Service Worker into the
    # browser's downloads, verified chunk by chunk; one that breaks off is resumed within the same
    # download, and one with a tampered chunk fails and is never kept. big.bin is two segments of the
    # download (a worker each, the stream's port handed from one to the next).
    with two.expect_download(timeout=60000) as exporting:
        two.get_by_role("button", name="Export identity").click()
    two_export = os.path.join(os.path.dirname(path), "user2.export")
    exporting.value.save_as(two_export)
    plain = browser.new_context(accept_downloads=True)
    plain.add_init_script("delete StorageManager.prototype.getDirectory")
    three = plain.new_page()

    # One route for the gateway's lies, set before any worker exists and never removed (route() and
    # unroute() now and then wait forever once the page's workers have come and gone): first every
    # request goes through; then the first request of the cut download gets a quarter of its body
    # (within the first segment) and the retry and the next segment go through; then every request
    # of the tampered one gets a flipped byte in the middle of its body (in the second segment).
    requests, mode = [], {"lie": "none"}

    def lie(route):
        if mode["lie"] == "cut":
            requests.append(route.request.headers.get("range"))
        if mode["lie"] == "cut" and len(requests) == 1:
            response = route.fetch()
            body = response.body()
            return route.fulfill(response=response, body=body[: len(body) // 4])
        if mode["lie"] == "tamper":
            response = route.fetch()
            body = bytearray(response.body())
            body[len(body) // 2] ^= 1
            return route.fulfill(response=response, body=bytes(body))
        route.continue_()

    three.route("**/download/*", lie)

    three.on("pageerror", lambda e: sys.exit(f"FAILED: an error in the page without a private file system: {e}"))
    three.goto(base + "/")
    three.get_by_label("Username").fill("user2")
    three.get_by_label("Password").fill("password-two")
    three.get_by_role("button", name="Log in").click()
    three.get_by_label("Identity export file").set_input_files(two_export)
    three.get_by_label("Passphrase", exact=True).fill(EXPORT_PASSPHRASE)
    three.get_by_role("button", name="Import identity").click()
    three.get_by_role("button", name="Open Report").click()
    check(three.evaluate("typeof navigator.storage.getDirectory") == "undefined", "the second browser has no private file system")

    def streamed():
        with three.expect_download(timeout=60000) as streaming:
            three.get_by_role("button", name="Download big.bin").click()
        three.get_by_text(re.compile("^big.bin(: .* downloaded and verified into your downloads| refused)")).wait_for(timeout=120000)
        failure = streaming.value.failure()
        data = None if failure else open(streaming.value.path(), "rb").read()
        return failure, data, three.locator("#transfer").inner_text()

    failure, data, status = streamed()
    check(failure is None and hashlib.sha256(data).hexdigest() == big_digest, f"the streamed download is byte-identical: {failure} {status}")
    mode["lie"] = "cut"
    failure, data, status = streamed()
    check(failure is None and hashlib.sha256(data).hexdigest() == big_digest, f"a streamed download that broke off resumes byte-identical: {failure} {status}")
    check(len(requests) == 3 and requests[0] is None and all((r or "").startswith("bytes=") for r in requests[1:]),
          f"it resumed with Range, then went on to its second segment with Range: {requests}")
    mode["lie"] = "tamper"
    failure, data, status = streamed()
    check(failure is not None and "refused" in status and "chunk" in status, f"a tampered stream fails the browser's download: {failure} {status}")
    plain.close()

    # Members change in the page: user1 removes user2 (a new epoch and key; user2 no longer sees the
    # session), then adds them back (user2 verifies the whole log again and chats on the new key).
    one.get_by_role("button", name="Remove user2").click()
    one.get_by_text("user2 removed: the session is at epoch 1").wait_for()
    two.reload()
    two.get_by_text("No sessions yet.").wait_for()
    one.get_by_label("Add a member (user name)").fill("user2")
    one.get_by_role("button", name="Add member").click()
    one.get_by_text("user2 added: the session is at epoch 2").wait_for()
    one.get_by_label("Message").fill("welcome back")
    one.get_by_role("button", name="Send", exact=True).click()
    one.locator("#chat").get_by_text("user1 ✓: welcome back").wait_for()
    two.reload()
    two.get_by_role("button", name="Open Report").click()
    two.locator("#chat").get_by_text("user1 ✓: welcome back").wait_for(timeout=20000)

    check(one.evaluate(history_entries) == 1, "user1's history is in IndexedDB")
    one.get_by_role("button", name="Clear history").click()
    one.get_by_text("History cleared on this device.").wait_for()
    check(one.evaluate(history_entries) == 0, "Clear history leaves nothing in IndexedDB")

    # The identity user1 made in the page goes to the CLI: "Export identity" saves its export file
    # (the caller imports it with `safechat keys import` and compares the safety number).
    with one.expect_download(timeout=60000) as exporting:
        one.get_by_role("button", name="Export identity").click()
    exporting.value.save_as(export_to)
    one.get_by_text("safechat keys import").wait_for()
    browser.close()
print(f"user1's safety number in the page: {number}")
print("page story passed")
