SET lock_timeout = '5s';

-- How long the latest attempt took, on the delivery itself: failed attempts are logged with their duration in
-- delivery_attempts, but a success is recorded only here, so without it the console's timeline and the API could
-- not say how long the attempt that delivered took. Written by the same outcome statement (no extra row write).
ALTER TABLE webhooks.deliveries ADD COLUMN IF NOT EXISTS last_duration_ms integer;
