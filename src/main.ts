import { coerceError, RelayError } from './errors.ts';

const COMMANDS = {
  run: () => import('./cli/run.ts'),
  migrate: () => import('./cli/migrate.ts'),
  demo: () => import('./cli/demo.ts'),
  repair: () => import('./cli/repair.ts'),
  status: () => import('./cli/status.ts'),
  endpoints: () => import('./cli/endpoints.ts'),
  deliveries: () => import('./cli/deliveries.ts'),
  replay: () => import('./cli/replay.ts'),
  grants: () => import('./cli/grants.ts'),
  console: () => import('./cli/console.ts'),
} as const;

const USAGE = `usage: outbox-relay [run|migrate|repair|status|endpoints|deliveries|replay|grants|console|demo]

  run         stream the outbox and deliver webhooks (default)
  migrate     create or upgrade the schema, publication and replication slot, then exit
  repair      --since <duration>: recreate a lost slot, fan out the window's rows that have no deliveries
  status      slot health, delivery backlog and each endpoint's last hour; exit 1 if the slot is missing or lost
  endpoints   add | list | show | disable | enable | rotate-secret
  deliveries  list [--status S] [--endpoint ID] [--tenant T] [--event-type T] [--since D] [--until D] [--limit N]
  replay      move dead deliveries back to pending (filters or --all; --dry-run counts);
              parked deliveries (pending on a disabled endpoint) go out with "endpoints enable ID"
  grants      --role NAME: print the GRANT statements "run" needs as that role (least privilege)
  console     serve the operator web console and the REST API /api/v1 (CONSOLE_* variables; never part of run)
  demo        embedded Postgres + local receiver + relay: watch events arrive, then exit

status, endpoints, deliveries, replay and grants take --json (one JSON document on stdout) and --help.
Exit codes: 0 ok, 1 failure (or an unhealthy status), 2 usage error.

Configuration comes from environment variables; see README.md.`;

const [name = 'run', ...args] = process.argv.slice(2);
if (name === '--help' || name === '-h' || name === 'help') {
  process.stdout.write(`${USAGE}\n`);
} else if (!Object.hasOwn(COMMANDS, name)) {
  process.stderr.write(`unknown command "${name}"\n\n${USAGE}\n`);
  process.exitCode = 2;
} else {
  try {
    const command = await COMMANDS[name as keyof typeof COMMANDS]();
    process.exitCode = await command.main(args);
  } catch (err) {
    // Startup errors are for a human: one clear message, no stack, unless it is a bug.
    if (err instanceof RelayError) process.stderr.write(`outbox-relay: ${err.message}\n`);
    else process.stderr.write(`outbox-relay: unexpected error: ${coerceError(err).stack ?? String(err)}\n`);
    process.exitCode = err instanceof RelayError && (err.code === 'USAGE' || err.code === 'INVALID_REQUEST') ? 2 : 1;
  }
}
