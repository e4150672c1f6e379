import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { LogicalReplicationService, PgoutputPlugin, type Pgoutput } from 'pg-logical-replication';
import type { Logger } from '../log.ts';
import { formatLsn, maxLsn, parseLsn, type Lsn } from './lsn.ts';
import type { OutboxEvent } from './types.ts';
import { createWake } from '../util/wake.ts';

export type WalSessionOptions = {
  databaseUrl: string;
  slotName: string;
  publicationName: string;
  /** How often a standby status is sent even when nothing changed (keep well under wal_sender_timeout / 3). */
  statusIntervalMs: number;
  /** Rebuild the stream when the server has been silent this long (it sends keepalives every wal_sender_timeout / 2). */
  idleTimeoutMs: number;
  fanoutBatch: number;
  log: Logger;
  /** Fans a batch out and resolves only once that work has committed. */
  fanOut: (events: OutboxEvent[]) => Promise<void>;
  /** The slot's confirmed position, read before streaming: statuses can then go out before the first commit. */
  confirmedLsn: () => Promise<Lsn | undefined>;
  onStreaming: () => void;
  onDurable?: (lsn: Lsn) => void;
  /** Seconds between the last fanned-out commit and now; 0 once everything received is processed. */
  onLag?: (seconds: number) => void;
};

type QueueEntry = { event: OutboxEvent } | { commitEndLsn: Lsn; commitTimeMs: number };

/**
 * One replication connection, from START_REPLICATION until the server goes away, an error, the watchdog, or
 * `signal`. Never reused: the caller builds a new session, which restarts from the slot's confirmed position.
 *
 * pg-logical-replication 2.5.0 acknowledges the last *received* LSN on its own timer, so that timer is off
 * (`timeoutSeconds: 0`) and this session owns every standby status it sends: always the last LSN whose
 * fan-out has committed.
 */
export async function runWalSession(o: WalSessionOptions, signal: AbortSignal): Promise<void> {
  const service = new LogicalReplicationService(
    {
      connectionString: o.databaseUrl,
      application_name: 'outbox-relay stream',
      // Fixed output formats so created_at text parses the same way whatever the server's defaults are.
      options: '-c DateStyle=ISO -c TimeZone=UTC -c extra_float_digits=3',
    },
    { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: false } },
  );
  const plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: [o.publicationName] });

  const queue: QueueEntry[] = [];
  let queuedRows = 0;
  let inTransaction = false;
  let fanoutBusy = false;
  let paused = false;
  let durable: Lsn = 0n; // everything before this position has been fanned out and committed
  let lastKeepalive: Lsn = 0n;
  let startedAt: Lsn = 0n; // the confirmed position this session started from
  let progressed = false;
  let lastStatusAt = -Infinity; // the first status goes out as soon as there is something to confirm
  let lastHeardAt = performance.now();
  let replyOwed = false;
  let failure: unknown;
  const highWater = o.fanoutBatch * 4;
  const lowWater = o.fanoutBatch;

  const stop = new AbortController();
  const end = (err?: unknown) => {
    if (err !== undefined && failure === undefined) failure = err;
    stop.abort();
  };
  // Stop reading at once: under a backlog the queue would otherwise never drain and stop() would never return.
  const onOuterAbort = () => {
    socket()?.pause();
    end();
  };
  signal.addEventListener('abort', onOuterAbort, { once: true });
  const wake = createWake();
  const kick = () => wake.wake();

  // The same private socket the library's own flowControl pauses; we pause by rows queued, not per message.
  const socket = () => (service as unknown as { _connection?: { stream?: Socket } })._connection?.stream;

  /** Everything received is processed: the last keepalive position is then safe to confirm too. */
  const idle = () => queue.length === 0 && !inTransaction && !fanoutBusy;

  const sendStatus = (force: boolean) => {
    if (idle()) durable = maxLsn(durable, lastKeepalive);
    if (durable === 0n) return;
    // Periodic, not per batch: a status per fan-out batch costs the server work for no gain. Forced: replies the
    // server asks for, shutdown, and the session's first progress (a restarted relay confirms its replay at once).
    const firstProgress = !progressed && durable > startedAt;
    if (!force && !firstProgress && performance.now() - lastStatusAt < o.statusIntervalMs) return;
    // The library writes lsn + 1 into the status message; we want exactly `durable` confirmed.
    void service.acknowledge(formatLsn(durable - 1n)).catch((err: unknown) => end(err));
    lastStatusAt = performance.now();
    if (firstProgress) progressed = true;
    replyOwed = false;
    o.onDurable?.(durable);
  };

  service.on('error', (err) => end(err));
  service.on('start', () => o.onStreaming());
  service.on('heartbeat', (lsn: string, _ts: number, shouldRespond: boolean) => {
    lastHeardAt = performance.now();
    lastKeepalive = maxLsn(lastKeepalive, parseLsn(lsn));
    if (shouldRespond) {
      replyOwed = true;
      sendStatus(true);
    }
  });
  service.on('data', (_lsn: string, msg: Pgoutput.Message) => {
    lastHeardAt = performance.now();
    switch (msg.tag) {
      case 'relation':
        if (isOutbox(msg)) keepColumnsAsText(msg);
        return;
      case 'begin':
        inTransaction = true;
        return;
      case 'insert':
        if (!isOutbox(msg.relation)) return;
        queue.push({ event: toEvent(msg.new) });
        queuedRows++;
        break;
      case 'commit':
        inTransaction = false;
        // commitTime: microseconds since the Unix epoch (the library adds the Postgres epoch offset).
        if (msg.commitEndLsn !== null) {
          queue.push({
            commitEndLsn: parseLsn(msg.commitEndLsn),
            commitTimeMs: Number((msg.commitTime as bigint) / 1000n),
          });
        }
        break;
      default:
        return;
    }
    // Flow control: a single transaction of 100k rows must not sit in memory at once.
    if (queuedRows >= highWater && !paused) {
      paused = true;
      socket()?.pause();
    }
    kick();
  });

  const fanoutLoop = async () => {
    while (!stop.signal.aborted || queue.length > 0) {
      if (queue.length === 0) {
        await wake.wait(stop.signal);
        continue;
      }
      fanoutBusy = true;
      const { events, commitEndLsn, commitTimeMs } = takeBatch(queue, o.fanoutBatch);
      queuedRows -= events.length;
      try {
        if (events.length > 0) await o.fanOut(events);
      } catch (err) {
        fanoutBusy = false;
        end(err); // unacknowledged rows replay from the slot on the next session
        return;
      }
      // ack only after fan-out commits
      if (commitEndLsn !== undefined) durable = maxLsn(durable, commitEndLsn);
      fanoutBusy = false;
      if (commitTimeMs !== undefined) o.onLag?.(idle() ? 0 : Math.max(0, (Date.now() - commitTimeMs) / 1000));
      if (paused && !stop.signal.aborted && queuedRows <= lowWater) {
        paused = false;
        socket()?.resume();
      }
      sendStatus(replyOwed);
    }
  };

  const statusLoop = async () => {
    while (!stop.signal.aborted) {
      await sleep(Math.min(o.statusIntervalMs, 1_000), undefined, { signal: stop.signal }).catch(() => {});
      if (stop.signal.aborted) return;
      if (!paused && performance.now() - lastHeardAt > o.idleTimeoutMs) {
        end(new Error(`no message from the server in ${Math.round(o.idleTimeoutMs / 1000)}s; rebuilding the stream`));
        return;
      }
      sendStatus(false);
    }
  };

  // Without a known position no status could be sent until the first commit is fanned out; a first transaction
  // that takes longer than wal_sender_timeout would then end every session the same way.
  durable = (await o.confirmedLsn().catch(() => undefined)) ?? 0n;
  startedAt = durable;
  const streaming = service.subscribe(plugin, o.slotName).then(
    () => end(failure ?? new Error('replication stream ended by the server')),
    (err: unknown) => end(err),
  );
  const loops = Promise.all([fanoutLoop(), statusLoop()]);
  await new Promise<void>((resolve) => stop.signal.addEventListener('abort', () => resolve(), { once: true }));
  await loops;
  // A final standby status with the durable position, so a clean stop replays nothing.
  if (failure === undefined) sendStatus(true);
  signal.removeEventListener('abort', onOuterAbort);
  await service.destroy().catch(() => {});
  await Promise.race([streaming, sleep(1_000, undefined, { ref: false })]); // destroy() settles it; never hang a shutdown on it
  if (failure !== undefined && !signal.aborted) {
    throw failure instanceof Error ? failure : new Error('replication stream failed', { cause: failure });
  }
}

