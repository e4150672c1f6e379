// The management API's request and response shapes. Each zod schema does two jobs: fastify-type-provider-zod
// validates requests (and responses) with it, and @fastify/swagger turns it into the OpenAPI document, so the
// document cannot describe a request the server would refuse. The console parses its query strings with the
// same schemas.
import { z } from 'zod';
import { parseDuration } from '../config.ts';
import { LIMITS } from '../ops/operations.ts';
import { STATUSES, type DeliveryFilter } from '../ops/queries.ts';

const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const MAX_AGO_MS = 36_500 * 86_400_000;

export const EndpointId = z.string().regex(UUID, 'expected an endpoint id (uuid)').describe('Endpoint id (uuid)');
export const DeliveryId = z
  .string()
  .regex(/^[1-9]\d{0,18}$/, 'expected a delivery id (a positive whole number)')
  .describe('Delivery id');
const Tenant = z.string().min(1).max(255);
const EventType = z.string().min(1).max(255);
const WebhookId = z
  .string()
  .regex(/^msg_[1-9]\d{0,18}$/, 'expected a webhook-id such as msg_42')
  .describe('The webhook-id header the receiver saw (msg_<outbox id>)');

/** `30m`, `24h`, `7d` (that long ago) or an ISO-8601 timestamp. */
const TimeBound = z
  .string()
  .refine((text) => toBound(text) !== undefined, {
    message: 'expected a duration back from now such as 30m, 24h or 7d, or an ISO-8601 timestamp',
  })
  .describe('A duration back from now (30m, 24h, 7d) or an ISO-8601 timestamp');

type Bound = { agoMs: number } | { atMs: number };

function toBound(text: string): Bound | undefined {
  const ms = parseDuration(text);
  if (ms !== undefined) return ms <= MAX_AGO_MS ? { agoMs: ms } : undefined;
  if (!/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?$/.test(text)) return undefined;
  const at = Date.parse(text);
  return Number.isFinite(at) ? { atMs: at } : undefined;
}

const Limit = z
  .string()
  .regex(/^\d{1,4}$/, `expected a whole number 1-${LIMITS.pageMax}`)
  .refine((t) => Number(t) >= 1 && Number(t) <= LIMITS.pageMax, `expected a whole number 1-${LIMITS.pageMax}`)
  .describe(`Rows per page, 1-${LIMITS.pageMax}`);

const filterFields = {
  endpoint: EndpointId.optional(),
  event_type: EventType.optional(),
  tenant: Tenant.optional().describe("Deliveries to this tenant's endpoints"),
  since: TimeBound.optional().describe('Created at or after: a duration back from now (24h) or an ISO timestamp'),
  until: TimeBound.optional().describe('Created at or before: a duration back from now (10m) or an ISO timestamp'),
  webhook_id: WebhookId.optional(),
};

export const DeliveryQuery = z.strictObject({
  status: z.enum(STATUSES).optional(),
  ...filterFields,
  limit: Limit.optional(),
  cursor: DeliveryId.optional().describe("The previous page's nextCursor"),
});
export type DeliveryQuery = z.infer<typeof DeliveryQuery>;

export const EndpointQuery = z.strictObject({ tenant: Tenant.optional(), limit: Limit.optional() });

export const ReplayBody = z
  .strictObject({
    ...filterFields,
    ids: z
      .array(z.union([DeliveryId, z.number().int().positive().max(Number.MAX_SAFE_INTEGER)]))
      .min(1)
      .max(LIMITS.replayIdsMax)
      .optional()
      .describe('Delivery ids'),
    all: z.boolean().optional().describe('Required to replay every dead delivery (no filter at all)'),
    dryRun: z.boolean().optional().describe('Only count what a replay would move now (default false)'),
  })
  .describe('Which dead deliveries to move back to pending: every filter must match');
export type ReplayBody = z.infer<typeof ReplayBody>;

