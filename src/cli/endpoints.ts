import {
  fail,
  intArg,
  parseCommand,
  printJson,
  printText,
  tenantArg,
  usageError,
  uuidArg,
  wantsHelp,
  withOperations,
} from '../ops/args.ts';
import { LIMITS } from '../ops/operations.ts';
import {
  endpointJson,
  endpointState,
  healthJson,
  iso,
  percent,
  printable,
  successRate,
  table,
  truncate,
  when,
} from '../ops/format.ts';
import { add, rotate } from './endpoint-secrets.ts';

const SYNOPSIS = {
  add: 'endpoints add --url URL [--event-types a,b] [--tenant T] [--ordered] [--description TEXT] [--secret whsec_...] [--json]',
  list: 'endpoints list [--tenant T] [--limit 100] [--json]',
  show: 'endpoints show ID [--json]',
  disable: 'endpoints disable ID [--reason TEXT] [--json]',
  enable: 'endpoints enable ID [--json]',
  'rotate-secret': 'endpoints rotate-secret ID [--secret whsec_...] [--keep-previous 24h] [--json]',
} as const;
const usage = (sub: keyof typeof SYNOPSIS) => `usage: outbox-relay ${SYNOPSIS[sub]}`;

const HELP = `usage: outbox-relay endpoints <add|list|show|disable|enable|rotate-secret> ...

  ${SYNOPSIS.add}
      register an endpoint; prints its id and its secret, once. Without --secret one is generated
      (a --secret given here lands in shell history and ps output). --tenant: it receives only that
      tenant's events (without it, only events without a tenant); fixed once created, capped per tenant.
      --ordered: events that share an ordering_key reach it one at a time, in commit order (README, Ordering)
  ${SYNOPSIS.list}
      every endpoint (or one tenant's), secrets masked (whsec_…abcd)
  ${SYNOPSIS.show}
      one endpoint with its last hour (delivered, failed attempts, success rate) and backlog
  ${SYNOPSIS.disable}
      stop delivering; its pending deliveries stay parked until it is enabled again
  ${SYNOPSIS.enable}
      deliver again (parked deliveries go out) and clear the failing streak
  ${SYNOPSIS['rotate-secret']}
      new secret, printed once; the old one is still signed with for --keep-previous (0 = dropped now)`;

const SUBCOMMANDS: Record<string, (args: string[]) => Promise<number>> = {
  add: (args) => add(args, usage('add')),
  list,
  show,
  disable,
  enable,
  'rotate-secret': (args) => rotate(args, usage('rotate-secret')),
};

/** `outbox-relay endpoints <subcommand>`: manage webhooks.endpoints without writing SQL. */
export async function main(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === undefined) throw usageError('a subcommand is required', HELP);
  const run = Object.hasOwn(SUBCOMMANDS, sub) ? SUBCOMMANDS[sub] : undefined;
  if (wantsHelp(args)) {
    printText([run === undefined ? HELP : usage(sub as keyof typeof SYNOPSIS)]);
    return 0;
  }
  if (run === undefined) throw usageError(`unknown subcommand "${sub}"`, HELP);
  return run(rest);
}

async function list(args: string[]): Promise<number> {
  const { values } = parseCommand(
    args,
    { tenant: { type: 'string' }, limit: { type: 'string' }, json: { type: 'boolean' } },
    usage('list'),
  );
  const limit = intArg(values.limit, '--limit', usage('list'), 100, LIMITS.pageMax);
  const tenant = tenantArg(values.tenant, usage('list'));
  return withOperations('endpoints', async (ops) => {
    const { endpoints: shown, truncated } = await ops.listEndpoints({ tenant, limit });
    if (values.json === true) {
      printJson({ endpoints: shown.map(endpointJson), truncated });
      return 0;
    }
    printText([
      ...table(
        ['ID', 'TENANT', 'STATE', 'URL', 'EVENT TYPES', 'SECRET', 'CREATED', 'DESCRIPTION'],
        shown.map((e) => [
          e.id,
          truncate(e.tenant ?? '-', 30),
          endpointState(e),
          truncate(e.url, 60),
          truncate(e.eventTypes?.join(',') ?? 'all', 40),
          e.secretHint,
          when(e.createdAt),
          truncate(e.description, 40),
        ]),
      ),
      ...(truncated ? [`(first ${limit}; raise --limit to see more)`] : []),
    ]);
    return 0;
  });
}

async function show(args: string[]): Promise<number> {
  const { values, positionals } = parseCommand(args, { json: { type: 'boolean' } }, usage('show'), 1);
  const id = uuidArg(positionals[0], 'endpoints show', usage('show'));
  return withOperations('endpoints', async (ops) => {
    const e = await ops.endpoint(id);
    if (e === null) return fail(`no endpoint ${id}`);
    if (values.json === true) {
      printJson({ endpoint: healthJson(e) });
      return 0;
    }
    const previous =
      e.previousSecretHint === null
        ? []
        : [`previous     ${e.previousSecretHint} until ${iso(e.previousSecretExpiresAt) ?? '-'}`];
    printText([
      `id           ${e.id}`,
      `tenant       ${printable(e.tenant ?? '-')}`,
      `url          ${printable(e.url)}`,
      `state        ${endpointState(e)}`,
      `event types  ${printable(e.eventTypes?.join(', ') ?? 'all')}`,
      `description  ${printable(e.description ?? '-')}`,
      `secret       ${e.secretHint}`,
      ...previous,
      ...(e.failingSince === null
        ? []
        : [
            `failing      since ${iso(e.failingSince)} (${when(e.failingSince)}), ` +
              `${e.consecutiveFailures} failed attempts in a row`,
          ]),
      ...(e.enabled ? [] : [`disabled     ${iso(e.disabledAt) ?? '-'}: ${printable(e.disabledReason ?? '-')}`]),
      `created      ${iso(e.createdAt)}`,
      `last hour    delivered ${e.deliveredLastHour}   failed attempts ${e.failedAttemptsLastHour}   ` +
        `success ${percent(successRate(e.deliveredLastHour, e.failedAttemptsLastHour))}`,
      `backlog      pending ${e.pending}   delivering ${e.delivering}   dead ${e.dead}`,
    ]);
    return 0;
  });
}

async function disable(args: string[]): Promise<number> {
  const { values, positionals } = parseCommand(
    args,
    { reason: { type: 'string' }, json: { type: 'boolean' } },
    usage('disable'),
    1,
  );
  const id = uuidArg(positionals[0], 'endpoints disable', usage('disable'));
  return withOperations('endpoints', async (ops) => {
    const row = await ops.disableEndpoint(id, values.reason);
    if (row === null) return fail(`no endpoint ${id}`);
    const reason = row.disabledReason ?? '';
    if (values.json === true) printJson({ endpoint: endpointJson(row) });
    else {
      printText([
        `endpoint ${row.id} disabled: ${printable(reason)}`,
        'its pending deliveries stay parked (requests already in flight may still finish); "endpoints enable" sends them',
      ]);
    }
    return 0;
  });
}

async function enable(args: string[]): Promise<number> {
  const { values, positionals } = parseCommand(args, { json: { type: 'boolean' } }, usage('enable'), 1);
  const id = uuidArg(positionals[0], 'endpoints enable', usage('enable'));
  return withOperations('endpoints', async (ops) => {
    const row = await ops.enableEndpoint(id);
    if (row === null) return fail(`no endpoint ${id}`);
    if (values.json === true) printJson({ endpoint: endpointJson(row), pending: row.parked });
    else printText([`endpoint ${row.id} enabled; ${row.parked} pending deliveries will go out`]);
    return 0;
  });
}
