import { EventEmitter } from 'node:events';
import CircuitBreaker from 'opossum';
import type { Attempt, BreakerState } from '../domain.ts';

export type { BreakerState };

export type BreakersOptions = {
  /** Opens when failures exceed this share of counted outcomes in the window (strictly greater). */
  errorThresholdPercentage: number;
  /** Fewer counted outcomes than this in the window never open the breaker. */
  volumeThreshold: number;
  /** How long an open breaker defers before letting one probe through. */
  resetTimeoutMs: number;
  /** The rolling statistics window (10 buckets). Keep it ≤ resetTimeoutMs: opossum keeps counts across a close. */
  rollingWindowMs: number;
  /** Most breakers held; beyond it the least recently used closed one is dropped. Default 10 000. */
  maxBreakers?: number;
  /**
   * The shared breaker decides (src/limits/): `run` never defers, and a breaker that opens reports 'open' and
   * closes again at once, so opossum only detects that this relay's outcomes crossed the threshold.
   */
  countOnly?: boolean;
  /** `openCount`: how many breakers are not closed, this one's change included. */
  onStateChange?: (endpointId: string, state: BreakerState, openCount: number) => void;
};

/** Not sent: the endpoint's breaker is open (or half-open with its one probe in flight). */
export type Deferred = { kind: 'deferred'; untilMs: number };

export type Breakers = ReturnType<typeof createBreakers>;

type Entry = {
  breaker: CircuitBreaker<[boolean], void>;
  /** When the breaker goes half-open; set on every 'open' (opossum does not expose it). */
  untilMs: number;
  /** The half-open probe in flight, if any: a token so a stale probe cannot clear a newer one. */
  probe: object | undefined;
};

const BUCKETS = 10;
const countedFailure = new Error('counted failure'); // never surfaces: only opossum's stats see it
// opossum only decides; the attempt itself runs outside it, so this action just reports the outcome.
const report = (ok: boolean): Promise<void> => (ok ? Promise.resolve() : Promise.reject(countedFailure));

/**
 * One opossum breaker per endpoint, used only to count outcomes and decide the state. Attempts run outside
 * opossum: it is told an outcome only when that outcome counts, so permanent failures, lost leases and
 * deferrals neither trip it nor dilute its error rate (opossum counts every fire, and its errorFilter turns
 * a filtered error into a success, which would also close a half-open breaker).
 *
 *   closed ──(failures > threshold, volume reached)──► open ──(resetTimeoutMs)──► half-open
 *     ▲                                                 ▲                           │ one probe runs,
 *     └──────────────── probe delivered ────────────────┼───── probe failed ────────┘ the rest deferred
 */
