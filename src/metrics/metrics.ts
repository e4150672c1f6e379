import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Attempt, BreakerState, Job, Outcome } from '../domain.ts';

export type Metrics = ReturnType<typeof createMetrics>;

/** The cluster as this relay sees it (src/limits/), read at each scrape. */
export type ClusterSource = {
  members: () => number;
  breakers: () => ReadonlyMap<string, { state: 'open' | 'half-open' }>;
  limits: () => readonly {
    endpointId: string;
    maxInFlight: number;
    share: number;
    ratePerSecond: number | null;
    rateShare: number | null;
  }[];
};

/** Per-endpoint breaker series exist only while a breaker is not closed, and at most this many at once. */
const MAX_BREAKER_SERIES = 100;
/** Endpoints whose tenant is remembered for the per-endpoint series (as many as the relay keeps breakers for). */
const MAX_TENANTS_KNOWN = 10_000;

/**
 * One registry per relay (not prom-client's global), so several relays in one process never collide. Besides
 * the instruments, it owns what to record for each pipeline event, and keeps label cardinality bounded.
 */
export function createMetrics() {
  let cluster: ClusterSource | undefined;
  // Read at scrape time (each cluster gauge's collect calls it; idempotent and bounded: ≤ 100 + 50 × 4 series).
  const collectCluster = () => {
    if (cluster === undefined) return;
    const shared = cluster.breakers();
    for (const id of [...labelled.keys()]) if (!shared.has(id)) breakerChanged(id, 'closed', shared.size);
    for (const [id, b] of shared) breakerChanged(id, b.state, shared.size);
    instruments.breakersOpen.set(shared.size);
    instruments.clusterRelays.set(cluster.members());
    instruments.endpointLimit.reset();
    instruments.endpointShare.reset();
    for (const l of cluster.limits()) {
      instruments.endpointLimit.set({ endpoint_id: l.endpointId, limit: 'max_in_flight' }, l.maxInFlight);
      instruments.endpointShare.set({ endpoint_id: l.endpointId, limit: 'max_in_flight' }, l.share);
      if (l.ratePerSecond !== null) {
        instruments.endpointLimit.set({ endpoint_id: l.endpointId, limit: 'rate_per_second' }, l.ratePerSecond);
        instruments.endpointShare.set({ endpoint_id: l.endpointId, limit: 'rate_per_second' }, l.rateShare ?? 0);
      }
    }
  };
  const instruments = createInstruments(collectCluster);
  const labelled = new Map<string, string>(); // endpoints with a breaker_open series → its tenant label
  // endpoint → tenant label ('' = no tenant). Each endpoint has one tenant, so the label adds no series.
  const tenants = new Map<string, string>();
  function breakerChanged(endpointId: string, state: BreakerState, openCount: number): void {
    instruments.breakersOpen.set(openCount);
    const tenant = labelled.get(endpointId);
    if (state === 'closed') {
      if (tenant === undefined) return;
      labelled.delete(endpointId);
      instruments.breakerOpen.remove({ endpoint_id: endpointId, tenant });
    } else if (tenant !== undefined || labelled.size < MAX_BREAKER_SERIES) {
      const label = tenant ?? tenants.get(endpointId) ?? '';
      labelled.set(endpointId, label);
      instruments.breakerOpen.set({ endpoint_id: endpointId, tenant: label }, state === 'open' ? 1 : 0.5);
    }
  }
  return {
    ...instruments,
    /** An endpoint is about to be attempted: remember its tenant for the per-endpoint series' `tenant` label. */
    endpointTenant(endpointId: string, tenant: string | null): void {
      const label = tenant ?? '';
      if (tenants.get(endpointId) === label) return;
      tenants.delete(endpointId); // re-inserted last: the map's order is least recently changed first
      tenants.set(endpointId, label);
      if (tenants.size > MAX_TENANTS_KNOWN) tenants.delete(tenants.keys().next().value!);
    },
    /** An attempt ended (not a lost lease): its duration, and for a success the commit-to-receipt latency. */
    attemptFinished(job: Job, attempt: Exclude<Attempt, { kind: 'lease-lost' }>, nowMs = Date.now()): void {
      if (attempt.kind !== 'deferred') instruments.attemptDuration.observe(attempt.durationMs / 1000);
      if (attempt.kind === 'delivered') instruments.deliveryLatency.observe((nowMs - job.createdAtMs) / 1000);
    },
    /** Outcomes were written: counted by what became of them (deferrals are not attempts). */
    outcomesWritten(
      w: { outcomes: readonly Outcome[]; disabled: readonly string[] },
      heldNow: number,
      heldBytesNow: number,
    ): void {
      for (const o of w.outcomes) {
        if (!o.refund) instruments.deliveries.inc({ outcome: o.status === 'pending' ? 'retry' : o.status });
      }
      instruments.endpointsDisabled.inc(w.disabled.length);
      instruments.held.set(heldNow);
      instruments.heldBytes.set(heldBytesNow);
    },
    /** Counts `request` in flight while it runs. */
    async tracked<T>(request: Promise<T>): Promise<T> {
      instruments.inFlight.inc();
      try {
        return await request;
      } finally {
        instruments.inFlight.dec();
      }
    },
    durable: (lsn: bigint): void => void instruments.confirmedLsn.set(Number(lsn)),
    lag: (seconds: number): void => void instruments.replicationLagSeconds.set(seconds),
    fannedOut: (events: number, deliveries: number): void => {
      instruments.eventsFannedOut.inc(events);
      instruments.deliveriesCreated.inc(deliveries);
    },
    retentionDeletedRows: ({ deliveries, outbox }: { deliveries: number; outbox: number }): void => {
      instruments.retentionDeleted.inc({ table: 'deliveries' }, deliveries);
      instruments.retentionDeleted.inc({ table: 'outbox' }, outbox);
    },
    /** A breaker changed state; `openCount` is how many breakers are not closed now. */
    breakerChanged,
    /** Breaker gauges and limits come from the cluster's shared state from now on (read at each scrape). */
    watchCluster(source: ClusterSource): void {
      cluster = source;
    },
  };
}

