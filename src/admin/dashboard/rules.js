// Rules (the config in force: rules, tiers and overrides, and the forms that change them) and
// Keys (live usage per key, with reset and a shortcut to an override).

import { $, api, on, el, fillRows, usageBar, badge, state, loadConfig, navigate, showErrors,
  clearErrors, list, fmt, ago } from './ui.js';

const CONFIG = '/api/admin/quotas/config';

// ------------------------------------------------------------------ rules tab

function renderConfig(cfg) {
  $('#config-version').textContent = `version ${cfg.version}`;
  fillRows($('#rules-table tbody'), cfg.rules.map((r) => el('tr', {},
    el('td', {}, el('strong', {}, r.name)),
    el('td', {}, el('code', {}, r.key)),
    el('td', {}, r.limits.map((l) => el('span', { class: 'chip' }, l)),
      r.timezone ? el('span', { class: 'muted small' }, ` in ${r.timezone}`) : null),
    el('td', {}, r.shadow ? badge('shadow', 'warn') : 'no'),
    el('td', {}, r.on_missing),
    el('td', {}, r.cost_header ? el('code', {}, `header:${r.cost_header}`) : String(r.cost ?? 1)),
    el('td', {}, (r.routes || []).join(', ')),
    el('td', {}, sourceBadge(r.source)),
    actions(r, () => editRule(r)))), 'No rules.');
  fillRows($('#tiers-table tbody'), cfg.tiers.map((t) => el('tr', {},
    el('td', {}, el('strong', {}, t.name)),
    el('td', {}, Object.entries(t.limits).map(([rule, ls]) => el('div', {}, `${rule}: `, ls.map((l) => el('span', { class: 'chip' }, l))))),
    el('td', {}, sourceBadge(t.source)),
    actions(t, () => editTier(t)))), 'No tiers.');
  fillRows($('#overrides-table tbody'), cfg.overrides.map((o) => el('tr', {},
    el('td', {}, el('code', {}, o.key)),
    el('td', {}, o.rule === '*' ? 'every rule' : o.rule),
    el('td', {}, o.tier ? `tier ${o.tier}` : (o.limits || []).map((l) => el('span', { class: 'chip' }, l))),
    el('td', {}, sourceBadge(o.source)),
    actions(o, () => editOverride(o)))), 'No overrides.');
}

const sourceBadge = (source) => badge(source, source === 'api' ? 'info' : '');

function actions(entry, edit) {
  return el('td', { class: 'row-actions' },
    el('button', { type: 'button', class: 'ghost small', 'data-edit': entry.id, on: { click: edit } }, 'Edit'),
    entry.source === 'api' ? el('button', { type: 'button', class: 'ghost small danger', 'data-delete': entry.id,
      on: { click: () => remove(entry.id) } }, 'Delete') : null);
}

// Fill the selects and the datalist that offer rule and tier names (on every tab).
function fillNames(cfg) {
  const names = cfg.rules.map((r) => r.name);
  const options = (values, first) => [...first, ...values.map((v) => el('option', { value: v }, v))];
  for (const sel of ['#keys-rule', '#analytics-rule']) {
    const node = $(sel);
    const keep = node.value;
    node.replaceChildren(...options(names, [node.options[0]]));
    node.value = keep;
  }
  const ruleSel = $('#override-form').elements.rule;
  ruleSel.replaceChildren(...options(names, [el('option', { value: '*' }, '* (every rule)')]));
  const tierSel = $('#override-form').elements.tier;
  tierSel.replaceChildren(...options(cfg.tiers.map((t) => t.name), [tierSel.options[0]]));
  $('#rule-names').replaceChildren(...names.map((n) => el('option', { value: n })));
}

function editRule(r) {
  const f = $('#rule-form').elements;
  f.name.value = r.name;
  f.key.value = r.key;
  f.limits.value = r.limits.join(', ');
  f.routes.value = (r.routes || []).join(', ');
  f.on_missing.value = r.on_missing || 'reject';
  f.cost.value = r.cost ?? 1;
  f.timezone.value = r.timezone || '';
  f.shadow.checked = !!r.shadow;
  f.limits.focus();
}

