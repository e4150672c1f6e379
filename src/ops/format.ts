// Text and JSON shapes of the operator commands. Text is for a terminal (aligned, compact, relative times);
// JSON is for scripts (ISO-8601 timestamps, ids as strings, nulls kept).
import type { StatusReport } from './operations.ts';
import {
  RELAYS_SHOWN,
  type AttemptRow,
  type DeliveryRow,
  type EndpointHealthRow,
  type EndpointRow,
} from './queries.ts';

/**
 * Characters a terminal acts on instead of showing: C0 controls (tab and newline included), DEL, C1 controls,
 * and the bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069) that reorder what follows.
 */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/gu;

/**
 * Text from the database made safe for a terminal: each unsafe character becomes a visible escape (`\x1b`,
 * `\u202e`), so an endpoint URL, description or error cannot move the cursor, retitle the window, ring the bell
 * or reverse the line, and the operator still sees that something was there. Human output only: --json is
 * escaped by JSON itself and stays exact.
 */
export const printable = (text: string): string =>
  text.replace(UNSAFE, (c) => {
    const code = c.charCodeAt(0);
    return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16)}`;
  });

/** Left-aligned columns separated by two spaces; trailing blanks trimmed. Every cell goes through `printable`. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const safe = rows.map((r) => r.map(printable));
  const widths = headers.map((h, i) => Math.max(h.length, ...safe.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(headers), ...safe.map(line)];
}

export function iso(ms: number): string;
export function iso(ms: number | null): string | null;
export function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/** `12s ago`, `in 3m`, `-` for null: display only, on this machine's clock. */
export function when(ms: number | null, nowMs = Date.now()): string {
  if (ms === null) return '-';
  const delta = Math.round((nowMs - ms) / 1000);
  const span = duration(Math.abs(delta));
  return delta >= 0 ? `${span} ago` : `in ${span}`;
}

/** Whole seconds as the largest fitting unit: `45s`, `12m`, `5h`, `3d`. */
export function duration(seconds: number): string {
  if (seconds < 120) return `${Math.round(seconds)}s`;
  if (seconds < 7_200) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 172_800) return `${Math.floor(seconds / 3_600)}h`;
  return `${Math.floor(seconds / 86_400)}d`;
}

export function bytes(n: number | null): string {
  if (n === null) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** One printable line, at most `max` characters (an error message can be a whole response body). */
export function truncate(text: string | null, max: number): string {
  if (text === null) return '-';
  const flat = printable(text.replace(/\s+/g, ' ').trim());
  return flat.length <= max ? flat : `${flat.slice(0, max - 1)}…`;
}

export const percent = (rate: number | null) => (rate === null ? '-' : `${(rate * 100).toFixed(1)}%`);

/** Successful deliveries over all attempts of the last hour; null when there were none. */
export const successRate = (delivered: number, failed: number) =>
  delivered + failed === 0 ? null : Math.round((delivered / (delivered + failed)) * 10_000) / 10_000;

export const endpointState = (e: EndpointRow) => (!e.enabled ? 'disabled' : e.failingSince !== null ? 'failing' : 'ok');

/** An endpoint as JSON. The secret appears only as its hint; the full value is printed once, at add/rotate. */
export function endpointJson(e: EndpointRow) {
  return {
    id: e.id,
    tenant: e.tenant,
    url: e.url,
    enabled: e.enabled,
    ordered: e.ordered,
    eventTypes: e.eventTypes,
    description: e.description,
    secret: e.secretHint,
    previousSecret: e.previousSecretHint,
    previousSecretExpiresAt: iso(e.previousSecretExpiresAt),
    disabledReason: e.disabledReason,
    disabledAt: iso(e.disabledAt),
    failingSince: iso(e.failingSince),
    consecutiveFailures: e.consecutiveFailures,
    createdAt: iso(e.createdAt),
    updatedAt: iso(e.updatedAt),
  };
}

export function healthJson(e: EndpointHealthRow) {
  return {
    ...endpointJson(e),
    deliveredLastHour: e.deliveredLastHour,
    failedAttemptsLastHour: e.failedAttemptsLastHour,
    successRateLastHour: successRate(e.deliveredLastHour, e.failedAttemptsLastHour),
    pending: e.pending,
    delivering: e.delivering,
    dead: e.dead,
    // Cluster-wide: every live relay takes a share. maxInFlight null: ENDPOINT_CONCURRENCY; ratePerSecond null: none.
    limits: { maxInFlight: e.maxInFlight, ratePerSecond: e.ratePerSecond },
    breaker: { state: e.breakerState, openUntil: iso(e.breakerOpenUntil), probeOwner: e.breakerProbeOwner },
  };
}

/** The shared breaker in a word or two: `closed`, `open 25s`, `half-open`. */
export const breakerText = (e: EndpointHealthRow): string =>
  e.breakerState === 'open' && e.breakerOpenUntil !== null
    ? `open ${duration(Math.max(0, (e.breakerOpenUntil - Date.now()) / 1000))}`
    : e.breakerState;

/** The endpoint's own limits (each split between the live relays); `-` when it has none. */
export const limitsText = (e: EndpointHealthRow): string =>
  [
    e.maxInFlight === null ? [] : [`${e.maxInFlight} in flight`],
    e.ratePerSecond === null ? [] : [`${e.ratePerSecond}/s`],
  ]
    .flat()
    .join(', ') || '-';

export function healthTable(rows: readonly EndpointHealthRow[]): string[] {
  return table(
    [
      'ID',
      'TENANT',
      'STATE',
      'URL',
      'OK/1H',
      'FAILED/1H',
      'SUCCESS/1H',
      'PENDING',
      'DEAD',
      'BREAKER',
      'LIMITS',
      'FAILING SINCE',
      'DISABLED',
    ],
    rows.map((e) => [
      e.id,
      truncate(e.tenant ?? '-', 30),
      endpointState(e),
      truncate(e.url, 60),
      String(e.deliveredLastHour),
      String(e.failedAttemptsLastHour),
      percent(successRate(e.deliveredLastHour, e.failedAttemptsLastHour)),
      String(e.pending),
      String(e.dead),
      breakerText(e),
      limitsText(e),
      when(e.failingSince),
      e.enabled
        ? '-'
        : `${truncate(e.disabledReason ?? '(no reason)', 50)}${e.disabledAt === null ? '' : ` (${when(e.disabledAt)})`}`,
    ]),
  );
}

export function deliveryJson(d: DeliveryRow) {
  return {
    id: d.id,
    outboxId: d.outboxId,
    webhookId: `msg_${d.outboxId}`,
    endpointId: d.endpointId,
    tenant: d.tenant,
    eventType: d.eventType,
    status: d.status,
    attempts: d.attempts,
    nextAttemptAt: iso(d.nextAttemptAt),
    lastStatusCode: d.lastStatusCode,
    lastError: d.lastError,
    createdAt: iso(d.createdAt),
    updatedAt: iso(d.updatedAt),
    deliveredAt: iso(d.deliveredAt),
    lastDurationMs: d.lastDurationMs,
  };
}

export function deliveryTable(rows: readonly DeliveryRow[]): string[] {
  return table(
    [
      'ID',
      'WEBHOOK-ID',
      'ENDPOINT',
      'TENANT',
      'EVENT TYPE',
      'STATUS',
      'ATTEMPTS',
      'NEXT ATTEMPT',
      'CODE',
      'LAST ERROR',
    ],
    rows.map((d) => [
      d.id,
      `msg_${d.outboxId}`,
      d.endpointId,
      truncate(d.tenant ?? '-', 30),
      d.eventType ?? '-',
      d.status,
      String(d.attempts),
      d.status === 'pending' ? when(d.nextAttemptAt) : '-',
      d.lastStatusCode === null ? '-' : String(d.lastStatusCode),
      truncate(d.lastError, 60),
    ]),
  );
}

export function attemptJson(a: AttemptRow) {
  return {
    attempt: a.attempt,
    statusCode: a.statusCode,
    error: a.error,
    responseSnippet: a.responseSnippet,
    durationMs: a.durationMs,
    workerId: a.workerId,
    createdAt: iso(a.createdAt),
  };
}

/** `status --json` and `GET /api/v1/status`: one shape. */
export function statusJson(r: StatusReport) {
  const { slot } = r;
  return {
    ok: r.problems.length === 0,
    problems: r.problems,
    warnings: r.warnings,
    slot: {
      name: r.slotName,
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
    deliveries: r.deliveries,
    relays: r.relays.slice(0, RELAYS_SHOWN).map((x) => ({
      owner: x.owner,
      workerId: x.workerId,
      joinedAt: iso(x.joinedAt),
      seenAt: iso(x.seenAt),
    })),
    duePending: r.backlog.due,
    oldestDuePendingAgeSeconds: r.backlog.oldestDueAgeSeconds,
    parked: r.backlog.parked,
    endpointTotals: { ...r.endpointTotals, shown: r.endpoints.length },
    endpoints: r.endpoints.map(healthJson),
    ordered: r.ordered.map((o) => ({
      endpointId: o.endpointId,
      tenant: o.tenant,
      url: o.url,
      blockedKeys: o.blockedKeys,
      oldestBlockedHead:
        o.oldestBlockedHead === null
          ? null
          : {
              ...o.oldestBlockedHead,
              webhookId: `msg_${o.oldestBlockedHead.outboxId}`,
              since: iso(o.oldestBlockedHead.since),
              nextAttemptAt: iso(o.oldestBlockedHead.nextAttemptAt),
            },
    })),
  };
}
