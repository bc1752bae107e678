"""The prototype's story in the page, with a CLI on the other side: user2 logs in in Chromium,
imports the identity they exported with `safechat keys export`, opens the session user1 made,
checks its members' safety numbers, and downloads the file user1 uploaded with `safechat upload`:
byte-identical, verified chunk by chunk, after resuming a download that broke off. Then a byte of the stored file is flipped on the gateway's
disk and the page refuses the download and keeps no partial file; a session name made to look like
HTML shows as text. Exit status 0 if every check holds.

Finally user2 uploads UPLOAD_FILE from the page into the session (sealed in the page, sent with
tus); the caller downloads it with the CLI and compares.

A gateway that lies about which stream a file id names is caught too: another file's bytes served
under the id, another file's bytes served to a resumed download, and a stream digest (ETag) that is
not the stream's; each is refused and no partial file is kept (OTHER_ID is another file of the session).

  story_test.py BASE_URL EXPORT_FILE PASSPHRASE FILE_SHA256 FILE_NAME SESSION_NAME BLOB_PATH HOSTILE_NAME UPLOAD_FILE OTHER_ID
"""
import faulthandler, os, re, sys, urllib.error, urllib.request

# A hang becomes a failure with the stack of where it hung, not a stuck CI job.
faulthandler.dump_traceback_later(240, exit=True)
from playwright.sync_api import sync_playwright

base, export, passphrase, digest, name, session_name, blob, hostile, to_upload, other_id = sys.argv[1:11]


shots = os.environ.get("SAFECHAT_SCREENSHOTS")


def shot(name):
    # Only when asked (README's screenshots come from this run): SAFECHAT_SCREENSHOTS=docs/screenshots.
    if shots:
        page.screenshot(path=os.path.join(shots, name + ".png"), full_page=True)


def check(condition, what):
    if not condition:
        sys.exit(f"FAILED: {what}")


