import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { LogicalReplicationService, PgoutputPlugin, type Pgoutput } from 'pg-logical-replication';
import type { Config } from '../config.ts';
import { chooseSsl, linkOptions, parseDatabaseUrl, type PgSsl } from '../db/connection-options.ts';
import { SqlState, sqlStateOf } from '../db/pg-errors.ts';
import { slotLost } from '../db/slots.ts';
import type { OutboxEvent } from '../domain.ts';
import { coerceError, isRelayError, RelayError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { createWake } from '../util/wake.ts';
import type { EndpointChange } from '../endpoints/cache.ts';
import { createAckTracker, type Batch, type StreamMessage } from './ack-tracker.ts';
import { formatLsn, parseLsn, type Lsn } from './lsn.ts';
import { untilAborted } from '../util/abort.ts';

/**
 * The settings a session reads. statusIntervalMs: how often a standby status goes out even when nothing changed
 * (keep well under wal_sender_timeout / 3); streamIdleTimeoutMs: rebuild the stream when the server has been
 * silent this long (every status asks it for an answer, so a live server is never silent longer than one status
 * interval); fanoutBatch: rows per fan-out batch.
 */
export type WalSessionSettings = Pick<
  Config,
  'slotName' | 'publicationName' | 'statusIntervalMs' | 'streamIdleTimeoutMs' | 'fanoutBatch'
>;

export type WalSessionOptions = WalSessionSettings & {
  databaseUrl: string;
  /** Payload bytes of rows received and not yet fanned out (a quarter of PAYLOAD_BUDGET). */
  maxQueuedBytes: number;
  log: Logger;
  /**
   * Fans a batch out. Resolves once the batch is handed over (rows inserted, deliveries scheduled); `resolved`
   * settles once every row is resolved: its fan-out committed and each delivery sent from the stream recorded
   * (delivered, or durably recorded for retry). `live`: the rows that may be sent from the stream.
   */
  fanOut: (events: OutboxEvent[], live: { from: number; to: number }) => Promise<{ resolved: Promise<void> }>;
  /**
   * Called before each session streams: loads the endpoint cache and says from which WAL position rows may be
   * sent from the stream (undefined: none; the endpoints publication is not streamed then).
   */
  prepare?: () => Promise<{ liveAfter: Lsn | undefined; endpointsPublication: string | undefined }>;
  /** An endpoint changed (insert or update; `undefined` columns did not change) or was deleted, in commit order. */
  onEndpoint?: (change: EndpointChange) => void;
  /** How many rows the fan-out can take now (the WAL is the queue: a batch no bigger than what fits in memory). */
  fits?: () => number;
  /** Once true, the session stops taking new batches (shutdown: what is dispatched resolves, then the final status). */
  stopReading?: () => boolean;
  /** The slot's confirmed position, read before streaming: statuses can then go out before the first commit. */
  confirmedLsn: () => Promise<Lsn | undefined>;
  onStreaming: () => void;
  onDurable?: (lsn: Lsn) => void;
  /** Seconds between the last fanned-out commit and now; 0 once everything received is processed. */
  onLag?: (seconds: number) => void;
};

/**
 * One replication connection, from START_REPLICATION until the server goes away, an error, the watchdog, or
 * `signal`. Never reused: the caller builds a new session, which restarts from the slot's confirmed position.
 *
 * pg-logical-replication 2.5.0 acknowledges the last *received* LSN on its own timer, so that timer is off
 * (`timeoutSeconds: 0`) and this session owns every standby status it sends: always the last LSN whose
 * fan-out has committed.
 */
export async function runWalSession(o: WalSessionOptions, signal: AbortSignal): Promise<void> {
  const conn = parseDatabaseUrl(o.databaseUrl);
  // allow/prefer: the library connects inside subscribe(), so a trial connection picks TLS or plain first.
  const ssl = await chooseSsl(conn, (candidate) => probeReplication(conn.url, candidate));
  // The abort listener below is not registered yet: a stop that came during the trial connection must end the
  // session here, or it would go on to stream the slot (a released one, at shutdown) and never stop.
  if (signal.aborted) return;
  const service = new LogicalReplicationService(
    {
      connectionString: conn.url,
      ssl,
      application_name: 'outbox-relay stream',
      ...linkOptions,
      // Fixed output formats so created_at text parses the same way whatever the server's defaults are.
      options: '-c DateStyle=ISO -c TimeZone=UTC -c extra_float_digits=3',
    },
    { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: false } },
  );

  let failure: unknown;
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

  // The same private socket the library's own flowControl pauses; we pause by rows queued, not per message.
  const socket = () => (service as unknown as { _connection?: { stream?: Socket } })._connection?.stream;

  // Without a known position no status could be sent until the first commit is fanned out; a first transaction
  // that takes longer than wal_sender_timeout would then end every session the same way.
  const startedAt = (await o.confirmedLsn().catch(() => undefined)) ?? 0n;
  const prepared = o.prepare === undefined ? undefined : await o.prepare();
  // A stop during those awaits: end here, before streaming (nothing was received, nothing is owed).
  if (stop.signal.aborted) {
    signal.removeEventListener('abort', onOuterAbort);
    if (failure !== undefined && !signal.aborted) throw classify(failure, o.slotName);
    return;
  }
  const publicationNames = [o.publicationName];
  if (prepared?.endpointsPublication !== undefined) publicationNames.push(prepared.endpointsPublication);
  const plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames });
  const tracker = createAckTracker({
    liveAfter: prepared?.liveAfter,
    batchRows: o.fanoutBatch,
    // A committed transaction is held whole until this many rows (within the byte budget), so its rows can be
    // sent from the stream; a bigger one pauses reading and goes through the table in batches.
    maxRows: Math.max(4 * o.fanoutBatch, 50_000),
    maxBytes: o.maxQueuedBytes,
    statusIntervalMs: o.statusIntervalMs,
    idleTimeoutMs: o.streamIdleTimeoutMs,
    startedAt,
    nowMs: performance.now(),
  });

  /** Sends the standby status the tracker says is due (or, forced, whatever is durable). */
  const sendStatus = (force = false) => {
    const lsn = tracker.status(performance.now(), force);
    if (lsn === undefined) return;
    // The library writes lsn + 1 into the status message; we want exactly `lsn` confirmed. Each status asks
    // the server to answer at once (a keepalive), so a silent link shows as silence within STATUS_INTERVAL.
    void service.acknowledge(formatLsn(lsn - 1n), true).catch((err: unknown) => end(err));
    o.onDurable?.(lsn);
  };
  const receive = (msg: StreamMessage) => {
    if (tracker.received(msg, performance.now())) socket()?.pause(); // a 100k-row transaction must not sit in memory
    wake.wake();
  };

  service.on('error', (err) => end(err));
  service.on('start', () => o.onStreaming());
  // The server asked for our position and we could not give it all (deliveries sent from the stream are not
  // recorded yet) since this time. A fast shutdown waits for exactly its position: after OWED_MS the session
  // ends, so Postgres can stop; the next session replays through the table what was not confirmed.
  let owedSince: number | undefined;
  service.on('heartbeat', (lsn: string, _ts: number, shouldRespond: boolean) => {
    tracker.keepalive(parseLsn(lsn), shouldRespond, performance.now());
    if (shouldRespond && !tracker.idle()) owedSince ??= performance.now();
    if (shouldRespond) sendStatus();
  });
  let commitLsn: string | undefined; // of the transaction being received (BEGIN carries it)
  service.on('data', (lsn: string, msg: Pgoutput.Message) => {
    switch (msg.tag) {
      case 'relation':
        if (isOutbox(msg)) keepColumnsAsText(msg);
        return;
      case 'begin':
        commitLsn = msg.commitLsn ?? undefined;
        return receive({ tag: 'begin' });
      case 'insert':
        if (isOutbox(msg.relation)) {
          receive({ tag: 'insert', event: toEvent(msg.new, commitLsn), lsn: parseLsn(lsn) });
        } else if (isEndpoints(msg.relation)) o.onEndpoint?.(toEndpointChange(msg.new));
        return;
      case 'update':
        if (isEndpoints(msg.relation)) o.onEndpoint?.(toEndpointChange(msg.new));
        return;
      case 'delete': {
        const id: unknown = (msg.key ?? msg.old)?.id;
        if (isEndpoints(msg.relation) && typeof id === 'string') o.onEndpoint?.({ deleted: id });
        return;
      }
      case 'commit':
        // commitTime: microseconds since the Unix epoch (the library adds the Postgres epoch offset).
        if (msg.commitEndLsn !== null) {
          receive({
            tag: 'commit',
            endLsn: parseLsn(msg.commitEndLsn),
            timeMs: Number((msg.commitTime as bigint) / 1000n),
          });
        }
        return;
      default:
        return;
    }
  });

  const resolved = (batch: Batch) => {
    const { resume, lagSeconds } = tracker.done(batch, Date.now());
    if (lagSeconds !== undefined) o.onLag?.(lagSeconds);
    if (resume && !stop.signal.aborted) socket()?.resume();
    sendStatus();
    wake.wake(); // a stop waiting for the last batch to resolve
  };
  const reading = () => o.stopReading?.() !== true;
  const fanoutLoop = async () => {
    // Once stopping, rows already received are not taken any more (they replay from the slot on the next start),
    // but what was dispatched resolves before the final status, so a clean stop repeats nothing.
    // Bounded: outcomes that can no longer be written (the database gone at shutdown) must not hang the stop.
    let drainDeadline = Infinity;
    const draining = () => {
      if (!stop.signal.aborted) return true;
      drainDeadline = Math.min(drainDeadline, performance.now() + DRAIN_MS);
      return tracker.outstanding() > 0 && failure === undefined && performance.now() < drainDeadline;
    };
    while (draining()) {
      const batch = reading() && !stop.signal.aborted ? tracker.take(o.fits?.()) : undefined;
      if (batch === undefined) {
        if (!reading()) socket()?.pause();
        await wake.wait(stop.signal.aborted ? NEVER : stop.signal, 100);
        continue;
      }
      try {
        if (batch.events.length === 0) {
          resolved(batch);
          continue;
        }
        const handed = await o.fanOut(batch.events, batch.live);
        if (tracker.dispatched(batch) && !stop.signal.aborted) socket()?.resume();
        handed.resolved.then(
          () => resolved(batch),
          (err: unknown) => end(err), // unacknowledged rows replay from the slot on the next session
        );
      } catch (err) {
        end(err); // unacknowledged rows replay from the slot on the next session
        return;
      }
    }
  };

  const statusLoop = async () => {
    while (!stop.signal.aborted) {
      await sleep(Math.min(o.statusIntervalMs, 1_000), undefined, { signal: stop.signal }).catch(() => {});
      if (stop.signal.aborted) return;
      if (tracker.idle()) owedSince = undefined;
      else if (owedSince !== undefined && performance.now() - owedSince > OWED_MS) {
        o.log.warn('the server waits for its position (shutting down?) while deliveries are unrecorded; reconnecting');
        end(new RelayError('STREAM_FAILED', 'the server asked for a position this relay cannot confirm yet'));
        return;
      }
      if (tracker.silentTooLong(performance.now())) {
        const seconds = Math.round(o.streamIdleTimeoutMs / 1000);
        end(new RelayError('STREAM_FAILED', `no message from the server in ${seconds}s; rebuilding the stream`));
        return;
      }
      sendStatus();
    }
  };

  const streaming = service.subscribe(plugin, o.slotName).then(
    () => end(failure ?? new RelayError('STREAM_FAILED', 'replication stream ended by the server')),
    (err: unknown) => end(err),
  );
  const loops = Promise.all([fanoutLoop(), statusLoop()]);
  await untilAborted(stop.signal);
  await loops;
  // A final standby status with the durable position, so a clean stop replays nothing.
  if (failure === undefined) sendStatus(true);
  signal.removeEventListener('abort', onOuterAbort);
  await service.destroy().catch(() => {});
  await Promise.race([streaming, sleep(1_000, undefined, { ref: false })]); // destroy() settles it; never hang a shutdown on it
  if (failure !== undefined && !signal.aborted) throw classify(failure, o.slotName);
}

