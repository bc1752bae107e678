// The page: log in with the gateway's own POST /login (the token stays in this tab,
// sessionStorage), bring or make the user's identity (IndexedDB), create, open and change sessions,
// chat, and move files both ways, every check made here (client.js, chat.js). Everything a user or
// the gateway supplies is put in the page as text (textContent), never as HTML.
import { ChatRoom } from './chat.js';
import {
  Gateway, changeMembers, createIdentity, createSession, download, fileName, hasPrivateFileSystem, identityExport, importIdentity, isBound, isVerified, offerDownload,
  openSession, saveFile, savedIdentity, streamDownload, upload, verifyMember,
} from './client.js';

const $ = (id) => document.getElementById(id);
const login = JSON.parse(sessionStorage.getItem('safechat.login') || 'null');
const state = { login, gateway: login && new Gateway(login.token), identity: null };

function element(tag, text, attributes = {}) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  for (const [k, v] of Object.entries(attributes)) e.setAttribute(k, v);
  return e;
}

function view(name) {
  for (const id of ['login-view', 'identity-view', 'sessions-view', 'session-view']) $(id).hidden = id !== name && !(name === 'session-view' && id === 'sessions-view');
  $('logout').hidden = name === 'login-view';
  $('who').textContent = state.login ? `Logged in as ${state.login.user}` : '';
}

async function start() {
  if (!state.login) return view('login-view');
  state.identity = await savedIdentity(state.login.userID);
  if (!state.identity) return view('identity-view');
  view('sessions-view');
  await loadSessions();
}

async function loadSessions() {
  const list = $('sessions');
  list.replaceChildren();
  $('sessions-note').textContent = 'Checking your sessions…';
  const { sessions = [] } = await state.gateway.request('GET', '/sessions');
  for (const s of sessions) {
    const item = element('li');
    try {
      const session = await openSession(state.gateway, state.login, state.identity, s.session_id);
      const button = element('button', `Open ${session.name || s.session_id}`, { type: 'button' });
      button.addEventListener('click', () => showSession(session));
      item.append(button, element('span', ` — ${session.members.length} members, epoch ${session.epoch}`));
    } catch (error) {
      item.append(element('span', `${s.session_id}: refused: ${error.message}`, { class: 'warning' }));
    }
    list.append(item);
  }
  $('sessions-note').textContent = sessions.length ? '' : 'No sessions yet.';
}

function chatLine(line) {
  const item = element('li', undefined, { class: line.kind });
  const time = line.time ? new Date(line.time).toLocaleTimeString() : '';
  if (line.kind === 'message') {
    if (line.outOfOrder) $('chat').append(element('li', `WARNING: the next message from ${line.sender} arrived out of order`, { class: 'warning' }));
    item.textContent = `${time} ${line.sender} ${line.verified ? '✓' : ''}: ${line.text}`;
  } else if (line.kind === 'file') {
    item.textContent = `${time} ${line.sender} shared ${line.name ?? '(a file whose name does not open)'} (${line.size} bytes) `;
    const open = element('button', `Show ${line.name ?? line.fileID}`, { type: 'button' });
    open.addEventListener('click', () => $('files').scrollIntoView());
    item.append(open);
  } else {
    item.textContent = line.kind === 'warning' ? `WARNING: ${line.text}` : line.text;
  }
  $('chat').append(item);
}

async function showSession(session) {
  state.chat?.close();
  state.session = session;
  view('session-view');
  $('chat').replaceChildren();
  state.chat = new ChatRoom(state.gateway, state.identity, session, chatLine);
  state.chat.start().catch((error) => chatLine({ kind: 'warning', text: `chat unavailable: ${error.message}` }));
  $('session-title').textContent = session.name || session.id;
  $('members').replaceChildren();
  for (const m of session.members) {
    const item = element('li', `${m.name} — safety number ${m.fingerprint}`);
    if (m.name !== state.login.user) {
      const status = element('span', (await isVerified(state.login, m.name)) ? ' — verified ✓' : ' — not verified');
      const input = element('input', undefined, { 'aria-label': `Safety number for ${m.name}`, inputmode: 'numeric', size: '36' });
      const button = element('button', `Verify ${m.name}`, { type: 'button' });
      button.addEventListener('click', async () => {
        try {
          status.textContent = (await verifyMember(state.login, m.name, input.value))
            ? ' — verified ✓' : ' — DOES NOT MATCH: do not trust this key until you have compared it again';
        } catch (error) {
          status.textContent = ` — ${error.message}`;
        }
      });
      const remove = element('button', `Remove ${m.name}`, { type: 'button' });
      remove.addEventListener('click', () => memberChange({ remove: m.name }));
      item.append(status, ' ', input, ' ', button, ' ', remove);
    }
    $('members').append(item);
  }
  $('transfer').textContent = '';
  $('uploads').replaceChildren();
  $('upload-progress').value = 0;
  await showFiles(session);
}

