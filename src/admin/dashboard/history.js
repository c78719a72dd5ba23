// Violations (the stored per-minute violation log, filtered and paged) and Analytics (decisions
// per bucket, top keys and violators, the live usage distribution). Both read the usage store.

import { $, api, el, fillRows, badge, chart, fmt, dateTime } from './ui.js';

// ------------------------------------------------------------------ violations

const vq = { offset: 0, limit: 100 };

// A datetime-local value (local time) as RFC 3339 in UTC, or '' when empty.
const rfc3339 = (value) => (value ? new Date(value).toISOString() : '');

async function loadViolations() {
  const p = new URLSearchParams();
  const fields = { key: '#violations-key', rule: '#violations-rule', shadow: '#violations-shadow' };
  for (const [name, sel] of Object.entries(fields)) if ($(sel).value.trim()) p.set(name, $(sel).value.trim());
  for (const name of ['since', 'until']) {
    const v = rfc3339($(`#violations-${name}`).value);
    if (v) p.set(name, v);
  }
  vq.limit = Number($('#violations-limit').value);
  p.set('limit', vq.limit);
  p.set('offset', vq.offset);
  const msg = $('#violations-msg');
  msg.textContent = '';
  try {
    const res = await api('GET', `/api/admin/quotas/violations?${p}`);
    fillRows($('#violations-table tbody'), res.items.map(violationRow), 'No violations match.');
    const first = res.items.length ? vq.offset + 1 : 0;
    $('#violations-page').textContent = `rows ${first}–${vq.offset + res.items.length}`;
    $('#violations-prev').disabled = vq.offset === 0;
    $('#violations-next').disabled = res.items.length < vq.limit;
  } catch (err) {
    msg.textContent = storeMessage(err, 'violations');
    fillRows($('#violations-table tbody'), [], '—');
  }
}

function violationRow(v) {
  return el('tr', { 'data-key': v.key, 'data-rule': v.rule },
    el('td', {}, dateTime(v.minute * 1000)),
    el('td', {}, v.rule),
    el('td', {}, el('code', {}, v.key)),
    el('td', { class: 'num' }, fmt(v.count), v.shadow ? [' ', badge('shadow', 'warn')] : null),
    el('td', {}, v.limit ?? ''),
    el('td', {}, el('code', {}, `${v.method ?? ''} ${v.path ?? ''}`)),
    el('td', {}, v.client_ip ?? ''));
}

function storeMessage(err, what) {
  return err.status === 503
    ? `The ${what} are read from the usage store, which is not available: ${err.message}`
    : `Could not load the ${what}: ${err.message}`;
}

export const violations = {
  init() {
    $('#violations-form').addEventListener('submit', (e) => {
      e.preventDefault();
      vq.offset = 0;
      loadViolations();
    });
    $('#violations-prev').addEventListener('click', () => { vq.offset = Math.max(0, vq.offset - vq.limit); loadViolations(); });
    $('#violations-next').addEventListener('click', () => { vq.offset += vq.limit; loadViolations(); });
  },
  show: loadViolations,
};

// ------------------------------------------------------------------ analytics

const RANGE_SECS = { '1h': 3600, '6h': 6 * 3600, '24h': 86400, '7d': 7 * 86400 };
const BUCKET_SECS = { '1m': 60, '5m': 300, '15m': 900, '1h': 3600, '6h': 21600 };
const AUTO_BUCKET = { '1h': '1m', '6h': '5m', '24h': '15m', '7d': '1h' };
let decisionsChart = null;

