import type { DatabasePool } from 'slonik';
import type { Attempt, Job } from '../domain.ts';
import type { Logger } from '../log.ts';
import { createWake } from '../util/wake.ts';
import { createClusterView, type EndpointLimits, type Gate } from './cluster-view.ts';
import { jobOf } from '../scheduler/queries.ts';
import { decideProbe, leaveCluster, openBreaker, pollCluster, takeProbe } from './queries.ts';

export type ClusterLimitsDeps = {
  pool: DatabasePool;
  owner: string;
  workerId: string;
  /** CLUSTER_POLL_INTERVAL: how often membership and breakers are read (one statement). */
  pollMs: number;
  /** How long a relay's membership row lives without a poll: a dead relay's share comes back after this. */
  memberLeaseMs: number;
  /** LEASE of deliveries: a probe is held as long as its delivery's lease. */
  deliveryLeaseMs: number;
  /** BREAKER_RESET_TIMEOUT: how long a shared breaker stays open. */
  resetTimeoutMs: number;
  log: Logger;
  /** Shares or breakers changed: queued endpoints must be looked at again. */
  changed: () => void;
  /** These endpoints are blocked here: hand their queued (unstarted) jobs back to the table (if any). */
  blocked: (endpointIds: readonly string[]) => void;
  /** Reserves one place in the scheduler for a probe (0: no room now). */
  reserve: () => number;
  /** Takes a claimed probe job (or none) into the scheduler, with the place reserved for it. */
  accept: (jobs: readonly Job[], reserved: number) => void;
  /** Wraps the probe claim like every claim, so a result lost with its connection is released (orphans.ts). */
  claiming?: <T>(statement: () => Promise<T>) => Promise<T>;
  now?: () => number;
};

export type ClusterLimits = ReturnType<typeof createClusterLimits>;

/**
 * Cluster-wide per-endpoint limits and the shared circuit breaker, without a statement per delivery. One poll a
 * second renews this relay's membership and reads the live relays and every breaker that is not closed
 * (cluster-view.ts decides from it); a breaker row is written only on a transition (trip, probe taken, probe
 * decided). The scheduler asks `concurrency`/`rate` before starting a request; `guard` wraps each attempt.
 */
