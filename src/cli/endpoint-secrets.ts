// `endpoints add` and `endpoints rotate-secret`: the two commands that create a secret, and the only places a
// full secret is ever printed (once).
import { lookup } from 'node:dns/promises';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadConfig } from '../config.ts';
import { databaseMessageOf, SqlState, sqlStateOf } from '../db/pg-errors.ts';
import { checkUrl, classify, type SsrfPolicy } from '../delivery/ssrf.ts';
import {
  durationArg,
  fail,
  listArg,
  parseCommand,
  printJson,
  printText,
  tenantArg,
  usageError,
  uuidArg,
  withDatabase,
  withOperations,
} from '../ops/args.ts';
import { endpointJson, iso, printable, when } from '../ops/format.ts';
import { generateSecret, LIMITS } from '../ops/operations.ts';
import { insertEndpoint } from '../ops/queries.ts';
import { parseSecret } from '../signing/sign.ts';

const SHOWN_ONCE = 'Store this secret now: it is not shown again (endpoints rotate-secret issues a new one).';

function secretArg(value: string | undefined, usage: string): string {
  if (value === undefined) return generateSecret();
  const parsed = parseSecret(value);
  if (!Buffer.isBuffer(parsed)) throw usageError(`--secret: ${parsed.error}`, usage);
  return value;
}

/** `endpoints add --url URL [--event-types a,b] [--tenant T] [--ordered] [--description TEXT] [--secret whsec_…] [--json]` */
export async function add(args: string[], usage: string): Promise<number> {
  const { values } = parseCommand(
    args,
    {
      url: { type: 'string' },
      'event-types': { type: 'string' },
      tenant: { type: 'string' },
      ordered: { type: 'boolean' },
      description: { type: 'string' },
      secret: { type: 'string' },
      json: { type: 'boolean' },
    },
    usage,
  );
  if (values.url === undefined) throw usageError('--url is required', usage);
  const eventTypes = listArg(values['event-types'], '--event-types', usage) ?? null;
  const tenant = tenantArg(values.tenant, usage) ?? null;
  const secret = secretArg(values.secret, usage);
  const url = values.url;
  const config = loadConfig();
  const verdict = await checkDestination(url, {
    allowPrivateNetworks: config.allowPrivateNetworks,
    allowCidrs: config.allowedCidrs,
    allowHttp: config.allowHttp,
  });
  if (!verdict.ok) throw usageError(`--url: ${verdict.reason}`, usage);
  if (verdict.note !== undefined) process.stderr.write(`outbox-relay: note: ${verdict.note}\n`);
  return withDatabase(
    'endpoints',
    async (pool) => {
      let row;
      try {
        row = await pool.one(
          insertEndpoint({
            url,
            secret,
            eventTypes,
            description: values.description ?? null,
            tenant,
            ordered: values.ordered === true,
          }),
        );
      } catch (err) {
        // The per-tenant cap (a trigger): its message names the cap and the statement that raises it.
        if (sqlStateOf(err) === SqlState.CHECK_VIOLATION) return fail(databaseMessageOf(err) ?? String(err));
        throw err;
      }
      if (values.json === true) {
        printJson({ endpoint: endpointJson(row), secret });
      } else {
        printText([
          `endpoint     ${row.id} created, enabled`,
          ...(row.tenant === null ? [] : [`tenant       ${printable(row.tenant)}`]),
          `url          ${printable(row.url)}`,
          `event types  ${printable(row.eventTypes?.join(', ') ?? 'all')}`,
          ...(row.ordered ? ['ordered      events sharing an ordering key go one at a time, in commit order'] : []),
          `secret       ${secret}`,
          SHOWN_ONCE,
        ]);
      }
      return 0;
    },
    config,
  );
}

/** `endpoints rotate-secret ID [--secret whsec_…] [--keep-previous 24h] [--json]` */
export async function rotate(args: string[], usage: string): Promise<number> {
  const { values, positionals } = parseCommand(
    args,
    { secret: { type: 'string' }, 'keep-previous': { type: 'string' }, json: { type: 'boolean' } },
    usage,
    1,
  );
  const id = uuidArg(positionals[0], 'endpoints rotate-secret', usage);
  const keepMs =
    durationArg(values['keep-previous'], '--keep-previous', usage, { zeroOk: true, maxMs: LIMITS.keepPreviousMaxMs }) ??
    LIMITS.keepPreviousDefaultMs;
  const secret = secretArg(values.secret, usage);
  return withOperations('endpoints', async (ops) => {
    const rotated = await ops.rotateSecret(id, { secret, keepPreviousMs: keepMs });
    if (rotated === null) return fail(`no endpoint ${id}`);
    const row = rotated.endpoint;
    if (values.json === true) {
      printJson({ endpoint: endpointJson(row), secret, droppedLivePrevious: row.droppedLivePrevious });
      return 0;
    }
    const previous =
      row.previousSecretHint === null
        ? 'dropped now (--keep-previous 0); receivers must switch at once'
        : `${row.previousSecretHint} still signed until ${iso(row.previousSecretExpiresAt) ?? '-'} ` +
          `(${when(row.previousSecretExpiresAt)}); requests carry both signatures until then`;
    printText([
      `endpoint     ${row.id}: secret rotated`,
      `secret       ${secret}`,
      `previous     ${previous}`,
      ...(row.droppedLivePrevious
        ? ['note         the older secret of the rotation still in progress is no longer signed with']
        : []),
      SHOWN_ONCE,
    ]);
    return 0;
  });
}

type Verdict = { ok: true; note?: string } | { ok: false; reason: string };

const LOOKUP_TIMEOUT_MS = 5_000;

/**
 * Checks a webhook URL when an operator registers it: checkUrl (scheme, credentials, IP literals), then the
 * addresses its hostname resolves to from here, so `https://localhost/` is refused now rather than at the first
 * delivery. The connect-time guard stays the real defence (DNS can change); a name that does not resolve yet
 * is accepted with a note.
 */
async function checkDestination(url: string, policy: SsrfPolicy): Promise<Verdict> {
  const checked = checkUrl(url, policy);
  if (!checked.ok) return checked;
  const host = checked.url.hostname;
  if (host.startsWith('[') || net.isIP(host) !== 0) return { ok: true }; // literals: judged by checkUrl
  const answers = await Promise.race([
    lookup(host, { all: true }).catch(() => undefined),
    sleep(LOOKUP_TIMEOUT_MS, undefined, { ref: false }),
  ]);
  if (answers === undefined || answers.length === 0) {
    return { ok: true, note: `${host} does not resolve from here; every connection checks its addresses again` };
  }
  for (const { address } of answers) {
    const verdict = classify(address, policy);
    if (!verdict.allowed) return { ok: false, reason: `${verdict.reason} (${host} resolves to it)` };
  }
  return { ok: true };
}
