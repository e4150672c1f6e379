import { nextDelayMs } from '../delivery/retry.ts';
import type { Attempt, Job, Outcome } from './types.ts';

export type RetryPolicy = { scheduleMs: readonly number[]; jitter: number; random?: () => number };

/**
 * Decides what a finished attempt does to its delivery: delivered, back to pending after the schedule's wait
 * (or the receiver's Retry-After when that is longer), or dead when the schedule is used up.
 */
export function toOutcome(job: Job, attempt: Exclude<Attempt, { kind: 'lease-lost' }>, policy: RetryPolicy): Outcome {
  const base = { deliveryId: job.deliveryId, attempt: job.attempt, durationMs: Math.round(attempt.durationMs) };
  if (attempt.kind === 'delivered') {
    return { ...base, status: 'delivered', delayMs: 0, statusCode: attempt.status, error: null, snippet: null };
  }
  const scheduled =
    attempt.permanent === true ? undefined : nextDelayMs(job.attempt, policy.scheduleMs, policy.jitter, policy.random);
  const failure = { statusCode: attempt.status ?? null, error: attempt.error, snippet: attempt.snippet ?? null };
  if (scheduled === undefined) return { ...base, ...failure, status: 'dead', delayMs: 0 };
  return { ...base, ...failure, status: 'pending', delayMs: Math.max(scheduled, attempt.retryAfterMs ?? 0) };
}
