// Issue 17: the approvals page (/ui on the admin port) in a real browser: Debian's headless Chromium
// driven by puppeteer-core, inside the test's network namespace (only loopback exists, so the
// browser can reach nothing else). A held request appears in the page from the SSE stream, a click
// releases it and the waiting client gets 200; a deny click gives the client approval_denied. The
// page's CSP must hold: no violation is reported. The screenshot in the README comes from this test
// (SLUICE_UI_SCREENSHOT=docs/approvals-ui.png writes it there).
import { existsSync } from 'node:fs';
import path from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import t from 'tap';
import { curl } from '../helpers/clients.js';
import { startDns, type DnsServer } from '../helpers/dns.js';
import { PUBLIC_UPSTREAM_IP } from '../helpers/netns.js';
import { startTestSluice, TOOL, waitForAudit, type TestSluice } from '../helpers/sluice.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ADMIN_TOKEN = 'admin-token-for-the-ui-test-0001';
const REPO_ROOT = path.resolve(import.meta.dirname, '../..');

let dns: DnsServer;
let plain: Upstream;
let sluice: TestSluice;
let browser: Browser;
let page: Page;
const violations: string[] = [];

t.before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium (.ci/run installs it)`);
  dns = await startDns({
    'docs.wild.test': [{ type: 'A', address: PUBLIC_UPSTREAM_IP }],
    'pypi.wild.test': [{ type: 'A', address: PUBLIC_UPSTREAM_IP }],
  });
  plain = await startUpstream({ host: PUBLIC_UPSTREAM_IP });
  sluice = await startTestSluice({
    adminToken: ADMIN_TOKEN,
    policy: `
version: 1
network:
  dns_servers: ["${dns.address}"]
  allow_ports: [${plain.port}]
tools:
  ${TOOL}:
    token_sha256: "\${TOKEN_SHA}"
    on_violation: ask
    allow: []
`,
  });
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Root in a container: no setuid sandbox; no background traffic (there is nowhere for it to go anyway).
    args: [
      '--no-sandbox',
      '--disable-dev-shm-usage',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
    ],
  });
  page = await browser.newPage();
  await page.setViewport({ width: 1000, height: 520 });
  page.on('console', (message) => {
    if (/Content Security Policy|Refused to/i.test(message.text())) violations.push(message.text());
  });
});

t.teardown(async () => {
  await browser?.close();
  await sluice?.close();
  await plain?.close();
  await dns?.close();
});

/** The pending row naming a host (puppeteer's text selector). */
const rowFor = (host: string): string => `#pending ::-p-text(${host})`;

t.test('the page shows a held request live; a click allows it once and the client gets 200', async (t) => {
  const response = await page.goto(`http://127.0.0.1:${sluice.adminPort}/ui`);
  t.equal(response?.status(), 200);
  t.match(response?.headers()['content-security-policy'], /default-src 'none'; script-src 'nonce-[^']+'/, 'inline code runs by nonce only');
  // Page-side code as strings: the tests are type-checked without the DOM library.
  await page.waitForFunction(`document.getElementById('status').textContent === 'live'`, { timeout: 10_000 });
  await page.type('#token', ADMIN_TOKEN);
  await page.click('#token-form button[type=submit]');
  t.equal(
    await page.$eval('#token', (el) => (el as unknown as { value: string }).value),
    '',
    'the field is cleared: the token lives in the script only',
  );

  const client = curl(['-x', sluice.proxyUrl(), `http://docs.wild.test:${plain.port}/anything/readme`]);
  await page.waitForSelector(rowFor('docs.wild.test'), { timeout: 10_000 });
  await page.click('#pending button[data-decision="allow-once"]');
  const r = await client;
  t.equal(r.status, 200, 'the click released the waiting client');
  const granted = await waitForAudit(sluice, (e) => e.type === 'approval.granted' && e.host === 'docs.wild.test');
  t.equal(granted.approval_decision, 'allow-once');
  await page.waitForFunction(`document.querySelector('#decided code')?.textContent.includes('docs.wild.test')`, { timeout: 10_000 });
  t.equal(await page.$$eval('#pending tr[data-id]', (rows) => rows.length), 0, 'nothing is pending any more');
});

t.test('a deny click refuses the client with approval_denied; the screenshot', async (t) => {
  const client = curl(['-x', sluice.proxyUrl(), `http://pypi.wild.test:${plain.port}/simple/requests/`]);
  await page.waitForSelector(rowFor('pypi.wild.test'), { timeout: 10_000 });
  const shot = process.env.SLUICE_UI_SCREENSHOT;
  await page.screenshot({ path: shot ? path.resolve(REPO_ROOT, shot) : path.join(sluice.dir, 'approvals-ui.png') });
  await page.click('#pending button[data-decision="deny"]');
  const r = await client;
  t.equal(r.status, 403);
  t.equal(r.headers['x-sluice-deny'], 'approval_denied');
  await page.waitForFunction(`[...document.querySelectorAll('#decided td')].some((td) => td.textContent === 'deny')`, { timeout: 10_000 });
  t.same(violations, [], 'the page broke no rule of its CSP');
});
