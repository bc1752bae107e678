"""The prototype's story entirely in the page, two browser contexts (two people): user1 and user2
log in and each makes an identity in the browser; user1 creates a session with user2, uploads a
file into it and chats its file id; user2 receives the message and the upload event and downloads
the file byte-identical; user1 clears the history and it is gone from IndexedDB. Exit status 0 if
every check holds.

  page_story_test.py BASE_URL FILE
"""
import hashlib, os, re, sys
from playwright.sync_api import sync_playwright

base, path = sys.argv[1:3]
name = os.path.basename(path)
digest = hashlib.sha256(open(path, "rb").read()).hexdigest()


def check(condition, what):
    if not condition:
        sys.exit(f"FAILED: {what}")


def person(browser, user, password):
    page = browser.new_context().new_page()
    page.on("pageerror", lambda e: sys.exit(f"FAILED: an error in {user}'s page: {e}"))
    page.goto(base + "/")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("button", name="Create a new identity").click()
    page.get_by_text("No sessions yet.").wait_for()
    return page


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
    one.get_by_label("Files to send").set_input_files(path)
    one.get_by_role("button", name="Upload", exact=True).click()
    one.get_by_text("Upload complete").wait_for(timeout=120000)
    listing = one.locator("#files li").filter(has_text=name).inner_text()
    file_id = re.search(r"file ([0-9a-f]{32})", listing).group(1)
    one.get_by_label("Message").fill(f"here it is: {file_id}")
    one.get_by_role("button", name="Send", exact=True).click()
    one.locator("#chat").get_by_text(f"user1 ✓: here it is: {file_id}").wait_for()

    two.reload()
    two.get_by_role("button", name="Open Report").click()
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

    check(one.evaluate(history_entries) == 1, "user1's history is in IndexedDB")
    one.get_by_role("button", name="Clear history").click()
    one.get_by_text("History cleared on this device.").wait_for()
    check(one.evaluate(history_entries) == 0, "Clear history leaves nothing in IndexedDB")
    browser.close()
print("page story passed")
