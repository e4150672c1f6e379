import type { OutboxEvent } from '../domain.ts';

/** An endpoint as the stream last saw it: what fan-out needs to decide and a first attempt needs to send. */
export type CachedEndpoint = {
  id: string;
  url: string;
  tenant: string | null;
  /** NULL: every event type (operational relay.* events excepted). */
  eventTypes: readonly string[] | null;
  enabled: boolean;
  /** Events that share an ordering key go out one at a time, in commit order (never sent from memory). */
  ordered: boolean;
  secret: string;
  previousSecret: string | null;
  /** Epoch ms; the previous secret signs too until then. */
  previousExpiresAtMs: number | null;
  maxInFlight: number | null;
  ratePerSecond: number | null;
};

/** An insert or update as the stream decoded it: `undefined` columns did not change. */
export type EndpointUpsert = { id: string } & {
  [K in Exclude<keyof CachedEndpoint, 'id'>]?: CachedEndpoint[K] | undefined;
};
export type EndpointChange = EndpointUpsert | { deleted: string };

/**
 * Every endpoint, kept in commit order by the replication stream (the endpoints publication): loaded from the
 * table when a session starts, then changed by each insert, update and delete the stream decodes, before any
 * event received after that change is fanned out. So an endpoint created in the same transaction as an event
 * receives it, and one disabled before an event committed does not get it sent. No I/O.
 *
 * `matches` is the in-memory twin of the SQL fragment `subscribes` (db/fragments.ts); test/endpoint-cache.test.ts
 * checks both give the same answer.
 */
export function createEndpointCache() {
  const endpoints = new Map<string, CachedEndpoint>();
  const byTenant = new Map<string | null, Map<string, CachedEndpoint>>(); // fan-out looks only at the event's tenant
  const put = (endpoint: CachedEndpoint) => {
    remove(endpoint.id);
    endpoints.set(endpoint.id, endpoint);
    let tenant = byTenant.get(endpoint.tenant);
    if (tenant === undefined) byTenant.set(endpoint.tenant, (tenant = new Map<string, CachedEndpoint>()));
    tenant.set(endpoint.id, endpoint);
  };
  const remove = (id: string) => {
    const known = endpoints.get(id);
    if (known === undefined) return;
    endpoints.delete(id);
    const tenant = byTenant.get(known.tenant);
    tenant?.delete(id);
    if (tenant?.size === 0) byTenant.delete(known.tenant);
  };
  /**
   * Columns left `undefined` did not change (an unchanged TOASTed value is not sent again) and keep their cached
   * value; an update of an endpoint not cached yet without them is ignored until the next load.
   */
  const upsert = (change: EndpointUpsert) => {
    const known = endpoints.get(change.id);
    const merged = { ...known } as Partial<CachedEndpoint>;
    for (const [key, value] of Object.entries(change)) {
      if (value !== undefined) (merged as Record<string, unknown>)[key] = value;
    }
    if (merged.url === undefined || merged.secret === undefined || merged.enabled === undefined) return;
    put({
      id: change.id,
      url: merged.url,
      tenant: merged.tenant ?? null,
      eventTypes: merged.eventTypes ?? null,
      enabled: merged.enabled,
      ordered: merged.ordered ?? false,
      secret: merged.secret,
      previousSecret: merged.previousSecret ?? null,
      previousExpiresAtMs: merged.previousExpiresAtMs ?? null,
      maxInFlight: merged.maxInFlight ?? null,
      ratePerSecond: merged.ratePerSecond ?? null,
    });
  };
  return {
    /** Replaces everything with the table's rows (a session's start). */
    load(rows: readonly CachedEndpoint[]): void {
      endpoints.clear();
      byTenant.clear();
      for (const row of rows) put(row);
    },
    /** An insert, update or delete from the stream. */
    apply(change: EndpointChange): void {
      if ('deleted' in change) remove(change.deleted);
      else upsert(change);
    },
    get: (id: string): CachedEndpoint | undefined => endpoints.get(id),
    size: (): number => endpoints.size,
    /** The endpoints that receive `event` (disabled ones included: their deliveries are created parked). */
    receivers(event: Pick<OutboxEvent, 'eventType' | 'endpointId' | 'tenant'>, about: string | null): CachedEndpoint[] {
      if (event.endpointId !== null) {
        const target = endpoints.get(event.endpointId);
        return target !== undefined && target.tenant === event.tenant ? [target] : [];
      }
      const out: CachedEndpoint[] = [];
      for (const endpoint of byTenant.get(event.tenant)?.values() ?? []) {
        if (matches(endpoint, event, about)) out.push(endpoint);
      }
      return out;
    },
  };
}

export type EndpointCache = ReturnType<typeof createEndpointCache>;

/** `subscribes` in memory: same tenant (null only with null); then the target, relay.* rules, or event types. */
export function matches(
  endpoint: Pick<CachedEndpoint, 'id' | 'tenant' | 'eventTypes'>,
  event: Pick<OutboxEvent, 'eventType' | 'endpointId' | 'tenant'>,
  about: string | null,
): boolean {
  if (endpoint.tenant !== event.tenant) return false;
  if (event.endpointId !== null) return endpoint.id === event.endpointId;
  if (event.eventType.startsWith('relay.')) {
    const types = endpoint.eventTypes;
    return types !== null && (types.includes(event.eventType) || types.includes('relay.*')) && endpoint.id !== about;
  }
  return endpoint.eventTypes === null || endpoint.eventTypes.includes(event.eventType);
}

/** The secrets that sign now: the current one, then the previous one while its rotation window lasts. */
export function liveSecrets(endpoint: CachedEndpoint, nowMs: number): string[] {
  const previous = endpoint.previousSecret;
  return previous !== null && endpoint.previousExpiresAtMs !== null && endpoint.previousExpiresAtMs > nowMs
    ? [endpoint.secret, previous]
    : [endpoint.secret];
}