/** How long a stopping session waits for dispatched rows to resolve before its final status. */
const DRAIN_MS = 5_000;
/** How long a position the server asked for may stay unconfirmable before the session ends (see `owedSince`). */
const OWED_MS = 2_000;
const NEVER = new AbortController().signal;

/** Opens and closes one replication connection (its pg_hba rules may differ from those of plain sessions). */
async function probeReplication(url: string, ssl: PgSsl): Promise<void> {
  const client = new pg.Client({
    connectionString: url,
    ssl,
    replication: 'database',
    ...linkOptions,
  } as pg.ClientConfig);
  client.on('error', () => {});
  await client.connect();
  await client.end().catch(() => {});
}

/** The session's failure as a RelayError whose code says what to do: stand by, run repair, or rebuild. */
function classify(failure: unknown, slotName: string): RelayError {
  if (isRelayError(failure)) return failure;
  switch (sqlStateOf(failure)) {
    case SqlState.OBJECT_IN_USE:
      return new RelayError('SLOT_IN_USE', `slot ${slotName} is streamed by another relay; standing by`, {
        cause: failure,
      });
    case SqlState.UNDEFINED_OBJECT:
      return slotLost(slotName, 'missing', { cause: failure });
    case SqlState.OBJECT_NOT_IN_PREREQUISITE_STATE:
      return slotLost(slotName, 'invalidated', { cause: failure });
    default:
      return new RelayError('STREAM_FAILED', `replication stream failed: ${coerceError(failure).message}`, {
        cause: failure,
      });
  }
}

