import { setTimeout as sleep } from 'node:timers/promises';
import type { DatabasePool } from 'slonik';
import type { Logger } from '../log.ts';
import { promoteHeads } from '../db/ordering.ts';
import { isTransient, sqlStateOf } from '../db/pg-errors.ts';
import { writeOutcomes, type DisablePolicy } from './queries.ts';
import { jobKey, type Outcome } from '../domain.ts';
import { createWake } from '../util/wake.ts';

export type OutcomeWriterDeps = {
  pool: DatabasePool;
  owner: string;
  workerId: string;
  /** Disable an endpoint after this long failing with no success, or this many failed attempts in a row (0 = never). */
  disablePolicy: DisablePolicy;
  log: Logger;
  maxBatch?: number;
  /** How long a write waits for more outcomes to join it (default 5 ms); 0 writes at once. */
  lingerMs?: number;
};

/**
 * One write: `left` names the endpoint of each outcome that left memory (recorded or dropped); `written` of them
 * still held their lease (or were inserted); `outcomes` were recorded; `dropped` the database refused;
 * `disabled` endpoints were just disabled.
 */
export type Written = {
  left: readonly string[];
  written: number;
  outcomes: readonly Outcome[];
  dropped: readonly Outcome[];
  disabled: readonly string[];
};

/**
 * Batches outcome writes: while one statement runs, the next batch gathers, and each write first lingers a few
 * milliseconds for more outcomes to join it. Without the linger a steady 1,000 deliveries/s went out as
 * hundreds of statements of one to three outcomes each, every one planned and committed by Postgres; the
 * linger delays only the recording (and the freeing of scheduler places), never a request. A failed write is retried (the outcome is the only
 * record that a receiver answered); the lease guard makes a late retry harmless.
 */
export function createOutcomeWriter(deps: OutcomeWriterDeps) {
  const maxBatch = deps.maxBatch ?? 1_000;
  const lingerMs = deps.lingerMs ?? 5;
  let buffer: Outcome[] = [];
  let singly = 0; // outcomes still to write one at a time after a rejected batch
  const wake = createWake();
  const waiting = new Map<string, number>(); // jobKey → outcomes of it in the buffer
  const forget = (written: readonly Outcome[]) => {
    for (const outcome of written) {
      const key = jobKey(outcome);
      const left = (waiting.get(key) ?? 1) - 1;
      if (left > 0) waiting.set(key, left);
      else waiting.delete(key);
    }
  };

  /**
   * Ordered keys whose head this write resolved: their next delivery is made due once more, after the commit
   * (db/ordering.ts says why). Best effort: a failure leaves the trigger's promotion, which covers all but a
   * head resolved while its key's next rows were being written.
   */
  const promoteAfter = async (batch: readonly Outcome[]) => {
    const resolved = batch.filter((o) => o.ordered === true && o.status !== 'pending').map((o) => o.outboxId);
    if (resolved.length === 0) return;
    await deps.pool.one(promoteHeads(resolved)).catch((err: unknown) => {
      deps.log.warn({ err }, 'promoting the next deliveries of ordered keys failed');
    });
  };

  /** Writes until `signal` aborts and the buffer is empty, reporting each write to `onWritten`. */
  async function run(signal: AbortSignal, onWritten: (w: Written) => void): Promise<void> {
    let backoffMs = 100;
    // Keeps going after abort until the buffer is empty, so a drain records what finished.
    while (!signal.aborted || buffer.length > 0) {
      if (buffer.length === 0) {
        await wake.wait(signal);
        continue;
      }
      if (lingerMs > 0 && buffer.length < maxBatch && singly === 0 && !signal.aborted) await sleep(lingerMs);
      // After a failure that is not about the connection, write one outcome at a time: a single outcome the
      // database rejects must not hold back every other one (its lease expires; a peer redoes it).
      const batch = buffer.slice(0, singly > 0 ? 1 : maxBatch);
      try {
        const { written, disabled } = await deps.pool.one(
          writeOutcomes(deps.owner, deps.workerId, deps.disablePolicy, batch),
        );
        buffer = buffer.slice(batch.length);
        forget(batch);
        backoffMs = 100;
        if (singly > 0) singly--;
        await promoteAfter(batch);
        for (const endpointId of disabled) deps.log.warn({ endpointId }, 'endpoint disabled');
        onWritten({ left: batch.map((o) => o.endpointId), written, outcomes: batch, dropped: [], disabled });
      } catch (err) {
        const state = sqlStateOf(err);
        const dataProblem = state !== undefined && !isTransient(state); // the data, not the connection
        if (dataProblem && batch.length === 1) {
          deps.log.error({ err, deliveryId: batch[0]!.deliveryId }, 'an outcome the database rejects was dropped');
          buffer = buffer.slice(1);
          forget(batch);
          onWritten({ left: [batch[0]!.endpointId], written: 0, outcomes: [], dropped: batch, disabled: [] });
          continue;
        }
        if (dataProblem) singly = batch.length;
        deps.log.error({ err, outcomes: batch.length }, 'writing delivery outcomes failed; retrying');
        if (signal.aborted && backoffMs > 5_000) return; // database gone at shutdown: leases expire, peers redo
        if (!dataProblem) await sleep(backoffMs);
        backoffMs = Math.min(backoffMs * 2, 10_000);
      }
    }
  }

  return {
    run,
    push: (outcome: Outcome): void => {
      buffer.push(outcome);
      const key = jobKey(outcome);
      waiting.set(key, (waiting.get(key) ?? 0) + 1);
      wake.wake();
    },
    /** Whether an outcome of this delivery (jobKey) waits to be written. */
    holds: (key: string): boolean => waiting.has(key),
    /** Deliveries answered but not yet recorded: their leases must still be renewed. */
    pendingIds: (): string[] => buffer.flatMap((o) => (o.deliveryId === null ? [] : [o.deliveryId])),
  };
}
