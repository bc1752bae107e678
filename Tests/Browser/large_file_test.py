"""A large file through the page with the renderer's memory measured: user1 seals and uploads a
file of SIZE_MIB MiB (half random, half text) into a session from the page, user2's page downloads
and verifies it into the origin-private file system; then the peak resident memory (VmHWM) of every
renderer process of the browser (found with the DevTools protocol's SystemInfo.getProcessInfo) must
stay under LIMIT_MIB. Prints the throughputs and the peak. Exit status 0 if every check holds.

  Tests/Browser/large_file_test.py BASE_URL SIZE_MIB LIMIT_MIB WORK_DIR [FILE]
  (with FILE, that file is sent instead of a generated one; PAGE_USERS="a:pw,b:pw" names the two
  accounts instead of user1 and user2; perf/browser-bench.sh uses both)
  (PAGE_DOWNLOAD=stream: user2's browser has no origin-private file system, so the download is
  streamed through the Service Worker into the browser's downloads and checked there)
  (a gateway with user1 / password123 and user2 / password-two, or PAGE_USERS. BrowserMemoryTests
  runs it at 128 MiB and 1 GiB; perf/browser-bench.sh runs it on its data sets.)
"""
import hashlib, os, re, sys, time
from playwright.sync_api import sync_playwright
from pages import check, log_in_with_new_identity

base, size_mib, limit_mib, work = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
given = sys.argv[5] if len(sys.argv) > 5 else None
path = os.path.join(work, "large.bin")
# The file's identity: SHA-256 over the SHA-256 of each MiB (the page computes the same a MiB at a
# time, since SubtleCrypto.digest has no streaming form and the whole file must not be in memory).
digests = hashlib.sha256()
if given:
    os.symlink(os.path.abspath(given), path)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digests.update(hashlib.sha256(chunk).digest())
    size_mib = os.path.getsize(path) >> 20
else:
    text = b"".join(b"row %d, value %d, label alpha beta gamma\n" % (i, i * 7) for i in range(30000))[: 1 << 20]
    with open(path, "wb") as f:
        for i in range(size_mib):
            chunk = os.urandom(1 << 20) if i % 2 == 0 else text
            digests.update(hashlib.sha256(chunk).digest())
            f.write(chunk)
digest = digests.hexdigest()


def person(context, user, password):
    return log_in_with_new_identity(context.new_page(), base, user, password)


def renderer_peak_mib(cdps, every=False):
    peak = 0
    seen = []
    for process in [p for cdp in cdps for p in cdp.send("SystemInfo.getProcessInfo")["processInfo"]]:
        if process["type"] != "renderer":
            continue
        try:
            status = open(f"/proc/{process['id']}/status").read()
        except FileNotFoundError:
            continue
        hwm = [line for line in status.splitlines() if line.startswith("VmHWM:")]
        if hwm:
            peak = max(peak, int(hwm[0].split()[1]) // 1024)
            seen.append(int(hwm[0].split()[1]) // 1024)
    return seen if every else peak


with sync_playwright() as p:
    # A profile on disk for each person, as a user has: Playwright's new_context() is off the
    # record, and there Chromium keeps the origin-private file system in memory.
    contexts = [p.chromium.launch_persistent_context(os.path.join(work, f"profile{n}"), args=["--no-sandbox"],
                                                     executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium")) for n in (1, 2)]
    cdp = [c.browser.new_browser_cdp_session() for c in contexts]
    streamed = os.environ.get("PAGE_DOWNLOAD") == "stream"
    if streamed:
        contexts[1].add_init_script("delete StorageManager.prototype.getDirectory")
    (first, first_password), (second, second_password) = [u.split(":", 1) for u in
                                                          os.environ.get("PAGE_USERS", "user1:password123,user2:password-two").split(",")]
    one = person(contexts[0], first, first_password)
    # (ERR_ABORTED is a response whose body the page does not read, such as the upload creation's.)
    one.on("requestfailed", lambda r: r.failure != "net::ERR_ABORTED" and print("request failed:", r.method, r.url, r.failure, file=sys.stderr))
    two = person(contexts[1], second, second_password)
    one.get_by_label("Session name").fill("Large")
    one.get_by_label("Members (user names, comma-separated)").fill(second)
    one.get_by_role("button", name="Create session").click()
    one.get_by_role("button", name="Open Large").click()
    print("renderers before the upload:", renderer_peak_mib(cdp, every=True))
    started = time.monotonic()
    one.get_by_label("Files to send").set_input_files(path)
    one.get_by_role("button", name="Upload", exact=True).click()
    one.get_by_text(re.compile("^Upload (complete|failed)")).wait_for(timeout=1800_000)
    check(one.locator("#transfer").text_content() == "Upload complete", one.locator("#transfer").text_content())
    up = size_mib / (time.monotonic() - started)
    # A renderer can be replaced while the next step runs, so the peak is taken after each step.
    peak = renderer_peak_mib(cdp)
    print("renderers after the upload:", renderer_peak_mib(cdp, every=True))
    two.reload()
    two.get_by_role("button", name="Open Large").click()
    started = time.monotonic()
    if streamed:
        with two.expect_download(timeout=60000) as streaming:
            two.get_by_role("button", name="Download large.bin").click()
    else:
        two.get_by_role("button", name="Download large.bin").click()
    two.get_by_text(re.compile("^large.bin(: .* downloaded and verified| refused)")).wait_for(timeout=1800_000)
    check("downloaded and verified" in two.locator("#transfer").text_content(), two.locator("#transfer").text_content())
    down = size_mib / (time.monotonic() - started)
    peak = max(peak, renderer_peak_mib(cdp))
    print("renderers after the download:", renderer_peak_mib(cdp, every=True))
    if streamed:
        check(streaming.value.failure() is None, f"the browser's download completed: {streaming.value.failure()}")
        parts = hashlib.sha256()
        with open(streaming.value.path(), "rb") as f:
            while chunk := f.read(1 << 20):
                parts.update(hashlib.sha256(chunk).digest())
        got = parts.hexdigest()
    else:
        got = two.evaluate("""async () => {
            const file = await (await (await navigator.storage.getDirectory()).getFileHandle('large.bin')).getFile();
            const parts = [];
            for (let at = 0; at < file.size; at += 1 << 20) {
                parts.push(new Uint8Array(await crypto.subtle.digest('SHA-256', await file.slice(at, at + (1 << 20)).arrayBuffer())));
            }
            const all = new Uint8Array(parts.length * 32);
            parts.forEach((p, i) => all.set(p, 32 * i));
            return [...new Uint8Array(await crypto.subtle.digest('SHA-256', all))].map((b) => b.toString(16).padStart(2, '0')).join('');
        }""")
    check(got == digest, "the page's download is byte-identical (per-MiB digests)")
    print(f"page upload {up:.0f} MiB/s, page download {down:.0f} MiB/s, renderer peak RSS {peak} MiB for {size_mib} MiB")
    check(peak < limit_mib, f"renderer memory stays under {limit_mib} MiB: {peak} MiB")
    for c in contexts:
        c.close()
print("large file page test passed")
