// The dashboard's entry point: sign-in, tabs and the live WebSocket feed. Each tab lives in its
// own module (live.js, rules.js, history.js) and exposes { init(), show() }.
// No framework and no build step; served from the admin port under /admin/quotas/.

import { $, emit, on, session, loadConfig, ApiError } from './ui.js';
import { overview, alerts } from './live.js';
import { rules, keys } from './rules.js';
import { violations, analytics } from './history.js';

const TABS = { overview, rules, keys, violations, analytics, alerts };
let current = null;

// ------------------------------------------------------------------ sign-in

async function signIn(token) {
  session.token = token;
  session.readOnly = false;
  try {
    await loadConfig();
  } catch (e) {
    session.token = null;
    throw e;
  }
  $('#login').hidden = true;
  $('#app').hidden = false;
  $('#session').hidden = false;
  setRole();
  feed.start();
  const linked = location.hash.slice(1);
  showTab(Object.hasOwn(TABS, linked) ? linked : 'overview');
  alerts.show(); // loads active alerts for the tab's count
}

function signOut(message = '') {
  session.token = null;
  feed.stop();
  $('#app').hidden = true;
  $('#session').hidden = true;
  $('#login').hidden = false;
  $('#login-error').textContent = message;
  $('#token-input').value = '';
  $('#token-input').focus();
}

function setRole() {
  const b = $('#role-badge');
  b.textContent = session.readOnly ? 'read-only token' : 'token ok';
  b.className = `badge ${session.readOnly ? 'warn' : 'ok'}`;
}

$('#login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const token = $('#token-input').value.trim();
  const box = $('#login-error');
  box.textContent = '';
  if (!token) { box.textContent = 'Enter a token.'; return; }
  $('#login-button').disabled = true;
  try {
    await signIn(token);
  } catch (err) {
    box.textContent = err instanceof ApiError && err.status === 401
      ? 'This token was not accepted (401).' : `Sign-in failed: ${err.message}`;
  } finally {
    $('#login-button').disabled = false;
  }
});

$('#logout-button').addEventListener('click', () => signOut());
on('unauthorized', () => signOut('The token is no longer accepted (401). Sign in again.'));
on('read-only', setRole);

// ------------------------------------------------------------------ tabs

function showTab(name) {
  if (!Object.hasOwn(TABS, name)) return;
  current = name;
  for (const btn of document.querySelectorAll('[data-tab]')) {
    const selected = btn.dataset.tab === name;
    btn.setAttribute('aria-selected', String(selected));
    btn.tabIndex = selected ? 0 : -1;
    $(`#tab-${btn.dataset.tab}`).hidden = !selected;
  }
  history.replaceState(null, '', `#${name}`);
  TABS[name].show();
}

const tablist = $('[role=tablist]');
tablist.addEventListener('click', (e) => {
  const btn = e.target.closest('[data-tab]');
  if (btn) showTab(btn.dataset.tab);
});
tablist.addEventListener('keydown', (e) => {
  const names = Object.keys(TABS);
  const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
  if (!step) return;
  const next = names[(names.indexOf(current) + step + names.length) % names.length];
  showTab(next);
  $(`[data-tab=${next}]`).focus();
});
on('navigate', showTab);

// ------------------------------------------------------------------ live feed

// The WebSocket to /ws/admin/quotas. The token travels as a subprotocol (browsers cannot set
// headers on a WebSocket). Reconnects with backoff from 1 s doubling to 30 s, reset on open;
// a socket that has been silent for 45 s (heartbeats come every 10 s) is treated as dead.
const feed = {
  ws: null, wanted: false, delay: 1000, timer: 0, watchdog: 0,

  start() { this.wanted = true; this.delay = 1000; this.connect(); },

  stop() {
    this.wanted = false;
    clearTimeout(this.timer);
    clearTimeout(this.watchdog);
    this.ws?.close(1000);
    this.ws = null;
    setConn('disconnected');
  },

  connect() {
    clearTimeout(this.timer);
    setConn('connecting');
    const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    const ws = new WebSocket(`${scheme}${location.host}/ws/admin/quotas`,
      ['tollgate.v1', `tollgate.bearer.${base64url(session.token)}`]);
    this.ws = ws;
    ws.addEventListener('open', () => {
      this.delay = 1000;
      setConn('connected');
      this.alive();
    });
    ws.addEventListener('message', (e) => {
      this.alive();
      let msg;
      try { msg = JSON.parse(e.data); } catch { return; }
      if (msg && typeof msg.type === 'string') emit(msg.type, msg);
    });
    ws.addEventListener('close', () => {
      if (this.ws !== ws) return; // replaced or stopped
      clearTimeout(this.watchdog);
      this.ws = null;
      if (!this.wanted) return;
      setConn('disconnected', `retrying in ${this.delay / 1000} s`);
      this.timer = setTimeout(() => this.connect(), this.delay);
      this.delay = Math.min(this.delay * 2, 30000);
    });
  },

  alive() {
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => this.ws?.close(), 45000);
  },
};

function setConn(state, detail = '') {
  const node = $('#conn-state');
  node.textContent = state;
  node.className = `conn-${state}`;
  node.title = detail || `live feed ${state}`;
}

function base64url(text) {
  const bytes = new TextEncoder().encode(text);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

// ------------------------------------------------------------------ start

for (const tab of Object.values(TABS)) tab.init();
if (session.token) {
  signIn(session.token).catch((e) => signOut(e.status === 401 ? '' : `Sign-in failed: ${e.message}`));
} else {
  signOut();
}
