import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { sql } from 'slonik';
import { Webhook } from 'standardwebhooks';
import { expect } from 'vitest';
import { z } from 'zod';
import { test } from './fixtures.ts';
import { FULL_TOKEN, READ_TOKEN } from './support/console.ts';
import { addEndpoint, countWhere, insertEvents, type TestDb } from './support/postgres.ts';
import { relayEnv } from './support/relay.ts';
import { until } from './support/until.ts';

/** The routes DESIGN.md lists, as the OpenAPI document must name them. */
const ROUTES = [
  ['get', '/api/v1/status'],
  ['get', '/api/v1/endpoints'],
  ['get', '/api/v1/endpoints/{id}'],
  ['post', '/api/v1/endpoints/{id}/disable'],
  ['post', '/api/v1/endpoints/{id}/enable'],
  ['post', '/api/v1/endpoints/{id}/rotate-secret'],
  ['get', '/api/v1/deliveries'],
  ['get', '/api/v1/deliveries/{id}'],
  ['post', '/api/v1/replay'],
] as const;

type OpenApi = {
  openapi: string;
  info: { title: string; version: string };
  paths: Record<
    string,
    Record<string, { responses: Record<string, { content?: Record<string, { schema: object }> }> }>
  >;
};

/** Checks a response body against the schema the OpenAPI document gives for it. */
function conforms(doc: OpenApi, method: string, path: string, status: number, body: unknown) {
  const schema = doc.paths[path]?.[method]?.responses[String(status)]?.content?.['application/json']?.schema;
  expect(schema, `${method} ${path} ${status} documented`).toBeDefined();
  const ajv = new Ajv2020({ strict: false });
  const validate = ajv.compile(schema!);
  expect(validate(body), JSON.stringify(validate.errors)).toBe(true);
}

/** Deliveries that end dead: a receiver answering 500 with a hostile body, one retry. */
async function deadDeliveries(
  db: TestDb,
  receiverUrl: string,
  count: number,
  startRelay: (env: Record<string, string>) => Promise<unknown>,
  tenant?: string,
) {
  const endpoint = await addEndpoint(db, receiverUrl, { eventTypes: ['invoice.paid'], tenant });
  await startRelay({ RETRY_SCHEDULE: '100ms' });
  const outboxIds = await insertEvents(
    db,
    Array.from({ length: count }, (_, i) => ({ type: 'invoice.paid', payload: `{"n":${i}}`, tenant })),
  );
  await until(async () => (await countWhere(db, 'dead')) === count, { what: `${count} deliveries dead` });
  return { endpoint, outboxIds };
}

test('every request needs a token: none or a wrong one is 401, a read-only token reads and gets 403 on every POST', async ({
  db,
  receiver,
  startConsole,
}) => {
  const c = await startConsole();
  const { id } = await addEndpoint(db, receiver.url);

  const none = await c.api('GET', '/api/v1/status', { token: null });
  expect(none.status).toBe(401);
  expect(none.body).toEqual({ error: { code: 'unauthorized', message: expect.stringContaining('Bearer') as unknown } });
  expect(none.headers.get('www-authenticate')).toBe('Bearer');
  expect((await c.api('GET', '/api/v1/openapi.json', { token: null })).status).toBe(401);
  expect((await c.api('GET', '/api/v1/endpoints', { token: 'not-a-token-0123456789' })).status).toBe(401);

  expect((await c.api('GET', '/api/v1/endpoints', { token: READ_TOKEN })).status).toBe(200);
  for (const [path, body] of [
    [`/api/v1/endpoints/${id}/disable`, { reason: 'x' }],
    [`/api/v1/endpoints/${id}/enable`, undefined],
    [`/api/v1/endpoints/${id}/rotate-secret`, {}],
    ['/api/v1/replay', { all: true, dryRun: true }],
  ] as const) {
    const res = await c.api('POST', path, { token: READ_TOKEN, body });
    expect(res.status, path).toBe(403);
    expect(res.body).toEqual({
      error: { code: 'forbidden', message: expect.stringContaining('read-only') as unknown },
    });
  }
  const row = await db.pool.one(sql.type(z.object({ enabled: z.boolean(), secret: z.string() }))`
    SELECT enabled, secret FROM webhooks.endpoints WHERE id = ${id}`);
  expect(row.enabled).toBe(true); // nothing changed

  // Failed sign-ins are limited per address: after 3 wrong tokens even the right one waits.
  expect((await c.api('GET', '/api/v1/status', { token: 'wrong-token-0123456789-b' })).status).toBe(401);
  expect((await c.api('GET', '/api/v1/status', { token: 'wrong-token-0123456789-c' })).status).toBe(401);
  const limited = await c.api('GET', '/api/v1/status', { token: FULL_TOKEN });
  expect(limited.status).toBe(429);
  expect(limited.body).toMatchObject({ error: { code: 'too_many_requests' } });
  expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
});