function editTier(t) {
  const f = $('#tier-form').elements;
  f.name.value = t.name;
  f.limits.value = Object.entries(t.limits).map(([rule, ls]) => `${rule} = ${ls.join(', ')}`).join('\n');
  f.limits.focus();
}

function editOverride(o) {
  const f = $('#override-form').elements;
  f.key.value = o.key;
  f.rule.value = o.rule;
  f.tier.value = o.tier || '';
  f.limits.value = (o.limits || []).join(', ');
  f.limits.focus();
}

// The body of a rule POST. Fields the form does not show (cost_header, billing_day) are kept
// from the rule being replaced, so editing its limits changes nothing else.
function ruleBody(f) {
  const body = { kind: 'rule', name: f.name.value.trim(), key: f.key.value.trim(),
    limits: list(f.limits.value), on_missing: f.on_missing.value,
    cost: Number(f.cost.value || 1), shadow: f.shadow.checked };
  const routes = list(f.routes.value);
  if (routes.length) body.routes = routes;
  if (f.timezone.value.trim()) body.timezone = f.timezone.value.trim();
  const old = state.config?.rules.find((r) => r.name === body.name);
  if (old?.cost_header) body.cost_header = old.cost_header;
  if (old?.billing_day != null) body.billing_day = old.billing_day;
  return body;
}

// `rule = 1000/m, 5000/d` lines -> {rule: ["1000/m", "5000/d"]}.
function tierBody(f) {
  const limits = {};
  for (const line of f.limits.value.split('\n').map((l) => l.trim()).filter(Boolean)) {
    const [rule, rest] = line.split(/\s*[=:]\s*/, 2);
    limits[rule] = list(rest || '');
  }
  return { kind: 'tier', name: f.name.value.trim(), limits };
}

function overrideBody(f) {
  const body = { kind: 'override', key: f.key.value.trim(), rule: f.rule.value };
  if (f.tier.value) body.tier = f.tier.value;
  const limits = list(f.limits.value);
  if (limits.length || !f.tier.value) body.limits = limits;
  return body;
}

// Wire a form to POST the body `build` makes, show 422 errors beside it, reload on success.
function wireForm(formId, errorId, build) {
  const form = $(formId);
  const box = $(errorId);
  form.addEventListener('reset', () => clearErrors(form, box));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form, box);
    $('#config-msg').textContent = '';
    const button = form.querySelector('[type=submit]');
    button.disabled = true;
    try {
      const res = await api('POST', CONFIG, build(form.elements));
      say(`${res.created ? 'Created' : 'Replaced'} ${res.id} (config version ${res.version})` +
        (res.persisted ? '.' : ': not persisted, no store is configured, it holds until restart.'));
      renderConfig(await loadConfig());
    } catch (err) {
      showErrors(form, box, err);
    } finally {
      button.disabled = false;
    }
  });
}

async function remove(id) {
  if (!confirm(`Delete ${id}? If it replaced an entry of the config file, the file's entry is in force again.`)) return;
  try {
    const res = await api('DELETE', `${CONFIG}/${encodeURIComponent(id)}`);
    say(`Deleted ${res.id} (config version ${res.version}).`);
    renderConfig(await loadConfig());
  } catch (err) {
    say(`Could not delete ${id}: ${err.message}`, true);
  }
}

function say(text, bad = false) {
  const node = $('#config-msg');
  node.textContent = text;
  node.className = bad ? 'form-error' : 'form-ok';
}

export const rules = {
  init() {
    on('config', fillNames);
    wireForm('#rule-form', '#rules-error', ruleBody);
    wireForm('#tier-form', '#tier-error', tierBody);
    wireForm('#override-form', '#override-error', overrideBody);
  },
  async show() {
    try {
      renderConfig(await loadConfig());
    } catch (err) {
      say(`Could not load the config: ${err.message}`, true);
    }
  },
};

