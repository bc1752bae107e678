"""Chromium's own ceiling on this machine, for perf/browser-bench.sh: how fast a page moves the same
sealed bytes through the same gateway when it does no crypto and no compression at all.

- upload: the page sends an already-sealed file (made by `safechat seal`) as a tus upload, with the
  `File` itself as the body (a file-backed Blob: no copy in the page), as one PATCH and as 8 MiB
  PATCHes (the batch size the page's upload uses);
- download: the page GETs the sealed file and throws it away, read with a BYOB reader into one
  reused buffer (no verification, no write).

Rates are the plaintext's MiB per second (PLAIN_BYTES over the time), so they compare directly with
the CLI's and the page's. The uploads it completes are deleted again.

  perf/browser-ceiling.py BASE_URL USER PASSWORD SEALED_FILE FILE_ID PLAIN_BYTES
"""
import json, os, sys, tempfile, urllib.request
from playwright.sync_api import sync_playwright

base, user, password, sealed, file_id, plain_bytes = sys.argv[1:7]
plain_mib = int(plain_bytes) / 1048576
login = urllib.request.Request(base + "/login", data=json.dumps({"username": user, "password": password}).encode(),
                               headers={"Content-Type": "application/json"})
token = json.load(urllib.request.urlopen(login))["token"]

UPLOAD = """async ([token, batch]) => {
  const file = document.querySelector('#ceiling-file').files[0];
  const tus = { Authorization: `Bearer ${token}`, 'Tus-Resumable': '1.0.0' };
  const created = await fetch('/uploads', { method: 'POST', headers: { ...tus, 'Upload-Length': String(file.size) } });
  if (created.status !== 201) throw new Error(`create: ${created.status}`);
  const location = created.headers.get('Location');
  const started = performance.now();
  for (let at = 0; at < file.size; at += batch) {
    const headers = { ...tus, 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': String(at) };
    const answer = await fetch(location, { method: 'PATCH', headers, body: file.slice(at, at + batch) });
    if (answer.status !== 204) throw new Error(`PATCH: ${answer.status} ${await answer.text()}`);
  }
  const seconds = (performance.now() - started) / 1000;
  await fetch('/files/' + location.split('/').pop(), { method: 'DELETE', headers: tus });
  return seconds;
}"""

DOWNLOAD = """async ([token, fileID]) => {
  const started = performance.now();
  const response = await fetch('/download/' + fileID, { headers: { Authorization: `Bearer ${token}` } });
  if (response.status !== 200) throw new Error(`GET: ${response.status}`);
  const reader = response.body.getReader({ mode: 'byob' });
  let buffer = new ArrayBuffer(1 << 20);
  let total = 0;
  for (;;) {
    const { value, done } = await reader.read(new Uint8Array(buffer));
    if (done) break;
    buffer = value.buffer;
    total += value.byteLength;
  }
  return [(performance.now() - started) / 1000, total];
}"""

with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
    # A profile on disk, as for the page's own runs (large_file_test.py).
    context = p.chromium.launch_persistent_context(profile, args=["--no-sandbox"],
                                                   executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    page = context.new_page()
    page.goto(base + "/")
    page.evaluate("document.body.append(Object.assign(document.createElement('input'), { type: 'file', id: 'ceiling-file' }))")
    page.locator("#ceiling-file").set_input_files(sealed)
    whole = page.evaluate(UPLOAD, [token, 1 << 62])
    batched = page.evaluate(UPLOAD, [token, 8 << 20])
    seconds, got = page.evaluate(DOWNLOAD, [token, file_id])
    if got != os.path.getsize(sealed):
        sys.exit(f"the download ceiling read {got} bytes, not {os.path.getsize(sealed)}")
    print(f"ceiling upload {plain_mib / whole:.0f} (one PATCH) / {plain_mib / batched:.0f} (8 MiB PATCHes), "
          f"download {plain_mib / seconds:.0f} MiB/s")
    context.close()
