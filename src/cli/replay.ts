import {
  durationArg,
  intArg,
  listArg,
  optionalUuid,
  parseCommand,
  printJson,
  printText,
  usageError,
  wantsHelp,
  withOperations,
} from '../ops/args.ts';
import { LIMITS } from '../ops/operations.ts';
import type { DeliveryFilter } from '../ops/queries.ts';

const USAGE = `usage: outbox-relay replay [--endpoint ID] [--event-type T] [--since D] [--until D] [--ids 1,2,3]
                           [--all] [--dry-run] [--batch 500] [--json]`;

const HELP = `${USAGE}

  Moves DEAD deliveries that match every filter back to pending, due now, with a fresh attempt budget
  (last_error is kept until the next attempt). --since/--until bound the delivery's creation time, --ids
  takes delivery ids. With no filter it refuses unless --all is given. --dry-run only counts.
  Works in batches of --batch rows, each its own short statement: an interrupted replay is safe to rerun.
  Parked deliveries (pending on a disabled endpoint) are not dead: "outbox-relay endpoints enable ID"
  sends them; dead deliveries of a disabled endpoint that are replayed wait parked the same way.
  Dead deliveries of a deleted endpoint are kept as history until retention removes them, and are never
  replayed: the count of those that match is reported.`;

/** `outbox-relay replay`: redeliver dead deliveries once the receiver is fixed. */
export async function main(args: string[]): Promise<number> {
  if (wantsHelp(args)) {
    printText([HELP]);
    return 0;
  }
  const { values } = parseCommand(
    args,
    {
      endpoint: { type: 'string' },
      'event-type': { type: 'string' },
      since: { type: 'string' },
      until: { type: 'string' },
      ids: { type: 'string' },
      all: { type: 'boolean' },
      'dry-run': { type: 'boolean' },
      batch: { type: 'string' },
      json: { type: 'boolean' },
    },
    USAGE,
  );
  const filter: DeliveryFilter = {
    endpointId: optionalUuid(values.endpoint, '--endpoint', USAGE),
    eventType: values['event-type'],
    sinceMs: durationArg(values.since, '--since', USAGE),
    untilMs: durationArg(values.until, '--until', USAGE, { zeroOk: true }),
    ids: listArg(values.ids, '--ids', USAGE, /^[1-9]\d{0,17}$/),
  };
  if (filter.ids !== undefined && filter.ids.length > LIMITS.replayIdsMax) {
    throw usageError(`--ids: at most ${LIMITS.replayIdsMax} ids`, USAGE);
  }
  if (Object.values(filter).every((v) => v === undefined) && values.all !== true) {
    throw usageError('refusing to replay every dead delivery: give a filter, or --all to mean it', USAGE);
  }
  const batch = intArg(values.batch, '--batch', USAGE, LIMITS.replayBatchDefault, LIMITS.replayBatchMax);
  const dryRun = values['dry-run'] === true;
  return withOperations('replay', async (ops) => {
    const r = await ops.replay({ filter, all: values.all === true, dryRun, batch });
    if (dryRun) {
      if (values.json === true) {
        printJson({
          dryRun: true,
          matched: r.matched,
          parked: r.parked,
          moved: 0,
          ofDeletedEndpoints: r.ofDeletedEndpoints,
        });
      } else {
        printText([
          `${r.matched} dead deliveries match (dry run: nothing moved)${parkedNote(r.parked)}${deletedNote(r.ofDeletedEndpoints, 'would not be')}`,
        ]);
      }
      return 0;
    }
    if (values.json === true) {
      printJson({
        dryRun: false,
        moved: r.moved,
        parked: r.parked,
        batches: r.batches,
        ofDeletedEndpoints: r.ofDeletedEndpoints,
      });
    } else {
      printText([
        `${r.moved} dead deliveries moved back to pending, due now${parkedNote(r.parked)}${deletedNote(r.ofDeletedEndpoints, 'were not')}`,
      ]);
    }
    return 0;
  });
}

const parkedNote = (parked: number) =>
  parked === 0
    ? ''
    : `\n${parked} of them belong to disabled endpoints and stay parked until "outbox-relay endpoints enable ID"`;

const deletedNote = (n: number, verb: string) =>
  n === 0 ? '' : `\n${n} matching deliveries belong to deleted endpoints and ${verb} replayed`;
