// What the demo prints about receipts and the final checks: plain text for a person at a terminal.
import type { DeliveryCounts } from './app.ts';
import type { Receipt } from './receiver.ts';

const NTH = ['', '1st', '2nd', '3rd'];

/** Commit → receipt in whole ms; the envelope timestamp is the outbox row's created_at. */
export const latencyMs = (r: Receipt): number => Math.round(r.receivedAtMs - r.createdAtMs);

/** A committed outbox row, as the application sent it. */
export function commitLine(msgId: string, eventType: string, payload: string): string {
  return `  commit  ${msgId.padEnd(6)} ${eventType.padEnd(16)} ${payload}`;
}

/** One request as the receiver saw it, printed as it arrives. */
export function receiptLine(r: Receipt): string {
  const check = r.verified ? '✓ verified' : `✗ NOT VERIFIED (${r.problem ?? '?'})`;
  const answer =
    r.status >= 300 ? `${r.status} → relay retries` : `${r.status}${r.attempt > 1 ? ` on ${nth(r.attempt)} try` : ''}`;
  const latency = Number.isFinite(r.createdAtMs) ? `${latencyMs(r)} ms` : '? ms';
  return `  receipt ${r.msgId.padEnd(6)} ${r.eventType.padEnd(16)} → ${r.endpoint.padEnd(7)} ${check}  ${answer.padEnd(19)} ${latency.padStart(6)}`;
}

export type SummaryInput = {
  events: number;
  /** Every (message, endpoint) pair the fan-out should have produced, as `msg_<id> <endpoint>`. */
  expected: readonly string[];
  receipts: readonly Receipt[];
  counts: DeliveryCounts;
  /** The message carrying the 20-digit integer and the one carrying non-ASCII text. */
  bigMsgId: string;
  bigAmount: string;
  textMsgId: string;
  text: string;
};

/** The closing checks, each marked ✓ or ✗; `ok` is false when any failed. */
export function summarise(s: SummaryInput): { lines: string[]; ok: boolean } {
  const lines: string[] = [];
  let ok = true;
  const check = (passed: boolean, text: string) => {
    ok &&= passed;
    lines.push(`  ${passed ? '✓' : '✗'} ${text}`);
  };
  const succeeded = new Map<string, Receipt>(); // first 2xx per delivery
  for (const r of s.receipts) {
    const key = `${r.msgId} ${r.endpoint}`;
    if (r.status < 300 && !succeeded.has(key)) succeeded.set(key, r);
  }
  const missing = s.expected.filter((key) => !succeeded.has(key));
  const retries = s.receipts.filter((r) => r.attempt > 1).length;
  check(
    missing.length === 0 && s.counts.delivered === s.expected.length && s.counts.dead === 0,
    `${s.events} events → ${s.counts.total} deliveries, ${s.counts.delivered} delivered, ${s.counts.dead} dead; ` +
      `${retries} retries (${s.counts.failedAttempts} failed attempts in webhooks.delivery_attempts)` +
      (missing.length > 0 ? `; never received: ${missing.join(', ')}` : ''),
  );
  const verified = s.receipts.filter((r) => r.verified).length;
  check(
    verified === s.receipts.length && verified > 0,
    `${verified}/${s.receipts.length} requests verified by standardwebhooks`,
  );
  const bodiesOf = (msgId: string) => s.receipts.filter((r) => r.msgId === msgId).map((r) => r.body);
  const big = bodiesOf(s.bigMsgId);
  check(
    big.length > 0 && big.every((b) => b.includes(s.bigAmount)),
    `${s.bigAmount} arrived byte-exact in ${big.filter((b) => b.includes(s.bigAmount)).length}/${big.length} bodies ` +
      `(JSON.parse would read ${String(Number(s.bigAmount))})`,
  );
  const texts = bodiesOf(s.textMsgId);
  check(
    texts.length > 0 && texts.every((b) => b.includes(s.text)),
    `"${s.text}" arrived intact in ${texts.filter((b) => b.includes(s.text)).length}/${texts.length} bodies`,
  );
  const first = s.receipts.filter((r) => r.attempt === 1).map(latencyMs);
  const done = [...succeeded.values()].map(latencyMs);
  lines.push(
    `  commit → first attempt: median ${median(first)} ms; commit → delivered: median ${median(done)} ms, ` +
      `max ${done.length > 0 ? Math.max(...done) : '?'} ms (retries included)`,
  );
  return { lines, ok };
}

function median(values: readonly number[]): number | string {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (sorted.length === 0) return '?';
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : Math.round((sorted[mid - 1]! + sorted[mid]!) / 2);
}

function nth(n: number): string {
  return NTH[n] ?? `${n}th`;
}
