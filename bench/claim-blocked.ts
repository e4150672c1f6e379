// `node bench/claim-blocked.ts [rounds] [delivered]`: what endpoints with an open shared breaker cost the claim.
// On an embedded Postgres: 200 endpoints, 200,000 due pending deliveries (the 20 endpoints with an open breaker
// hold 5,500 each, the other 180 hold 500 each: a failing endpoint's backlog grows), `delivered` older delivered
// rows spread evenly over the endpoints (default 200,000: history retention keeps), 20 open breaker rows and 3
// live relay rows. The claim as the relay sends it (CLAIM_BATCH 500; the 20 blocked endpoints listed with quota
// 0), and the same claim from a relay that has not polled the breakers yet (no quotas: the statement's own skip
// alone), are run with EXPLAIN (ANALYZE, BUFFERS) inside a rolled-back transaction, `rounds` times each (default
// 20), for an idle relay (an endpoint may take 1,000) and a busy one (9 each, so one claim spans ~56 endpoints).
// Prints medians of execution time and shared buffers, the deliveries rows the plan read, how many of them
// belong to blocked endpoints (must be 0), and the plan's shape.
import { claimFair, FIRST_ENDPOINT } from '../src/scheduler/queries.ts';
import { deliveriesIndexScan, planRows, planShape, type PlanNode } from './plan.ts';
import { insertEndpoints, median, withScratchDatabase } from './scratch.ts';

const rounds = Number(process.argv[2] ?? 20);
const delivered = Number(process.argv[3] ?? 200_000);
const ENDPOINTS = 200;
const BLOCKED = 20;
await withScratchDatabase('claim_blocked', async (db) => {
  const endpoints = await insertEndpoints(db, ENDPOINTS);
  // Blocked: every tenth endpoint in uuid order, so they sit among the others the claim walks.
  const sorted = [...endpoints].sort();
  const blocked = sorted.filter((_, i) => i % (ENDPOINTS / BLOCKED) === 0);
  const blockedSet = new Set(blocked);
  const open = sorted.filter((id) => !blockedSet.has(id));
  await db.query(
    `WITH o AS (INSERT INTO webhooks.outbox (event_type, payload)
                SELECT 'bench.event', jsonb_build_object('old', g) FROM generate_series(1, $1::int) g RETURNING id)
     INSERT INTO webhooks.deliveries (outbox_id, endpoint_id, status, attempts, delivered_at, next_attempt_at)
     SELECT o.id, ($2::uuid[])[1 + o.id % ${ENDPOINTS}], 'delivered', 1, now() - interval '1 hour',
            now() - interval '1 hour'
     FROM o`,
    [delivered, sorted],
  );
  await db.query(
    `WITH per AS (SELECT id, n FROM unnest($1::uuid[], $2::int[]) AS p(id, n)),
          o AS (INSERT INTO webhooks.outbox (event_type, payload)
                SELECT 'bench.event', jsonb_build_object('seq', g) FROM generate_series(1, 200000) g RETURNING id),
          slots AS (SELECT per.id, row_number() OVER () AS k
                    FROM per CROSS JOIN LATERAL generate_series(1, per.n))
     INSERT INTO webhooks.deliveries (outbox_id, endpoint_id, next_attempt_at)
     SELECT o.id, slots.id, now() - interval '1 minute'
     FROM (SELECT id, row_number() OVER (ORDER BY id) AS k FROM o) o JOIN slots USING (k)`,
    [
      [...blocked, ...open],
      [...blocked.map(() => 5_500), ...open.map(() => 500)],
    ],
  );
  await db.query(
    `INSERT INTO webhooks.endpoint_breakers (endpoint_id, state, open_until, opened_by, opened_at, opens)
     SELECT id, 'open', now() + interval '1 hour', 'relay-a', now(), 1 FROM unnest($1::uuid[]) id`,
    [blocked],
  );
  await db.query(`
    INSERT INTO webhooks.relays (owner, worker_id, expires_at)
    SELECT 'relay-' || g, 'pod-' || g, now() + interval '1 hour' FROM generate_series(1, 3) g`);
  await db.query('VACUUM ANALYZE webhooks.deliveries, webhooks.outbox, webhooks.endpoints, webhooks.endpoint_breakers');
  const { rows: counts } = await db.query<{ pending: string; blockedPending: string }>(
    `SELECT count(*) AS pending, count(*) FILTER (WHERE endpoint_id = ANY ($1::uuid[])) AS "blockedPending"
     FROM webhooks.deliveries WHERE status = 'pending'`,
    [blocked],
  );
  console.log(
    `dataset: ${ENDPOINTS} endpoints, ${counts[0]!.pending} due pending deliveries (${counts[0]!.blockedPending} ` +
      `of the ${BLOCKED} with an open breaker), ${delivered} delivered, ${BLOCKED} open breakers, 3 live relays`,
  );

  const variants = {
    'idle relay, blocked listed (as sent)': { fresh: 1_000, listBlocked: true },
    'idle relay, breaker skip alone': { fresh: 1_000, listBlocked: false },
    'busy relay, blocked listed (as sent)': { fresh: 9, listBlocked: true },
    'busy relay, breaker skip alone': { fresh: 9, listBlocked: false },
  };
  type Plan = { Plan: PlanNode; 'Execution Time': number };
  for (const [name, v] of Object.entries(variants)) {
    const quotas = v.listBlocked
      ? { endpointIds: blocked, quotas: blocked.map(() => 0), fresh: v.fresh }
      : { endpointIds: [], quotas: [], fresh: v.fresh };
    const claim = claimFair('bench', 60_000, 500, quotas, FIRST_ENDPOINT, 256);
    const text = claim.sql.replaceAll('$slonik_', '$'); // slonik's placeholders, as pg reads them
    const ms: number[] = [];
    const buffers: number[] = [];
    let read = 0;
    let claimed = 0;
    let touchedBlocked = 0;
    let plan: PlanNode | undefined;
    for (let i = 0; i < rounds; i++) {
      await db.query('BEGIN');
      const { rows } = await db.query<{ 'QUERY PLAN': Plan[] }>(
        `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${text}`,
        claim.values as unknown[],
      );
      // What the claim would have changed, read in the same transaction before it is rolled back.
      const { rows: changed } = await db.query<{ n: string; blocked: string }>(
        `SELECT count(*) AS n, count(*) FILTER (WHERE endpoint_id = ANY ($1::uuid[])) AS blocked
         FROM webhooks.deliveries WHERE status = 'delivering' OR next_attempt_at = 'infinity'`,
        [blocked],
      );
      await db.query('ROLLBACK');
      const p = rows[0]!['QUERY PLAN'][0]!;
      ms.push(p['Execution Time']);
      buffers.push(Number(p.Plan['Shared Hit Blocks'] ?? 0) + Number(p.Plan['Shared Read Blocks'] ?? 0));
      read = planRows(p.Plan, deliveriesIndexScan);
      claimed = Number(changed[0]!.n);
      touchedBlocked = Math.max(touchedBlocked, Number(changed[0]!.blocked));
      plan = p.Plan;
    }
    console.log(
      `\n${name}: median ${median(ms).toFixed(2)} ms (min ${Math.min(...ms).toFixed(2)}, max ` +
        `${Math.max(...ms).toFixed(2)}), ${median(buffers)} shared buffers; claimed ${claimed}; ` +
        `deliveries rows read by index scans ${read}; rows of blocked endpoints written ${touchedBlocked}`,
    );
    console.log(planShape(plan!, { counts: true }));
  }
});