/** The query's or body's filters in the operations' terms. */
export function toFilter(f: {
  status?: (typeof STATUSES)[number];
  endpoint?: string;
  event_type?: string;
  tenant?: string;
  since?: string;
  until?: string;
  webhook_id?: string;
  ids?: readonly (string | number)[];
}): DeliveryFilter {
  const since = f.since === undefined ? undefined : toBound(f.since);
  const until = f.until === undefined ? undefined : toBound(f.until);
  const filter: DeliveryFilter = {
    status: f.status,
    endpointId: f.endpoint?.toLowerCase(),
    eventType: f.event_type,
    tenant: f.tenant,
    outboxId: f.webhook_id?.slice('msg_'.length),
    ids: f.ids?.map(String),
    sinceMs: since !== undefined && 'agoMs' in since ? since.agoMs : undefined,
    sinceAtMs: since !== undefined && 'atMs' in since ? since.atMs : undefined,
    untilMs: until !== undefined && 'agoMs' in until ? until.agoMs : undefined,
  };
  // An absolute `until` becomes "that long ago" on this clock; a bound, not an instant, so a skew of a few ms is
  // harmless.
  if (until !== undefined && 'atMs' in until) filter.untilMs = Math.max(0, Date.now() - until.atMs);
  return Object.fromEntries(Object.entries(filter).filter(([, v]) => v !== undefined));
}

export const DisableBody = z
  .strictObject({
    reason: z.string().max(1000).optional().describe('Shown with the endpoint; default "disabled by operator"'),
  })
  .optional();

export const RotateBody = z
  .strictObject({
    keepPreviousSeconds: z
      .number()
      .int()
      .min(0)
      .max(LIMITS.keepPreviousMaxMs / 1000)
      .optional()
      .describe('How long the old secret still signs too (default one day; 0 drops it now)'),
  })
  .optional();

// ---- responses ---------------------------------------------------------------------------------------------
// Strict: a field the operations return but the document does not describe fails the request (a 500 in every
// test that reads it) instead of being dropped silently on the way out.

const Iso = z.string().describe('ISO-8601 timestamp');

export const ErrorResponse = z
  .strictObject({ error: z.strictObject({ code: z.string(), message: z.string() }) })
  .describe('Every error: a stable code and a message saying what to fix');

export const EndpointJson = z.strictObject({
  id: z.string(),
  tenant: z.string().nullable(),
  url: z.string(),
  enabled: z.boolean(),
  ordered: z.boolean().describe('Events sharing an ordering key are delivered one at a time, in commit order'),
  eventTypes: z.array(z.string()).nullable(),
  description: z.string().nullable(),
  secret: z.string().describe('Masked: whsec_…abcd'),
  previousSecret: z.string().nullable().describe('Masked; still signs until previousSecretExpiresAt'),
  previousSecretExpiresAt: Iso.nullable(),
  disabledReason: z.string().nullable(),
  disabledAt: Iso.nullable(),
  failingSince: Iso.nullable(),
  consecutiveFailures: z.number(),
  createdAt: Iso,
  updatedAt: Iso,
});

export const EndpointHealthJson = EndpointJson.extend({
  deliveredLastHour: z.number(),
  failedAttemptsLastHour: z.number(),
  successRateLastHour: z.number().nullable(),
  pending: z.number(),
  delivering: z.number(),
  dead: z.number(),
  limits: z
    .strictObject({
      maxInFlight: z.number().nullable().describe('Null: ENDPOINT_CONCURRENCY'),
      ratePerSecond: z.number().nullable().describe('Null: no rate limit'),
    })
    .describe("The endpoint's own limits, for the whole cluster: every live relay takes a share"),
  breaker: z
    .strictObject({
      state: z.enum(['closed', 'open', 'half-open']),
      openUntil: Iso.nullable().describe('While open: when one relay may send a probe'),
      probeOwner: z.string().nullable().describe('While half-open: the relay sending the probe'),
    })
    .describe('The circuit breaker every relay shares for this endpoint'),
});

