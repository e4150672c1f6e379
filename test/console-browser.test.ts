// The console in a real browser (Debian's Chromium driven by playwright-core): sign-in, search, the attempt
// timeline, replay, rotation, CSRF and hostile response bodies, and an accessibility scan of every screen.
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { readFile } from 'node:fs/promises';
import type { Page } from 'playwright-core';
import { sql } from 'slonik';
import { afterAll, beforeAll, expect } from 'vitest';
import { z } from 'zod';
import { test as base } from './fixtures.ts';
import { launchChromium, type TestBrowser } from './support/browser.ts';
import { FULL_TOKEN, READ_TOKEN, type TestConsole } from './support/console.ts';
import { addEndpoint, countWhere, insertEvents, type TestDb } from './support/postgres.ts';
import type { Receiver } from './support/receiver.ts';
import { until, within } from './support/until.ts';

const HOSTILE = `<script>alert('owned')</script><img src=x onerror="alert(2)"><style>body{display:none}</style>`;

let browser: TestBrowser;
beforeAll(async () => {
  browser = await launchChromium();
}, 60_000);
afterAll(async () => {
  await browser?.close();
});

type Watched = { page: Page; incidents: string[] };

/**
 * A fresh page (no cookies) that records every dialog, page error and CSP violation the console could cause. It
 * closes before the console does (fixtures end in reverse order), so no keep-alive connection holds the close.
 */
const test = base.extend<{ openPage: () => Promise<Watched> }>({
  openPage: async ({ startConsole }, use) => {
    void startConsole;
    const pages: Page[] = [];
    await use(async () => {
      const watched = await watch();
      pages.push(watched.page);
      return watched;
    });
    for (const page of pages) await within(30_000, 'closing a browser page', () => page.close());
  },
});

async function watch(): Promise<Watched> {
  await browser.context.clearCookies();
  const page = await browser.context.newPage();
  const incidents: string[] = [];
  page.on('dialog', (d) => {
    incidents.push(`dialog: ${d.message()}`);
    void d.dismiss();
  });
  page.on('pageerror', (err) => incidents.push(`page error: ${err.message}`));
  page.on('console', (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) incidents.push(`console: ${m.text()}`);
  });
  return { page, incidents };
}