function isOutbox(rel: Pgoutput.MessageRelation): boolean {
  return rel.schema === 'webhooks' && rel.name === 'outbox';
}

/**
 * The library decodes columns with the global `pg.types` parsers as it reads each tuple; jsonb through
 * JSON.parse would corrupt integers above 2^53. The relation message is cached and used for every later tuple,
 * so swapping its column parsers (synchronously, before the next message is parsed) keeps the exact text.
 */
function keepColumnsAsText(rel: Pgoutput.MessageRelation): void {
  for (const column of rel.columns) (column as { parser: (raw: string) => unknown }).parser = (raw) => raw;
}

function toEvent(row: Record<string, unknown>): OutboxEvent {
  const { id, event_type, endpoint_id, payload, created_at } = row;
  if (typeof id !== 'string' || typeof event_type !== 'string' || typeof payload !== 'string') {
    throw new Error('outbox row decoded without its text columns; was the relation message seen?');
  }
  return {
    id,
    eventType: event_type,
    endpointId: typeof endpoint_id === 'string' ? endpoint_id : null,
    payload,
    createdAtMs: typeof created_at === 'string' ? parseIsoTimestamp(created_at) : Date.now(),
  };
}

/** `2026-11-22 06:30:00.123456+00` (DateStyle ISO, TimeZone UTC) → epoch ms. */
export function parseIsoTimestamp(text: string): number {
  const ms = Date.parse(text.replace(' ', 'T').replace(/([+-]\d\d)$/, '$1:00'));
  return Number.isNaN(ms) ? Date.now() : ms;
}

/** Takes up to `limit` rows from the head, plus every commit marker up to the next row that does not fit. */
function takeBatch(
  queue: QueueEntry[],
  limit: number,
): { events: OutboxEvent[]; commitEndLsn: Lsn | undefined; commitTimeMs: number | undefined } {
  const events: OutboxEvent[] = [];
  let commitEndLsn: Lsn | undefined;
  let commitTimeMs: number | undefined;
  let taken = 0;
  for (const entry of queue) {
    if ('event' in entry) {
      if (events.length === limit) break;
      events.push(entry.event);
    } else {
      commitEndLsn = entry.commitEndLsn;
      commitTimeMs = entry.commitTimeMs;
    }
    taken++;
  }
  queue.splice(0, taken);
  return { events, commitEndLsn, commitTimeMs };
}