export const DeliveryJson = z.strictObject({
  id: z.string(),
  outboxId: z.string(),
  webhookId: z.string(),
  endpointId: z.string(),
  tenant: z.string().nullable(),
  eventType: z.string().nullable(),
  status: z.string(),
  attempts: z.number(),
  nextAttemptAt: Iso.nullable(),
  lastStatusCode: z.number().nullable(),
  lastError: z.string().nullable(),
  createdAt: Iso,
  updatedAt: Iso,
  deliveredAt: Iso.nullable(),
  lastDurationMs: z
    .number()
    .nullable()
    .describe('How long the latest attempt took (the one that delivered, for a delivered delivery); null before any'),
});

export const AttemptJson = z.strictObject({
  attempt: z.number(),
  statusCode: z.number().nullable(),
  error: z.string(),
  responseSnippet: z.string().nullable().describe("The receiver's response, as received: untrusted text"),
  durationMs: z.number().nullable(),
  workerId: z.string().nullable(),
  createdAt: Iso,
});

export const StatusJson = z.strictObject({
  ok: z.boolean(),
  problems: z.array(z.string()),
  warnings: z.array(z.string()),
  slot: z.strictObject({
    name: z.string(),
    exists: z.boolean(),
    active: z.boolean().nullable(),
    activePid: z.number().nullable(),
    holder: z.strictObject({ applicationName: z.string().nullable(), clientAddr: z.string().nullable() }).nullable(),
    walStatus: z.string().nullable(),
    lagBytes: z.number().nullable(),
    retainedWalBytes: z.number().nullable(),
    maxSlotWalKeepSize: z.string(),
  }),
  deliveries: z.record(z.string(), z.number()),
  relays: z
    .array(z.strictObject({ owner: z.string(), workerId: z.string(), joinedAt: Iso, seenAt: Iso }))
    .describe('Live relays, oldest first (at most 20); each takes a share of every endpoint limit'),
  duePending: z.number(),
  oldestDuePendingAgeSeconds: z.number().nullable(),
  parked: z.number(),
  endpointTotals: z
    .strictObject({
      total: z.number(),
      disabled: z.number(),
      failing: z.number().describe('Enabled, with failed attempts since its last success'),
      breakersOpen: z.number().describe('Shared breaker open or half-open'),
      ordered: z.number().describe('Endpoints that deliver the events sharing a key in order'),
      blockedKeys: z.number().describe('Ordering keys, on any endpoint, whose failing head holds later events back'),
      shown: z.number().describe('Endpoints listed in `endpoints`'),
    })
    .describe('Counts over every endpoint, not only those listed'),
  endpoints: z.array(EndpointHealthJson),
  ordered: z
    .array(
      z.strictObject({
        endpointId: z.string(),
        tenant: z.string().nullable(),
        url: z.string(),
        blockedKeys: z.number().describe('Keys whose head failed and holds later events back'),
        oldestBlockedHead: z
          .strictObject({
            outboxId: z.string(),
            webhookId: z.string(),
            orderingKey: z.string(),
            since: Iso.nullable(),
            attempts: z.number(),
            nextAttemptAt: Iso.nullable().describe('Null while its endpoint is disabled'),
            lastStatusCode: z.number().nullable(),
            lastError: z.string().nullable(),
          })
          .nullable(),
      }),
    )
    .describe('Ordered endpoints, most blocked keys first'),
});

export const ReplayResultJson = z.strictObject({
  dryRun: z.boolean(),
  matched: z.number().describe('Dry run: what a replay would move now; otherwise what was moved'),
  moved: z.number(),
  parked: z.number().describe('Of those, on disabled endpoints: they wait until the endpoint is enabled'),
  batches: z.number(),
  ofDeletedEndpoints: z.number().describe('Matching dead deliveries of deleted endpoints: never replayed'),
});
