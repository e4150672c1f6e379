SET lock_timeout = '5s';

-- Every change to an endpoint moves updated_at, whoever makes it (the CLI, the relay, the application's own SQL):
-- running relays re-read endpoints changed since their last look, so a rotated secret or a changed URL applies
-- to requests already held in memory within a second. An update that sets updated_at itself keeps its value.
CREATE OR REPLACE FUNCTION webhooks.touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
    NEW.updated_at := now();
  END IF;
  RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS endpoints_touch_updated_at ON webhooks.endpoints;
CREATE TRIGGER endpoints_touch_updated_at
  BEFORE UPDATE ON webhooks.endpoints
  FOR EACH ROW EXECUTE FUNCTION webhooks.touch_updated_at();
