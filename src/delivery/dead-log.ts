// A delivery that ends dead (its last retry failed, or the destination was refused by policy: plain http without
// ALLOW_HTTP, a blocked address, an unusable secret) is the one outcome an operator must hear about, at the
// default log level. A refused endpoint kills every delivery it gets at once, so the lines are rate-limited per
// endpoint: one per interval, the next one carrying how many were held back.
import type { Job, Outcome } from '../domain.ts';
import type { Logger } from '../log.ts';

/** Whether a line may be written now, and how many were held back before it. No I/O, no timers. */
export type Throttle = { admit(key: string, nowMs: number): { suppressed: number } | undefined; size(): number };

/**
 * At most one admitted line per key per `intervalMs`; refused ones are counted and reported with the next
 * admitted line for that key. A key is forgotten once it has been quiet for an interval with nothing held back
 * (swept at most once per interval), so memory follows the endpoints that failed lately, not all that ever did.
 */
export function perKeyThrottle(intervalMs: number): Throttle {
  const seen = new Map<string, { atMs: number; suppressed: number }>();
  let sweptAtMs = -Infinity;
  return {
    admit(key, nowMs) {
      const entry = seen.get(key);
      if (entry !== undefined && nowMs - entry.atMs < intervalMs) {
        entry.suppressed++;
        return undefined;
      }
      seen.set(key, { atMs: nowMs, suppressed: 0 });
      if (nowMs - sweptAtMs >= intervalMs) {
        sweptAtMs = nowMs;
        for (const [k, e] of seen) if (nowMs - e.atMs >= intervalMs && e.suppressed === 0) seen.delete(k);
      }
      return { suppressed: entry?.suppressed ?? 0 };
    },
    size: () => seen.size,
  };
}

/** scheme://host[:port] of a URL: never its credentials, path or query. */
function originOf(url: string): string | undefined {
  try {
    return new URL(url).origin;
  } catch {
    return undefined;
  }
}

/**
 * Returns the hook the relay calls with every outcome it decides: dead ones are logged at warn with the endpoint,
 * the delivery and the reason (never the payload, headers, secrets, or the URL beyond its origin).
 */
export function createDeadLog(
  log: Logger,
  { intervalMs = 60_000, now = () => performance.now() }: { intervalMs?: number; now?: () => number } = {},
): (job: Job, outcome: Outcome) => void {
  const throttle = perKeyThrottle(intervalMs);
  return (job, outcome) => {
    if (outcome.status !== 'dead') return;
    const admitted = throttle.admit(job.endpointId, now());
    if (admitted === undefined) return;
    log.warn(
      {
        endpointId: job.endpointId,
        deliveryId: job.deliveryId,
        outboxId: job.outboxId,
        attempts: job.attempt,
        statusCode: outcome.statusCode,
        reason: outcome.error,
        origin: originOf(job.url),
        suppressed: admitted.suppressed,
        intervalMs,
      },
      'delivery dead',
    );
  };
}