function isOutbox(rel: Pgoutput.MessageRelation): boolean {
  return rel.schema === 'webhooks' && rel.name === 'outbox';
}

function isEndpoints(rel: Pgoutput.MessageRelation): boolean {
  return rel.schema === 'webhooks' && rel.name === 'endpoints';
}

/** An endpoints row as the library decoded it (pg's type parsers); `undefined`: an unchanged TOASTed column. */
function toEndpointChange(row: Record<string, unknown>): EndpointChange {
  const text = (v: unknown) => (v === undefined ? undefined : typeof v === 'string' ? v : null);
  const num = (v: unknown) => (v === undefined ? undefined : v === null ? null : Number(v));
  const ms = (v: unknown) =>
    v === undefined ? undefined : v instanceof Date ? v.getTime() : typeof v === 'string' ? parseIsoTimestamp(v) : null;
  const id = row.id;
  if (typeof id !== 'string') throw new Error('endpoint row decoded without its id');
  const types = row.event_types;
  return {
    id,
    url: text(row.url) ?? undefined,
    tenant: text(row.tenant),
    eventTypes: types === undefined ? undefined : Array.isArray(types) ? types.map(String) : null,
    enabled: typeof row.enabled === 'boolean' ? row.enabled : undefined,
    ordered: typeof row.ordered === 'boolean' ? row.ordered : undefined,
    secret: text(row.secret) ?? undefined,
    previousSecret: text(row.previous_secret),
    previousExpiresAtMs: ms(row.previous_secret_expires_at),
    maxInFlight: num(row.max_in_flight),
    ratePerSecond: num(row.rate_limit_per_second),
  };
}