export function createBreakers(options: BreakersOptions) {
  const maxBreakers = options.maxBreakers ?? 10_000;
  const entries = new Map<string, Entry>(); // insertion order = least recently used first
  // One unref'd timer rotates every breaker's buckets, instead of one interval per breaker.
  const rotate = new EventEmitter().setMaxListeners(0);
  let rotateTimer: NodeJS.Timeout | undefined;
  let stopped = false;

  const create = (endpointId: string): Entry => {
    if (rotateTimer === undefined) {
      rotateTimer = setInterval(
        () => rotate.emit('rotate'),
        Math.max(1, Math.floor(options.rollingWindowMs / BUCKETS)),
      );
      rotateTimer.unref();
    }
    const breaker = new CircuitBreaker(report, {
      name: endpointId,
      timeout: false, // the HTTP layer times each request; attempts do not run inside opossum anyway
      resetTimeout: options.resetTimeoutMs,
      errorThresholdPercentage: options.errorThresholdPercentage,
      volumeThreshold: options.volumeThreshold,
      rollingCountTimeout: options.rollingWindowMs,
      rollingCountBuckets: BUCKETS,
      rollingPercentilesEnabled: false,
      enableSnapshots: false,
      rotateBucketController: rotate,
    });
    const entry: Entry = { breaker, untilMs: 0, probe: undefined };
    const changed = (state: BreakerState) => {
      entry.probe = undefined;
      options.onStateChange?.(endpointId, state, openCount());
    };
    breaker.on('open', () => {
      entry.untilMs = Date.now() + options.resetTimeoutMs;
      changed('open');
      if (options.countOnly === true) queueMicrotask(() => breaker.close());
    });
    breaker.on('halfOpen', () => changed('half-open'));
    breaker.on('close', () => changed('closed'));
    return entry;
  };

  const touch = (endpointId: string): Entry => {
    let entry = entries.get(endpointId);
    if (entry !== undefined) {
      entries.delete(endpointId);
      entries.set(endpointId, entry);
      return entry;
    }
    if (entries.size >= maxBreakers) evictOne();
    entry = create(endpointId);
    entries.set(endpointId, entry);
    return entry;
  };

  // Forgetting an open breaker would let a failing endpoint be hammered again, so only closed ones go first.
  const evictOne = () => {
    let victim: string | undefined;
    for (const [id, entry] of entries) {
      victim ??= id;
      if (entry.breaker.closed) {
        victim = id;
        break;
      }
    }
    if (victim === undefined) return;
    entries.get(victim)?.breaker.shutdown();
    entries.delete(victim);
  };

  const openCount = () => {
    let n = 0;
    for (const entry of entries.values()) if (!entry.breaker.closed) n++;
    return n;
  };

  const stateOf = (breaker: CircuitBreaker<[boolean], void>): BreakerState =>
    breaker.opened ? 'open' : breaker.halfOpen ? 'half-open' : 'closed';

  /** Tells opossum an outcome that counts; resolves once the state change (if any) has happened. */
  const record = async (entry: Entry, result: Attempt): Promise<void> => {
    const ok =
      result.kind === 'delivered' ? true : result.kind === 'failed' && result.permanent !== true ? false : null;
    const { breaker } = entry;
    // A late result while open (or while another result decides the half-open trial) decides nothing.
    if (ok === null || breaker.isShutdown || !(breaker.closed || breaker.pendingClose)) return;
    await breaker.fire(ok).catch(() => {}); // rejection = the counted failure itself
  };

  const call = async (attempt: () => Promise<Attempt>): Promise<Attempt> => {
    try {
      return await attempt();
    } catch (err) {
      // A bug, not the receiver's doing; still counted, so a relay fault cannot hammer an endpoint.
      return { kind: 'failed', error: `relay error: ${String(err)}`, durationMs: 0 };
    }
  };

  return {
    /**
     * Runs `attempt` unless the endpoint's breaker defers it, and returns the attempt's own result object.
     * Half-open lets one probe through; calls while it is in flight are deferred by another resetTimeoutMs.
     */
    async run(endpointId: string, attempt: () => Promise<Attempt>): Promise<Attempt | Deferred> {
      if (stopped) return call(attempt); // after shutdown: nothing counted, nothing deferred
      const entry = touch(endpointId);
      const { breaker } = entry;
      if (options.countOnly === true) {
        const result = await call(attempt);
        await record(entry, result);
        return result;
      }
      if (breaker.opened) return { kind: 'deferred', untilMs: entry.untilMs };
      let probe: object | undefined;
      if (breaker.halfOpen) {
        if (entry.probe !== undefined || !breaker.pendingClose) {
          return { kind: 'deferred', untilMs: Date.now() + options.resetTimeoutMs };
        }
        entry.probe = probe = {};
      }
      const result = await call(attempt);
      const recorded = record(entry, result); // fire() claims the trial synchronously, before the token is cleared
      if (probe !== undefined && entry.probe === probe) entry.probe = undefined; // uncounted probe: next call probes
      await recorded;
      return result;
    },
    state(endpointId: string): BreakerState {
      const entry = entries.get(endpointId);
      return entry === undefined ? 'closed' : stateOf(entry.breaker);
    },
    /** Endpoints whose breaker is not closed (open or half-open): their deliveries are being deferred. */
    openEndpoints(): string[] {
      return [...entries].filter(([, entry]) => !entry.breaker.closed).map(([id]) => id);
    },
    size: (): number => entries.size,
    /** Stops every breaker's timers; later runs pass straight through. */
    shutdown(): void {
      stopped = true;
      for (const entry of entries.values()) entry.breaker.shutdown();
      entries.clear();
      clearInterval(rotateTimer);
      rotateTimer = undefined;
    },
  };
}