/** The session's files, each with a Download button (and Save once verified). */
async function showFiles(session) {
  const files = $('files');
  files.replaceChildren();
  const { files: entries = [] } = await state.gateway.request('GET', `/files?session=${session.id}`);
  for (const entry of entries) {
    if (!await isBound(entry.file_id, entry.header)) {
      files.append(element('li', `file ${entry.file_id}: refused: its id is not bound to the stream header listed with it (the gateway lies about it)`));
      continue;
    }
    const epoch = entry.session?.epoch ?? session.epoch;
    let key = null;
    try { key = await session.key(epoch); } catch { /* an epoch before this member joined */ }
    if (!key) {
      files.append(element('li', `file ${entry.file_id}: sealed under epoch ${epoch}, whose key you do not hold`));
      continue;
    }
    const name = (await fileName(entry, key)) || entry.file_id;
    const item = element('li');
    const button = element('button', `Download ${name}`, { type: 'button' });
    button.addEventListener('click', async () => {
      button.disabled = true;
      $('transfer').textContent = `Downloading ${name}…`;
      if (!hasPrivateFileSystem()) {
        try {
          const size = await streamDownload(state.gateway, entry.file_id, key, name, (bytes) => { $('transfer').textContent = `${name}: ${bytes} bytes verified`; });
          $('transfer').textContent = `${name}: ${size} bytes downloaded and verified into your downloads`;
        } catch (error) {
          $('transfer').textContent = `${name} refused: ${error.message}`;
        } finally {
          button.disabled = false;
        }
        return;
      }
      try {
        const file = await download(state.gateway, entry.file_id, key, name, (bytes) => { $('transfer').textContent = `${name}: ${bytes} bytes verified`; });
        const save = element('button', `Save ${name}`, { type: 'button' });
        save.addEventListener('click', async () => {
          try {
            const outcome = await saveFile(file);
            $('transfer').textContent = outcome === 'saved' ? `${name} saved` : outcome === 'offered' ? `${name} offered as a browser download` : `${name} not saved`;
            if (outcome === 'saved') save.remove();
          } catch (error) {
            $('transfer').textContent = `${name} not saved: ${error.message}`;
          }
        });
        item.querySelectorAll('button').forEach((b) => b !== button && b.remove());
        item.append(' ', save);
        $('transfer').textContent = `${name}: ${file.size} bytes downloaded and verified`;
      } catch (error) {
        $('transfer').textContent = `${name} refused: ${error.message}`;
      } finally {
        button.disabled = false;
      }
    });
    item.append(button, element('span', ` (file ${entry.file_id}, ${entry.size} sealed bytes)`));
    files.append(item);
  }
  if (!entries.length) files.append(element('li', 'No files in this session yet.'));
}

$('login-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  $('login-error').textContent = '';
  try {
    const user = $('username').value;
    const reply = await new Gateway(null).request('POST', '/login', { username: user, password: $('password').value });
    state.login = { user, userID: reply.user_id, token: reply.token };
    state.gateway = new Gateway(reply.token);
    sessionStorage.setItem('safechat.login', JSON.stringify(state.login));
    $('password').value = '';
    await start();
  } catch (error) {
    $('login-error').textContent = error.message;
  }
});

$('identity-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  $('identity-error').textContent = '';
  try {
    const chosen = $('identity-file').files[0];
    if (chosen.size > 16384) throw new Error(`${chosen.name} is larger than an identity export can be`);
    const text = await chosen.text();
    state.identity = await importIdentity(state.gateway, state.login, text, $('identity-passphrase').value);
    $('identity-passphrase').value = '';
    await start();
  } catch (error) {
    $('identity-error').textContent = error.message;
  }
});

async function memberChange(change) {
  $('member-note').textContent = '';
  try {
    const epoch = await changeMembers(state.gateway, state.login, state.identity, state.session, change);
    await showSession(await openSession(state.gateway, state.login, state.identity, state.session.id));
    $('member-note').textContent = `${change.add ? `${change.add} added` : `${change.remove} removed`}: the session is at epoch ${epoch} with a new key`;
  } catch (error) {
    $('member-note').textContent = error.message;
  }
}

$('member-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const name = $('member-name').value.trim();
  $('member-name').value = '';
  if (name) memberChange({ add: name });
});

$('chat-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const text = $('chat-text').value;
  if (!text) return;
  try {
    await state.chat.send(text);
    $('chat-text').value = '';
  } catch (error) {
    chatLine({ kind: 'warning', text: `not sent: ${error.message}` });
  }
});

$('clear-history').addEventListener('click', async () => {
  await state.chat.history.clear();
  $('chat').replaceChildren(element('li', 'History cleared on this device.', { class: 'status' }));
});

