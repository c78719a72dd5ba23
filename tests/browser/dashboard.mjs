// Drives the admin dashboard in a real Chromium against a real tollgate, started by
// tests/dashboard.rs with one rule `per-user` (key = "header:x-user", limits = ["5/m"]) on a
// route that forwards everything to a test upstream.
//
//   ADMIN_URL, PROXY_URL   http://127.0.0.1:PORT of the admin and proxy listeners
//   ADMIN_TOKEN, READ_TOKEN the two bearer tokens of [admin]
//   SHOTS_DIR              where <tab>.png screenshots go (default target/dashboard-shots)
//   CHROMIUM               the browser binary (default /usr/bin/chromium)
//
// Prints one line per check; exits 1 at the first failed check, with a screenshot of the page.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) fail('setup', `${name} is not set`);
  return v;
};
const ADMIN_URL = env('ADMIN_URL');
const PROXY_URL = env('PROXY_URL');
const ADMIN_TOKEN = env('ADMIN_TOKEN');
const READ_TOKEN = env('READ_TOKEN');
const SHOTS_DIR = env('SHOTS_DIR', 'target/dashboard-shots');
const TABS = ['overview', 'rules', 'keys', 'violations', 'analytics', 'alerts'];
const WAIT = 15_000; // the bound on any one wait for the page or the server

let browser;
let page;
const pageErrors = [];

function fail(name, message) {
  console.log(`FAIL ${name}: ${message}`);
  process.exitCode = 1;
  throw new Error(`${name}: ${message}`);
}

// Run one named check; on failure, screenshot the page and stop.
async function check(name, fn) {
  const started = Date.now();
  try {
    const detail = await fn();
    if (pageErrors.length) throw new Error(`the page reported: ${pageErrors.join(' | ')}`);
    console.log(`ok   ${name}${detail ? ` (${detail})` : ''} [${Date.now() - started} ms]`);
  } catch (e) {
    if (page) await page.screenshot({ path: join(SHOTS_DIR, `failed-${name.replace(/\W+/g, '-')}.png`), fullPage: true }).catch(() => {});
    fail(name, e.message.split('\n')[0]);
  }
}

function expect(cond, message) {
  if (!cond) throw new Error(message);
}

// ------------------------------------------------------------------ the proxy side

// One request through tollgate as user `key`; answers the status.
async function proxied(key) {
  const res = await fetch(`${PROXY_URL}/echo`, { headers: { 'x-user': key } });
  await res.arrayBuffer();
  return res.status;
}

// `total` requests spread over `keys` users, `concurrency` at a time: each user's first 5 fit
// in 5/m, the rest get 429. Answers the count of each status.
async function load(keys, total, concurrency = 16) {
  const counts = {};
  let next = 0;
  const worker = async () => {
    while (next < total) {
      const i = next++;
      const status = await proxied(keys[i % keys.length]);
      counts[status] = (counts[status] || 0) + 1;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return counts;
}

async function statuses(key, n) {
  const out = [];
  for (let i = 0; i < n; i++) out.push(await proxied(key));
  return out;
}

// ------------------------------------------------------------------ page helpers

const text = (sel) => page.locator(sel).first().textContent();
const num = (s) => Number.parseFloat(String(s).replace(/[^\d.]/g, ''));

async function openTab(name) {
  await page.click(`[data-tab=${name}]`);
  await page.locator(`#tab-${name}`).waitFor({ state: 'visible', timeout: WAIT });
}

// Rows of a table body that are not the "nothing here" row.
const rows = (table) => page.locator(`${table} tbody tr:not(.empty)`);

// Click `button` until `table` shows at least one row (the store is written behind, every
// 200 ms in the test's config), within WAIT.
async function applyUntilRows(button, table) {
  const deadline = Date.now() + WAIT;
  for (;;) {
    await page.click(button);
    await page.waitForTimeout(300); // poll interval, not an assertion
    if (await rows(table).count() > 0) return;
    expect(Date.now() < deadline, `${table} stayed empty for ${WAIT} ms`);
  }
}

async function signIn(context, token) {
  const p = await context.newPage();
  p.on('pageerror', (e) => pageErrors.push(e.message));
  p.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/.test(m.text())) pageErrors.push(m.text());
  });
  await p.goto(`${ADMIN_URL}/admin/quotas`);
  await p.fill('#token-input', token);
  await p.click('#login-button');
  await p.locator('#app').waitFor({ state: 'visible', timeout: WAIT });
  return p;
}