/**
 * The library decodes columns with the global `pg.types` parsers as it reads each tuple; jsonb through
 * JSON.parse would corrupt integers above 2^53. The relation message is cached and used for every later tuple,
 * so swapping its column parsers (synchronously, before the next message is parsed) keeps the exact text.
 */
function keepColumnsAsText(rel: Pgoutput.MessageRelation): void {
  for (const column of rel.columns) (column as { parser: (raw: string) => unknown }).parser = (raw) => raw;
}

function toEvent(row: Record<string, unknown>, commitLsn: string | undefined): OutboxEvent {
  const { id, event_type, endpoint_id, tenant, ordering_key, traceparent, payload, created_at } = row;
  if (typeof id !== 'string' || typeof event_type !== 'string' || typeof payload !== 'string') {
    throw new Error('outbox row decoded without its text columns; was the relation message seen?');
  }
  return {
    id,
    eventType: event_type,
    endpointId: typeof endpoint_id === 'string' ? endpoint_id : null,
    tenant: typeof tenant === 'string' ? tenant : null,
    orderingKey: typeof ordering_key === 'string' ? ordering_key : null,
    traceparent: typeof traceparent === 'string' ? traceparent : null,
    payload,
    createdAtMs: typeof created_at === 'string' ? parseIsoTimestamp(created_at) : Date.now(),
    commitLsn,
  };
}

/** `2026-11-22 06:30:00.123456+00` (DateStyle ISO, TimeZone UTC) → epoch ms. */
export function parseIsoTimestamp(text: string): number {
  const ms = Date.parse(text.replace(' ', 'T').replace(/([+-]\d\d)$/, '$1:00'));
  return Number.isNaN(ms) ? Date.now() : ms;
}