test('the sign-in form: same-origin only, failed attempts limited per address, then an HttpOnly SameSite=Strict session', async ({
  db,
  receiver,
  startConsole,
}) => {
  const { id } = await addEndpoint(db, receiver.url);
  const c = await startConsole();
  const post = (path: string, form: Record<string, string>, headers: Record<string, string> = {}) =>
    fetch(`${c.url}${path}`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html', ...headers },
      body: new URLSearchParams(form).toString(),
    });
  const sameOrigin = { origin: c.url };

  expect((await post('/login', { token: FULL_TOKEN })).status).toBe(403); // no Origin: not from our page
  expect((await post('/login', { token: FULL_TOKEN }, { origin: 'https://evil.example' })).status).toBe(403);
  for (const wrong of ['wrong-0123456789abcdef-1', 'wrong-0123456789abcdef-2', 'wrong-0123456789abcdef-3']) {
    const refused = await post('/login', { token: wrong }, sameOrigin);
    expect(refused.status).toBe(401);
    expect(refused.headers.get('set-cookie')).toBeNull();
  }
  const limited = await post('/login', { token: FULL_TOKEN }, sameOrigin); // the right token, too late
  expect(limited.status).toBe(429);
  expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
  expect(limited.headers.get('set-cookie')).toBeNull();

  const fresh = await startConsole(); // its own limiter
  const signIn = async (token: string) => {
    const res = await fetch(`${fresh.url}/login`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: fresh.url },
      body: new URLSearchParams({ token, next: `/endpoints/${id}` }).toString(),
    });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe(`/endpoints/${id}`);
    return res.headers.get('set-cookie')!;
  };
  const setCookie = await signIn(READ_TOKEN);
  expect(setCookie).toMatch(
    /^outbox_relay_session=[A-Za-z0-9_-]{43}; Max-Age=43200; Path=\/; HttpOnly; SameSite=Strict$/,
  );
  const cookie = setCookie.split(';')[0]!;
  const asRead = (path: string, headers: Record<string, string> = { origin: fresh.url }) =>
    fetch(`${fresh.url}${path}`, {
      method: 'POST',
      redirect: 'manual',
      headers: { cookie, accept: 'text/html', 'content-type': 'application/x-www-form-urlencoded', ...headers },
      body: 'reason=x',
    });
  expect((await fetch(`${fresh.url}/`, { headers: { cookie } })).status).toBe(200);
  // Every action of the console refuses a read-only session.
  for (const path of [
    `/endpoints/${id}/disable`,
    `/endpoints/${id}/enable`,
    `/endpoints/${id}/rotate-secret`,
    `/endpoints/${id}/replay-dead`,
    '/deliveries/1/replay',
    '/replay',
  ]) {
    const res = await asRead(path);
    expect(res.status, path).toBe(403);
    expect(await res.text(), path).toContain('read-only');
  }
  // A full session's POST without Origin or Sec-Fetch-Site is refused as cross-site (CSRF), before anything runs.
  const full = (await signIn(FULL_TOKEN)).split(';')[0]!;
  const forged = await fetch(`${fresh.url}/endpoints/${id}/disable`, {
    method: 'POST',
    headers: { cookie: full, 'content-type': 'application/x-www-form-urlencoded' },
    body: 'reason=forged',
  });
  expect(forged.status).toBe(403);
  const enabled = await db.pool.oneFirst(sql.type(z.object({ enabled: z.boolean() }))`
    SELECT enabled FROM webhooks.endpoints WHERE id = ${id}`);
  expect(enabled).toBe(true);

  const out = await asRead('/logout');
  expect(out.status).toBe(303);
  expect(out.headers.get('set-cookie')).toMatch(/^outbox_relay_session=; Max-Age=0/);
  const after = await fetch(`${fresh.url}/`, { headers: { cookie }, redirect: 'manual' });
  expect(after.status).toBe(303);
  expect(after.headers.get('location')).toBe('/login?next=%2F');
});

