import type { Job } from '../domain.ts';

/** An endpoint as last read from the table: what an attempt needs of it. */
export type EndpointView = {
  id: string;
  url: string;
  secret: string;
  previousSecret: string | null;
  /** Epoch ms; the previous secret signs too until then. */
  previousExpiresAtMs: number | null;
};

/**
 * The newest known definition of every endpoint changed since the relay started, without I/O. A job carries the
 * endpoint as it was when the job was claimed, which can be a lease ago; an attempt starts with what the table
 * says now, so a secret rotated with --keep-previous 0 (or a URL changed) applies to requests already held in
 * memory, not only to later claims.
 */
export function createEndpointViews() {
  const views = new Map<string, EndpointView>();
  return {
    apply(rows: readonly EndpointView[]): void {
      for (const row of rows) views.set(row.id, row);
    },
    /** The job as it should be sent now: with its endpoint's current URL and live secrets, if they changed. */
    current(job: Job, nowMs: number): Job {
      const view = views.get(job.endpointId);
      if (view === undefined) return job;
      const live =
        view.previousSecret !== null && view.previousExpiresAtMs !== null && view.previousExpiresAtMs > nowMs;
      return { ...job, url: view.url, secrets: live ? [view.secret, view.previousSecret!] : [view.secret] };
    },
    size: (): number => views.size,
  };
}

export type EndpointViews = ReturnType<typeof createEndpointViews>;
