// What this relay may do for each endpoint, as the cluster sees it: its share of the endpoint's limits and the
// endpoint's shared circuit breaker. Pure: the poll loop (limits.ts) feeds it what the database said and the
// monotonic time; the scheduler asks it. No I/O, no timers.

/** What the scheduler asks before starting a request (see src/scheduler/fair-queue.ts). */
export type EndpointLimits = {
  /** Most requests this relay may have in flight to the endpoint now, given the endpoint's cluster-wide limit. */
  concurrency(endpointId: string, limit: number): number;
  /** Requests per second this relay may start (null: unlimited), given the endpoint's cluster-wide rate. */
  rate(endpointId: string, ratePerSecond: number | null, limit: number): number | null;
  /** Endpoints nothing may be claimed or fanned out claimed for now (breaker open, or no share here). */
  blocked(): readonly string[];
};

/** A breaker that is not closed, as the poll read it (times relative to the database's now()). */
export type PolledBreaker = {
  endpointId: string;
  state: 'open' | 'half-open';
  /** open: until the probe may be taken; half-open: until the probe's owner loses it. */
  remainingMs: number;
  probeOwner: string | null;
};

export type Poll = {
  /** Monotonic time at which the poll statement was sent (a lower bound of the database's now()). */
  sentAtMs: number;
  /** Owners of the other live relays. */
  peers: readonly string[];
  /** How long ago (database clock) this relay's row was first written. */
  joinedMsAgo: number;
  breakers: readonly PolledBreaker[];
};

export type Gate =
  | { kind: 'closed' }
  /** Nothing is sent until `untilMs` (monotonic), when a probe may be taken. */
  | { kind: 'open'; untilMs: number }
  /** This relay owns the half-open probe: exactly one request may go out. */
  | { kind: 'probe' };

export type ClusterViewOptions = {
  /** This relay's lease owner id. */
  me: string;
  /** How often the cluster is polled. */
  pollMs: number;
  /** How long a relay's row lives without a poll (CLUSTER_LEASE). */
  leaseMs: number;
  /** Largest number of endpoints `blocked()` names (the claim statement carries them). */
  maxBlocked?: number;
};

/** Endpoints whose concurrency limit is remembered (to keep claims off those this relay has no share of). */
const MAX_KNOWN_LIMITS = 10_000;

/** Endpoints whose limits metrics show. */
const MAX_SHOWN = 50;