function createInstruments(collectCluster: () => void) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'outbox_relay_' });
  const registers = [registry];
  return {
    registry,
    eventsFannedOut: new Counter({
      name: 'outbox_relay_events_fanned_out_total',
      help: 'Outbox rows read from the WAL and fanned out',
      registers,
    }),
    deliveriesCreated: new Counter({
      name: 'outbox_relay_deliveries_created_total',
      help: 'Delivery rows created by fan-out',
      registers,
    }),
    deliveries: new Counter({
      name: 'outbox_relay_deliveries_total',
      help: 'Finished attempts by outcome: delivered, retry, dead',
      labelNames: ['outcome'] as const,
      registers,
    }),
    attemptDuration: new Histogram({
      name: 'outbox_relay_attempt_duration_seconds',
      help: 'Duration of one HTTP attempt',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    deliveryLatency: new Histogram({
      name: 'outbox_relay_delivery_latency_seconds',
      help: 'From the outbox row commit (created_at) to the 2xx answer',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600],
      registers,
    }),
    inFlight: new Gauge({ name: 'outbox_relay_deliveries_in_flight', help: 'HTTP requests in flight', registers }),
    held: new Gauge({
      name: 'outbox_relay_scheduler_held',
      help: 'Deliveries held in memory (queued, in flight, awaiting their outcome write)',
      registers,
    }),
    heldBytes: new Gauge({
      name: 'outbox_relay_scheduler_held_bytes',
      help: 'Payload bytes (characters) of deliveries queued or in flight in memory (bounded by PAYLOAD_BUDGET)',
      registers,
    }),
    slotHolder: new Gauge({
      name: 'outbox_relay_slot_holder',
      help: '1 while this replica streams the replication slot, 0 in standby',
      registers,
    }),
    confirmedLsn: new Gauge({
      name: 'outbox_relay_confirmed_lsn_bytes',
      help: 'Last WAL position confirmed to the server (fan-out committed up to here)',
      registers,
    }),
    pending: new Gauge({
      name: 'outbox_relay_deliveries_pending',
      help: 'Deliveries waiting in the table (all replicas), including parked ones of disabled endpoints',
      registers,
    }),
    oldestPendingSeconds: new Gauge({
      name: 'outbox_relay_oldest_pending_seconds',
      help: 'How long the oldest due delivery of an enabled endpoint has been waiting',
      registers,
    }),
    slotLagBytes: new Gauge({
      name: 'outbox_relay_replication_lag_bytes',
      help: 'WAL between the server’s current position and the slot’s confirmed position',
      registers,
    }),
    replicationLagSeconds: new Gauge({
      name: 'outbox_relay_replication_lag_seconds',
      help: 'Age of the last commit this replica fanned out (0 when caught up; streaming replica only)',
      registers,
    }),
    orderedBlockedKeys: new Gauge({
      name: 'outbox_relay_ordered_blocked_keys',
      help: 'Ordering keys of ordered endpoints whose head failed and holds later events back (all replicas)',
      registers,
    }),
    disabledEndpoints: new Gauge({
      name: 'outbox_relay_disabled_endpoints',
      help: 'Endpoints disabled now (all replicas): by the relay (410 Gone, AUTO_DISABLE_AFTER, …_FAILURES) or by an operator',
      registers,
    }),
    slotRetainedBytes: new Gauge({
      name: 'outbox_relay_slot_retained_wal_bytes',
      help: 'WAL the slot keeps on the server (compare with max_slot_wal_keep_size)',
      registers,
    }),
    clusterRelays: new Gauge({
      name: 'outbox_relay_cluster_relays',
      help: 'Live relays this replica splits per-endpoint limits with (itself included)',
      registers,
      collect: collectCluster,
    }),
    breakersOpen: new Gauge({
      name: 'outbox_relay_breakers_open',
      help: 'Endpoints whose shared circuit breaker is open or half-open (the cluster’s state)',
      registers,
      collect: collectCluster,
    }),
    breakerOpen: new Gauge({
      name: 'outbox_relay_breaker_open',
      help: 'Per endpoint (and its tenant), only while its shared breaker is not closed: 1 open, 0.5 half-open (at most 100 series; the rest only in breakers_open)',
      labelNames: ['endpoint_id', 'tenant'] as const,
      registers,
      collect: collectCluster,
    }),
    endpointLimit: new Gauge({
      name: 'outbox_relay_endpoint_limit',
      help: 'Cluster-wide limit of the 50 endpoints most recently sent to here: max_in_flight (or ENDPOINT_CONCURRENCY), rate_per_second',
      labelNames: ['endpoint_id', 'limit'] as const,
      registers,
      collect: collectCluster,
    }),
    endpointShare: new Gauge({
      name: 'outbox_relay_endpoint_share',
      help: 'This replica’s share of outbox_relay_endpoint_limit (0: it leaves the endpoint to its peers)',
      labelNames: ['endpoint_id', 'limit'] as const,
      registers,
      collect: collectCluster,
    }),
    leasesLost: new Counter({
      name: 'outbox_relay_leases_lost_total',
      help: 'Deliveries whose lease was lost while held',
      registers,
    }),
    endpointsDisabled: new Counter({
      name: 'outbox_relay_endpoints_disabled_total',
      help: 'Endpoints disabled by the relay (410 Gone, or failing for AUTO_DISABLE_AFTER)',
      registers,
    }),
    retentionDeleted: new Counter({
      name: 'outbox_relay_retention_deleted_total',
      help: 'Rows deleted by the retention job, by table',
      labelNames: ['table'] as const,
      registers,
    }),
    sweepReclaimed: new Counter({
      name: 'outbox_relay_sweep_reclaimed_total',
      help: 'Deliveries recovered from expired leases',
      registers,
    }),
  };
}