async function signIn(page: Page, c: TestConsole, token = FULL_TOKEN, path = '/') {
  await page.goto(`${c.url}${path}`);
  await expect.poll(() => new URL(page.url()).pathname).toBe('/login');
  await page.getByLabel('Access token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((u) => u.pathname === new URL(path, c.url).pathname);
}

/** Real data: a healthy endpoint with delivered events, a failing one whose deliveries end dead. */
async function seed(db: TestDb, receiver: Receiver, startRelay: (env: Record<string, string>) => Promise<unknown>) {
  let fixed = false;
  receiver.reply((req) => (req.path.endsWith('/billing') && !fixed ? { status: 500, body: HOSTILE } : { status: 204 }));
  const healthy = await addEndpoint(db, `${receiver.url}/crm`, { eventTypes: ['customer.created'] });
  const failing = await addEndpoint(db, `${receiver.url}/billing`, { eventTypes: ['invoice.paid'] });
  await db.pool.query(
    sql.unsafe`UPDATE webhooks.endpoints SET description = 'billing service' WHERE url LIKE '%/billing'`,
  );
  await startRelay({ RETRY_SCHEDULE: '100ms' });
  const customers = await insertEvents(
    db,
    Array.from({ length: 5 }, (_, i) => ({ type: 'customer.created', payload: `{"customer":${i}}` })),
  );
  const invoices = await insertEvents(
    db,
    Array.from({ length: 3 }, (_, i) => ({ type: 'invoice.paid', payload: `{"invoice":${i}}` })),
  );
  await until(async () => (await countWhere(db, 'dead')) === 3 && (await countWhere(db, 'delivered')) === 5, {
    what: '5 delivered, 3 dead',
  });
  return { healthy, failing, customers, invoices, fix: () => (fixed = true) };
}

/** Always taken (it proves the page renders); copied into docs/ for the README with UPDATE_SCREENSHOTS=1. */
async function screenshot(page: Page, name: string) {
  const shot = join(tmpdir(), `outbox-relay-${process.pid}-${name}`);
  await page.screenshot({ path: shot, fullPage: true });
  if (process.env.UPDATE_SCREENSHOTS === '1') {
    await mkdir(new URL('../docs/', import.meta.url), { recursive: true });
    await copyFile(shot, new URL(`../docs/${name}`, import.meta.url));
  }
  await rm(shot, { force: true });
}

const arrived = (receiver: Receiver, webhookId: string, after: number) =>
  receiver.requests.slice(after).some((r) => r.headers['webhook-id'] === webhookId && r.state === 'answered');

test('sign in, find a delivery by msg_ id, read its attempts (hostile body shown as text), replay it and see it arrive', async ({
  db,
  receiver,
  startRelay,
  startConsole,
  openPage,
}) => {
  const data = await seed(db, receiver, startRelay);
  const c = await startConsole();
  const { page, incidents } = await openPage();
  await signIn(page, c);
  await expect.poll(() => page.getByRole('heading', { level: 1 }).textContent()).toBe('Overview');
  await screenshot(page, 'console.png'); // the README's, over this data

  const webhookId = `msg_${data.invoices[1]}`;
  await page.getByRole('navigation').getByRole('link', { name: 'Deliveries' }).click();
  await page.getByLabel('Webhook id').fill(webhookId);
  await page.getByRole('button', { name: 'Search' }).click();
  await expect.poll(() => page.url()).toContain(`q=${webhookId}`); // the filters live in the URL
  const rows = page.locator('tbody tr');
  await expect.poll(() => rows.count()).toBe(1);
  await rows.first().getByRole('link').click();
  await expect.poll(() => page.getByRole('heading', { level: 1 }).textContent()).toMatch(/^Delivery \d+$/);

  // The attempt timeline: two failed attempts with their status and the receiver's body, as text.
  const attempts = page.locator('.timeline .attempt');
  await expect.poll(() => attempts.count()).toBe(2);
  const first = (await attempts.first().textContent())!.replace(/\s+/g, ' ');
  expect(first).toMatch(/Attempt 1 · \d{4}-\d\d-\d\dT[\d:.]+Z · HTTP 500 · \d+ ms/); // when, status, duration
  expect(await page.locator('pre.snippet').first().textContent()).toBe(HOSTILE);
  expect(await page.locator('main script, main img, main style').count()).toBe(0);
  expect(await page.locator('body').isVisible()).toBe(true);
  await screenshot(page, 'console-delivery.png');

  data.fix();
  const detailUrl = page.url(); // the replay's answer is a page of its own
  const before = receiver.requests.length;
  await page.getByRole('button', { name: 'Replay this delivery' }).click();
  await expect.poll(() => page.getByRole('status').innerText()).toContain('moved back to pending');
  await until(() => arrived(receiver, webhookId, before), { what: `${webhookId} redelivered` });
  // The timeline ends with the attempt that delivered: its time, status and duration (a success has no row in
  // delivery_attempts; its duration is the delivery's own).
  const delivered = page.locator('.timeline .attempt.delivered');
  await until(
    async () => {
      await page.goto(detailUrl);
      return (await delivered.count()) === 1;
    },
    { what: 'the delivered entry on the timeline' },
  );
  expect((await delivered.textContent())!.replace(/\s+/g, ' ')).toMatch(
    /Delivered · \d{4}-\d\d-\d\dT[\d:.]+Z · HTTP 2\d\d · \d+ ms/,
  );
  expect(incidents).toEqual([]); // no dialog, no script error, no CSP violation
});

test('rotating a secret shows it once; the endpoint page never shows it again', async ({
  db,
  receiver,
  startConsole,
  openPage,
}) => {
  const { id } = await addEndpoint(db, receiver.url);
  const c = await startConsole();
  const { page, incidents } = await openPage();
  await signIn(page, c, FULL_TOKEN, '/endpoints');
  await page.getByRole('link', { name: receiver.url }).click();
  await page.waitForURL((u) => u.pathname === `/endpoints/${id}`);
  await page.getByLabel('Old secret keeps signing for (hours)').fill('0');
  await page.getByRole('button', { name: 'Rotate secret' }).click();
  const secret = await page.getByLabel('New signing secret').inputValue();
  expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
  const stored = await db.pool.oneFirst(sql.type(z.object({ secret: z.string() }))`
    SELECT secret FROM webhooks.endpoints WHERE id = ${id}`);
  expect(stored).toBe(secret);
  await page.getByRole('link', { name: 'Back to the endpoint' }).click();
  const html = await page.content();
  expect(html).not.toContain(secret.slice(6, 30));
  expect(html).toContain(`whsec_…${secret.slice(-4)}`);
  expect(incidents).toEqual([]);
});

test('bulk replay by filter: the dry-run count is shown first, then exactly that many arrive', async ({
  db,
  receiver,
  startRelay,
  startConsole,
  openPage,
}) => {
  const data = await seed(db, receiver, startRelay);
  const c = await startConsole();
  const { page, incidents } = await openPage();
  await signIn(page, c, FULL_TOKEN, `/deliveries?status=dead&endpoint=${data.failing.id}`);
  await page.getByRole('link', { name: /Replay the dead deliveries matching/ }).click();
  await expect.poll(() => page.getByRole('status').innerText()).toContain('3 dead deliveries match');
  expect(await countWhere(db, 'dead')).toBe(3); // a dry run moves nothing
  data.fix();
  const before = receiver.requests.length;
  await page.getByRole('button', { name: 'Replay 3 deliveries' }).click();
  await expect.poll(() => page.getByRole('status').innerText()).toContain('3 dead deliveries moved back to pending');
  await until(() => data.invoices.every((o) => arrived(receiver, `msg_${o}`, before)), { what: 'all 3 redelivered' });
  expect(incidents).toEqual([]);
});

test('the endpoint page: health, breaker, tenant; disable with a reason, enable, replay its dead deliveries and see them arrive', async ({
  db,
  receiver,
  startRelay,
  startConsole,
  openPage,
}) => {
  const data = await seed(db, receiver, startRelay);
  const c = await startConsole();
  const { page, incidents } = await openPage();
  await signIn(page, c, FULL_TOKEN, '/endpoints');
  await page.getByRole('link', { name: `${receiver.url}/billing` }).click();
  await page.waitForURL((u) => u.pathname === `/endpoints/${data.failing.id}`);
  const facts = async () => (await page.locator('dl.facts').innerText()).replace(/\s+/g, ' ');
  expect(await facts()).toMatch(/Tenant - State failing Breaker (closed|open until|half-open)/);
  expect(await facts()).toMatch(/success 0\.0%/);
  expect(await facts()).toContain('0 pending, 0 delivering, 3 dead');

  await page.getByLabel('Reason').fill('receiver migrating');
  await page.getByRole('button', { name: 'Disable' }).click();
  await expect.poll(() => page.getByRole('status').innerText()).toContain('Endpoint disabled: receiver migrating');
  await page.getByRole('link', { name: 'Back to the endpoint' }).click();
  expect(await facts()).toMatch(/State disabled receiver migrating/);
  await page.getByRole('button', { name: 'Enable' }).click();
  await expect.poll(() => page.getByRole('status').innerText()).toContain('Endpoint enabled');
  await page.getByRole('link', { name: 'Back to the endpoint' }).click();

  data.fix();
  const before = receiver.requests.length;
  await page.getByRole('button', { name: 'Replay 3 dead deliveries' }).click();
  await expect.poll(() => page.getByRole('status').innerText()).toContain('3 dead deliveries moved back to pending');
  await until(() => data.invoices.every((o) => arrived(receiver, `msg_${o}`, before)), { what: 'all 3 redelivered' });
  expect(incidents).toEqual([]);
});

test('a read-only token sees no actions and its POSTs get 403; a cross-site form cannot act with the session', async ({
  db,
  receiver,
  startConsole,
  openPage,
}) => {
  const { id } = await addEndpoint(db, receiver.url);
  const c = await startConsole();
  const { page } = await openPage();
  await signIn(page, c, READ_TOKEN, `/endpoints/${id}`);
  expect(await page.getByRole('button', { name: /Disable|Rotate|Replay/ }).count()).toBe(0);
  expect(await page.textContent('main')).toContain('Read-only access');
  // The session's own POST, from the console's origin: refused because the token is read-only.
  for (const action of ['disable', 'enable', 'rotate-secret', 'replay-dead']) {
    const res = await page.request.post(`${c.url}/endpoints/${id}/${action}`, {
      headers: { origin: c.url, accept: 'text/html' },
      form: { reason: 'x' },
      maxRedirects: 0,
    });
    expect(res.status(), action).toBe(403);
    expect(await res.text()).toContain('read-only');
  }

  // An attacker's page on another origin posts a form to the console: the browser carries no SameSite=Strict
  // cookie cross-site, and Sec-Fetch-Site refuses it even same-site (another port of the same host).
  const attacker = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(`<!doctype html><title>x</title><form method="post" action="${c.url}/endpoints/${id}/disable">
      <button type="submit">win a prize</button></form>`);
  });
  await new Promise<void>((resolve) => attacker.listen(0, '127.0.0.1', resolve));
  try {
    await page.context().clearCookies();
    await signIn(page, c, FULL_TOKEN, `/endpoints/${id}`);
    await page.goto(`http://127.0.0.1:${(attacker.address() as AddressInfo).port}/`);
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.url().includes('/disable')),
      page.getByRole('button', { name: 'win a prize' }).click(),
    ]);
    expect(response.status()).toBe(403);
  } finally {
    attacker.close();
  }
  const enabled = await db.pool.oneFirst(sql.type(z.object({ enabled: z.boolean() }))`
    SELECT enabled FROM webhooks.endpoints WHERE id = ${id}`);
  expect(enabled).toBe(true);
});

