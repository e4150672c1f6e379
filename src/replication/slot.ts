import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../config.ts';
import type { StreamState } from '../domain.ts';
import { isRelayError } from '../errors.ts';
import { runWalSession, type WalSessionOptions } from './wal-stream.ts';
import { untilAborted } from '../util/abort.ts';

export type StreamDeps = Omit<WalSessionOptions, 'onStreaming'> & {
  /** Base wait before a standby tries to take the slot again (jittered ±50%). */
  standbyRetryMs: Config['standbyRetryMs'];
  onState: (state: StreamState, problem?: string) => void;
};

const MAX_BACKOFF_MS = 30_000;

/**
 * Owns the slot or stands by. Only one connection can stream a slot: the others get SLOT_IN_USE, keep
 * claiming due work through the claim loop, and retry with jitter. Any other stream failure rebuilds the
 * session from the slot's confirmed position with exponential backoff. A slot that is missing or invalidated
 * is never recreated here: readiness turns red and the log says to run repair.
 */
export async function runStream(deps: StreamDeps, signal: AbortSignal): Promise<void> {
  let failures = 0;
  let state = 'starting' as StreamState;
  const setState = (next: StreamState, problem?: string) => {
    state = next;
    deps.onState(next, problem);
  };
  while (!signal.aborted) {
    if (deps.stopReading?.() === true) {
      // Stopping: no new session (it would read rows again); the final status went out with the last one.
      await untilAborted(signal);
      break;
    }
    let waitMs: number;
    try {
      await runWalSession(
        {
          ...deps,
          onStreaming: () => {
            failures = 0;
            deps.log.info({ slot: deps.slotName }, 'streaming the replication slot');
            setState('streaming');
          },
        },
        signal,
      );
      continue;
    } catch (err) {
      if (isRelayError(err, 'SLOT_IN_USE')) {
        if (state !== 'standby')
          deps.log.info({ slot: deps.slotName }, 'slot is streamed by another relay; standing by');
        setState('standby');
        waitMs = deps.standbyRetryMs * (0.5 + Math.random());
      } else if (isRelayError(err, 'SLOT_MISSING') || isRelayError(err, 'SLOT_INVALIDATED')) {
        deps.log.error({ err, slot: deps.slotName }, err.message);
        setState('failed', err.message);
        waitMs = MAX_BACKOFF_MS;
      } else {
        failures++;
        waitMs = Math.min(MAX_BACKOFF_MS, 250 * 2 ** Math.min(failures, 10)) * (0.5 + Math.random());
        deps.log.error({ err, retryInMs: Math.round(waitMs) }, 'replication stream failed; rebuilding it');
        if (state === 'streaming') setState('starting');
      }
    }
    await sleep(waitMs, undefined, { signal }).catch(() => {});
  }
  setState('stopped');
}
