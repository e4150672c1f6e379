import { randomBytes } from 'node:crypto';
import { createBreakers } from './breaker/breakers.ts';
import { requireDatabaseUrl, type Config } from './config.ts';
import { RelayError } from './errors.ts';
import { createDatabasePool, statementDeadlineMs } from './db/pool.ts';
import { migrate, requireSchema, endpointsPublication } from './db/migrate.ts';
import { slotConfirmedLsn, streamStart } from './db/slots.ts';
import { createDeadLog } from './delivery/dead-log.ts';
import { createDeliver } from './delivery/deliver.ts';
import { createHttpClient } from './delivery/http.ts';
import { toOutcome } from './delivery/outcome.ts';
import { createGuardedConnector } from './delivery/ssrf.ts';
import { jobKey, type Job, type StreamState } from './domain.ts';
import { createEndpointCache } from './endpoints/cache.ts';
import { loadEndpoints } from './endpoints/queries.ts';
import { runEndpointRefresh } from './endpoints/refresh.ts';
import { createEndpointViews } from './endpoints/views.ts';
import { createFanOut } from './fanout/fanout.ts';
import { createLedger } from './fanout/ledger.ts';
import { createPace } from './fanout/pace.ts';
import { runPersister } from './fanout/persist.ts';
import { insertPending } from './fanout/queries.ts';
import { createClusterLimits } from './limits/limits.ts';
import { createReleasers } from './lifecycle/releasers.ts';
import { supervise, type Loop, type Stage } from './lifecycle/supervise.ts';
import type { Logger } from './log.ts';
import { runDbStats } from './metrics/db-stats.ts';
import { createMetrics } from './metrics/metrics.ts';
import { parseLsn } from './replication/lsn.ts';
import { runStream } from './replication/slot.ts';
import { runRetention } from './retention/retention.ts';
import { runClaimer } from './scheduler/claimer.ts';
import { runHeartbeat } from './scheduler/lease.ts';
import { createOrphanGuard, runOrphanRelease } from './scheduler/orphans.ts';
import { createOutcomeWriter } from './scheduler/outcome-writer.ts';
import { releaseLeases } from './scheduler/queries.ts';
import { createScheduler } from './scheduler/scheduler.ts';
import { startHealthServer } from './server/health.ts';
import { createReadiness } from './server/readiness.ts';
import { createSigner } from './signing/sign.ts';
import { runSweep } from './sweep/sweep.ts';
import { createTracing } from './tracing/tracing.ts';

export type Relay = {
  /** The bound health/metrics port (HTTP_PORT=0 picks a free one). */
  httpPort: number;
  /** The address it listens on (HTTP_HOST; `::` for every interface). */
  httpHost: string;
  /** The lease-owner incarnation id of this process. */
  owner: string;
  streamState: () => StreamState;
  /** The loops still running (`stage N/name`), and `release` while resources are being released: what a stop waits for. */
  unfinished: () => string[];
  /**
   * Runs every loop until `signal` aborts or one ends on its own; then stops claiming, finishes or hands back
   * in-flight work within SHUTDOWN_GRACE, confirms the WAL position and releases everything. Rejects with
   * LOOP_FAILED when a loop ended or failed on its own. Call it once.
   */
  run: (signal: AbortSignal) => Promise<void>;
};

/**
 * The composition root: opens every resource (each release registered as it opens, so a start that fails
 * half-way closes what it opened) and wires the parts. Rules live in the parts; this only connects them.
 * `loops`: more loops to supervise beside the relay's own (an embedding application's).
 */
