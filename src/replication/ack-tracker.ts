import type { OutboxEvent } from '../domain.ts';
import { maxLsn, type Lsn } from './lsn.ts';

/** What one replication session decodes, in WAL order. */
export type StreamMessage =
  { tag: 'begin' } | { tag: 'insert'; event: OutboxEvent } | { tag: 'commit'; endLsn: Lsn; timeMs: number };

/** Rows to fan out together, and the last commit they complete (undefined: the batch ends mid-transaction). */
export type Batch = { events: OutboxEvent[]; commitEndLsn: Lsn | undefined; commitTimeMs: number | undefined };

export type AckTrackerOptions = {
  /** Most rows fanned out in one batch; the socket pauses at 4× this many rows queued and resumes at 1×. */
  batchRows: number;
  /**
   * Most payload bytes (characters) held for rows received but not yet fanned out, the batch in flight
   * included: the socket pauses at this many and resumes at half; a batch carries at most half of it (at least
   * one row, however large).
   */
  maxBytes: number;
  /** How often a standby status goes out when nothing forces one. */
  statusIntervalMs: number;
  /** Rebuild the stream after this long without a message from the server (unless we paused reading). */
  idleTimeoutMs: number;
  /** The slot's confirmed position when the session started (0n when unknown). */
  startedAt: Lsn;
  /** Monotonic ms when the session started. */
  nowMs: number;
};

type Entry = { event: OutboxEvent } | { commitEndLsn: Lsn; commitTimeMs: number };

/**
 * The decisions of one replication session, without I/O or timers: which LSN may be confirmed, when a status
 * must go out, when to pause and resume reading. The session feeds it what the socket delivers and what the
 * fan-out finished, with the time; it answers what to do.
 *
 * The invariant: the confirmed position never passes a commit whose rows are not fanned out and committed.
 * A keepalive's position (past everything received) is confirmed only while nothing received is unprocessed,
 * which is also what Postgres's fast shutdown waits for (it needs exactly the position it sent).
 *
 *   received ─► queued ─► taken (one batch at a time) ─► done: durable = its last commit end
 *                                                     └─► failed: the session ends; the slot replays it
 */
export function createAckTracker(o: AckTrackerOptions) {
  const queue: Entry[] = [];
  let queuedRows = 0;
  let heldBytes = 0; // payloads queued or in the batch being fanned out
  let inTransaction = false;
  let busy = false; // a batch is being fanned out
  let paused = false;
  let durable: Lsn = o.startedAt; // everything before this position is fanned out and committed
  let lastKeepalive: Lsn = 0n;
  let progressed = false;
  let lastStatusAt = -Infinity; // the first status goes out as soon as there is something to confirm
  let lastHeardAt = o.nowMs;
  let replyOwed = false;
  const highWater = o.batchRows * 4;
  const lowWater = o.batchRows;

  /** Everything received is processed: the last keepalive position is then safe to confirm too. */
  const idle = () => queue.length === 0 && !inTransaction && !busy;

  return {
    idle,
    /** A decoded message arrived. Returns true when the socket must pause now (rows queued past high water). */
    received(msg: StreamMessage, nowMs: number): boolean {
      lastHeardAt = nowMs;
      if (msg.tag === 'begin') {
        inTransaction = true;
        return false;
      }
      if (msg.tag === 'insert') {
        queue.push({ event: msg.event });
        queuedRows++;
        heldBytes += msg.event.payload.length;
      } else {
        inTransaction = false;
        queue.push({ commitEndLsn: msg.endLsn, commitTimeMs: msg.timeMs });
      }
      if ((queuedRows >= highWater || heldBytes >= o.maxBytes) && !paused) {
        paused = true;
        return true;
      }
      return false;
    },
    /** The server sent a keepalive; `replyRequested` means it waits for a status (e.g. to shut down). */
    keepalive(lsn: Lsn, replyRequested: boolean, nowMs: number): void {
      lastHeardAt = nowMs;
      lastKeepalive = maxLsn(lastKeepalive, lsn);
      if (replyRequested) replyOwed = true;
    },
    hasQueued: () => queue.length > 0,
    /** The next batch: up to `batchRows` rows from the head, plus every commit marker up to the next row that does not fit. */
    take(): Batch | undefined {
      if (queue.length === 0 || busy) return undefined;
      const events: OutboxEvent[] = [];
      let commitEndLsn: Lsn | undefined;
      let commitTimeMs: number | undefined;
      let taken = 0;
      let bytes = 0;
      for (const entry of queue) {
        if ('event' in entry) {
          if (
            events.length === o.batchRows ||
            (events.length > 0 && bytes + entry.event.payload.length > o.maxBytes / 2)
          )
            break;
          events.push(entry.event);
          bytes += entry.event.payload.length;
        } else {
          commitEndLsn = entry.commitEndLsn;
          commitTimeMs = entry.commitTimeMs;
        }
        taken++;
      }
      queue.splice(0, taken);
      queuedRows -= events.length;
      busy = true;
      return { events, commitEndLsn, commitTimeMs };
    },
    /**
     * The batch's fan-out committed: its commit is now durable. Returns whether reading may resume (it paused
     * and the queue fell to low water) and the replication lag to report (0 when caught up).
     */
    done(batch: Batch, wallNowMs: number): { resume: boolean; lagSeconds: number | undefined } {
      busy = false;
      for (const event of batch.events) heldBytes -= event.payload.length;
      if (batch.commitEndLsn !== undefined) durable = maxLsn(durable, batch.commitEndLsn); // ack only after fan-out commits
      const resume = paused && queuedRows <= lowWater && heldBytes <= o.maxBytes / 2;
      if (resume) paused = false;
      const lagSeconds =
        batch.commitTimeMs === undefined
          ? undefined
          : idle()
            ? 0
            : Math.max(0, (wallNowMs - batch.commitTimeMs) / 1000);
      return { resume, lagSeconds };
    },
    /**
     * The LSN to send in a standby status now, or undefined when none is due. A status is due when forced (the
     * caller's shutdown), when the server asked for a reply, on the session's first progress (a restarted relay
     * confirms its replay at once), or every `statusIntervalMs`. Sending it is assumed.
     */
    status(nowMs: number, force = false): Lsn | undefined {
      if (idle()) durable = maxLsn(durable, lastKeepalive);
      if (durable === 0n) return undefined;
      const firstProgress = !progressed && durable > o.startedAt;
      if (!force && !replyOwed && !firstProgress && nowMs - lastStatusAt < o.statusIntervalMs) return undefined;
      lastStatusAt = nowMs;
      if (firstProgress) progressed = true;
      replyOwed = false;
      return durable;
    },
    /**
     * The server has been silent past the idle timeout while we were reading: the connection is dead. Time spent
     * paused is not silence (we were not reading), so the clock restarts while paused.
     */
    silentTooLong(nowMs: number): boolean {
      if (paused) {
        lastHeardAt = nowMs;
        return false;
      }
      return nowMs - lastHeardAt > o.idleTimeoutMs;
    },
    durable: (): Lsn => durable,
    heldBytes: (): number => heldBytes,
  };
}

export type AckTracker = ReturnType<typeof createAckTracker>;