// ------------------------------------------------------------------ the checks

async function main() {
  mkdirSync(SHOTS_DIR, { recursive: true });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox'],
  });
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });

  await check('a wrong token is refused', async () => {
    page = await context.newPage();
    await page.goto(`${ADMIN_URL}/admin/quotas`);
    await page.fill('#token-input', 'not-the-token');
    await page.click('#login-button');
    await page.locator('#login-error').filter({ hasText: '401' }).waitFor({ timeout: WAIT });
    expect(await page.locator('#app').isHidden(), 'the dashboard is shown after a 401');
    await page.close();
  });

  await check('sign in with the admin token', async () => {
    page = await signIn(context, ADMIN_TOKEN);
    expect(await page.evaluate(() => sessionStorage.getItem('tollgate.token')) === ADMIN_TOKEN,
      'the token is not in sessionStorage');
  });

  await check('the live feed is connected', async () => {
    await page.locator('#conn-state', { hasText: /^connected$/ }).waitFor({ timeout: WAIT });
  });

  await check('live numbers move under load', async () => {
    // Record every value the tiles take, so a one-interval spike is not missed between polls.
    await page.evaluate(() => {
      window.seen = {};
      for (const id of ['stat-rps', 'stat-allowed', 'stat-denied', 'stat-active-keys']) {
        const node = document.getElementById(id);
        window.seen[id] = [node.textContent];
        new MutationObserver(() => window.seen[id].push(node.textContent))
          .observe(node, { childList: true, characterData: true, subtree: true });
      }
      const top = document.querySelector('#top-keys-table tbody');
      new MutationObserver(() => { window.topKeySeen ||= top.textContent.includes('load-'); })
        .observe(top, { childList: true, subtree: true });
    });
    const users = Array.from({ length: 30 }, (_, i) => `load-${i}`);
    const counts = await load(users, 300);
    expect(counts[200] === 150 && counts[429] === 150,
      `expected 150 allowed and 150 denied through the proxy, got ${JSON.stringify(counts)}`);
    // Each tile must have shown a positive value other than the one it started with.
    await page.waitForFunction((ids) => ids.every((id) => window.seen[id].slice(1)
      .some((t) => t !== window.seen[id][0] && Number.parseFloat(t.replace(/[^\d.]/g, '')) > 0)),
    ['stat-rps', 'stat-allowed', 'stat-denied'], { timeout: WAIT });
    const seen = await page.evaluate(() => window.seen);
    expect(seen['stat-active-keys'].some((t) => num(t) > 0), `active keys stayed ${seen['stat-active-keys']}`);
    return `proxy ${JSON.stringify(counts)}; allowed/s went ${seen['stat-allowed'].join(' → ')}`;
  });

  await check('live violations and top keys are listed', async () => {
    await page.locator('#live-violations li:not(.empty)', { hasText: 'load-' }).first().waitFor({ timeout: WAIT });
    await page.waitForFunction(() => window.topKeySeen, null, { timeout: WAIT });
    return `${await page.locator('#live-violations li').count()} violation event(s)`;
  });

  await check('an invalid rule edit shows the 422 errors inline', async () => {
    await openTab('rules');
    await page.click('[data-edit="rule:per-user"]');
    await page.fill('#rule-form [name=limits]', 'lots');
    await page.click('#rule-form [type=submit]');
    await page.locator('#rules-error:not(:empty)').waitFor({ timeout: WAIT });
    await page.locator('#rule-form .field-error').first().waitFor({ timeout: WAIT });
    return (await text('#rule-form .field-error')).trim();
  });

  await check('raising a limit in the Rules tab lets a denied key through', async () => {
    const before = await statuses('edit-me', 6);
    expect(before.join() === '200,200,200,200,200,429', `before the edit: ${before}`);
    await saveRuleLimits('1000/m');
    const after = await proxied('edit-me');
    expect(after === 200, `after raising to 1000/m the 7th request answered ${after}`);
    return `5/m → 1000/m: ${before.at(-1)} then ${after}`;
  });

  await check('lowering a limit in the Rules tab denies at once', async () => {
    const fresh = await proxied('lower-me');
    expect(fresh === 200, `a fresh key answered ${fresh}`);
    await saveRuleLimits('1/m');
    const after = await proxied('lower-me');
    expect(after === 429, `after lowering to 1/m the 2nd request answered ${after}`);
    return `1000/m → 1/m: ${fresh} then ${after}`;
  });

  await check('the Keys tab finds keys by prefix', async () => {
    await openTab('keys');
    await page.fill('#keys-prefix', 'load-1');
    await page.click('#keys-search');
    // The tab first shows the top 20 of every key; wait for the search's answer to replace it.
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll('#keys-table tbody tr[data-key]')];
      return rows.length > 0 && rows.every((r) => r.dataset.key.startsWith('load-1'));
    }, null, { timeout: WAIT });
    const keys = await page.locator('#keys-table tbody tr[data-key]').evaluateAll((trs) => trs.map((t) => t.dataset.key));
    expect(keys.every((k) => k.startsWith('load-1')), `rows outside the prefix: ${keys}`);
    expect(keys.includes('load-1') && keys.includes('load-10'), `expected load-1 and load-10 among ${keys}`);
    await page.click('#keys-top');
    await page.waitForFunction(() => document.querySelectorAll('#keys-table tbody tr[data-key]').length > 0 &&
      /^top /.test(document.getElementById('keys-summary').textContent), null, { timeout: WAIT });
    return `${keys.length} key(s) under load-1`;
  });

  await check('a reset in the Keys tab lets a denied key through', async () => {
    const before = await proxied('lower-me');
    expect(before === 429, `lower-me should be over 1/m, answered ${before}`);
    await page.fill('#keys-prefix', 'lower-me');
    await page.click('#keys-search');
    const row = page.locator('#keys-table tbody tr[data-key="lower-me"]');
    await row.waitFor({ timeout: WAIT });
    page.once('dialog', (d) => d.accept());
    await row.getByRole('button', { name: 'Reset' }).click();
    await page.locator('#keys-msg', { hasText: 'Reset lower-me' }).waitFor({ timeout: WAIT });
    const after = await proxied('lower-me');
    expect(after === 200, `after the reset lower-me answered ${after}`);
    return `${before} then ${after}`;
  });

  await check('the Violations tab filters by key', async () => {
    await openTab('violations');
    await applyUntilRows('#violations-apply', '#violations-table');
    const all = await rows('#violations-table').evaluateAll((trs) => [...new Set(trs.map((t) => t.dataset.key))]);
    expect(all.length > 1, `expected violations of several keys before filtering, got ${all}`);
    await page.fill('#violations-key', 'load-3');
    await applyUntilRows('#violations-apply', '#violations-table');
    await page.waitForFunction(() => [...document.querySelectorAll('#violations-table tbody tr[data-key]')]
      .every((t) => t.dataset.key === 'load-3'), null, { timeout: WAIT });
    const keys = await rows('#violations-table').evaluateAll((trs) => trs.map((t) => t.dataset.key));
    expect(keys.length > 0 && keys.every((k) => k === 'load-3'), `rows after filtering: ${keys}`);
    return `${all.length} keys unfiltered, ${keys.length} row(s) for load-3`;
  });

  await check('the Analytics tab shows decisions and violators', async () => {
    await openTab('analytics');
    await applyUntilRows('#analytics-apply', '#analytics-top-violators');
    expect(await text('#analytics-msg') === '', `error: ${await text('#analytics-msg')}`);
    await page.locator('#analytics-chart canvas').waitFor({ timeout: WAIT });
    return (await text('#analytics-summary')).trim();
  });

  await check('the Alerts tab loads', async () => {
    await openTab('alerts');
    await page.locator('#alerts-active tbody tr').first().waitFor({ timeout: WAIT });
    await page.locator('#alerts-history tbody tr').first().waitFor({ timeout: WAIT });
    expect(!/Could not load/.test(await text('#alerts-active tbody')), await text('#alerts-active tbody'));
  });

  await check('a read token is shown as read-only on a change', async () => {
    const readContext = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const readPage = await signIn(readContext, READ_TOKEN);
    await readPage.click('[data-tab=rules]');
    await readPage.click('[data-edit="rule:per-user"]');
    await readPage.click('#rule-form [type=submit]');
    await readPage.locator('#rules-error', { hasText: 'read-only token' }).waitFor({ timeout: WAIT });
    await readPage.locator('#role-badge', { hasText: 'read-only' }).waitFor({ timeout: WAIT });
    await readContext.close();
  });

  await check('screenshots of every tab', async () => {
    await page.locator('#conn-state', { hasText: /^connected$/ }).waitFor({ timeout: WAIT });
    // A trickle of traffic while the shots are taken, so the live tiles are not all zero.
    const trickle = { stop: false };
    const running = keepTraffic(trickle);
    try {
      await openTab('overview');
      await page.waitForFunction(() => Number.parseFloat(document.getElementById('stat-rps').textContent) > 0,
        null, { timeout: WAIT });
      for (const tab of TABS) {
        await openTab(tab);
        await SHOT_SETUP[tab]?.();
        await page.waitForLoadState('networkidle');
        await page.screenshot({ path: join(SHOTS_DIR, `${tab}.png`), fullPage: true });
      }
    } finally {
      trickle.stop = true;
      await running;
    }
    return `${TABS.length} in ${SHOTS_DIR}`;
  });

  await check('log out forgets the token', async () => {
    await page.click('#logout-button');
    await page.locator('#login').waitFor({ state: 'visible', timeout: WAIT });
    expect(await page.evaluate(() => sessionStorage.getItem('tollgate.token')) === null, 'the token is still stored');
    await page.locator('#conn-state', { hasText: /^disconnected$/ }).waitFor({ state: 'attached', timeout: WAIT });
  });
}