test('the OpenAPI document is OpenAPI 3.1, covers every route, and its schemas describe what the routes return', async ({
  db,
  receiver,
  startConsole,
  startRelay,
}) => {
  receiver.reply(() => ({ status: 500 }));
  const c = await startConsole();
  const { status, body: doc } = await c.api<OpenApi>('GET', '/api/v1/openapi.json');
  expect(status).toBe(200);
  expect(doc.openapi).toBe('3.1.0');
  // A valid OpenAPI document, checked against the specification's own schema (3.1), not by hand.
  const verdict = await new Validator().validate(structuredClone(doc));
  expect(verdict.errors, 'OpenAPI validation errors').toBeUndefined();
  expect(verdict.valid).toBe(true);
  expect(doc.info).toMatchObject({ title: expect.any(String) as unknown, version: expect.any(String) as unknown });
  const documented = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m} ${path}`));
  expect(documented.sort()).toEqual(ROUTES.map(([m, p]) => `${m} ${p}`).sort());
  // Every schema in the document is a valid JSON Schema (2020-12, OpenAPI 3.1's dialect) that compiles.
  const ajv = new Ajv2020({ strict: false });
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      expect(op.responses['200'], `${method} ${path}`).toBeDefined();
      expect(op.responses['401'], `${method} ${path}`).toBeDefined();
      for (const response of Object.values(op.responses)) {
        for (const media of Object.values(response.content ?? {}))
          expect(() => ajv.compile(media.schema)).not.toThrow();
      }
    }
  }
  // Real answers conform to it.
  const { endpoint } = await deadDeliveries(db, receiver.url, 1, startRelay);
  const list = await c.api('GET', '/api/v1/deliveries');
  conforms(doc, 'get', '/api/v1/deliveries', 200, list.body);
  const deliveryId = (list.body as { deliveries: { id: string }[] }).deliveries[0]!.id;
  conforms(doc, 'get', '/api/v1/deliveries/{id}', 200, (await c.api('GET', `/api/v1/deliveries/${deliveryId}`)).body);
  const statusBody = (await c.api('GET', '/api/v1/status')).body;
  conforms(doc, 'get', '/api/v1/status', 200, statusBody);
  conforms(doc, 'get', '/api/v1/endpoints', 200, (await c.api('GET', '/api/v1/endpoints')).body);
  const one = (await c.api('GET', `/api/v1/endpoints/${endpoint.id}`)).body;
  conforms(doc, 'get', '/api/v1/endpoints/{id}', 200, one);
  // Nothing `status --json` prints is dropped on the way out: the live relay, each endpoint's shared breaker
  // and limits.
  const health = {
    id: endpoint.id,
    breaker: { state: 'closed', openUntil: null, probeOwner: null },
    limits: { maxInFlight: null, ratePerSecond: null },
  };
  expect(statusBody).toMatchObject({ relays: [{ workerId: expect.any(String) as unknown }], endpoints: [health] });
  expect(one).toMatchObject({ endpoint: health });
  conforms(
    doc,
    'post',
    '/api/v1/replay',
    200,
    (await c.api('POST', '/api/v1/replay', { body: { all: true, dryRun: true } })).body,
  );
  conforms(doc, 'get', '/api/v1/deliveries/{id}', 404, (await c.api('GET', '/api/v1/deliveries/999999')).body);
  conforms(doc, 'get', '/api/v1/deliveries', 400, (await c.api('GET', '/api/v1/deliveries?status=lost')).body);
});

test('endpoints: listed and shown with secrets masked; disable, enable, and a rotated secret returned once that signs', async ({
  db,
  receiver,
  startConsole,
  startRelay,
}) => {
  const c = await startConsole();
  const { id, secret } = await addEndpoint(db, receiver.url);
  const other = await addEndpoint(db, `${receiver.url}/t`, { eventTypes: ['never'] });
  await db.pool.query(sql.unsafe`UPDATE webhooks.endpoints SET tenant = NULL`);

  const list = await c.api<{ endpoints: { id: string; secret: string }[] }>('GET', '/api/v1/endpoints');
  expect(list.status).toBe(200);
  expect(list.body.endpoints.map((e) => e.id).sort()).toEqual([id, other.id].sort());
  expect(JSON.stringify(list.body)).not.toContain(secret.slice(6, 20));
  expect(list.body.endpoints.find((e) => e.id === id)!.secret).toBe(`whsec_…${secret.slice(-4)}`);

  const shown = await c.api<{ endpoint: { id: string; dead: number } }>('GET', `/api/v1/endpoints/${id}`);
  expect(shown.body.endpoint).toMatchObject({ id, dead: 0, enabled: true });
  expect((await c.api('GET', '/api/v1/endpoints/00000000-0000-4000-8000-000000000000')).status).toBe(404);
  const malformed = await c.api('GET', '/api/v1/endpoints/nope');
  expect(malformed.status).toBe(400);
  expect(malformed.body).toMatchObject({
    error: { code: 'invalid_request', message: expect.stringContaining('uuid') as unknown },
  });

  const disabled = await c.api('POST', `/api/v1/endpoints/${id}/disable`, { body: { reason: 'receiver migrating' } });
  expect(disabled.body).toMatchObject({ endpoint: { enabled: false, disabledReason: 'receiver migrating' } });
  const enabled = await c.api('POST', `/api/v1/endpoints/${id}/enable`);
  expect(enabled.body).toMatchObject({ endpoint: { enabled: true, disabledReason: null }, pending: 0 });
  const typo = await c.api('POST', `/api/v1/endpoints/${id}/disable`, { body: { reasn: 'x' } });
  expect(typo.status).toBe(400);

  const rotated = await c.api<{ secret: string; endpoint: { secret: string; previousSecret: string } }>(
    'POST',
    `/api/v1/endpoints/${id}/rotate-secret`,
    { body: { keepPreviousSeconds: 0 } },
  );
  expect(rotated.status).toBe(200);
  expect(rotated.headers.get('cache-control')).toBe('no-store');
  expect(rotated.body.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
  expect(rotated.body.endpoint.secret).toBe(`whsec_…${rotated.body.secret.slice(-4)}`);
  expect(rotated.body.endpoint.previousSecret).toBeNull();
  const after = JSON.stringify((await c.api('GET', `/api/v1/endpoints/${id}`)).body);
  expect(after).not.toContain(rotated.body.secret.slice(6, 20)); // never again

  await startRelay();
  await insertEvents(db, [{ type: 'invoice.paid', payload: '{"id":42}' }]);
  await until(() => receiver.requests.length === 1, { what: 'delivery' });
  const r = receiver.requests[0]!;
  const verified = new Webhook(rotated.body.secret).verify(r.body, r.headers as Record<string, string>);
  expect(verified).toMatchObject({ data: { id: 42 } });
});

test('deliveries: filters, msg_ search, cursor pages, and one delivery with its attempts and response snippets', async ({
  db,
  receiver,
  startConsole,
  startRelay,
}) => {
  receiver.reply(() => ({ status: 500, body: '<script>alert(1)</script> upstream down' }));
  const { endpoint, outboxIds } = await deadDeliveries(db, receiver.url, 3, startRelay);
  const c = await startConsole();
  type Page = {
    deliveries: { id: string; webhookId: string; status: string }[];
    truncated: boolean;
    nextCursor: string | null;
  };

  const all = await c.api<Page>(
    'GET',
    `/api/v1/deliveries?status=dead&endpoint=${endpoint.id}&event_type=invoice.paid&since=1h`,
  );
  expect(all.status).toBe(200);
  expect(all.body.deliveries).toHaveLength(3);
  // Newest row first: rows are written when their first outcome is (sent from the stream), in any event order.
  expect(all.body.deliveries.map((d) => d.webhookId).sort()).toEqual(outboxIds.map((o) => `msg_${o}`).sort());
  const rowIds = all.body.deliveries.map((d) => Number(d.id));
  expect(rowIds).toEqual([...rowIds].sort((a, b) => b - a));
  expect((await c.api<Page>('GET', '/api/v1/deliveries?status=delivered')).body.deliveries).toHaveLength(0);
  expect(
    (await c.api<Page>('GET', `/api/v1/deliveries?since=${new Date(Date.now() + 60_000).toISOString()}`)).body
      .deliveries,
  ).toHaveLength(0);

  const first = await c.api<Page>('GET', '/api/v1/deliveries?limit=2');
  expect(first.body).toMatchObject({ truncated: true, nextCursor: first.body.deliveries[1]!.id });
  const second = await c.api<Page>('GET', `/api/v1/deliveries?limit=2&cursor=${first.body.nextCursor}`);
  expect(second.body).toMatchObject({ truncated: false, nextCursor: null });
  expect([...first.body.deliveries, ...second.body.deliveries].map((d) => d.id)).toEqual(
    all.body.deliveries.map((d) => d.id),
  );

  const found = await c.api<Page>('GET', `/api/v1/deliveries?webhook_id=msg_${outboxIds[1]}`);
  expect(found.body.deliveries.map((d) => d.webhookId)).toEqual([`msg_${outboxIds[1]}`]);
  const bad = await c.api('GET', '/api/v1/deliveries?webhook_id=42&limit=5000&colour=red');
  expect(bad.status).toBe(400);
  expect(bad.body).toMatchObject({ error: { code: 'invalid_request' } });

  const detail = await c.api<{
    delivery: { status: string };
    attempts: { attempt: number; statusCode: number; responseSnippet: string; durationMs: number }[];
  }>('GET', `/api/v1/deliveries/${found.body.deliveries[0]!.id}`);
  expect(detail.body.delivery.status).toBe('dead');
  expect(detail.body.attempts.map((a) => a.attempt)).toEqual([1, 2]);
  expect(detail.body.attempts[0]).toMatchObject({
    statusCode: 500,
    responseSnippet: '<script>alert(1)</script> upstream down',
  });
  expect(detail.body.attempts[0]!.durationMs).toBeGreaterThanOrEqual(0);
});

test('replay redelivers: the dry-run count is what is then moved, and the fixed receiver gets every one', async ({
  db,
  receiver,
  startConsole,
  startRelay,
}) => {
  let fixed = false;
  receiver.reply(() => ({ status: fixed ? 204 : 500 }));
  const { endpoint, outboxIds } = await deadDeliveries(db, receiver.url, 4, startRelay);
  const c = await startConsole();

  const refused = await c.api('POST', '/api/v1/replay', { body: {} });
  expect(refused.status).toBe(400);
  expect(refused.body).toMatchObject({
    error: { code: 'invalid_request', message: expect.stringContaining('"all"') as unknown },
  });
  expect((await c.api('POST', '/api/v1/replay', { body: { endpoint_id: endpoint.id } })).status).toBe(400); // typo: refused, not ignored

  const filter = { endpoint: endpoint.id, event_type: 'invoice.paid', since: '1h' };
  const dry = await c.api<{ matched: number; moved: number }>('POST', '/api/v1/replay', {
    body: { ...filter, dryRun: true },
  });
  expect(dry.body).toEqual({ dryRun: true, matched: 4, moved: 0, parked: 0, batches: 0, ofDeletedEndpoints: 0 });
  expect(await countWhere(db, 'dead')).toBe(4);

  fixed = true;
  const before = receiver.requests.length;
  const done = await c.api<{ moved: number }>('POST', '/api/v1/replay', { body: filter });
  expect(done.body).toMatchObject({ dryRun: false, moved: dry.body.matched, matched: dry.body.matched });
  await until(async () => (await countWhere(db, 'delivered')) === 4, { what: 'replayed deliveries delivered' });
  const redelivered = receiver.requests.slice(before).map((r) => r.headers['webhook-id']);
  expect(redelivered.sort()).toEqual(outboxIds.map((o) => `msg_${o}`).sort());

  // By ids: a delivered one is not dead, so nothing moves.
  const ids = await c.api<{ deliveries: { id: string }[] }>('GET', '/api/v1/deliveries?limit=1');
  expect(
    (await c.api('POST', '/api/v1/replay', { body: { ids: [ids.body.deliveries[0]!.id], dryRun: true } })).body,
  ).toMatchObject({ matched: 0 });
});

test('the deliveries screen keeps every filter in the URL: the form, the next page and the bulk replay carry them', async ({
  db,
  receiver,
  startConsole,
  startRelay,
}) => {
  receiver.reply(() => ({ status: 500 }));
  const { endpoint, outboxIds } = await deadDeliveries(db, receiver.url, 3, startRelay, 'acme');
  const c = await startConsole();
  const page = async (path: string) => {
    const res = await fetch(`${c.url}${path}`, { headers: { authorization: `Bearer ${FULL_TOKEN}` } });
    expect(res.status, path).toBe(200);
    return (await res.text()).replaceAll('&amp;', '&');
  };
  const value = (body: string, name: string) => new RegExp(`name="${name}" [^>]*value="([^"]*)"`).exec(body)?.[1];
  const link = (body: string, label: RegExp) => {
    const href = [...body.matchAll(/<a [^>]*href="([^"]+)"[^>]*>([^<]*)</g)].find(([, , text]) => label.test(text!));
    return href === undefined ? undefined : new URL(href[1]!, c.url);
  };
  const params = (u: URL | undefined) => Object.fromEntries(u?.searchParams ?? []);

  const filters = {
    status: 'dead',
    endpoint: endpoint.id,
    tenant: 'acme',
    event_type: 'invoice.paid',
    since: '1h',
    until: '2099-01-01T00:00Z',
  };
  const first = await page(`/deliveries?${new URLSearchParams({ ...filters, limit: '2' }).toString()}`);
  expect(first).toContain('<option selected>dead</option>');
  for (const name of ['endpoint', 'tenant', 'event_type', 'since', 'until'] as const) {
    expect(value(first, name), name).toBe(filters[name]);
  }
  expect(first.match(/<tr>\s*<td><a href="\/deliveries\/\d+">/g)).toHaveLength(2);
  const older = link(first, /Older deliveries/);
  expect(params(older)).toEqual({ ...filters, limit: '2', cursor: expect.stringMatching(/^\d+$/) as unknown });
  const second = await page(`${older!.pathname}${older!.search}`);
  expect(second.match(/<tr>\s*<td><a href="\/deliveries\/\d+">/g)).toHaveLength(1);
  // The bulk replay takes the same filters (it replays dead deliveries only, so status is not among them).
  const replay = link(first, /Replay the dead deliveries matching/);
  const { status: _status, ...replayFilters } = filters;
  expect(params(replay)).toEqual(replayFilters);
  expect(await page(`${replay!.pathname}${replay!.search}`)).toMatch(/<strong>3<\/strong> dead deliveries\s+match/);

  // A tenant that matches nothing shows nothing; a webhook-id in the URL stays in the search box.
  expect(await page('/deliveries?tenant=other')).toContain('No deliveries match.');
  const one = await page(`/deliveries?webhook_id=msg_${outboxIds[0]}`);
  expect(value(one, 'q')).toBe(`msg_${outboxIds[0]}`);
  expect(one.match(/<tr>\s*<td><a href="\/deliveries\/\d+">/g)).toHaveLength(1);
});