const rate = (bytes, seconds) => `${(bytes / Math.max(seconds, 0.001) / 1e6).toFixed(1)} MB/s`;
const timeLeft = (left, bytes, seconds) => `${Math.ceil(left / Math.max(bytes / Math.max(seconds, 0.001), 1))} s left`;

/**
 * Uploads `files` into the current session one after another, each with its own progress bar and
 * line (bytes, rate, time left) and one bar and status line for them all. A file that fails is
 * reported on its line and the others still go; the status ends "Upload complete" only if all went.
 */
async function uploadFiles(files) {
  const session = state.session;
  const started = performance.now();
  const total = files.reduce((n, f) => n + f.size, 0);
  const rows = files.map((file, i) => {
    const id = `upload-${Date.now()}-${i}`;
    const bar = element('progress', undefined, { id, max: '1', value: '0' });
    const line = element('span', `${file.name}: waiting`);
    const item = element('li');
    item.append(element('label', `Upload progress for ${file.name}`, { for: id }), ' ', bar, ' ', line);
    $('uploads').append(item);
    return { bar, line };
  });
  let done = 0;
  const failures = [];
  for (const [i, file] of files.entries()) {
    const { bar, line } = rows[i];
    const fileStarted = performance.now();
    let resumed = '';
    try {
      await upload(state.gateway, session, file, (sent, read, resumedAt) => {
        const now = performance.now();
        const seconds = (now - fileStarted) / 1000, all = (now - started) / 1000;
        if (resumedAt) resumed = `; resumed at byte ${resumedAt} of the sealed stream`;
        line.textContent = `${file.name}: ${read} of ${file.size} bytes, ${rate(read, seconds)}, ${timeLeft(file.size - read, read, seconds)}${resumed}`;
        bar.value = read / Math.max(file.size, 1);
        $('transfer').textContent = `File ${i + 1} of ${files.length}; ${done + read} of ${total} bytes sealed and sent, `
          + `${rate(done + read, all)}, ${timeLeft(total - done - read, done + read, all)}`;
        $('upload-progress').value = (done + read) / Math.max(total, 1);
      });
      const seconds = (performance.now() - fileStarted) / 1000;
      line.textContent = `${file.name}: sent, ${file.size} bytes in ${seconds.toFixed(1)} s (${rate(file.size, seconds)})${resumed}`;
      bar.value = 1;
    } catch (error) {
      line.textContent = `${file.name}: failed: ${error.message}${resumed}`;
      failures.push(`${file.name}: ${error.message}`);
    }
    done += file.size;
    $('upload-progress').value = done / Math.max(total, 1);
  }
  if (!failures.length) $('upload-files').value = '';
  if (state.session === session) await showFiles(session).catch(() => {});
  $('transfer').textContent = failures.length ? `Upload failed: ${failures.join('; ')}` : 'Upload complete';
}

$('upload-form').addEventListener('submit', (event) => {
  event.preventDefault();
  uploadFiles([...$('upload-files').files]);
});
$('session-view').addEventListener('dragover', (event) => event.preventDefault());
$('session-view').addEventListener('drop', (event) => {
  event.preventDefault();
  const files = [...event.dataTransfer.files];
  if (files.length) uploadFiles(files);
});

$('create-identity-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  $('identity-error').textContent = '';
  try {
    state.identity = await createIdentity(state.gateway, state.login, $('new-identity-passphrase').value);
    $('new-identity-passphrase').value = '';
    await start();
  } catch (error) {
    $('identity-error').textContent = error.message;
  }
});

$('export-identity').addEventListener('click', async () => {
  try {
    const file = await identityExport(state.login);
    offerDownload(file);
    $('export-note').textContent = `Saved as ${file.name}, sealed under your export passphrase: \`safechat keys import ${file.name}\` brings it to the CLI.`;
  } catch (error) {
    $('export-note').textContent = error.message;
  }
});

$('session-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  $('session-error').textContent = '';
  try {
    const names = $('session-members').value.split(',').map((n) => n.trim()).filter(Boolean);
    await createSession(state.gateway, state.login, state.identity, $('session-name').value.trim(), names);
    $('session-name').value = $('session-members').value = '';
    await loadSessions();
  } catch (error) {
    $('session-error').textContent = error.message;
  }
});

$('logout').addEventListener('click', async () => {
  state.chat?.close();
  // The gateway revokes the token (POST /logout), so a copy of it left anywhere no longer opens anything.
  let note = '';
  try { await state.gateway?.request('POST', '/logout'); } catch (error) {
    if (error.status !== 401) note = `Logged out here, but the gateway could not revoke the token (${error.message}); it expires on its own.`;
  }
  sessionStorage.clear();
  state.login = state.gateway = state.identity = null;
  view('login-view');
  $('login-error').textContent = note;
});

start().catch((error) => { $('sessions-note').textContent = error.message; });
