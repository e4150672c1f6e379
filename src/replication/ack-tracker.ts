import type { OutboxEvent } from '../domain.ts';
import { maxLsn, type Lsn } from './lsn.ts';

/** What one replication session decodes, in WAL order. */
export type StreamMessage =
  | { tag: 'begin' }
  /** `lsn`: the row's own WAL position (0n when unknown: never live). */
  | { tag: 'insert'; event: OutboxEvent; lsn?: Lsn }
  | { tag: 'commit'; endLsn: Lsn; timeMs: number };

/**
 * Rows to fan out together, and the last commit they complete (undefined: the batch ends mid-transaction).
 * `live` splits `events` by what may be sent straight from the stream; `[0, to)` are rows whose transaction's
 * commit has been received (every change it made, endpoints included, has been applied):
 * - `[from, to)`: written after the session started, never seen by an earlier session: nothing of theirs is
 *   recorded yet;
 * - `[0, from)`: written before (a replay): what the table already records of them is skipped;
 * - `[to, …)`: a transaction still open here (too big to hold whole): through the table.
 * Without `liveAfter` (no endpoint changes streamed) `to` is 0: everything goes through the table.
 */
export type Batch = {
  events: OutboxEvent[];
  commitEndLsn: Lsn | undefined;
  commitTimeMs: number | undefined;
  live: { from: number; to: number };
};

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
  /** Rows written after this WAL position may be sent from the stream (undefined: none, all go through the table). */
  liveAfter?: Lsn;
  /** Rows queued at which reading pauses (default 4 × batchRows): a transaction this big waits whole for its commit. */
  maxRows?: number;
};

/** `txn`: the transaction's number in this session; it is complete once its commit is received. */
type Entry = { event: OutboxEvent; lsn: Lsn; txn: number } | { commitEndLsn: Lsn; commitTimeMs: number };

/**
 * The decisions of one replication session, without I/O or timers: which LSN may be confirmed, when a status
 * must go out, when to pause and resume reading. The session feeds it what the socket delivers and what the
 * fan-out finished, with the time; it answers what to do.
 *
 * The invariant: the confirmed position never passes a commit whose rows are not resolved: fanned out and
 * committed, and every delivery sent from the stream delivered and recorded or durably recorded for retry.
 * A keepalive's position (past everything received) is confirmed only while nothing received is unresolved,
 * which is also what Postgres's fast shutdown waits for (it needs exactly the position it sent).
 *
 *   received ─► queued ─► taken (one at a time) ─► dispatched (several may be outstanding) ─► done
 *                                                                                    └─► failed: the session
 *   durable = the last commit end of the longest run of done batches, in the order taken.    ends; the slot
 *                                                                                             replays it
 */