// ------------------------------------------------------------------ keys tab

const PAGE = 50;
const keyQuery = { mode: 'top', offset: 0 };

async function loadKeys() {
  const p = new URLSearchParams();
  const rule = $('#keys-rule').value;
  if (rule) p.set('rule', rule);
  if (keyQuery.prefix) p.set('prefix', keyQuery.prefix);
  if (keyQuery.mode === 'top') p.set('top', '20');
  else {
    p.set('limit', PAGE);
    p.set('offset', keyQuery.offset);
  }
  const tbody = $('#keys-table tbody');
  try {
    const res = await api('GET', `/api/admin/quotas/usage?${p}`);
    fillRows(tbody, res.items.map((k) => keyRow(k, res.now_ms)), 'No keys match.');
    const shown = keyQuery.mode === 'top' ? `top ${res.items.length} of ${fmt(res.total)} keys by usage`
      : `${fmt(res.total)} key(s)${res.total > PAGE ? `, showing ${keyQuery.offset + 1}–${keyQuery.offset + res.items.length}` : ''}`;
    $('#keys-summary').textContent = shown;
    $('#keys-prev').disabled = keyQuery.mode === 'top' || keyQuery.offset === 0;
    $('#keys-next').disabled = keyQuery.mode === 'top' || keyQuery.offset + PAGE >= res.total;
  } catch (err) {
    fillRows(tbody, [], `Could not load usage: ${err.message}`);
  }
}

function keyRow(k, now) {
  return el('tr', { 'data-key': k.key, 'data-rule': k.rule },
    el('td', {}, k.rule, k.shadow ? [' ', badge('shadow', 'warn')] : null),
    el('td', {}, el('code', {}, k.key)),
    el('td', { class: 'windows' }, k.windows.map((w) => el('div', { title: `resets in ${w.reset_secs} s` },
      usageBar(w.used, w.max, w.limit)))),
    el('td', {}, ago(k.last_seen_ms, now)),
    el('td', { class: 'row-actions' },
      el('button', { type: 'button', class: 'ghost small', on: { click: () => overrideFor(k) } }, 'Override…'),
      el('button', { type: 'button', class: 'ghost small danger', on: { click: () => reset(k) } }, 'Reset')));
}

function overrideFor(k) {
  navigate('rules');
  const f = $('#override-form').elements;
  f.key.value = k.key;
  f.rule.value = k.rule;
  f.tier.value = '';
  f.limits.value = '';
  $('#override-form').scrollIntoView({ block: 'center' });
  f.limits.focus();
}

async function reset(k) {
  if (!confirm(`Reset the counters of ${k.key} for rule ${k.rule}?`)) return;
  const msg = $('#keys-msg');
  try {
    const res = await api('POST', '/api/admin/quotas/reset', { key: k.key, rule: k.rule });
    msg.className = 'form-ok';
    msg.textContent = `Reset ${res.key} for ${res.rules.join(', ')}.`;
    loadKeys();
  } catch (err) {
    msg.className = 'form-error';
    msg.textContent = `Could not reset ${k.key}: ${err.message}`;
  }
}

export const keys = {
  init() {
    // Search lists every key under the prefix, a page at a time; Top 20 the busiest under it.
    const start = (mode) => {
      Object.assign(keyQuery, { mode, prefix: $('#keys-prefix').value.trim(), offset: 0 });
      $('#keys-msg').textContent = '';
      loadKeys();
    };
    $('#keys-form').addEventListener('submit', (e) => { e.preventDefault(); start('search'); });
    $('#keys-top').addEventListener('click', () => start('top'));
    $('#keys-prev').addEventListener('click', () => { keyQuery.offset = Math.max(0, keyQuery.offset - PAGE); loadKeys(); });
    $('#keys-next').addEventListener('click', () => { keyQuery.offset += PAGE; loadKeys(); });
  },
  show: loadKeys,
};