export function createClusterLimits(deps: ClusterLimitsDeps) {
  const now = deps.now ?? (() => performance.now());
  const view = createClusterView({ me: deps.owner, pollMs: deps.pollMs, leaseMs: deps.memberLeaseMs });
  const wake = createWake();

  const onBlocked = (ids: readonly string[]) => {
    deps.changed();
    if (ids.length > 0) deps.blocked(ids);
  };

  const poll = async (): Promise<void> => {
    const sentAtMs = now();
    const polled = await deps.pool.one(pollCluster(deps.owner, deps.workerId, deps.memberLeaseMs));
    const before = view.members().length;
    view.apply({ sentAtMs, ...polled });
    const relays = view.members().length;
    if (relays !== before) deps.log.info({ relays, settled: view.settled() }, 'cluster membership changed');
    // Every blocked endpoint, not only those that just became so: a claim that raced the breaker's write may
    // have brought some of its jobs in since.
    onBlocked(view.toHandBack());
  };

  /** Takes the probe of each breaker whose open period ended, with its one delivery (if a peer did not first). */
  const takeProbes = async (): Promise<void> => {
    for (const endpointId of view.probesDue(now())) {
      const reserved = deps.reserve();
      if (reserved === 0) return;
      const claiming = deps.claiming ?? ((statement) => statement());
      await claiming(async () => {
        let jobs: Job[] = [];
        try {
          const sentAtMs = now();
          const row = await deps.pool.one(takeProbe(endpointId, deps.owner, deps.deliveryLeaseMs));
          jobs = jobOf(row);
          if (row.taken && jobs.length === 0) {
            await deps.pool.one(decideProbe(endpointId, deps.owner, 'undecided', deps.resetTimeoutMs));
          } else if (row.taken) {
            view.probeTaken(endpointId, sentAtMs + deps.deliveryLeaseMs);
            deps.log.info({ endpointId, deliveryId: jobs[0]!.deliveryId }, 'circuit breaker half-open: probing');
            deps.changed();
          }
        } finally {
          deps.accept(jobs, reserved);
        }
      });
    }
  };

  const decide = async (endpointId: string, verdict: 'delivered' | 'failed' | 'undecided') => {
    if (verdict === 'delivered') view.closed(endpointId);
    else view.opened(endpointId, now() + (verdict === 'failed' ? deps.resetTimeoutMs : 0));
    deps.changed();
    try {
      const { changed } = await deps.pool.one(decideProbe(endpointId, deps.owner, verdict, deps.resetTimeoutMs));
      if (changed > 0) {
        deps.log.warn(
          { endpointId, state: verdict === 'delivered' ? 'closed' : 'open' },
          'circuit breaker state changed',
        );
      }
    } catch (err) {
      // The probe's owner then loses it after its lease (probe_until) and a peer probes again.
      deps.log.error({ err, endpointId }, 'recording the probe’s verdict failed');
    }
    wake.wake(); // read the shared state back at once
  };

  const limits = {
    view,
    /** For the scheduler's queue: this relay's share of each endpoint's limits, as the cluster sees it. */
    endpointLimits: {
      concurrency: (endpointId: string, limit: number) => view.concurrency(endpointId, limit, now()),
      rate: (endpointId: string, ratePerSecond: number | null, limit: number) =>
        view.rate(endpointId, ratePerSecond, limit),
      blocked: () => view.blocked(),
    } satisfies EndpointLimits,
    gate: (endpointId: string): Gate => view.gate(endpointId, now()),
    /**
     * Runs one attempt under the shared breaker: deferred (not sent, no attempt spent) while it is open here;
     * when this relay owns the half-open probe, the attempt is the probe and its result closes or reopens the
     * breaker for every relay.
     */
    async guard(job: Job, attempt: () => Promise<Attempt>): Promise<Attempt> {
      const gate = view.gate(job.endpointId, now());
      if (gate.kind === 'open') return { kind: 'deferred', untilMs: Date.now() + (gate.untilMs - now()) };
      // The moment a request is sent, for whoever checks a limit from the relays' side (LOG_LEVEL=debug).
      deps.log.debug({ endpointId: job.endpointId, deliveryId: job.deliveryId }, 'attempt starts');
      if (gate.kind === 'closed') return attempt();
      view.probeStarted(job.endpointId);
      const result = await attempt();
      const verdict =
        result.kind === 'delivered'
          ? 'delivered'
          : result.kind === 'failed' && result.permanent !== true
            ? 'failed'
            : 'undecided';
      await decide(job.endpointId, verdict);
      return result;
    },
    /**
     * This relay's breaker for the endpoint tripped (its opossum counted enough failures): open the shared
     * breaker, so every relay stops sending within a poll interval. Stops here at once.
     */
    tripped(endpointId: string): void {
      if (view.gate(endpointId, now()).kind !== 'closed') return; // already open, or this relay's probe decides
      view.opened(endpointId, now() + deps.resetTimeoutMs);
      deps.changed(); // nothing more starts here
      void deps.pool
        .one(openBreaker(endpointId, deps.owner, deps.resetTimeoutMs))
        .then(({ opened }) => {
          if (opened) deps.log.warn({ endpointId, state: 'open' }, 'circuit breaker state changed');
        })
        .catch((err: unknown) => deps.log.error({ err, endpointId }, 'opening the shared breaker failed'))
        .finally(() => {
          // Only now: handed back before the breaker row committed, they would be claimed again at once.
          deps.blocked([endpointId]);
          wake.wake();
        });
    },
    /** Polls until `signal` aborts, then leaves the cluster (peers take this relay's shares at once). */
    async run(signal: AbortSignal): Promise<void> {
      let failing = false;
      while (!signal.aborted) {
        try {
          await poll();
          await takeProbes();
          if (failing) deps.log.info('cluster poll recovered');
          failing = false;
        } catch (err) {
          if (!failing) deps.log.error({ err }, 'cluster poll failed; shares lapse after CLUSTER_LEASE');
          failing = true;
        }
        await wake.wait(signal, deps.pollMs);
      }
      await deps.pool.one(leaveCluster(deps.owner)).catch((err: unknown) => {
        deps.log.warn({ err }, 'leaving the cluster failed; peers take this relay’s shares when its row expires');
      });
    },
  };
  return limits;
}
