SET lock_timeout = '5s';

-- Hardening (issue 15). Idempotent: every constraint, function and trigger is dropped or replaced by name.

-- ---- rate_limit_per_second: bounded ---------------------------------------------------------------------------
--
-- The scheduler spaces an endpoint's requests 1000 / rate ms apart with a timer. Below ~5e-7 that exceeds what
-- setTimeout takes (2^31-1 ms), the timer fires at once, and the endpoint's jobs never start while their leases
-- are renewed forever. 0.001 (one request per 1000 s, a 1e6 ms timer) keeps it three orders of magnitude clear;
-- 10000/s (a 0.1 ms spacing) is beyond what one endpoint is ever sent. Rows outside the range are clamped to it
-- first: below the minimum they were stuck anyway, so the nearest working value is what their owner meant.
UPDATE webhooks.endpoints
SET rate_limit_per_second = least(greatest(rate_limit_per_second, 0.001), 10000), updated_at = now()
WHERE rate_limit_per_second < 0.001 OR rate_limit_per_second > 10000;

ALTER TABLE webhooks.endpoints DROP CONSTRAINT IF EXISTS endpoint_rate_limit_positive;
ALTER TABLE webhooks.endpoints DROP CONSTRAINT IF EXISTS endpoint_rate_limit_per_second_between_0_001_and_10000;
ALTER TABLE webhooks.endpoints ADD CONSTRAINT endpoint_rate_limit_per_second_between_0_001_and_10000
  CHECK (rate_limit_per_second BETWEEN 0.001 AND 10000);
