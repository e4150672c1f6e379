import { sql } from 'slonik';
import { z } from 'zod';

const Endpoint = z.object({
  id: z.string(),
  url: z.string(),
  tenant: z.string().nullable(),
  eventTypes: z.array(z.string()).nullable(),
  enabled: z.boolean(),
  ordered: z.boolean(),
  secret: z.string(),
  previousSecret: z.string().nullable(),
  previousExpiresAtMs: z.number().nullable(),
  maxInFlight: z.number().nullable(),
  ratePerSecond: z.number().nullable(),
});

/** Every endpoint, as the stream's endpoint cache holds it (loaded when a session starts). */
export const loadEndpoints = () => sql.type(Endpoint)`
  SELECT id::text, url, tenant, event_types AS "eventTypes", enabled, ordered, secret, previous_secret AS "previousSecret",
         (extract(epoch FROM previous_secret_expires_at) * 1000)::float8 AS "previousExpiresAtMs",
         max_in_flight AS "maxInFlight", rate_limit_per_second::float8 AS "ratePerSecond"
  FROM webhooks.endpoints`;
