import { coerceError } from '../errors.ts';

export type Release = () => Promise<void> | void;

/**
 * Resources released in the reverse order they were opened (graphile-worker's releasers): open a resource and
 * `hold` its release in the same breath, so a start that fails half-way closes exactly what it opened.
 */
export function createReleasers() {
  const releases: Release[] = [];
  let released: Promise<void> | undefined;
  return {
    /** Registers `release(resource)` to run at `releaseAll`; returns the resource. */
    hold: <T>(resource: T, release: (resource: T) => Promise<void> | void): T => {
      releases.unshift(() => release(resource));
      return resource;
    },
    /**
     * Runs every release, last opened first, each even when an earlier one failed; then throws the first
     * failure. Idempotent: a second call awaits the first.
     */
    releaseAll: (): Promise<void> => {
      released ??= (async () => {
        let first: Error | undefined;
        for (const release of releases.splice(0)) {
          try {
            await release();
          } catch (err) {
            first ??= coerceError(err);
          }
        }
        if (first !== undefined) throw first;
      })();
      return released;
    },
  };
}

export type Releasers = ReturnType<typeof createReleasers>;