/** FNV-1a: which relay takes an endpoint's remainder rotates with the endpoint, not always the first relay. */
function spread(endpointId: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < endpointId.length; i++) {
    h ^= endpointId.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * The share of an endpoint's limit `limit` that the relay at `index` of `members` (sorted) takes: floor(L/n),
 * plus one for `L mod n` relays chosen by the endpoint, so the shares sum to exactly L. With L < n some relays
 * get 0 and never send to that endpoint.
 */
export function shareOf(limit: number, members: number, index: number, endpointId: string): number {
  if (members <= 0) return 0;
  const base = Math.floor(limit / members);
  const position = (index - (spread(endpointId) % members) + members) % members;
  return base + (position < limit % members ? 1 : 0);
}

/**
 * Each relay paces at this fraction of its share. Starts are spaced exactly, but a request's way to the receiver
 * (connection, signing, the network) varies, and arrivals bunch by that variation: measured with three relays at
 * 20/s, up to 24 arrivals in one second at full share, at most 21-22 with this headroom.
 */
export const RATE_HEADROOM = 0.95;

/**
 * The rate each relay with a concurrency share may start: the endpoint's rate split evenly between the relays
 * that can send at all (min(n, concurrency limit) of them), less the headroom.
 */
export function rateShareOf(ratePerSecond: number, members: number, concurrencyLimit: number): number {
  return (RATE_HEADROOM * ratePerSecond) / Math.max(1, Math.min(members, concurrencyLimit));
}

/**
 * Membership and breakers as of the last poll.
 *
 * Shares hold only while the view is fresh: this relay's row expires CLUSTER_LEASE after its last poll (database
 * clock), and then the others take its share, so a relay whose last successful poll was sent more than
 * `leaseMs - pollMs` ago takes none (it was frozen, or cannot reach the database). A relay that joins a running
 * cluster takes no share for two poll intervals, so every peer has polled and shrunk its own share first.
 *
 *   breaker (shared):  closed ──(a relay's opossum trips)──► open ──(open_until)──► half-open: one relay's probe
 *                        ▲                                     ▲                        │
 *                        └───────── probe delivered ───────────┴──── probe failed ──────┘
 */
export function createClusterView(options: ClusterViewOptions) {
  const graceMs = 2 * options.pollMs;
  const validMs = Math.max(options.pollMs, options.leaseMs - options.pollMs);
  const maxBlocked = options.maxBlocked ?? 1_000;
  let members: string[] = [options.me];
  let index = 0;
  let polledAtMs = Number.NEGATIVE_INFINITY;
  let startedAlone: boolean | undefined;
  let settled = false;
  // A poll after a gap in which this relay's row may have expired: its peers may have taken its share, so it
  // waits out the join grace again.
  let rejoinedAtMs = Number.NEGATIVE_INFINITY;
  // Breakers that are not closed: endpoint → state, with monotonic deadlines.
  const breakers = new Map<string, { state: 'open' | 'half-open'; untilMs: number; mine: boolean }>();
  const probing = new Set<string>(); // probes of this relay that have started
  const knownLimits = new Map<string, number>(); // endpoint → its concurrency limit, as jobs said
  const zeroShare = new Set<string>(); // endpoints this relay gets no concurrency share of
  const recentRates = new Map<string, number | null>(); // endpoints last asked about, for metrics (bounded)

  const fresh = (nowMs: number) => settled && nowMs - polledAtMs < validMs;

  const recomputeZeroShares = () => {
    zeroShare.clear();
    for (const [endpointId, limit] of knownLimits) {
      if (shareOf(limit, members.length, index, endpointId) === 0) zeroShare.add(endpointId);
    }
  };

  const view = {
    /** Applies a poll; returns the endpoints that became blocked (their queued jobs should be handed back). */
    apply(poll: Poll): string[] {
      const before = new Set(view.toHandBack());
      members = [...new Set([...poll.peers, options.me])].sort();
      index = members.indexOf(options.me);
      if (startedAlone !== undefined && poll.sentAtMs - polledAtMs >= validMs && poll.peers.length > 0) {
        rejoinedAtMs = poll.sentAtMs;
      }
      polledAtMs = Math.max(polledAtMs, poll.sentAtMs);
      startedAlone ??= poll.peers.length === 0;
      settled = (startedAlone || poll.joinedMsAgo >= graceMs) && poll.sentAtMs - rejoinedAtMs >= graceMs;
      breakers.clear();
      for (const b of poll.breakers) {
        const mine = b.state === 'half-open' && b.probeOwner === options.me;
        breakers.set(b.endpointId, { state: b.state, untilMs: poll.sentAtMs + b.remainingMs, mine });
      }
      for (const id of probing) if (breakers.get(id)?.mine !== true) probing.delete(id);
      recomputeZeroShares();
      return view.toHandBack().filter((id) => !before.has(id));
    },
    members: (): readonly string[] => members,
    fresh,
    settled: () => settled,
    gate(endpointId: string, nowMs: number): Gate {
      const b = breakers.get(endpointId);
      if (b === undefined) return { kind: 'closed' };
      if (b.mine && !probing.has(endpointId)) return { kind: 'probe' };
      return { kind: 'open', untilMs: Math.max(nowMs, b.untilMs) };
    },
    concurrency(endpointId: string, limit: number, nowMs: number): number {
      if (knownLimits.get(endpointId) !== limit) {
        knownLimits.delete(endpointId); // re-inserted last: the oldest is dropped first
        knownLimits.set(endpointId, limit);
        if (knownLimits.size > MAX_KNOWN_LIMITS) {
          const oldest = knownLimits.keys().next().value!;
          knownLimits.delete(oldest);
          zeroShare.delete(oldest);
        }
        if (shareOf(limit, members.length, index, endpointId) === 0) zeroShare.add(endpointId);
        else zeroShare.delete(endpointId);
      }
      if (!fresh(nowMs)) return 0;
      const gate = view.gate(endpointId, nowMs);
      if (gate.kind === 'open') return 0;
      if (gate.kind === 'probe' || probing.has(endpointId)) return 1;
      return shareOf(limit, members.length, index, endpointId);
    },
    rate(endpointId: string, ratePerSecond: number | null, limit: number): number | null {
      if (recentRates.get(endpointId) !== ratePerSecond) {
        recentRates.delete(endpointId);
        recentRates.set(endpointId, ratePerSecond);
        if (recentRates.size > MAX_SHOWN) recentRates.delete(recentRates.keys().next().value!);
      }
      if (ratePerSecond === null) return null;
      return rateShareOf(ratePerSecond, members.length, limit);
    },
    /**
     * Endpoints nothing more may be claimed or fanned out claimed for: breakers not closed (the probe this relay
     * owns included: it has its one delivery) and endpoints this relay has no share of.
     */
    blocked(): string[] {
      const out: string[] = [];
      for (const id of breakers.keys()) if (out.length < maxBlocked) out.push(id);
      for (const id of zeroShare) if (!breakers.has(id) && out.length < maxBlocked) out.push(id);
      return out;
    },
    /** Blocked endpoints whose queued jobs go back to the table (not the one whose probe this relay holds). */
    toHandBack(): string[] {
      return view.blocked().filter((id) => breakers.get(id)?.mine !== true);
    },
    /** Open breakers whose open period has ended, and half-open ones whose probe owner's time ran out. */
    probesDue(nowMs: number): string[] {
      return [...breakers].filter(([, b]) => !b.mine && b.untilMs <= nowMs).map(([id]) => id);
    },
    /** This relay opened the breaker (its write won or lost: either way nobody may send now). */
    opened(endpointId: string, untilMs: number): void {
      probing.delete(endpointId);
      breakers.set(endpointId, { state: 'open', untilMs, mine: false });
    },
    /** This relay took the probe (its compare-and-set won). */
    probeTaken(endpointId: string, untilMs: number): void {
      breakers.set(endpointId, { state: 'half-open', untilMs, mine: true });
    },
    /** The probe's request starts: no other request to the endpoint until it is decided. */
    probeStarted(endpointId: string): void {
      probing.add(endpointId);
    },
    /** This relay closed the breaker after its probe was delivered. */
    closed(endpointId: string): void {
      probing.delete(endpointId);
      breakers.delete(endpointId);
    },
    /**
     * The limits of the endpoints most recently limited here (at most 50), as the cluster has them and as this
     * relay's share, for metrics.
     */
    limits(nowMs: number): {
      endpointId: string;
      maxInFlight: number;
      share: number;
      ratePerSecond: number | null;
      rateShare: number | null;
    }[] {
      const out = [];
      for (const [endpointId, ratePerSecond] of recentRates) {
        const limit = knownLimits.get(endpointId);
        if (limit === undefined) continue;
        const share = fresh(nowMs) ? shareOf(limit, members.length, index, endpointId) : 0;
        const rateShare =
          ratePerSecond === null ? null : share === 0 ? 0 : rateShareOf(ratePerSecond, members.length, limit);
        out.push({ endpointId, maxInFlight: limit, share, ratePerSecond, rateShare });
      }
      return out;
    },
    /** The shared state for metrics and status: every breaker that is not closed. */
    breakers: (): ReadonlyMap<string, { state: 'open' | 'half-open'; untilMs: number; mine: boolean }> => breakers,
  };
  return view;
}

export type ClusterView = ReturnType<typeof createClusterView>;