test('the overview counts every endpoint, not only the page it lists; an endpoint page shows its shared breaker', async ({
  db,
  receiver,
  startConsole,
}) => {
  // 21 disabled endpoints come first on the overview's list of 20, pushing the one with an open breaker off it.
  for (let i = 0; i < 21; i++) await addEndpoint(db, `${receiver.url}/off/${i}`, { enabled: false });
  const hot = await addEndpoint(db, `${receiver.url}/hot`);
  await db.pool.query(sql.unsafe`
    UPDATE webhooks.endpoints SET failing_since = now() - interval '2 minutes', consecutive_failures = 9
    WHERE id = ${hot.id}`);
  await db.pool.query(sql.unsafe`
    INSERT INTO webhooks.endpoint_breakers (endpoint_id, state, open_until, opened_at)
    VALUES (${hot.id}, 'open', now() + interval '5 minutes', now())`);
  const c = await startConsole();
  const page = async (path: string) => {
    const res = await fetch(`${c.url}${path}`, { headers: { authorization: `Bearer ${READ_TOKEN}` } });
    expect(res.status, path).toBe(200);
    return res.text();
  };
  const tile = (overview: string, label: string) =>
    new RegExp(`${label}</span\\s*><span class="value">(\\d+)<`).exec(overview)?.[1];

  const overview = await page('/');
  expect(overview).not.toContain(`/endpoints/${hot.id}`); // not on the list of 20 ...
  expect(tile(overview, 'Breakers open')).toBe('1'); // ... but counted
  expect(tile(overview, 'Endpoints disabled')).toBe('21');
  expect(overview).toMatch(/of 22 · 1 failing/);

  const status = await c.api('GET', '/api/v1/status');
  expect(status.body).toMatchObject({ endpointTotals: { total: 22, disabled: 21, failing: 1, breakersOpen: 1 } });

  const detail = await page(`/endpoints/${hot.id}`);
  expect(detail).toMatch(/<dt>Breaker<\/dt>\s*<dd>open until \d{4}-/);
  expect(detail).toMatch(/<dt>Tenant<\/dt>/);
});

test('`outbox-relay console` refuses to start without a token, serves with one, and exits 0 on SIGTERM', async ({
  db,
  spawnRelay,
}) => {
  const open = spawnRelay(relayEnv(db, { CONSOLE_PORT: '0' }), ['console']);
  expect(await open.exited).toMatchObject({ code: 1 });
  expect(open.stderr()).toContain('the console needs at least one token: set CONSOLE_TOKENS');

  const served = spawnRelay(relayEnv(db, { CONSOLE_PORT: '0', CONSOLE_READ_TOKENS: READ_TOKEN, LOG_LEVEL: 'info' }), [
    'console',
  ]);
  const url = await until(() => /"url":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(served.stdout())?.[1], {
    what: 'console listening',
  });
  expect(served.stdout()).not.toContain(READ_TOKEN);
  const res = await fetch(`${url}/api/v1/status`, { headers: { authorization: `Bearer ${READ_TOKEN}` } });
  expect(res.status).toBe(200);
  expect(await res.json()).toMatchObject({ ok: true, slot: { name: db.slotName } });
  served.kill('SIGTERM');
  expect(await served.exited).toMatchObject({ code: 0 });
});
