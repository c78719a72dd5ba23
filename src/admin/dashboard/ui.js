// What every tab shares: the session token, the API client, the live-feed bus, the config in
// force, and small DOM and formatting helpers. Knows nothing about any one tab.

const TOKEN_KEY = 'tollgate.token';

export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  },
  readOnly: false,
};

// Events: every feed message by its `type` (detail = the message), plus `config` (detail = the
// config in force), `unauthorized`, `read-only` and `navigate` (detail = a tab name).
export const bus = new EventTarget();
export const emit = (type, detail) => bus.dispatchEvent(new CustomEvent(type, { detail }));
export const on = (type, fn) => bus.addEventListener(type, (e) => fn(e.detail));

export const state = { config: null };

// A failed API call: `status`, and the problem+json body (`detail`, `errors`) when there is one.
export class ApiError extends Error {
  constructor(status, problem) {
    const text = status === 403 ? 'read-only token: this change needs the admin token'
      : problem?.detail || problem?.title || `HTTP ${status}`;
    super(text);
    this.status = status;
    this.problem = problem || {};
  }
}

// Call the admin API with the session token; resolves to the JSON body, throws ApiError.
export async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${session.token}`, Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, {
      method, headers, cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, { detail: `tollgate did not answer (${e.message})` });
  }
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = { detail: text.slice(0, 200) }; }
  if (res.ok) return json;
  if (res.status === 401) emit('unauthorized');
  if (res.status === 403) { session.readOnly = true; emit('read-only'); }
  throw new ApiError(res.status, json);
}

// GET the config in force and tell every tab (the selects of rule and tier names follow it).
export async function loadConfig() {
  state.config = await api('GET', '/api/admin/quotas/config');
  emit('config', state.config);
  return state.config;
}

export const navigate = (tab) => emit('navigate', tab);

// ------------------------------------------------------------------ DOM

export const $ = (sel, root = document) => root.querySelector(sel);

// el('td', {class: 'num', title: 'x'}, 'text', childNode, ...). `data-*` and `aria-*` are
// attributes, `style` an object of CSS properties, and functions under `on` are listeners
// (never inline handlers: the CSP forbids them).
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === 'on') for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
    else if (k === 'class') node.className = v;
    else if (k === 'style') Object.assign(node.style, v); // CSSOM, not an inline style attribute
    else node.setAttribute(k, v === true ? '' : v);
  }
  node.append(...children.flat().filter((c) => c != null && c !== false));
  return node;
}

// Replace a table body's rows; an empty list shows `emptyText` across every column.
export function fillRows(tbody, rows, emptyText) {
  if (!rows.length) {
    const cols = tbody.closest('table').querySelectorAll('thead th').length || 1;
    rows = [el('tr', { class: 'empty' }, el('td', { colspan: cols }, emptyText))];
  }
  tbody.replaceChildren(...rows);
}

// A used/max bar: green under 80 %, amber under 100 %, red at the limit.
export function usageBar(used, max, label) {
  const ratio = max > 0 ? used / max : 0;
  const level = ratio >= 1 ? 'full' : ratio >= 0.8 ? 'high' : 'low';
  return el('div', { class: `bar ${level}`, title: `${used} of ${max} (${pct(ratio)})` },
    el('span', { class: 'bar-fill', style: { width: `${Math.min(100, ratio * 100).toFixed(1)}%` } }),
    el('span', { class: 'bar-text' }, `${label ? label + ': ' : ''}${fmt(used)} / ${fmt(max)}`));
}

export const badge = (text, kind = '') => el('span', { class: `badge ${kind}` }, text);

// Show a failed save next to its form: the detail in `box`, and each `errors[]` entry beside
// the field it names (`rule.limits[0]` -> the input named `limits`).
export function showErrors(form, box, err) {
  clearErrors(form, box);
  const errors = err.problem?.errors || [];
  box.append(el('strong', {}, err.message));
  if (errors.length) box.append(el('ul', {}, errors.map((e) => el('li', {}, `${e.field}: ${e.reason}`))));
  for (const e of errors) {
    // The innermost path segment that names one of the form's fields: tier.limits.api[0] -> limits.
    const input = String(e.field).split('.').reverse().map((seg) => seg.replace(/\[\d+\]$/, ''))
      .map((name) => form.elements.namedItem(name)).find((n) => n?.closest);
    if (!input) continue;
    input.setAttribute('aria-invalid', 'true');
    input.closest('label').append(el('span', { class: 'field-error' }, e.reason));
  }
}

export function clearErrors(form, box) {
  box.replaceChildren();
  form.querySelectorAll('.field-error').forEach((n) => n.remove());
  form.querySelectorAll('[aria-invalid]').forEach((n) => n.removeAttribute('aria-invalid'));
}

// A uPlot chart that follows its container's width (created only once the panel is visible).
export function chart(container, opts, data) {
  const u = new uPlot({ fmtDate, ...opts, width: container.clientWidth || 600 }, data, container);
  new ResizeObserver(() => {
    const width = container.clientWidth;
    if (width && width !== u.width) u.setSize({ width, height: u.height });
  }).observe(container);
  return u;
}

// uPlot's axis dates in 24-hour time and day-month order instead of its US defaults.
const fmtDate = (tpl) => uPlot.fmtDate(tpl
  .replace('{h}{aa}', '{HH}:00').replace('{h}', '{HH}').replace(/\s?\{aa?\}/g, '')
  .replace('{M}/{D}/{YY}', '{D} {MMM} {YYYY}').replace('{M}/{D}', '{D} {MMM}'));

// ------------------------------------------------------------------ formatting

const nf = new Intl.NumberFormat();
export const fmt = (n) => (n == null ? '–' : nf.format(n));
export const rate = (n) => (n == null ? '–' : n < 10 ? n.toFixed(1) : nf.format(Math.round(n)));
export const pct = (r) => `${(r * 100).toFixed(r > 0 && r < 0.1 ? 1 : 0)}%`;
export const list = (text) => text.split(',').map((s) => s.trim()).filter(Boolean);

export function time(ms) {
  return ms == null ? '–' : new Date(ms).toLocaleTimeString([], { hour12: false });
}

export function dateTime(ms) {
  if (ms == null) return '–';
  return new Date(ms).toLocaleString([], { hour12: false, month: 'short', day: 'numeric',
    hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

export function ago(ms, now = Date.now()) {
  if (ms == null) return '–';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  return s < 60 ? `${s}s ago` : s < 3600 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`;
}
