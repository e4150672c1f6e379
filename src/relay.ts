import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'slonik';
import { requireDatabaseUrl, type Config } from './config.ts';
import { migrate } from './db/migrate.ts';
import { createDatabasePool } from './db/pool.ts';
import { createDeliver } from './delivery/deliver.ts';
import { createHttpClient } from './delivery/http.ts';
import { createGuardedConnector } from './delivery/ssrf.ts';
import { createBreakers } from './breaker/breakers.ts';
import { createFanOut } from './fanout/fanout.ts';
import type { Logger } from './log.ts';
import { runDbStats } from './metrics/db-stats.ts';
import { createMetrics } from './metrics/metrics.ts';
import { parseLsn } from './replication/lsn.ts';
import { runStream, slotConfirmedLsn } from './replication/slot.ts';
import type { StreamState } from './replication/types.ts';
import { runClaimer } from './scheduler/claimer.ts';
import { runHeartbeat } from './scheduler/lease.ts';
import { createOutcomeWriter } from './scheduler/outcome-writer.ts';
import { toOutcome } from './scheduler/outcome.ts';
import { releaseLeases } from './scheduler/queries.ts';
import { createScheduler } from './scheduler/scheduler.ts';
import { startHealthServer } from './server/health.ts';
import { createSigner } from './signing/sign.ts';
import { runRetention } from './retention/retention.ts';
import { runSweep } from './sweep/sweep.ts';

export type Relay = {
  /** The bound health/metrics port (HTTP_PORT=0 picks a free one). */
  httpPort: number;
  /** The lease-owner incarnation id of this process. */
  owner: string;
  streamState: () => StreamState;
  /** Stop claiming, finish or release in-flight work within SHUTDOWN_GRACE, confirm the WAL position, close. */
  stop: () => Promise<void>;
  /** Settles when the relay has stopped. */
  done: Promise<void>;
};

const MAX_BREAKER_SERIES = 100;
const USER_AGENT = 'outbox-relay/0.1 (+https://www.standardwebhooks.com)';

