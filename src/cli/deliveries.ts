import {
  durationArg,
  intArg,
  oneOf,
  optionalUuid,
  parseCommand,
  printJson,
  printText,
  tenantArg,
  usageError,
  wantsHelp,
  withOperations,
} from '../ops/args.ts';
import { LIMITS } from '../ops/operations.ts';
import { deliveryJson, deliveryTable } from '../ops/format.ts';
import { STATUSES } from '../ops/queries.ts';

const USAGE = `usage: outbox-relay deliveries list [--status pending|delivering|delivered|dead] [--endpoint ID]
                                    [--tenant T] [--event-type T] [--since 1h] [--until 10m] [--limit 50] [--json]`;

const HELP = `${USAGE}

  Newest first, at most --limit rows (1-1000). --since/--until bound the delivery's creation time:
  --since 1h = created in the last hour, --until 10m = created more than 10 minutes ago.
  WEBHOOK-ID is the webhook-id header receivers saw (msg_<outbox id>).`;

/** `outbox-relay deliveries list`: what happened to which event, for which endpoint, and why it failed. */
export async function main(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (wantsHelp(args)) {
    printText([HELP]);
    return 0;
  }
  if (sub !== 'list') {
    throw usageError(sub === undefined ? 'a subcommand is required' : `unknown subcommand "${sub}"`, USAGE);
  }
  const { values } = parseCommand(
    rest,
    {
      status: { type: 'string' },
      endpoint: { type: 'string' },
      tenant: { type: 'string' },
      'event-type': { type: 'string' },
      since: { type: 'string' },
      until: { type: 'string' },
      limit: { type: 'string' },
      json: { type: 'boolean' },
    },
    USAGE,
  );
  const filter = {
    status: oneOf(values.status, STATUSES, '--status', USAGE),
    endpointId: optionalUuid(values.endpoint, '--endpoint', USAGE),
    tenant: tenantArg(values.tenant, USAGE),
    eventType: values['event-type'],
    sinceMs: durationArg(values.since, '--since', USAGE),
    untilMs: durationArg(values.until, '--until', USAGE, { zeroOk: true }),
  };
  const limit = intArg(values.limit, '--limit', USAGE, 50, LIMITS.pageMax);
  return withOperations('deliveries', async (ops) => {
    const { deliveries: shown, truncated } = await ops.listDeliveries(filter, { limit });
    if (values.json === true) {
      printJson({ deliveries: shown.map(deliveryJson), truncated });
      return 0;
    }
    if (shown.length === 0) {
      printText(['no deliveries match']);
      return 0;
    }
    printText([
      ...deliveryTable(shown),
      ...(truncated ? [`(newest ${limit}; narrow the filters or raise --limit)`] : []),
    ]);
    return 0;
  });
}
