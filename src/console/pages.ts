// The operator console: server-rendered HTML over the operations module, no JavaScript. Every value from the
// database goes through `html` (escaped) and `printable` (control and bidi characters shown as escapes).
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from '../log.ts';
import {
  bytes,
  duration,
  endpointState,
  iso,
  limitsText,
  percent,
  printable,
  successRate,
  when,
} from '../ops/format.ts';
import { LIMITS, type Operations } from '../ops/operations.ts';
import {
  STATUSES,
  type AttemptRow,
  type DeliveryRow,
  type EndpointHealthRow,
  type OrderedRow,
} from '../ops/queries.ts';
import type { LoginLimiter, Role, Sessions, TokenCheck } from './auth.ts';
import { sameOrigin } from './auth.ts';
import { html, query, type Html } from './html.ts';
import { DeliveryQuery, EndpointId, DeliveryId, toFilter } from './schemas.ts';

type PageDeps = {
  sessions: Sessions;
  limiter: LoginLimiter;
  checkToken: TokenCheck;
  secureCookie: boolean;
  ttlMs: number;
  log: Logger;
};

const COOKIE = 'outbox_relay_session';
const text = (value: string | null | undefined, fallback = '-') => (value == null ? fallback : printable(value));

function layout(title: string, role: Role | null, body: Html, current = ''): Html {
  const link = (href: string, label: string) =>
    html`<a href="${href}" ${current === href ? html` aria-current="page"` : ''}>${label}</a>`;
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>${title} · outbox-relay console</title>
        <link rel="stylesheet" href="/static/console.css" />
      </head>
      <body>
        <header class="top">
          <span class="brand">outbox-relay</span>
          ${
            role === null
              ? ''
              : html`<nav aria-label="Main">
                    ${link('/', 'Overview')} ${link('/endpoints', 'Endpoints')} ${link('/deliveries', 'Deliveries')}
                  </nav>
                  <form method="post" action="/logout" class="signout">
                    <span class="role">${role === 'read' ? 'read-only' : 'full access'}</span>
                    <button type="submit">Sign out</button>
                  </form>`
          }
        </header>
        <main>
          <h1>${title}</h1>
          ${body}
        </main>
      </body>
    </html>`;
}

export function errorPage(status: number, message: string, role: Role | null): Html {
  return layout(
    `Error ${status}`,
    role,
    html`<p class="alert" role="alert">${message}</p>
      <p><a href="/">Back to the overview</a></p>`,
  );
}

const sendPage = (reply: FastifyReply, page: Html, status = 200) =>
  reply.code(status).type('text/html; charset=utf-8').send(page.value);

/** Drops empty form values: an empty filter field means "any". */
const present = (q: Record<string, unknown>) =>
  Object.fromEntries(
    Object.entries(q)
      .filter(([, v]) => typeof v === 'string' && v.trim() !== '')
      .map(([k, v]) => [k, (v as string).trim()]),
  );

/** A local path to return to after signing in; anything else goes to the overview. */
const localPath = (next: unknown) =>
  typeof next === 'string' && /^\/(?![/\\])[\x21-\x7e]*$/.test(next) && !next.startsWith('/login') ? next : '/';

export function registerPages(app: FastifyInstance, ops: Operations, deps: PageDeps): void {
  const { sessions, limiter, checkToken } = deps;

  const loginPage = (next: string, message?: string) =>
    layout(
      'Sign in',
      null,
      html`${message === undefined ? '' : html`<p class="alert" role="alert">${message}</p>`}
        <form method="post" action="/login" class="card login">
          <input type="hidden" name="next" value="${next}" />
          <label for="token">Access token</label>
          <input id="token" name="token" type="password" autocomplete="current-password" required />
          <p class="hint">One of CONSOLE_TOKENS (full access) or CONSOLE_READ_TOKENS (read-only).</p>
          <button type="submit">Sign in</button>
        </form>`,
    );

  app.get('/login', (req, reply) => sendPage(reply, loginPage(localPath((req.query as { next?: unknown }).next))));

  app.post('/login', (req, reply) => {
    const form = (req.body ?? {}) as Record<string, unknown>;
    const next = localPath(form.next);
    const verdict = sameOrigin({
      secFetchSite: req.headers['sec-fetch-site'],
      origin: req.headers.origin,
      host: req.headers.host,
    });
    if (!verdict.ok) return sendPage(reply, loginPage(next, verdict.reason), 403);
    const waitMs = limiter.retryAfterMs(req.ip);
    if (waitMs > 0) {
      void reply.header('retry-after', String(Math.ceil(waitMs / 1000)));
      return sendPage(
        reply,
        loginPage(next, `Too many failed sign-ins; try again in ${Math.ceil(waitMs / 1000)} s.`),
        429,
      );
    }
    const role = typeof form.token === 'string' ? checkToken(form.token.trim()) : null;
    if (role === null) {
      limiter.failed(req.ip);
      deps.log.warn({ ip: req.ip }, 'console: sign-in refused');
      return sendPage(reply, loginPage(next, 'That token is not valid.'), 401);
    }
    limiter.succeeded(req.ip);
    const id = sessions.create(role);
    const attributes = [`Max-Age=${Math.floor(deps.ttlMs / 1000)}`, 'Path=/', 'HttpOnly', 'SameSite=Strict'];
    if (deps.secureCookie) attributes.push('Secure');
    void reply.header('set-cookie', `${COOKIE}=${id}; ${attributes.join('; ')}`);
    return reply.redirect(next, 303);
  });

  app.post('/logout', (req, reply) => {
    const cookieHeader = req.headers.cookie ?? '';
    const id = /(?:^|;\s*)outbox_relay_session=([^;]+)/.exec(cookieHeader)?.[1];
    sessions.end(id);
    void reply.header('set-cookie', `${COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict`);
    return reply.redirect('/login', 303);
  });

  // ---- overview ------------------------------------------------------------------------------------------

  app.get('/', async (req, reply) => {
    const r = await ops.status(20);
    // Counted over every endpoint: the list below shows only the first 20.
    const { failing, breakersOpen, blockedKeys, ordered } = r.endpointTotals;
    const slot = r.slot;
    const body = html` ${r.problems.map((p) => html`<p class="alert" role="alert">${p}</p>`)}
      ${r.warnings.map((w) => html`<p class="warn">${w}</p>`)}
      <section class="tiles" aria-label="Summary">
        <div class="tile">
          <span class="label">Slot ${r.slotName}</span
          ><span class="value">${!slot.exists ? 'missing' : slot.activePid === null ? 'inactive' : 'streaming'}</span
          ><span class="sub">lag ${bytes(slot.lagBytes)} · wal ${slot.walStatus ?? '-'}</span>
        </div>
        <div class="tile">
          <span class="label">Backlog due now</span><span class="value">${r.backlog.due}</span
          ><span class="sub"
            >oldest waiting ${r.backlog.oldestDueAgeSeconds === null ? '-' : duration(r.backlog.oldestDueAgeSeconds)} ·
            parked ${r.backlog.parked}</span
          >
        </div>
        <div class="tile">
          <span class="label">Dead</span><span class="value">${r.deliveries.dead}</span
          ><span class="sub"><a href="/deliveries?status=dead">see dead deliveries</a></span>
        </div>
        <div class="tile">
          <span class="label">Endpoints disabled</span><span class="value">${r.endpointTotals.disabled}</span
          ><span class="sub">of ${r.endpointTotals.total} · ${failing} failing</span>
        </div>
        <div class="tile">
          <span class="label">Breakers open</span><span class="value">${breakersOpen}</span
          ><span class="sub">shared by every relay</span>
        </div>
        <div class="tile">
          <span class="label">Ordered keys blocked</span><span class="value">${blockedKeys}</span
          ><span class="sub">on ${ordered} ordered endpoint${ordered === 1 ? '' : 's'}</span>
        </div>
      </section>
      ${orderedTable(r.ordered)}
      <h2>Deliveries</h2>
      <table>
        <thead>
          <tr>
            ${STATUSES.map((s) => html`<th scope="col">${s}</th>`)}
          </tr>
        </thead>
        <tbody>
          <tr>
            ${STATUSES.map((s) => html`<td><a href="/deliveries?status=${s}">${r.deliveries[s]}</a></td>`)}
          </tr>
        </tbody>
      </table>
      <h2>Endpoints needing attention first</h2>
      ${endpointTable(r.endpoints)}
      <p class="hint">
        The breaker column is the cluster's shared circuit breaker (open: no relay sends until it half-opens; one probe
        then goes out). "Failing" is the database's view: failed attempts since the last success.
      </p>`;
    return sendPage(reply, layout('Overview', req.role, body, '/'));
  });

  // ---- endpoints -----------------------------------------------------------------------------------------

  app.get('/endpoints', async (req, reply) => {
    const tenant = present(req.query as Record<string, unknown>).tenant;
    const page = await ops.endpointsHealth({ tenant, limit: 100 });
    const body = html` <form method="get" action="/endpoints" class="filters">
        <label for="f-tenant">Tenant</label> <input id="f-tenant" name="tenant" value="${tenant ?? ''}" />
        <button type="submit">Filter</button>
      </form>
      ${endpointTable(page.endpoints)}
      ${page.truncated ? html`<p class="hint">First 100 shown; filter by tenant to narrow.</p>` : ''}`;
    return sendPage(reply, layout('Endpoints', req.role, body, '/endpoints'));
  });

  app.get('/endpoints/:id', async (req, reply) => {
    const id = parseId(EndpointId, (req.params as { id: string }).id);
    const e = id === undefined ? null : await ops.endpoint(id.toLowerCase());
    if (e === null) return sendPage(reply, errorPage(404, 'No such endpoint.', req.role), 404);
    return sendPage(reply, layout(`Endpoint ${e.id}`, req.role, endpointDetail(e, req.role), '/endpoints'));
  });

  const endpointAction = (path: string, act: (id: string, form: Record<string, string>) => Promise<Html | null>) =>
    app.post(`/endpoints/:id/${path}`, async (req, reply) => {
      const id = parseId(EndpointId, (req.params as { id: string }).id);
      const result =
        id === undefined ? null : await act(id.toLowerCase(), present((req.body ?? {}) as Record<string, unknown>));
      if (result === null) return sendPage(reply, errorPage(404, 'No such endpoint.', req.role), 404);
      return sendPage(reply, layout('Done', req.role, result, '/endpoints'));
    });

  endpointAction('disable', async (id, form) => {
    const row = await ops.disableEndpoint(id, form.reason);
    return row === null
      ? null
      : html`<p class="ok" role="status">
            Endpoint disabled: ${text(row.disabledReason)}. Its pending deliveries wait until it is enabled.
          </p>
          ${back(id)}`;
  });
  endpointAction('enable', async (id) => {
    const row = await ops.enableEndpoint(id);
    return row === null
      ? null
      : html`<p class="ok" role="status">Endpoint enabled; ${row.parked} pending deliveries go out now.</p>
          ${back(id)}`;
  });
  endpointAction('rotate-secret', async (id, form) => {
    const keepHours = form.keep_hours === undefined ? undefined : Number(form.keep_hours);
    const rotated = await ops.rotateSecret(id, {
      keepPreviousMs:
        keepHours === undefined || !Number.isFinite(keepHours) ? undefined : Math.round(keepHours * 3_600_000),
    });
    if (rotated === null) return null;
    const previous = rotated.endpoint.previousSecretExpiresAt;
    return html`<p class="ok" role="status">Secret rotated.</p>
      <div class="card secret">
        <label for="new-secret">New signing secret</label>
        <input id="new-secret" class="mono" readonly value="${rotated.secret}" />
        <p>
          <strong>Copy it now: it is shown this once and never again.</strong> ${
            previous === null
              ? 'The old secret no longer signs.'
              : `The old secret also signs until ${iso(previous) ?? '-'}.`
          }
        </p>
      </div>
      ${back(id)}`;
  });
  endpointAction('replay-dead', async (id) => {
    if ((await ops.endpoint(id)) === null) return null;
    const r = await ops.replay({ filter: { endpointId: id }, dryRun: false });
    return html`<p class="ok" role="status">
        ${r.moved} dead deliveries moved back to
        pending${r.parked > 0 ? `; ${r.parked} wait until the endpoint is enabled` : ''}.
      </p>
      ${back(id)}`;
  });

  // ---- deliveries ----------------------------------------------------------------------------------------

  app.get('/deliveries', async (req, reply) => {
    const raw = present(req.query as Record<string, unknown>);
    // The search box takes a webhook-id (msg_42) or a delivery id.
    const search = raw.q;
    delete raw.q;
    if (search !== undefined) {
      if (/^msg_[1-9]\d{0,18}$/.test(search)) raw.webhook_id = search;
      else if (/^[1-9]\d{0,18}$/.test(search)) return reply.redirect(`/deliveries/${search}`, 303);
    }
    const parsed = DeliveryQuery.safeParse(raw);
    const problems = parsed.success ? [] : parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    if (search !== undefined && raw.webhook_id === undefined)
      problems.push(`search: expected a webhook-id such as msg_42, got "${search}"`);
    const q = parsed.success ? parsed.data : {};
    const { limit, cursor, ...filters } = q;
    const page =
      problems.length > 0
        ? { deliveries: [], truncated: false, nextCursor: null }
        : await ops.listDeliveries(toFilter(filters), { limit: limit === undefined ? 50 : Number(limit), cursor });
    const keep = { ...filters, limit } as Record<string, string | undefined>;
    const body = html` <form method="get" action="/deliveries" class="filters" role="search">
        <div>
          <label for="f-q">Webhook id</label>
          <input id="f-q" name="q" placeholder="msg_42" value="${search ?? q.webhook_id ?? ''}" />
        </div>
        <div>
          <label for="f-status">Status</label>
          <select id="f-status" name="status">
            <option value="">any</option>
            ${STATUSES.map((s) => html`<option${q.status === s ? html` selected` : ''}>${s}</option>`)}
          </select>
        </div>
        <div>
          <label for="f-endpoint">Endpoint id</label>
          <input id="f-endpoint" name="endpoint" value="${q.endpoint ?? ''}" />
        </div>
        <div><label for="f-tenant">Tenant</label> <input id="f-tenant" name="tenant" value="${q.tenant ?? ''}" /></div>
        <div>
          <label for="f-type">Event type</label> <input id="f-type" name="event_type" value="${q.event_type ?? ''}" />
        </div>
        <div>
          <label for="f-since">Since</label>
          <input id="f-since" name="since" placeholder="24h or 2026-01-31T10:00Z" value="${q.since ?? ''}" />
        </div>
        <div>
          <label for="f-until">Until</label>
          <input id="f-until" name="until" placeholder="10m" value="${q.until ?? ''}" />
        </div>
        <div><button type="submit">Search</button> <a href="/deliveries">Clear</a></div>
      </form>
      ${problems.map((p) => html`<p class="alert" role="alert">${p}</p>`)} ${deliveryTable(page.deliveries)}
      ${page.nextCursor === null ? '' : html`<p><a href="/deliveries${query({ ...keep, cursor: page.nextCursor })}">Older deliveries</a></p>`}
      ${
        problems.length === 0 && req.role === 'full'
          ? html`<p>
              <a class="button" href="/replay${query({ ...filters, status: undefined })}"
                >Replay the dead deliveries matching these filters…</a
              >
            </p>`
          : ''
      }`;
    return sendPage(reply, layout('Deliveries', req.role, body, '/deliveries'));
  });

  app.get('/deliveries/:id', async (req, reply) => {
    const id = parseId(DeliveryId, (req.params as { id: string }).id);
    const found = id === undefined ? null : await ops.delivery(id);
    if (found === null) return sendPage(reply, errorPage(404, 'No such delivery.', req.role), 404);
    return sendPage(
      reply,
      layout(
        `Delivery ${found.delivery.id}`,
        req.role,
        deliveryDetail(found.delivery, found.attempts, req.role),
        '/deliveries',
      ),
    );
  });

  app.post('/deliveries/:id/replay', async (req, reply) => {
    const id = parseId(DeliveryId, (req.params as { id: string }).id);
    if (id === undefined) return sendPage(reply, errorPage(404, 'No such delivery.', req.role), 404);
    const r = await ops.replay({ filter: { ids: [id] }, dryRun: false });
    const body = html`<p class="ok" role="status">
        ${
          r.moved === 1
            ? 'Delivery moved back to pending: it goes out now.'
            : 'Nothing replayed: the delivery is not dead (or its endpoint is gone).'
        }${r.parked > 0 ? ' Its endpoint is disabled, so it waits until the endpoint is enabled.' : ''}
      </p>
      <p><a href="/deliveries/${id}">Back to the delivery</a></p>`;
    return sendPage(reply, layout('Replay', req.role, body, '/deliveries'));
  });

  // Bulk replay: GET shows the dry-run count, the form POSTs the same filters.
  app.get('/replay', async (req, reply) => {
    const parsed = DeliveryQuery.omit({ status: true, limit: true, cursor: true }).safeParse(
      present(req.query as Record<string, unknown>),
    );
    if (!parsed.success) {
      return sendPage(
        reply,
        errorPage(400, parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '), req.role),
        400,
      );
    }
    const filters = parsed.data as Record<string, string | undefined>;
    const any = Object.values(filters).some((v) => v !== undefined);
    const r = await ops.replay({ filter: toFilter(parsed.data), all: !any, dryRun: true });
    const body = html` <p>
        Filters:
        ${
          any
            ? Object.entries(filters)
                .filter(([, v]) => v !== undefined)
                .map(([k, v]) => html`<code>${k}=${v}</code> `)
            : 'none (every dead delivery)'
        }
      </p>
      <p class="count" role="status">
        <strong>${r.matched}</strong> dead deliveries
        match${r.parked > 0 ? ` (${r.parked} on disabled endpoints: they will wait until enabled)` : ''}.${
          r.ofDeletedEndpoints > 0
            ? ` ${r.ofDeletedEndpoints} more belong to deleted endpoints and are never replayed.`
            : ''
        }
      </p>
      <form method="post" action="/replay">
        ${Object.entries(filters).map(([k, v]) => (v === undefined ? '' : html`<input type="hidden" name="${k}" value="${v}" />`))}
        ${any ? '' : html`<input type="hidden" name="all" value="true" />`}
        <input type="hidden" name="expected" value="${r.matched}" />
        <button type="submit" ${r.matched === 0 ? html` disabled` : ''}>Replay ${r.matched} deliveries</button>
        <a href="/deliveries${query({ ...filters, status: 'dead' })}">Cancel</a>
      </form>`;
    return sendPage(reply, layout('Replay dead deliveries', req.role, body, '/deliveries'));
  });

  app.post('/replay', async (req, reply) => {
    const form = present((req.body ?? {}) as Record<string, unknown>);
    const { all, expected, ...rest } = form;
    const parsed = DeliveryQuery.omit({ status: true, limit: true, cursor: true }).safeParse(rest);
    if (!parsed.success) {
      return sendPage(
        reply,
        errorPage(400, parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '), req.role),
        400,
      );
    }
    const r = await ops.replay({ filter: toFilter(parsed.data), all: all === 'true', dryRun: false });
    const body = html`<p class="ok" role="status">
        ${r.moved} dead deliveries moved back to pending, due
        now${
          expected !== undefined && Number(expected) !== r.moved
            ? ` (the dry run counted ${expected}: deliveries changed meanwhile)`
            : ''
        }.${r.parked > 0 ? ` ${r.parked} wait until their endpoint is enabled.` : ''}
      </p>
      <p>
        <a href="/deliveries${query({ ...(parsed.data as Record<string, string | undefined>) })}"
          >Back to the deliveries</a
        >
      </p>`;
    return sendPage(reply, layout('Replayed', req.role, body, '/deliveries'));
  });
}

function parseId(schema: typeof EndpointId, value: string): string | undefined {
  const r = schema.safeParse(value);
  return r.success ? r.data : undefined;
}

const back = (id: string) => html`<p><a href="/endpoints/${id}">Back to the endpoint</a></p>`;

function stateBadge(e: EndpointHealthRow | DeliveryRow | { status: string }): Html {
  const state = 'status' in e ? e.status : endpointState(e);
  return html`<span class="badge badge-${state}">${state}</span>`;
}

/** The endpoint's shared circuit breaker: closed, open until when, or half-open with the relay probing. */
const breakerCell = (e: EndpointHealthRow): Html =>
  html`${e.breakerState}${e.breakerOpenUntil === null ? '' : html` until ${iso(e.breakerOpenUntil)}`}${
    e.breakerProbeOwner === null ? '' : html` (probe: ${text(e.breakerProbeOwner)})`
  }`;

function endpointTable(rows: readonly EndpointHealthRow[]): Html {
  if (rows.length === 0) return html`<p>No endpoints.</p>`;
  return html`<table>
    <thead>
      <tr>
        <th scope="col">Endpoint</th>
        <th scope="col">Tenant</th>
        <th scope="col">State</th>
        <th scope="col">Breaker</th>
        <th scope="col">Success (1 h)</th>
        <th scope="col">Pending</th>
        <th scope="col">Dead</th>
        <th scope="col">Failing since</th>
        <th scope="col">Disabled reason</th>
      </tr>
    </thead>
    <tbody>
      ${rows.map(
        (e) =>
          html`<tr>
            <td><a href="/endpoints/${e.id}">${text(e.url)}</a></td>
            <td>${text(e.tenant)}</td>
            <td>${stateBadge(e)}</td>
            <td>${breakerCell(e)}</td>
            <td>
              ${percent(successRate(e.deliveredLastHour, e.failedAttemptsLastHour))}
              <span class="sub">(${e.deliveredLastHour} ok, ${e.failedAttemptsLastHour} failed)</span>
            </td>
            <td>${e.pending}</td>
            <td>${e.dead > 0 ? html`<a href="/deliveries?status=dead&amp;endpoint=${e.id}">${e.dead}</a>` : '0'}</td>
            <td>${when(e.failingSince)}</td>
            <td>${e.enabled ? '-' : text(e.disabledReason)}</td>
          </tr>`,
      )}
    </tbody>
  </table>`;
}

/** Ordered endpoints with blocked keys: a key whose head failed and holds its later events back. */
function orderedTable(ordered: readonly OrderedRow[]): Html | '' {
  const blocked = ordered.filter((o) => o.blockedKeys > 0);
  if (blocked.length === 0) return '';
  return html`<h2>Ordered endpoints with blocked keys</h2>
    <table>
      <thead>
        <tr>
          <th scope="col">Endpoint</th>
          <th scope="col">Blocked keys</th>
          <th scope="col">Oldest blocked head</th>
        </tr>
      </thead>
      <tbody>
        ${blocked.map((o) => {
          const head = o.oldestBlockedHead;
          return html`<tr>
            <td><a class="mono" href="/endpoints/${o.endpointId}">${o.endpointId}</a></td>
            <td>${o.blockedKeys}</td>
            <td>
              ${
                head === null
                  ? '-'
                  : html`<a class="mono" href="/deliveries?webhook_id=msg_${head.outboxId}">msg_${head.outboxId}</a> key
                      ${text(head.orderingKey)}, since ${when(head.since)}, ${head.attempts}
                      attempts${head.lastStatusCode === null ? '' : html`, last ${head.lastStatusCode}`}`
              }
            </td>
          </tr>`;
        })}
      </tbody>
    </table>`;
}

function endpointDetail(e: EndpointHealthRow, role: Role | null): Html {
  const full = role === 'full';
  return html`<dl class="facts">
      <dt>URL</dt>
      <dd class="mono">${text(e.url)}</dd>
      <dt>Tenant</dt>
      <dd>${text(e.tenant)}</dd>
      <dt>State</dt>
      <dd>${stateBadge(e)}${e.enabled ? '' : html` ${text(e.disabledReason)} (${when(e.disabledAt)})`}</dd>
      <dt>Breaker</dt>
      <dd>${breakerCell(e)}</dd>
      <dt>Limits</dt>
      <dd>${limitsText(e)} <span class="sub">(for the whole cluster; each live relay takes a share)</span></dd>
      <dt>Event types</dt>
      <dd>${text(e.eventTypes?.join(', ') ?? null, 'all')}</dd>
      <dt>Ordering</dt>
      <dd>
        ${e.ordered ? 'ordered: events that share an ordering key go one at a time, in commit order' : 'unordered'}
      </dd>
      <dt>Description</dt>
      <dd>${text(e.description)}</dd>
      <dt>Secret</dt>
      <dd class="mono">
        ${e.secretHint}${
          e.previousSecretHint === null
            ? ''
            : html` (previous ${e.previousSecretHint} until ${iso(e.previousSecretExpiresAt) ?? '-'})`
        }
      </dd>
      <dt>Last hour</dt>
      <dd>
        ${e.deliveredLastHour} delivered, ${e.failedAttemptsLastHour} failed attempts, success
        ${percent(successRate(e.deliveredLastHour, e.failedAttemptsLastHour))}
      </dd>
      <dt>Failing</dt>
      <dd>
        ${e.failingSince === null ? 'no' : `since ${iso(e.failingSince) ?? '-'}, ${e.consecutiveFailures} failed attempts in a row`}
      </dd>
      <dt>Backlog</dt>
      <dd>
        ${e.pending} pending, ${e.delivering} delivering,
        <a href="/deliveries?status=dead&amp;endpoint=${e.id}">${e.dead} dead</a>
      </dd>
    </dl>
    <p><a href="/deliveries?endpoint=${e.id}">Deliveries of this endpoint</a></p>
    ${
      full
        ? html`<h2>Actions</h2>
            <div class="actions">
              ${
                e.enabled
                  ? html`<form method="post" action="/endpoints/${e.id}/disable" class="card">
                      <label for="reason">Reason</label>
                      <input id="reason" name="reason" placeholder="disabled by operator" />
                      <button type="submit">Disable</button>
                    </form>`
                  : html`<form method="post" action="/endpoints/${e.id}/enable" class="card">
                      <button type="submit">Enable</button>
                    </form>`
              }
              <form method="post" action="/endpoints/${e.id}/rotate-secret" class="card">
                <label for="keep">Old secret keeps signing for (hours)</label>
                <input
                  id="keep"
                  name="keep_hours"
                  type="number"
                  min="0"
                  max="${LIMITS.keepPreviousMaxMs / 3_600_000}"
                  value="24"
                />
                <button type="submit">Rotate secret</button>
              </form>
              <form method="post" action="/endpoints/${e.id}/replay-dead" class="card">
                <button type="submit" ${e.dead === 0 ? html` disabled` : ''}>Replay ${e.dead} dead deliveries</button>
              </form>
            </div>`
        : html`<p class="hint">Read-only access: actions need a full-access token.</p>`
    }`;
}

function deliveryTable(rows: readonly DeliveryRow[]): Html {
  if (rows.length === 0) return html`<p>No deliveries match.</p>`;
  return html`<table>
    <thead>
      <tr>
        <th scope="col">Delivery</th>
        <th scope="col">Webhook id</th>
        <th scope="col">Event type</th>
        <th scope="col">Tenant</th>
        <th scope="col">Status</th>
        <th scope="col">Attempts</th>
        <th scope="col">Last result</th>
        <th scope="col">Created</th>
      </tr>
    </thead>
    <tbody>
      ${rows.map(
        (d) =>
          html`<tr>
            <td><a href="/deliveries/${d.id}">${d.id}</a></td>
            <td class="mono">msg_${d.outboxId}</td>
            <td>${text(d.eventType)}</td>
            <td>${text(d.tenant)}</td>
            <td>${stateBadge(d)}</td>
            <td>${d.attempts}</td>
            <td>${d.lastStatusCode === null ? '' : `HTTP ${d.lastStatusCode} `}${truncated(d.lastError, 80)}</td>
            <td><time datetime="${iso(d.createdAt)}">${when(d.createdAt)}</time></td>
          </tr>`,
      )}
    </tbody>
  </table>`;
}

const truncated = (value: string | null, max: number) => {
  if (value === null) return '';
  const flat = printable(value.replace(/\s+/g, ' ').trim());
  return flat.length <= max ? flat : `${flat.slice(0, max - 1)}…`;
};

function deliveryDetail(d: DeliveryRow, attempts: readonly AttemptRow[], role: Role | null): Html {
  return html`<dl class="facts">
      <dt>Webhook id</dt>
      <dd class="mono">msg_${d.outboxId}</dd>
      <dt>Event type</dt>
      <dd>${text(d.eventType)}</dd>
      <dt>Endpoint</dt>
      <dd><a href="/endpoints/${d.endpointId}">${d.endpointId}</a></dd>
      <dt>Tenant</dt>
      <dd>${text(d.tenant)}</dd>
      <dt>Status</dt>
      <dd>${stateBadge(d)}${d.status === 'pending' ? ` next attempt ${when(d.nextAttemptAt)}` : ''}</dd>
      <dt>Attempts</dt>
      <dd>${d.attempts}</dd>
      <dt>Created</dt>
      <dd>${iso(d.createdAt)}</dd>
      ${
        d.deliveredAt === null
          ? ''
          : html`<dt>Delivered</dt>
              <dd>${iso(d.deliveredAt)}</dd>`
      }
    </dl>
    ${
      d.status === 'dead' && role === 'full'
        ? html`<form method="post" action="/deliveries/${d.id}/replay">
            <button type="submit">Replay this delivery</button>
          </form>`
        : ''
    }
    <h2>Attempts</h2>
    ${
      attempts.length === 0 && d.deliveredAt === null
        ? html`<p>No failed attempts recorded.</p>`
        : html`<ol class="timeline">
            ${attempts.map(
              (a) =>
                html`<li class="attempt failed">
                  <p>
                    <strong>Attempt ${a.attempt}</strong> ·
                    <time datetime="${iso(a.createdAt)}">${iso(a.createdAt)}</time> ·
                    ${a.statusCode === null ? 'no response' : `HTTP ${a.statusCode}`} ·
                    ${a.durationMs === null ? '-' : `${a.durationMs} ms`}${a.workerId === null ? '' : html` · <span class="sub">${text(a.workerId)}</span>`}
                  </p>
                  <p>${text(a.error)}</p>
                  ${a.responseSnippet === null || a.responseSnippet === '' ? '' : html`<pre class="snippet">${a.responseSnippet}</pre>`}
                </li>`,
            )}
            ${
              d.deliveredAt === null
                ? ''
                : html`<li class="attempt delivered">
                    <p>
                      <strong>Delivered</strong> · <time datetime="${iso(d.deliveredAt)}">${iso(d.deliveredAt)}</time> ·
                      HTTP ${d.lastStatusCode ?? '2xx'} · ${d.lastDurationMs === null ? '-' : `${d.lastDurationMs} ms`}
                    </p>
                  </li>`
            }
          </ol>`
    }`;
}

export type { FastifyRequest };
