// The page: log in with the gateway's own POST /login, keep the token in this tab only
// (sessionStorage), list the caller's sessions. Everything a user or the gateway supplies is put
// in the page as text (textContent), never as HTML.
const $ = (id) => document.getElementById(id);
const state = { token: sessionStorage.getItem('safechat.token'), user: sessionStorage.getItem('safechat.user') };

async function api(method, path, body) {
  const headers = {};
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  const json = text ? JSON.parse(text) : {};
  if (!response.ok) throw new Error(json.message || `${response.status} ${response.statusText}`);
  return json;
}

function show(loggedIn) {
  $('login-view').hidden = loggedIn;
  $('sessions-view').hidden = !loggedIn;
  $('logout').hidden = !loggedIn;
  $('who').textContent = loggedIn ? `Logged in as ${state.user}` : '';
}

async function loadSessions() {
  const list = $('sessions');
  list.replaceChildren();
  const { sessions = [] } = await api('GET', '/sessions');
  for (const s of sessions) {
    const item = document.createElement('li');
    item.textContent = `${s.session_id} — epoch ${s.epoch}, ${s.members} members`;
    list.append(item);
  }
  $('sessions-note').textContent = sessions.length ? '' : 'No sessions yet.';
}

$('login-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  $('login-error').textContent = '';
  try {
    const reply = await api('POST', '/login', { username: $('username').value, password: $('password').value });
    state.token = reply.token;
    state.user = $('username').value;
    sessionStorage.setItem('safechat.token', state.token);
    sessionStorage.setItem('safechat.user', state.user);
    $('password').value = '';
    show(true);
    await loadSessions();
  } catch (error) {
    $('login-error').textContent = error.message;
  }
});

$('logout').addEventListener('click', () => {
  sessionStorage.clear();
  state.token = state.user = null;
  show(false);
});

show(Boolean(state.token));
if (state.token) loadSessions().catch(() => { sessionStorage.clear(); state.token = null; show(false); });
