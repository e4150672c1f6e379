import { nextDelayMs } from './retry.ts';
import type { Attempt, Job, Outcome } from '../domain.ts';

export type RetryPolicy = { scheduleMs: readonly number[]; jitter: number; random?: () => number };

/**
 * Decides what a finished attempt does to its delivery:
 * - delivered;
 * - deferred (breaker open): pending until the breaker half-opens, the attempt given back;
 * - 410 Gone: parked — pending on an endpoint that the same write disables, so nothing is dropped;
 * - failed: pending after the schedule's wait (or the receiver's Retry-After when longer), or dead when the
 *   schedule is used up or retrying cannot help (`permanent`).
 */
export function toOutcome(job: Job, attempt: Exclude<Attempt, { kind: 'lease-lost' }>, policy: RetryPolicy): Outcome {
  const base = {
    deliveryId: job.deliveryId,
    outboxId: job.outboxId,
    endpointId: job.endpointId,
    attempt: job.attempt,
    refund: false,
    gone: false,
    ...(job.ordered === true ? { ordered: true } : {}),
  };
  if (attempt.kind === 'deferred') {
    return {
      ...base,
      refund: true,
      status: 'pending',
      delayMs: Math.max(0, Math.ceil(attempt.untilMs - Date.now())),
      statusCode: null,
      error: null,
      snippet: null,
      durationMs: 0,
    };
  }
  const durationMs = Math.round(attempt.durationMs);
  if (attempt.kind === 'delivered') {
    return {
      ...base,
      status: 'delivered',
      delayMs: 0,
      statusCode: attempt.status,
      error: null,
      snippet: null,
      durationMs,
    };
  }
  const failure = {
    statusCode: attempt.status ?? null,
    error: attempt.error,
    snippet: attempt.snippet ?? null,
    durationMs,
  };
  if (attempt.status === 410) {
    return { ...base, ...failure, gone: true, status: 'pending', delayMs: 0, error: '410 Gone: endpoint disabled' };
  }
  const scheduled =
    attempt.permanent === true ? undefined : nextDelayMs(job.attempt, policy.scheduleMs, policy.jitter, policy.random);
  if (scheduled === undefined) return { ...base, ...failure, status: 'dead', delayMs: 0 };
  return { ...base, ...failure, status: 'pending', delayMs: Math.max(scheduled, attempt.retryAfterMs ?? 0) };
}
