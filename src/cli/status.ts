import { bytes, duration, healthJson, healthTable, iso, printable } from '../ops/format.ts';
import { fail, intArg, parseCommand, printJson, printText, wantsHelp, withDatabase } from '../ops/args.ts';
import {
  backlog,
  deliveryCounts,
  endpointHealth,
  endpointTotals,
  liveRelays,
  slotStatus,
  STATUSES,
  type RelayRow,
  type SlotRow,
} from '../ops/queries.ts';

const USAGE = 'usage: outbox-relay status [--limit 50] [--json]';
/** Relays listed at most (they split every endpoint's limits and breaker between them). */
const MAX_RELAYS_SHOWN = 20;

function relaysLine(relays: readonly RelayRow[]): string {
  if (relays.length === 0) return '0 live (none is running)';
  const shown = relays.slice(0, MAX_RELAYS_SHOWN).map((r) => printable(r.workerId));
  const more = relays.length > MAX_RELAYS_SHOWN ? ', …' : '';
  return `${relays.length > MAX_RELAYS_SHOWN ? `more than ${MAX_RELAYS_SHOWN}` : relays.length} live (${shown.join(', ')}${more}); each takes a share of every endpoint's limits`;
}

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
  const limit = intArg(values.limit, '--limit', USAGE, 50, 1000);
  return withDatabase('status', async (pool, config) => {
    const [slot, counts, pending, totals, endpoints, relays] = await Promise.all([
      pool.one(slotStatus(config.slotName)),
      pool.any(deliveryCounts()),
      pool.one(backlog()),
      pool.one(endpointTotals()),
      pool.any(endpointHealth(limit)),
      pool.any(liveRelays(MAX_RELAYS_SHOWN + 1)),
    ]);
    const deliveries = Object.fromEntries(STATUSES.map((s) => [s, counts.find((c) => c.status === s)?.n ?? 0]));
    const problems = slotProblems(config.slotName, slot);
    const warnings =
      slot.walStatus === 'unreserved'
        ? [`replication slot "${config.slotName}" has fallen behind max_slot_wal_keep_size and may be lost soon`]
        : [];
    if (values.json === true) {
      printJson({
        ok: problems.length === 0,
        problems,
        warnings,
        slot: {
          name: config.slotName,
          exists: slot.exists,
          active: slot.active,
          activePid: slot.activePid,
          holder:
            slot.activePid === null
              ? null
              : { applicationName: slot.holderApplicationName, clientAddr: slot.holderClientAddr },
          walStatus: slot.walStatus,
          lagBytes: slot.lagBytes,
          retainedWalBytes: slot.retainedWalBytes,
          maxSlotWalKeepSize: slot.maxSlotWalKeepSize,
        },
        deliveries,
        relays: relays.slice(0, MAX_RELAYS_SHOWN).map((r) => ({
          owner: r.owner,
          workerId: r.workerId,
          joinedAt: iso(r.joinedAt),
          seenAt: iso(r.seenAt),
        })),
        duePending: pending.due,
        oldestDuePendingAgeSeconds: pending.oldestDueAgeSeconds,
        parked: pending.parked,
        endpointTotals: { ...totals, shown: endpoints.length },
        endpoints: endpoints.map(healthJson),
      });
    } else {
      const due =
        pending.oldestDueAgeSeconds === null
          ? 'due now 0'
          : `due now ${pending.due}, oldest waiting ${duration(pending.oldestDueAgeSeconds)}`;
      printText([
        ...slotLines(config.slotName, slot),
        `relays      ${relaysLine(relays)}`,
        `deliveries  ${STATUSES.map((s) => `${s} ${deliveries[s] ?? 0}`).join('   ')}`,
        `backlog     ${due};  parked ${pending.parked} (pending on disabled endpoints, sent on "endpoints enable")`,
        '',
        `endpoints   ${totals.total} (${totals.disabled} disabled)` +
          (endpoints.length < totals.total ? `, showing ${endpoints.length}; see --limit` : ''),
        ...(endpoints.length === 0 ? [] : healthTable(endpoints)),
      ]);
    }
    for (const problem of problems) fail(problem);
    for (const warning of warnings) process.stderr.write(`outbox-relay: warning: ${warning}\n`);
    return problems.length === 0 ? 0 : 1;
  });
}

function slotProblems(name: string, slot: SlotRow): string[] {
  const repair = 'events committed meanwhile may not be fanned out; run "outbox-relay repair --since <duration>"';
  if (!slot.exists) return [`replication slot "${name}" does not exist: ${repair}`];
  if (slot.walStatus === 'lost') return [`replication slot "${name}" is invalidated (wal_status lost): ${repair}`];
  return [];
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
