import { setTimeout as sleep } from 'node:timers/promises';
import type { DatabasePool } from 'slonik';
import type { Logger } from '../log.ts';
import { writeOutcomes } from './queries.ts';
import type { Outcome } from './types.ts';
import { createWake } from '../util/wake.ts';

export type OutcomeWriterDeps = {
  pool: DatabasePool;
  owner: string;
  workerId: string;
  /** Disable an endpoint after this long failing with no success (0 = never). */
  autoDisableMs: number;
  log: Logger;
  maxBatch?: number;
  /** `count` outcomes left memory; `written` of them still held their lease; `disabled` endpoints were just disabled. */
  onWritten: (count: number, written: number, outcomes: readonly Outcome[], disabled: readonly string[]) => void;
};

/**
 * Batches outcome writes: while one statement runs, the next batch gathers, so a busy relay writes hundreds of
 * outcomes per statement and an idle one writes each at once. A failed write is retried (the outcome is the only
 * record that a receiver answered); the lease guard makes a late retry harmless.
 */
export function createOutcomeWriter(deps: OutcomeWriterDeps) {
  const maxBatch = deps.maxBatch ?? 1_000;
  let buffer: Outcome[] = [];
  const wake = createWake();
  const flushed: (() => void)[] = [];

  async function run(signal: AbortSignal): Promise<void> {
    let backoffMs = 100;
    // Keeps going after abort until the buffer is empty, so a drain records what finished.
    while (!signal.aborted || buffer.length > 0) {
      if (buffer.length === 0) {
        await wake.wait(signal);
        continue;
      }
      const batch = buffer.slice(0, maxBatch);
      try {
        const { written, disabled } = await deps.pool.one(
          writeOutcomes(deps.owner, deps.workerId, deps.autoDisableMs, batch),
        );
        buffer = buffer.slice(batch.length);
        backoffMs = 100;
        deps.onWritten(batch.length, written, batch, disabled);
        if (buffer.length === 0) for (const resolve of flushed.splice(0)) resolve();
      } catch (err) {
        deps.log.error({ err, outcomes: batch.length }, 'writing delivery outcomes failed; retrying');
        if (signal.aborted && backoffMs > 5_000) return; // database gone at shutdown: leases expire, peers redo
        await sleep(backoffMs);
        backoffMs = Math.min(backoffMs * 2, 10_000);
      }
    }
  }

  return {
    run,
    push(outcome: Outcome): void {
      buffer.push(outcome);
      wake.wake();
    },
    pending: () => buffer.length,
    /** Resolves once everything pushed so far has been written. */
    async flushed(): Promise<void> {
      if (buffer.length === 0) return;
      await new Promise<void>((resolve) => flushed.push(resolve));
    },
  };
}
