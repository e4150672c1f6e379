import { bytes, duration, healthTable, printable, statusJson, table, truncate, when } from '../ops/format.ts';
import { fail, intArg, parseCommand, printJson, printText, wantsHelp, withOperations } from '../ops/args.ts';
import { LIMITS } from '../ops/operations.ts';
import { RELAYS_SHOWN, STATUSES, type OrderedRow, type RelayRow, type SlotRow } from '../ops/queries.ts';

const USAGE = 'usage: outbox-relay status [--limit 50] [--json]';

/**
 * `outbox-relay status`: the slot, the delivery backlog and every endpoint's last hour, in one look.
 * Exit 1 (after printing the whole report) when the slot is missing or invalidated: events may be lost.
 */
export async function main(args: string[]): Promise<number> {
  if (wantsHelp(args)) {
    printText([USAGE]);
    return 0;
  }
  const { values } = parseCommand(args, { limit: { type: 'string' }, json: { type: 'boolean' } }, USAGE);
  const limit = intArg(values.limit, '--limit', USAGE, 50, LIMITS.pageMax);
  return withOperations('status', async (ops) => {
    const report = await ops.status(limit);
    const { slotName: name, slot, deliveries, backlog: pending, endpointTotals: totals, endpoints } = report;
    if (values.json === true) {
      printJson(statusJson(report));
    } else {
      const due =
        pending.oldestDueAgeSeconds === null
          ? 'due now 0'
          : `due now ${pending.due}, oldest waiting ${duration(pending.oldestDueAgeSeconds)}`;
      printText([
        ...slotLines(name, slot),
        `relays      ${relaysLine(report.relays)}`,
        `deliveries  ${STATUSES.map((s) => `${s} ${deliveries[s]}`).join('   ')}`,
        `backlog     ${due};  parked ${pending.parked} (pending on disabled endpoints, sent on "endpoints enable")`,
        '',
        `endpoints   ${totals.total} (${totals.disabled} disabled, ${totals.failing} failing, ` +
          `${totals.breakersOpen} breaker${totals.breakersOpen === 1 ? '' : 's'} open)` +
          (endpoints.length < totals.total ? `, showing ${endpoints.length}; see --limit` : ''),
        ...(endpoints.length === 0 ? [] : healthTable(endpoints)),
        ...orderedLines(report.ordered, totals),
      ]);
    }
    for (const problem of report.problems) fail(problem);
    for (const warning of report.warnings) process.stderr.write(`outbox-relay: warning: ${warning}\n`);
    return report.problems.length === 0 ? 0 : 1;
  });
}

/** Ordered endpoints: blocked keys (a failing head holding later events back) and the oldest blocked head. */
function orderedLines(ordered: readonly OrderedRow[], totals: { ordered: number; blockedKeys: number }): string[] {
  if (ordered.length === 0) return [];
  return [
    '',
    `ordered     ${totals.ordered} endpoint${totals.ordered === 1 ? '' : 's'} (events sharing a key go one at a time), ` +
      `${totals.blockedKeys} key${totals.blockedKeys === 1 ? '' : 's'} blocked` +
      (ordered.length < totals.ordered ? `, showing ${ordered.length}` : ''),
    ...table(
      ['ENDPOINT', 'URL', 'BLOCKED KEYS', 'OLDEST BLOCKED HEAD'],
      ordered.map((o) => [
        o.endpointId,
        truncate(o.url, 50),
        String(o.blockedKeys),
        o.oldestBlockedHead === null
          ? '-'
          : `msg_${o.oldestBlockedHead.outboxId} key ${truncate(o.oldestBlockedHead.orderingKey, 30)}, ` +
            `since ${when(o.oldestBlockedHead.since)}, ${o.oldestBlockedHead.attempts} attempts` +
            (o.oldestBlockedHead.lastStatusCode === null ? '' : `, last ${o.oldestBlockedHead.lastStatusCode}`),
      ]),
    ),
  ];
}

function relaysLine(relays: readonly RelayRow[]): string {
  if (relays.length === 0) return '0 live (none is running)';
  const shown = relays.slice(0, RELAYS_SHOWN).map((r) => printable(r.workerId));
  const more = relays.length > RELAYS_SHOWN ? ', …' : '';
  const count = relays.length > RELAYS_SHOWN ? `more than ${RELAYS_SHOWN}` : String(relays.length);
  return `${count} live (${shown.join(', ')}${more}); each takes a share of every endpoint's limits`;
}

function slotLines(name: string, slot: SlotRow): string[] {
  if (!slot.exists) return [`slot        ${name}: MISSING   max_slot_wal_keep_size ${slot.maxSlotWalKeepSize}`];
  const holder =
    slot.activePid === null
      ? 'inactive (no relay streams it)'
      : `active, pid ${slot.activePid} (${printable(slot.holderApplicationName ?? '?')}` +
        `${slot.holderClientAddr === null ? '' : ` @ ${slot.holderClientAddr}`})`;
  return [
    `slot        ${name}: ${holder}   wal_status ${slot.walStatus ?? '-'}`,
    `            lag ${bytes(slot.lagBytes)}   retained WAL ${bytes(slot.retainedWalBytes)}   ` +
      `max_slot_wal_keep_size ${slot.maxSlotWalKeepSize}`,
  ];
}
