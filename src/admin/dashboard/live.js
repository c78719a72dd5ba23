// Overview (live numbers, chart, top keys and violations from the feed) and Alerts (REST list
// plus live `alert` messages).

import { $, api, on, el, fillRows, usageBar, badge, chart, rate, fmt, pct, time, dateTime } from './ui.js';

// ------------------------------------------------------------------ overview

const WINDOW_SECS = 300;
const MAX_EVENTS = 50;
const series = [[], [], [], []]; // unix seconds, requests/s, allowed/s, denied/s
let trafficChart = null;

function onStats(msg) {
  const d = msg.data || {};
  const secs = d.interval_secs || 1;
  const now = (msg.ts || Date.now()) / 1000;
  const perSec = { allowed: (d.allowed ?? 0) / secs, denied: (d.denied ?? 0) / secs };
  setTile('stat-rps', rate(d.rps));
  setTile('stat-allowed', rate(perSec.allowed), `${fmt(d.allowed)} in the last ${secs} s`);
  setTile('stat-denied', rate(perSec.denied),
    `${fmt(d.denied)} denied, ${fmt(d.shadow_denied)} shadow-denied in the last ${secs} s`);
  setTile('stat-active-keys', fmt(d.active_keys));
  setTile('stat-flush-lag', d.flush_lag_secs == null ? '–' : `${d.flush_lag_secs.toFixed(1)} s`,
    'how far the usage store is behind memory');
  setTile('stat-upstream-errors', d.upstream_error_rate == null ? '–' : pct(d.upstream_error_rate));
  $('#overview-updated').textContent = `updated ${time(msg.ts)}`;

  const point = [now, d.rps ?? 0, perSec.allowed, perSec.denied];
  point.forEach((v, i) => series[i].push(v));
  while (series[0].length && series[0][0] < now - WINDOW_SECS) series.forEach((s) => s.shift());
  trafficChart?.setData(series);
  renderTopKeys(d.top_keys || []);
}

function setTile(id, text, title = '') {
  const node = $(`#${id}`);
  node.textContent = text;
  node.title = title;
}

function renderTopKeys(items) {
  fillRows($('#top-keys-table tbody'), items.map((k) => el('tr', {},
    el('td', {}, k.rule), el('td', {}, el('code', {}, k.key)), el('td', {}, usageBar(k.used, k.max)))),
  'No keys in the last interval.');
}

function onViolation(msg) {
  const v = msg.data || {};
  const list = $('#live-violations');
  list.querySelector('.empty')?.remove();
  list.prepend(el('li', {},
    el('time', {}, time(msg.ts)), ' ',
    el('strong', {}, v.rule), ' ', el('code', {}, v.key),
    ` ×${fmt(v.count)} over ${v.limit} `, v.shadow ? badge('shadow', 'warn') : null,
    el('span', { class: 'muted' }, ` ${v.method ?? ''} ${v.path ?? ''}`)));
  while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
}

function trafficOptions() {
  return {
    height: 260,
    cursor: { drag: { x: false, y: false } },
    scales: {
      // The last five minutes, or since the page connected when that is shorter.
      x: { time: true, range: (u, min, max) => [Math.min(max - 30, Math.max(min, max - WINDOW_SECS)), max] },
      y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] },
    },
    axes: [{}, { label: 'per second', size: 60 }],
    series: [
      {},
      { label: 'requests/s', stroke: '#475569', width: 2, value: (u, v) => rate(v) },
      { label: 'allowed/s', stroke: '#15803d', width: 2, fill: 'rgba(21,128,61,0.08)', value: (u, v) => rate(v) },
      { label: 'denied/s', stroke: '#dc2626', width: 2, value: (u, v) => rate(v) },
    ],
  };
}

export const overview = {
  init() {
    on('stats', onStats);
    on('violation', onViolation);
  },
  show() {
    trafficChart ??= chart($('#overview-chart'), trafficOptions(), series);
  },
};

// ------------------------------------------------------------------ alerts

const alertState = { active: [], history: [] };

function alertRow(a, withState) {
  return el('tr', {},
    el('td', {}, el('strong', {}, a.name)),
    withState ? el('td', {}, badge(a.state, a.state === 'firing' ? 'bad' : 'ok')) : null,
    el('td', { class: 'num' }, fmt(a.value)),
    el('td', { class: 'num' }, fmt(a.threshold)),
    el('td', {}, a.message ?? ''),
    el('td', {}, dateTime(a.since_ms)),
    withState ? el('td', {}, dateTime(a.resolved_ms)) : null);
}

function renderAlerts() {
  fillRows($('#alerts-active tbody'), alertState.active.map((a) => alertRow(a, false)), 'Nothing is firing.');
  fillRows($('#alerts-history tbody'), alertState.history.map((a) => alertRow(a, true)), 'No alerts yet.');
  const count = $('#alerts-count');
  count.textContent = alertState.active.length;
  count.hidden = alertState.active.length === 0;
}

// An alert is one (name, subject): `new_blocked_key` fires once per blocked rule and key.
const alertId = (a) => `${a.name}\u0000${a.subject ?? ''}`;

function onAlert(msg) {
  const a = msg.data || {};
  alertState.active = alertState.active.filter((x) => alertId(x) !== alertId(a));
  if (a.state === 'firing') alertState.active.unshift(a);
  alertState.history = [a, ...alertState.history].slice(0, 200);
  renderAlerts();
}

export const alerts = {
  init() { on('alert', onAlert); },
  async show() {
    try {
      const res = await api('GET', '/api/admin/quotas/alerts');
      alertState.active = res.active || [];
      alertState.history = res.history || [];
      renderAlerts();
    } catch (e) {
      fillRows($('#alerts-active tbody'), [], `Could not load alerts: ${e.message}`);
    }
  },
};
