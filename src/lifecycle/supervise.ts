import { coerceError, RelayError } from '../errors.ts';
import type { Logger } from '../log.ts';

/** A long-lived part: runs until its signal aborts, then finishes its work and resolves. */
export type Loop = (signal: AbortSignal) => Promise<void>;

/**
 * Loops stopped together, in stage order: a stage's loops are aborted and awaited, then its `after` step runs,
 * then the next stage is aborted. (Stream and claims stop first; in-flight work drains; outcomes are written;
 * only then do leases stop being renewed.)
 */
export type Stage = { loops: Record<string, Loop>; after?: () => Promise<void> };

/**
 * Runs every loop of every stage until `signal` aborts or a loop ends on its own, then stops the stages in
 * order. A loop that settles before its own stage was told to stop, or that rejects at any time, is a failure:
 * it is logged, it stops everything, and `supervise` rejects with LOOP_FAILED once every loop has finished, so
 * the process exits non-zero and its orchestrator restarts it. Nothing is left running when it settles.
 */
export async function supervise(
  stages: readonly Stage[],
  signal: AbortSignal,
  log: Logger,
  /** Called once, when stopping begins (for whatever reason). */
  onStopping?: () => void,
  /** Kept up to date with the loops still running (`stage N/name`): what a stop that hangs is waiting for. */
  unfinished = new Set<string>(),
): Promise<void> {
  const controllers = stages.map(() => new AbortController());
  const trigger = Promise.withResolvers<void>();
  let failure: RelayError | undefined;
  const fail = (name: string, err?: unknown) => {
    const message =
      err === undefined ? `the ${name} loop ended on its own` : `${name} failed: ${coerceError(err).message}`;
    log.error({ loop: name, err }, 'a supervised loop stopped unexpectedly; stopping the relay');
    failure ??= new RelayError('LOOP_FAILED', message, err === undefined ? undefined : { cause: err });
    trigger.resolve();
  };

  const running = stages.map((stage, i) => {
    const own = controllers[i]!.signal;
    return Object.entries(stage.loops).map(([name, loop]) => {
      const label = `stage ${i + 1}/${name}`;
      unfinished.add(label);
      return Promise.resolve()
        .then(() => loop(own))
        .then(
          () => {
            if (!own.aborted) fail(name);
          },
          (err: unknown) => fail(name, err),
        )
        .finally(() => unfinished.delete(label));
    });
  });

  let slow: NodeJS.Timeout | undefined;
  const onAbort = () => trigger.resolve();
  if (signal.aborted) onAbort();
  else signal.addEventListener('abort', onAbort, { once: true });
  try {
    await trigger.promise;
    onStopping?.();
    // A stop that takes this long is waiting on something it should have given up: say what, every time.
    slow = setInterval(() => {
      log.warn({ waitingFor: [...unfinished] }, 'still stopping');
    }, SLOW_STOP_MS);
    slow.unref();
    for (const [i, stage] of stages.entries()) {
      controllers[i]!.abort();
      await Promise.all(running[i]!);
      // A failed step between stages must not leave the later stages running.
      await stage.after?.().catch((err: unknown) => fail(`stage ${i + 1} shutdown`, err));
    }
  } finally {
    clearInterval(slow);
    signal.removeEventListener('abort', onAbort);
  }
  if (failure !== undefined) throw failure;
}

/** How often a stop that has not finished says which loops it still waits for. */
const SLOW_STOP_MS = 15_000;