/** Starts every part of the relay; only this function and cli/run.ts know how they fit together. */
export async function startRelay(config: Config, log: Logger): Promise<Relay> {
  const databaseUrl = requireDatabaseUrl(config);
  if (config.migrateOnStart) {
    await migrate({ databaseUrl, slotName: config.slotName, publicationName: config.publicationName, log });
  }
  // A random incarnation id: a restarted pod with the same WORKER_ID must not inherit its predecessor's leases.
  const owner = `${config.workerId}/${randomBytes(6).toString('hex')}`;
  const pool = await createDatabasePool(databaseUrl, { maximumPoolSize: 8, applicationName: 'outbox-relay' });
  const metrics = createMetrics();
  const ssrf = {
    allowPrivateNetworks: config.allowPrivateNetworks,
    allowCidrs: config.allowedCidrs,
    allowHttp: config.allowHttp,
  };
  // Every socket is dialled only to an address the guard checked (DNS pinned), so rebinding cannot slip past.
  const http = createHttpClient({
    maxResponseBytes: config.maxResponseBytes,
    connect: createGuardedConnector(ssrf, { connectOptions: { timeout: config.connectTimeoutMs } }),
  });
  const deliver = createDeliver({
    http,
    ssrf,
    signer: createSigner(),
    timeoutMs: config.requestTimeoutMs,
    retryAfterMaxMs: config.retryAfterMaxMs,
    userAgent: USER_AGENT,
  });
  const retryPolicy = { scheduleMs: config.retryScheduleMs, jitter: config.retryJitter };
  // Label series only while a breaker is not closed, at most MAX_BREAKER_SERIES of them: cardinality stays bounded.
  const labelled = new Set<string>();
  const breakers = createBreakers({
    errorThresholdPercentage: config.breakerErrorThresholdPercent,
    volumeThreshold: config.breakerVolumeThreshold,
    resetTimeoutMs: config.breakerResetTimeoutMs,
    rollingWindowMs: config.breakerWindowMs,
    onStateChange: (endpointId, state) => {
      log.warn({ endpointId, state }, 'circuit breaker state changed');
      metrics.breakersOpen.set(breakers.openEndpoints().length);
      if (state === 'closed') {
        if (labelled.delete(endpointId)) metrics.breakerOpen.remove({ endpoint_id: endpointId });
      } else if (labelled.has(endpointId) || labelled.size < MAX_BREAKER_SERIES) {
        labelled.add(endpointId);
        metrics.breakerOpen.set({ endpoint_id: endpointId }, state === 'open' ? 1 : 0.5);
      }
    },
  });

  const writer = createOutcomeWriter({
    pool,
    owner,
    workerId: config.workerId,
    autoDisableMs: config.autoDisableMs,
    log,
    onWritten: (count, _written, outcomes, disabled) => {
      for (const o of outcomes) {
        if (!o.refund) metrics.deliveries.inc({ outcome: o.status === 'pending' ? 'retry' : o.status });
      }
      scheduler.written(count);
      metrics.held.set(scheduler.held());
      for (const endpointId of disabled) {
        log.warn({ endpointId }, 'endpoint disabled');
        metrics.endpointsDisabled.inc();
        parkEndpoint(endpointId);
      }
    },
  });
  /** Hands back an endpoint's queued deliveries unsent; they stay pending (parked) while it is disabled. */
  const parkEndpoint = (endpointId: string) => {
    const parked = scheduler.dropEndpoint(endpointId).map((j) => j.deliveryId);
    if (parked.length === 0) return;
    pool.one(releaseLeases(owner, parked, false)).catch((err: unknown) => log.error({ err }, 'release failed'));
  };
  const scheduler = createScheduler({
    capacity: config.schedulerCapacity,
    concurrency: config.deliveryConcurrency,
    perEndpointConcurrency: config.endpointConcurrency,
    log,
    attempt: async (job, signal) => {
      // While an endpoint's breaker is open its deliveries are deferred without being sent or spending an attempt.
      return breakers.run(job.endpointId, async () => {
        metrics.inFlight.inc();
        try {
          return await deliver(job, signal);
        } finally {
          metrics.inFlight.dec();
        }
      });
    },
    finished: (job, attempt) => {
      if (attempt.kind === 'lease-lost') return;
      if (attempt.kind === 'failed' && attempt.status === 410) parkEndpoint(job.endpointId); // stop at once
      if (attempt.kind !== 'deferred') metrics.attemptDuration.observe(attempt.durationMs / 1000);
      if (attempt.kind === 'delivered') metrics.deliveryLatency.observe((Date.now() - job.createdAtMs) / 1000);
      writer.push(toOutcome(job, attempt, retryPolicy));
    },
  });

  let streamState: StreamState = 'starting';
  let streamProblem: string | undefined;
  let stopping = false;
  const health = await startHealthServer(config.httpPort, {
    registry: metrics.registry,
    log,
    readiness: async () => {
      const detail = { stream: streamState, ...(streamProblem === undefined ? {} : { problem: streamProblem }) };
      if (stopping) return { ready: false, detail: { ...detail, stopping: true } };
      if (streamState !== 'streaming' && streamState !== 'standby') return { ready: false, detail };
      try {
        await pool.oneFirst(sql.unsafe`SELECT 1`);
        return { ready: true, detail };
      } catch (err) {
        return { ready: false, detail: { ...detail, database: String(err) } };
      }
    },
  });

  const work = new AbortController(); // stream, claims, sweep
  const leases = new AbortController(); // heartbeat: renews until in-flight work is done
  const writes = new AbortController(); // outcome writer: drains its buffer once aborted
  const maxAttempts = config.retryScheduleMs.length + 1;

  const loops = {
    stream: runStream(
      {
        databaseUrl,
        slotName: config.slotName,
        publicationName: config.publicationName,
        statusIntervalMs: config.statusIntervalMs,
        idleTimeoutMs: config.streamIdleTimeoutMs,
        fanoutBatch: config.fanoutBatch,
        standbyRetryMs: config.standbyRetryMs,
        log,
        fanOut: createFanOut({
          pool,
          owner,
          leaseMs: config.leaseMs,
          roomWaitMs: config.fanoutRoomWaitMs,
          log,
          scheduler,
          onFannedOut: (events, deliveries) => {
            metrics.eventsFannedOut.inc(events);
            metrics.deliveriesCreated.inc(deliveries);
          },
        }),
        confirmedLsn: async () => {
          const lsn = await pool.maybeOneFirst(slotConfirmedLsn(config.slotName));
          return lsn === null ? undefined : parseLsn(lsn);
        },
        onDurable: (lsn) => metrics.confirmedLsn.set(Number(lsn)),
        onLag: (seconds) => metrics.replicationLagSeconds.set(seconds),
        onState: (state, problem) => {
          streamState = state;
          streamProblem = problem;
          metrics.slotHolder.set(state === 'streaming' ? 1 : 0);
        },
      },
      work.signal,
    ),
    claimer: runClaimer(
      {
        pool,
        owner,
        leaseMs: config.leaseMs,
        batch: config.claimBatch,
        intervalMs: config.claimIntervalMs,
        scheduler,
        log,
      },
      work.signal,
    ),
    sweep: runSweep(
      {
        pool,
        log,
        intervalMs: config.sweepIntervalMs,
        maxAttempts,
        onReclaimed: (n) => {
          metrics.sweepReclaimed.inc(n);
          scheduler.wakeClaimer();
        },
      },
      work.signal,
    ),
    heartbeat: runHeartbeat(
      {
        pool,
        owner,
        leaseMs: config.leaseMs,
        intervalMs: config.heartbeatIntervalMs,
        scheduler,
        heldIds: () => [...scheduler.heldIds(), ...writer.pendingIds()],
        log,
        onLeaseLost: (n) => metrics.leasesLost.inc(n),
      },
      leases.signal,
    ),
    writer: writer.run(writes.signal),
    // RETENTION_DELIVERED=0 turns retention off: nothing is ever deleted then.
    retention:
      config.retentionDeliveredMs === 0
        ? Promise.resolve()
        : runRetention(
            {
              pool,
              log,
              intervalMs: config.retentionIntervalMs,
              deliveredMaxAgeMs: config.retentionDeliveredMs,
              deadMaxAgeMs: config.retentionDeadMs,
              batch: config.retentionBatch,
              onDeleted: ({ deliveries, outbox }) => {
                metrics.retentionDeleted.inc({ table: 'deliveries' }, deliveries);
                metrics.retentionDeleted.inc({ table: 'outbox' }, outbox);
              },
            },
            work.signal,
          ),
    stats: runDbStats(
      { pool, slotName: config.slotName, intervalMs: config.statsIntervalMs, metrics, log },
      work.signal,
    ),
  };
  log.info({ owner, httpPort: health.port, slot: config.slotName }, 'relay started');

  let stopped: Promise<void> | undefined;
  const done = Promise.withResolvers<void>();
  const stop = () =>
    (stopped ??= (async () => {
      stopping = true;
      log.info({ graceMs: config.shutdownGraceMs }, 'stopping: no new claims, draining in-flight work');
      work.abort(); // the stream finishes its batch and sends a final standby status with the durable LSN
      await Promise.all([loops.stream, loops.claimer, loops.sweep, loops.stats, loops.retention]);
      const unstarted = scheduler.drain();
      if (unstarted.length > 0) {
        // Hand unstarted leases back at once so a peer picks them up without waiting for expiry.
        const ids = unstarted.map((j) => j.deliveryId);
        await pool.one(releaseLeases(owner, ids, false)).catch((err: unknown) => log.error({ err }, 'release failed'));
      }
      const idle = scheduler.whenIdle();
      const graceTimer = new AbortController();
      const graceOver = sleep(config.shutdownGraceMs, 'grace', { signal: graceTimer.signal }).catch(() => 'idle');
      const first = await Promise.race([idle.then(() => 'idle'), graceOver]);
      graceTimer.abort(); // a pending grace timer would hold the process open
      if (first === 'grace') {
        log.warn({ inFlight: scheduler.inFlight() }, 'grace period over; aborting in-flight requests');
        scheduler.abortAll(new Error('relay shutting down'));
        await idle;
      }
      writes.abort();
      await loops.writer;
      leases.abort();
      await loops.heartbeat;
      breakers.shutdown();
      await http.close().catch(() => {});
      await health.close();
      await pool.end();
      log.info({ released: unstarted.length }, 'relay stopped');
    })().finally(done.resolve));

  return { httpPort: health.port, owner, streamState: () => streamState, stop, done: done.promise };
}
