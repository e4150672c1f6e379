/** One committed outbox row, as decoded from the WAL. `payload` is the jsonb text exactly as Postgres prints it. */
export type OutboxEvent = {
  id: string;
  eventType: string;
  endpointId: string | null;
  payload: string;
  createdAtMs: number;
};

/** Replication role of this process, for readiness and metrics. */
export type StreamState = 'starting' | 'streaming' | 'standby' | 'failed' | 'stopped';