with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"), args=["--no-sandbox"])
    page = browser.new_context().new_page()
    problems = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("dialog", lambda d: (problems.append("a dialog opened: " + d.message), d.dismiss()))
    page.set_viewport_size({"width": 1000, "height": 700})
    page.goto(base + "/")
    shot("login")
    page.get_by_label("Username").fill("user2")
    page.get_by_label("Password").fill("password-two")
    page.get_by_role("button", name="Log in").click()
    page.get_by_label("Identity export file").wait_for()
    shot("identity")
    page.get_by_label("Identity export file").set_input_files(export)
    page.get_by_label("Passphrase", exact=True).fill(passphrase + "x")
    page.get_by_role("button", name="Import identity").click()
    page.get_by_role("alert").filter(has_text="wrong passphrase").wait_for()
    page.get_by_label("Passphrase", exact=True).fill(passphrase)
    page.get_by_role("button", name="Import identity").click()

    # The hostile session name is a button label, as text: no element is made from it.
    page.get_by_role("button", name=f"Open {hostile}").wait_for()
    check(page.evaluate("document.querySelectorAll('main img, main script').length") == 0, "a session name is never parsed as HTML")
    check(page.evaluate("window.pwned") is None, "no script ran from a session name")

    shot("sessions")
    page.get_by_role("button", name=f"Open {session_name}").click()
    page.locator("#session-title", has_text=session_name).wait_for()
    members = page.locator("#members li").all_inner_texts()
    check(len(members) == 2 and all("safety number" in m for m in members), f"members with safety numbers: {members}")

    # Chat: what user1 sent with `safechat send` while this page was away arrives verified, the
    # upload event names the file, a message made to look like HTML shows as text, and the page's
    # own message goes out (the caller reads it with `safechat recv`).
    chat = page.locator("#chat")
    chat.get_by_text("user1 ✓: here it is").wait_for(timeout=20000)
    chat.get_by_text(f"user1 shared {name}").wait_for()
    chat.get_by_text(f"user1 ✓: {hostile}").wait_for()
    check(page.evaluate("document.querySelectorAll('main img, main script').length") == 0, "a message is never parsed as HTML")
    check(page.evaluate("window.pwned") is None, "no script ran from a message")
    page.get_by_label("Message").fill("hello from the page")
    page.get_by_role("button", name="Send", exact=True).click()
    chat.get_by_text("user2 ✓: hello from the page").wait_for()
    shot("session")
    stored = """async () => {
        const db = await new Promise((ok, no) => { const r = indexedDB.open('safechat', 1); r.onsuccess = () => ok(r.result); r.onerror = () => no(r.error); });
        const keys = await new Promise((ok) => { const r = db.transaction('kv').objectStore('kv').getAllKeys(); r.onsuccess = () => ok(r.result); });
        db.close();
        return keys.filter((k) => String(k).startsWith('history:')).length;
    }"""
    check(page.evaluate(stored) == 1, "the chat history is kept in IndexedDB")
    page.get_by_role("button", name="Clear history").click()
    chat.get_by_text("History cleared on this device.").wait_for()
    check(page.evaluate(stored) == 0, "Clear history deletes it from IndexedDB")

    # The first download breaks off half-way (the response is cut); choosing Download again resumes
    # with a Range request from the next unverified chunk.
    requests = []
    lie = {"mode": "cut-first"}

    def cut(route, keep):
        response = route.fetch()
        body = response.body()
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        route.fulfill(status=response.status, headers=headers, body=body[:keep(len(body))])

    def other_file(route):
        """The other file's bytes, for the same range, as if they were this file's."""
        headers = {k: v for k, v in route.request.headers.items() if k.lower() != "if-range"}
        response = route.fetch(url=f"{base}/download/{other_id}", headers=headers)
        route.fulfill(response=response)

    # One handler for the rest of the story, never removed: unroute() now and then waited forever
    # once the page's download workers had come and gone. First it cuts the first download and
    # lets the others through, noting their Range header; then it lies as `lie` says.
    def downloads(route):
        mode = lie["mode"]
        if mode == "cut-first":
            if requests:
                requests.append(route.request.headers.get("range"))
                return route.continue_()
            requests.append("cut")
            return cut(route, lambda n: n // 2)
        if mode == "swap":
            return other_file(route)
        if mode == "cut-then-swap":
            lie["mode"] = "swap"
            return cut(route, lambda n: 1 << 20)
        if mode == "etag":
            response = route.fetch()
            headers = dict(response.headers)
            headers["etag"] = '"' + "ab" * 32 + '"'
            return route.fulfill(response=response, headers=headers)
        route.continue_()

    page.context.route("**/download/*", downloads)
    page.get_by_role("button", name=f"Download {name}").click()
    page.get_by_text("choose Download again to resume").wait_for(timeout=60000)
    page.get_by_role("button", name=f"Download {name}").click()
    page.get_by_text(f"{name}: ").filter(has_text="downloaded and verified").wait_for(timeout=60000)
    check(len(requests) == 2 and requests[1] and requests[1].startswith("bytes=") and requests[1] != "bytes=0-", f"the download resumed with a Range: {requests}")
    got = page.evaluate("""async (name) => {
        const root = await navigator.storage.getDirectory();
        const file = await (await root.getFileHandle(name)).getFile();
        const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', await file.arrayBuffer()));
        return [...digest].map((b) => b.toString(16).padStart(2, '0')).join('');
    }""", name)
    check(got == digest, "the page's download is byte-identical to what the CLI uploaded")
    check(page.get_by_role("button", name=f"Save {name}").count() == 1, "a verified file is offered")

    partials = """async () => { const out = []; for await (const k of (await navigator.storage.getDirectory()).keys()) out.push(k);
        return out.filter((n) => n.endsWith('.partial')); }"""

    def refused(mode, because):
        lie["mode"] = mode
        page.get_by_role("button", name=f"Download {name}").click()
        if mode == "cut-then-swap":
            page.get_by_text("choose Download again to resume").wait_for(timeout=60000)
            page.get_by_role("button", name=f"Download {name}").click()
        page.locator("#transfer").filter(has_text=re.compile(f"^{re.escape(name)}(: .* downloaded and verified| refused)")).wait_for(timeout=60000)
        refusal = page.locator("#transfer").inner_text()
        check(f"{name} refused:" in refusal and because in refusal, f"{mode}: the download is refused, saying why ({because}): {refusal}")
        check(page.evaluate(partials) == [], f"{mode}: no partial file is kept")
        lie["mode"] = "pass"

    # Another file's bytes under this file's id: the header is not the one the id is bound to.
    refused("swap", "is not the stream the gateway serves under that id")
    # A download cut after 1 MiB, resumed against another file's bytes: they do not open as the rest
    # of the stream the download began with.
    refused("cut-then-swap", "chunk")
    # Every chunk verifies, but the stream digest the download began with (the ETag) is not the stream's.
    refused("etag", "stream digest is not the one its download began with")

    # A flipped byte on the gateway's disk: the page refuses, keeps no partial file, offers nothing new.
    with open(blob, "r+b") as f:
        f.seek(os.path.getsize(blob) - 40)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 1]))
    page.get_by_role("button", name=f"Download {name}").click()
    page.get_by_text(f"{name} refused:").wait_for(timeout=60000)
    refusal = page.locator("#transfer").inner_text()
    check("authentication" in refusal, f"the refusal says the chunk failed authentication: {refusal}")
    names = page.evaluate("""async () => { const out = []; for await (const k of (await navigator.storage.getDirectory()).keys()) out.push(k); return out; }""")
    check(not any(n.endswith(".partial") for n in names), f"no partial file is kept: {names}")
    check(page.get_by_role("button", name=f"Save {name}").count() == 1, "the refused download is not offered")

    # Saving the verified file with the File System Access save picker. A headless browser cannot
    # answer the picker's dialog, so the test stands in for the user and picks a file of its own
    # (an origin-private one, the same kind of handle); the page streams the file into it.
    page.evaluate("""() => { window.showSaveFilePicker = async ({ suggestedName }) =>
        (await navigator.storage.getDirectory()).getFileHandle(`picked-${suggestedName}`, { create: true }); }""")
    page.get_by_role("button", name=f"Save {name}").click()
    page.get_by_text(f"{name} saved").wait_for(timeout=60000)
    saved = page.evaluate("""async (name) => {
        const root = await navigator.storage.getDirectory();
        const file = await (await root.getFileHandle(`picked-${name}`)).getFile();
        const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', await file.arrayBuffer()));
        const names = [];
        for await (const k of root.keys()) names.push(k);
        return { digest: [...digest].map((b) => b.toString(16).padStart(2, '0')).join(''), names };
    }""", name)
    check(saved["digest"] == digest, "the file saved through the picker is byte-identical")
    check(name not in saved["names"], f"the private copy is removed once saved: {saved['names']}")

    page.get_by_label("Files to send").set_input_files(to_upload)
    page.get_by_role("button", name="Upload", exact=True).click()
    page.get_by_text("Upload complete").wait_for(timeout=120000)
    uploaded = os.path.basename(to_upload)
    page.get_by_role("button", name=f"Download {uploaded}").wait_for()
    check(not problems, f"no errors in the page: {problems}")

    # Log out: the gateway revokes the page's token, so a copy of it opens nothing any more.
    token = page.evaluate("JSON.parse(sessionStorage.getItem('safechat.login')).token")
    def files_with(token):
        try:
            return urllib.request.urlopen(urllib.request.Request(base + "/files", headers={"Authorization": "Bearer " + token})).status
        except urllib.error.HTTPError as e:
            return e.code
    check(files_with(token) == 200, "the page's token works while logged in")
    page.get_by_role("button", name="Log out").click()
    page.get_by_label("Username").wait_for()
    check(files_with(token) == 401, "after Log out the gateway refuses the page's token")
    browser.close()
print("browser story passed")