// Put a tab in its most telling state before its screenshot.
const SHOT_SETUP = {
  keys: async () => {
    await page.fill('#keys-prefix', '');
    await page.click('#keys-top');
  },
  violations: async () => {
    await page.fill('#violations-key', '');
    await page.click('#violations-apply');
  },
};

// About 25 requests a second until `flag.stop` (at most 10 s): three new users to one repeat,
// so with per-user at 1/m by now, about a quarter are denied.
async function keepTraffic(flag) {
  const until = Date.now() + 10_000;
  for (let i = 0; !flag.stop && Date.now() < until; i++) {
    await proxied(`user-${i % 4 === 3 ? i - 1 : i}`);
    await new Promise((resolve) => setTimeout(resolve, 40));
  }
}

// Edit rule per-user's limits in the Rules tab and wait for the saved message and the table.
async function saveRuleLimits(limits) {
  await openTab('rules');
  await page.click('[data-edit="rule:per-user"]');
  await page.fill('#rule-form [name=limits]', limits);
  await page.click('#rule-form [type=submit]');
  await page.locator('#config-msg', { hasText: 'rule:per-user' }).waitFor({ timeout: WAIT });
  const row = page.locator('#rules-table tbody tr', { has: page.locator('[data-edit="rule:per-user"]') });
  await row.filter({ hasText: limits }).filter({ hasText: 'api' }).waitFor({ timeout: WAIT });
}

const deadline = setTimeout(() => {
  console.log('FAIL the whole run took longer than 180 s');
  process.exit(1);
}, 180_000);

try {
  await main();
  console.log('dashboard: all checks passed');
} catch (e) {
  if (!process.exitCode) console.log(`FAIL ${e.message}`);
  process.exitCode = 1;
} finally {
  clearTimeout(deadline);
  await browser?.close();
}