export function createAckTracker(o: AckTrackerOptions) {
  const queue: Entry[] = [];
  let queuedRows = 0;
  let heldBytes = 0; // payloads queued or in the batch being fanned out
  let inTransaction = false;
  let busy = false; // a batch is being dispatched
  const outstanding: { batch: Batch; done: boolean; dispatched: boolean }[] = []; // taken, not yet durable, in order
  let paused = false;
  let durable: Lsn = o.startedAt; // everything before this position is fanned out and committed
  let lastKeepalive: Lsn = 0n;
  let progressed = false;
  let lastStatusAt = -Infinity; // the first status goes out as soon as there is something to confirm
  let lastHeardAt = o.nowMs;
  let replyOwed = false;
  const highWater = o.maxRows ?? o.batchRows * 4;
  let txn = 0; // the transaction being received
  let completeTxn = 0; // every transaction up to this one has its commit received
  const lowWater = o.batchRows;

  /** Everything received is processed: the last keepalive position is then safe to confirm too. */
  const idle = () => queue.length === 0 && !inTransaction && !busy && outstanding.length === 0;

  const entryOf = (batch: Batch) => {
    const entry = outstanding.find((o) => o.batch === batch);
    if (entry === undefined) throw new Error('a batch this tracker did not hand out');
    return entry;
  };

  /** The batch left the stream's hands: its bytes are the scheduler's now, and the next batch may be taken. */
  const dispatched = (batch: Batch): boolean => {
    const entry = entryOf(batch);
    if (entry.dispatched) return false;
    entry.dispatched = true;
    busy = false;
    for (const event of batch.events) heldBytes -= event.payload.length;
    const resume = paused && queuedRows <= lowWater && heldBytes <= o.maxBytes / 2;
    if (resume) paused = false;
    return resume;
  };

  return {
    idle,
    /** A decoded message arrived. Returns true when the socket must pause now (rows queued past high water). */
    received(msg: StreamMessage, nowMs: number): boolean {
      lastHeardAt = nowMs;
      if (msg.tag === 'begin') {
        inTransaction = true;
        txn++;
        return false;
      }
      if (msg.tag === 'insert') {
        queue.push({ event: msg.event, lsn: msg.lsn ?? 0n, txn });
        queuedRows++;
        heldBytes += msg.event.payload.length;
      } else {
        inTransaction = false;
        completeTxn = txn;
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
    /** The next batch: up to `batchRows` rows (or `maxRows`, when fewer fit downstream) from the head, plus every commit marker up to the next row that does not fit. */
    take(maxRows = o.batchRows): Batch | undefined {
      if (queue.length === 0 || busy) return undefined;
      const most = Math.max(1, Math.min(o.batchRows, maxRows));
      const events: OutboxEvent[] = [];
      let commitEndLsn: Lsn | undefined;
      let commitTimeMs: number | undefined;
      let taken = 0;
      let bytes = 0;
      let liveFrom: number | undefined; // the first row written after the session started
      let complete = 0; // rows whose transaction's commit is received (a prefix)
      // The rows of a transaction whose commit has not arrived yet wait for it (it is usually a moment away: a
      // transaction is streamed once committed), so they can go out from the stream; unless reading paused (a
      // transaction too big to hold whole: its rows go through the table).
      let limit = queue.length;
      if (inTransaction && !paused) {
        let lastCommit = queue.length - 1;
        while (lastCommit >= 0 && 'event' in queue[lastCommit]!) lastCommit--;
        limit = lastCommit + 1;
      }
      if (limit === 0) return undefined;
      for (const entry of limit === queue.length ? queue : queue.slice(0, limit)) {
        if ('event' in entry) {
          if (events.length === most || (events.length > 0 && bytes + entry.event.payload.length > o.maxBytes / 2))
            break;
          if (liveFrom === undefined && o.liveAfter !== undefined && entry.lsn > o.liveAfter) liveFrom = events.length;
          events.push(entry.event);
          if (entry.txn <= completeTxn) complete = events.length;
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
      const from = Math.min(liveFrom ?? events.length, complete);
      const live = o.liveAfter === undefined ? { from: 0, to: 0 } : { from, to: complete };
      const batch = { events, commitEndLsn, commitTimeMs, live };
      outstanding.push({ batch, done: false, dispatched: false });
      return batch;
    },
    dispatched,
    /**
     * Every row of the batch is resolved (fanned out and committed; its deliveries sent from the stream recorded).
     * Its commit becomes durable once every batch taken before it is done too. Implies `dispatched`. Returns
     * whether reading may resume (it paused and the queue fell to low water) and the replication lag to report
     * (0 when caught up).
     */
    done(batch: Batch, wallNowMs: number): { resume: boolean; lagSeconds: number | undefined } {
      const resume = dispatched(batch);
      entryOf(batch).done = true;
      let lastTimeMs: number | undefined;
      while (outstanding[0]?.done === true) {
        const { batch: head } = outstanding.shift()!;
        if (head.commitEndLsn !== undefined) durable = maxLsn(durable, head.commitEndLsn); // ack only once resolved
        if (head.commitTimeMs !== undefined) lastTimeMs = head.commitTimeMs;
      }
      const lagSeconds =
        lastTimeMs === undefined ? undefined : idle() ? 0 : Math.max(0, (wallNowMs - lastTimeMs) / 1000);
      return { resume, lagSeconds };
    },
    /** Batches taken and not yet resolved. */
    outstanding: (): number => outstanding.length,
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