test('every screen passes an axe-core scan with no serious or critical findings', async ({
  db,
  receiver,
  startRelay,
  startConsole,
  openPage,
}) => {
  let axeSource: string;
  try {
    axeSource = await readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
  } catch {
    throw new Error('axe-core is not installed: npm install --save-dev axe-core (the accessibility scan needs it)');
  }
  const data = await seed(db, receiver, startRelay);
  const c = await startConsole();
  const { page } = await openPage();
  const delivery = await db.pool.oneFirst(sql.type(z.object({ id: z.string() }))`
    SELECT id FROM webhooks.deliveries WHERE status = 'dead' ORDER BY id LIMIT 1`);
  const scan = async (what: string) => {
    // Evaluated through the DevTools protocol, not a <script>: the CSP stays as strict as in production.
    await page.evaluate(axeSource);
    const result = await page.evaluate(async () => {
      const axe = (
        globalThis as unknown as {
          axe: { run(): Promise<{ violations: { id: string; impact: string; nodes: unknown[] }[] }> };
        }
      ).axe;
      return (await axe.run()).violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length }));
    });
    expect(
      result.filter((v) => v.impact === 'serious' || v.impact === 'critical'),
      what,
    ).toEqual([]);
  };
  await page.goto(`${c.url}/login`);
  await scan('sign-in');
  await signIn(page, c);
  for (const path of [
    '/',
    '/endpoints',
    `/endpoints/${data.failing.id}`,
    `/deliveries?status=dead`,
    `/deliveries/${delivery}`,
    `/replay?endpoint=${data.failing.id}`,
  ]) {
    await page.goto(`${c.url}${path}`);
    await scan(path);
  }
  await page.goto(`${c.url}/endpoints/${data.healthy.id}`);
  await page.getByRole('button', { name: 'Rotate secret' }).click();
  await scan('rotated secret');
});