export async function buildRelay(config: Config, log: Logger, loops: Record<string, Loop> = {}): Promise<Relay> {
  const { hold, releaseAll } = createReleasers();
  try {
    const databaseUrl = requireDatabaseUrl(config);
    if (config.migrateOnStart) {
      await migrate({ databaseUrl, slotName: config.slotName, publicationName: config.publicationName, log });
    }
    // A random incarnation id: a restarted pod with the same WORKER_ID must not inherit its predecessor's leases.
    const owner = `${config.workerId}/${randomBytes(6).toString('hex')}`;
    const pool = hold(
      await createDatabasePool(databaseUrl, {
        maximumPoolSize: 8,
        applicationName: 'outbox-relay',
        statementTimeoutMs: config.statementTimeoutMs,
      }),
      (p) => p.end(),
    );
    await requireSchema(pool);
    const metrics = createMetrics();
    // Released after everything that records spans (releases run last-opened first): queued spans are exported.
    const tracing = hold(await createTracing(config.tracing, log), (t) => t.shutdown());
    const ssrf = {
      allowPrivateNetworks: config.allowPrivateNetworks,
      allowCidrs: config.allowedCidrs,
      allowHttp: config.allowHttp,
    };
    // Every socket is dialled only to an address the guard checked (DNS pinned), so rebinding cannot slip past.
    const connect = createGuardedConnector(ssrf, { connectOptions: { timeout: config.connectTimeoutMs } });
    const http = hold(createHttpClient({ maxResponseBytes: config.maxResponseBytes, connect }), (h) => h.close());
    const deliver = createDeliver({
      http,
      ssrf,
      signer: createSigner(),
      timeoutMs: config.requestTimeoutMs,
      retryAfterMaxMs: config.retryAfterMaxMs,
      trace: tracing.attempt,
    });
    // Per-endpoint limits and breakers hold for the cluster: this relay takes its share (src/limits/).
    const limits = createClusterLimits({
      pool,
      owner,
      workerId: config.workerId,
      pollMs: config.clusterPollIntervalMs,
      memberLeaseMs: 5 * config.clusterPollIntervalMs,
      deliveryLeaseMs: config.leaseMs,
      resetTimeoutMs: config.breakerResetTimeoutMs,
      log,
      changed: () => scheduler.limitsChanged(),
      blocked: (endpointIds) => endpointIds.forEach((id) => scheduler.park(id)),
      reserve: () => scheduler.reserve(1),
      accept: (jobs, reserved) => scheduler.accept(jobs, reserved),
      claiming: (statement) => orphans.claiming(statement),
    });
    metrics.watchCluster({
      members: () => limits.view.members().length,
      breakers: () => limits.view.breakers(),
      limits: () => limits.view.limits(performance.now()),
    });
    // opossum counts this relay's outcomes; when they trip it, the shared breaker opens for every relay.
    const breakers = hold(
      createBreakers({
        errorThresholdPercentage: config.breakerErrorThresholdPercent,
        volumeThreshold: config.breakerVolumeThreshold,
        resetTimeoutMs: config.breakerResetTimeoutMs,
        rollingWindowMs: config.breakerWindowMs,
        countOnly: true,
        onStateChange: (endpointId, state) => {
          if (state === 'open') limits.tripped(endpointId);
        },
      }),
      (b) => b.shutdown(),
    );
    // PAYLOAD_BUDGET: a quarter for WAL rows not yet fanned out, the rest for deliveries queued or in flight.
    const streamBytes = Math.floor(config.payloadBudgetBytes / 4);
    const endpoints = createEndpointViews(); // rotated secrets and changed URLs apply to jobs already held
    const endpointCache = createEndpointCache(); // every endpoint, kept in commit order by the stream
    const ledger = createLedger(); // deliveries sent from the stream not yet recorded, by WAL batch
    const retryPolicy = { scheduleMs: config.retryScheduleMs, jitter: config.retryJitter };
    const logDead = createDeadLog(log); // warn, at most one line per endpoint per minute
    const writer = createOutcomeWriter({
      pool,
      owner,
      workerId: config.workerId,
      disablePolicy: { autoDisableMs: config.autoDisableMs, autoDisableFailures: config.autoDisableFailures },
      log,
    });
    // Rows claimed for this owner whose result a broken connection lost are released at once, not after LEASE.
    const orphans = createOrphanGuard({ settleMs: statementDeadlineMs(config.statementTimeoutMs) });
    const scheduler = createScheduler({
      capacity: config.schedulerCapacity,
      maxBytes: config.payloadBudgetBytes - streamBytes,
      concurrency: config.deliveryConcurrency,
      perEndpointConcurrency: config.endpointConcurrency,
      limits: limits.endpointLimits,
      log,
      // While an endpoint's shared breaker is open its deliveries are deferred without being sent or spending an attempt.
      attempt: (job, signal) => {
        metrics.endpointTenant(job.endpointId, job.tenant);
        return limits.guard(job, () =>
          breakers.run(job.endpointId, () => metrics.tracked(deliver(endpoints.current(job, Date.now()), signal))),
        );
      },
      finished: (job, attempt) => {
        metrics.attemptFinished(job, attempt);
        const outcome = toOutcome(job, attempt, retryPolicy);
        logDead(job, outcome);
        writer.push(outcome);
      },
      handBack: async (jobs) => {
        const ids = jobs.flatMap((j) => (j.deliveryId === null ? [] : [j.deliveryId]));
        const unrecorded = jobs.filter((j) => j.deliveryId === null);
        if (ids.length > 0) {
          await pool.one(releaseLeases(owner, ids, false)).catch((err: unknown) => {
            orphans.failed();
            log.error({ err }, 'release failed');
          });
        }
        if (unrecorded.length > 0) await handBackUnrecorded(unrecorded);
      },
      dropped: (jobs) => ledger.dropped(jobs.map(jobKey), new Error('deliveries sent from the stream were dropped')),
    });
    // Jobs from the stream never started: written pending (any relay claims them), or their batch replays.
    const handBackUnrecorded = async (jobs: readonly Job[]) => {
      const keys = jobs.map(jobKey);
      try {
        const rows = { outboxIds: jobs.map((j) => j.outboxId), endpointIds: jobs.map((j) => j.endpointId) };
        await pool.one(insertPending(rows, false));
        ledger.recorded(keys);
      } catch (err) {
        log.error({ err }, 'writing unsent deliveries back failed; the slot replays them');
        ledger.dropped(keys, new Error('writing unsent deliveries back failed'));
      }
    };

    let stream: { state: StreamState; problem?: string } = { state: 'starting' };
    let stopping = false;
    const readiness = createReadiness({ pool, stream: () => stream, stopping: () => stopping, log });
    const health = hold(
      await startHealthServer(
        { port: config.httpPort, host: config.httpHost, metricsToken: config.metricsToken },
        { registry: metrics.registry, log, readiness: readiness.check },
      ),
      (s) => s.close(),
    );

    // Batches no bigger than what fits in memory: the WAL is the queue.
    const pace = createPace(() => scheduler.room());
    const fanOut = tracing.fanOut(
      createFanOut({
        pool,
        owner,
        leaseMs: config.leaseMs,
        roomWaitMs: config.fanoutRoomWaitMs,
        log,
        scheduler,
        onFannedOut: (rows, deliveries) => {
          metrics.fannedOut(rows, deliveries);
          pace.observe(rows, deliveries);
        },
        claiming: orphans.claiming,
        live: { endpoints: endpointCache, ledger, persistAfterMs: config.persistAfterMs },
        recording: (key) => writer.holds(key),
      }),
    );
    const confirmedLsn = async () => {
      const lsn = await pool.maybeOneFirst(slotConfirmedLsn(config.slotName));
      return lsn === null ? undefined : parseLsn(lsn);
    };
    const endpointsPub = endpointsPublication(config.publicationName);
    // Before each session: the endpoint cache from the table, and from where rows may be sent from the stream.
    const prepare = async () => {
      const start = await pool.one(streamStart(config.slotName, endpointsPub));
      if (!start.endpointsUsable) {
        log.info(
          { publication: endpointsPub },
          'the slot is behind the endpoints publication: fanning out through the table',
        );
        return { liveAfter: undefined, endpointsPublication: undefined };
      }
      endpointCache.load(await pool.any(loadEndpoints()));
      return { liveAfter: parseLsn(start.walLsn), endpointsPublication: endpointsPub };
    };
    const onState = (state: StreamState, problem?: string) => {
      stream = { state, ...(problem === undefined ? {} : { problem }) };
      metrics.slotHolder.set(state === 'streaming' ? 1 : 0);
    };
    const onReclaimed = (n: number) => {
      metrics.sweepReclaimed.inc(n);
      scheduler.wakeClaimer();
    };
    const maxAttempts = config.retryScheduleMs.length + 1;
    const heldIds = () => [...scheduler.heldIds(), ...writer.pendingIds()];
    const onLeaseLost = (n: number) => metrics.leasesLost.inc(n);
    const streamLoop: Loop = (signal) =>
      runStream(
        {
          ...config,
          databaseUrl,
          maxQueuedBytes: streamBytes,
          log,
          fanOut,
          fits: pace.fits,
          confirmedLsn,
          prepare,
          onEndpoint: (change) => {
            endpointCache.apply(change);
            if (!('deleted' in change)) return;
            // Deleted: nothing is recorded for its deliveries sent from the stream (none is kept for it), and
            // none is sent again; they are resolved as they are.
            const reason = new RelayError('LEASE_LOST', 'endpoint deleted');
            ledger.recorded(scheduler.dropUnrecorded(change.deleted, reason).map(jobKey));
          },
          stopReading: () => stopping,
          onState,
          onDurable: metrics.durable,
          onLag: metrics.lag,
        },
        signal,
      );
    const work: Record<string, Loop> = {
      ...loops,
      persister: (signal) =>
        runPersister(
          {
            pool,
            owner,
            leaseMs: config.leaseMs,
            persistAfterMs: config.persistAfterMs,
            ledger,
            scheduler,
            log,
            claiming: orphans.claiming,
          },
          signal,
        ),
      claimer: (signal) => runClaimer({ ...config, pool, owner, scheduler, log, claiming: orphans.claiming }, signal),
      orphans: (signal) =>
        runOrphanRelease(
          { pool, owner, guard: orphans, heldIds, log, onReleased: () => scheduler.wakeClaimer() },
          signal,
        ),
      sweep: (signal) => runSweep({ ...config, pool, log, maxAttempts, onReclaimed }, signal),
      stats: (signal) => runDbStats({ ...config, pool, metrics, log }, signal),
      endpoints: (signal) => runEndpointRefresh({ pool, views: endpoints, intervalMs: 1_000, log }, signal),
      readiness: readiness.run,
    };
    // RETENTION_DELIVERED=0 turns deletion off (nothing is ever deleted then); the loop still clears expired secrets.
    const retention = {
      pool,
      log,
      intervalMs: config.retentionIntervalMs,
      deliveredMaxAgeMs: config.retentionDeliveredMs,
      deadMaxAgeMs: config.retentionDeadMs,
      batch: config.retentionBatch,
      onDeleted: metrics.retentionDeletedRows,
    };
    work.retention = (signal) => runRetention(retention, signal);
    // Stop order: the stream stops taking rows (onStopping) and claims stop; in-flight work settles (finished,
    // or handed back); outcomes are written; then the stream sends its final status with everything resolved,
    // and only then do leases stop being renewed.
    const stages: Stage[] = [
      { loops: work, after: async () => log.info(await scheduler.settle(config.shutdownGraceMs), 'scheduler settled') },
      {
        loops: {
          writer: (signal) =>
            writer.run(signal, (w) => {
              ledger.recorded(w.outcomes.map(jobKey));
              if (w.dropped.length > 0) ledger.dropped(w.dropped.map(jobKey), new Error('an outcome was refused'));
              scheduler.written(w.left);
              // An ordered key's delivery is resolved (or rescheduled): its next event may be claimed now.
              if (w.outcomes.some((o) => o.ordered === true)) scheduler.wakeClaimer();
              for (const endpointId of w.disabled) scheduler.park(endpointId);
              metrics.outcomesWritten(w, scheduler.held(), scheduler.heldBytes());
            }),
        },
      },
      { loops: { stream: streamLoop } },
      {
        loops: {
          heartbeat: (signal) => runHeartbeat({ ...config, pool, owner, scheduler, heldIds, log, onLeaseLost }, signal),
          // Last: peers take this relay's shares once it leaves, when nothing of it is in flight any more.
          cluster: (signal) => limits.run(signal),
        },
      },
    ];
    const onStopping = () => {
      stopping = true;
      log.info({ graceMs: config.shutdownGraceMs }, 'stopping: no new claims, draining in-flight work');
    };

    const unfinished = new Set<string>();
    const run = async (signal: AbortSignal): Promise<void> => {
      log.info({ owner, httpPort: health.port, httpHost: health.host, slot: config.slotName }, 'relay started');
      try {
        await supervise(stages, signal, log, onStopping, unfinished);
      } finally {
        unfinished.add('release');
        await releaseAll();
        unfinished.delete('release');
        log.info('relay stopped');
      }
    };
    return {
      httpPort: health.port,
      httpHost: health.host,
      owner,
      streamState: () => stream.state,
      unfinished: () => [...unfinished],
      run,
    };
  } catch (err) {
    await releaseAll().catch((releaseErr: unknown) =>
      log.error({ err: releaseErr }, 'releasing a failed start failed'),
    );
    throw err;
  }
}

/** A relay running in the background (tests, the demo): `stop()` aborts and awaits it; `done` settles with it. */
export type RunningRelay = Omit<Relay, 'run'> & { stop: () => Promise<void>; done: Promise<void> };

export async function startRelay(config: Config, log: Logger): Promise<RunningRelay> {
  const relay = await buildRelay(config, log);
  const stop = new AbortController();
  const done = relay.run(stop.signal);
  done.catch(() => {}); // a failure surfaces through stop() and done, not as an unhandled rejection
  const { run: _run, ...rest } = relay;
  return {
    ...rest,
    stop: () => {
      stop.abort();
      return done;
    },
    done,
  };
}