async function loadAnalytics() {
  const range = $('#analytics-range').value;
  let bucket = $('#analytics-bucket').value || AUTO_BUCKET[range];
  // The API allows at most 1000 buckets: widen a bucket that is too fine for the range.
  while (RANGE_SECS[range] / BUCKET_SECS[bucket] > 1000) bucket = nextBucket(bucket);
  const until = Date.now();
  const p = new URLSearchParams({ since: until - RANGE_SECS[range] * 1000, until, bucket, top: 10 });
  if ($('#analytics-rule').value) p.set('rule', $('#analytics-rule').value);
  const msg = $('#analytics-msg');
  msg.textContent = '';
  try {
    const res = await api('GET', `/api/admin/quotas/analytics?${p}`);
    drawDecisions(res);
    const b = res.bucket_secs;
    $('#analytics-summary').textContent = `${b % 3600 ? `${b / 60}m` : `${b / 3600}h`} buckets, ` +
      `${dateTime(res.since_ms)} to ${dateTime(res.until_ms)}`;
    fillRows($('#analytics-top-keys tbody'), res.top_keys.map(countRow), 'No usage in this range.');
    fillRows($('#analytics-top-violators tbody'), res.top_violators.map(countRow), 'No denials in this range.');
    drawDistribution(res.distribution || []);
  } catch (err) {
    msg.textContent = storeMessage(err, 'analytics');
  }
}

const nextBucket = (b) => Object.keys(BUCKET_SECS)[Object.keys(BUCKET_SECS).indexOf(b) + 1] || '6h';

const countRow = (r) => el('tr', {}, el('td', {}, r.rule), el('td', {}, el('code', {}, r.key)),
  el('td', { class: 'num' }, fmt(r.count)));

// Sum every rule's points into one series per decision, with empty buckets as zero (with a
// rule picked, the API returns only that rule's series).
function decisionSeries(res) {
  const step = res.bucket_secs;
  const start = Math.floor(res.since_ms / 1000 / step) * step;
  const n = Math.max(1, Math.ceil((res.until_ms / 1000 - start) / step));
  const t = Array.from({ length: n }, (_, i) => start + i * step);
  const sums = [new Array(n).fill(0), new Array(n).fill(0), new Array(n).fill(0)];
  for (const s of res.series) {
    for (const pt of s.points) {
      const i = Math.floor((pt.t - start) / step);
      if (i < 0 || i >= n) continue;
      sums[0][i] += pt.allowed;
      sums[1][i] += pt.denied;
      sums[2][i] += pt.shadow_denied;
    }
  }
  // One more point at the range's end repeating the last bucket, so the stepped line draws the
  // last bucket's full width too.
  t.push(start + n * step);
  for (const s of sums) s.push(s[n - 1]);
  return [t, ...sums];
}

function drawDecisions(res) {
  const data = decisionSeries(res);
  if (decisionsChart) { decisionsChart.setData(data); return; }
  const stepped = uPlot.paths.stepped({ align: 1 });
  decisionsChart = chart($('#analytics-chart'), {
    height: 260,
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
    axes: [{}, { label: 'requests per bucket', size: 60 }],
    series: [
      {},
      { label: 'allowed', stroke: '#15803d', fill: 'rgba(21,128,61,0.10)', width: 2, paths: stepped, points: { show: false } },
      { label: 'denied', stroke: '#dc2626', fill: 'rgba(220,38,38,0.08)', width: 2, paths: stepped, points: { show: false } },
      { label: 'shadow-denied', stroke: '#d97706', width: 2, dash: [6, 4], paths: stepped, points: { show: false } },
    ],
  }, data);
}

function drawDistribution(bands) {
  const most = Math.max(1, ...bands.map((b) => b.keys));
  $('#analytics-distribution').replaceChildren(...bands.map((b) => el('div', { class: 'dist-row' },
    el('span', { class: 'dist-label' }, b.from >= 0.9 ? '90%+' : `${Math.round(b.from * 100)}–${Math.round(b.to * 100)}%`),
    el('span', { class: `dist-bar${b.from >= 0.9 ? ' hot' : ''}`, style: { width: `${(b.keys / most) * 100}%` } }),
    el('span', { class: 'dist-count' }, fmt(b.keys)))));
  if (!bands.length) $('#analytics-distribution').append(el('p', { class: 'muted' }, 'No live keys.'));
}

export const analytics = {
  init() {
    $('#analytics-form').addEventListener('submit', (e) => { e.preventDefault(); loadAnalytics(); });
    for (const sel of ['#analytics-range', '#analytics-bucket', '#analytics-rule']) {
      $(sel).addEventListener('change', loadAnalytics);
    }
  },
  show: loadAnalytics,
};
