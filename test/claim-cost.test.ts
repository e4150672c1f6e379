// What one claim reads and locks, from its EXPLAIN (ANALYZE): a claim must cost what it claims, not what is queued.
import { sql } from 'slonik';
import { expect } from 'vitest';
import { test } from './fixtures.ts';
import { claimFair, FIRST_ENDPOINT } from '../src/scheduler/queries.ts';
import { addEndpoint, type TestDb } from './support/postgres.ts';
import { deliveriesIndexScan, planNodes, planRows, type PlanNode } from '../bench/plan.ts';

/** Runs the claim under EXPLAIN (ANALYZE) in a transaction that is rolled back; returns its plan and its rows. */
async function explainClaim(db: TestDb, claim: ReturnType<typeof claimFair>) {
  await db.app.query('BEGIN');
  try {
    const { rows } = await db.app.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(
      `EXPLAIN (ANALYZE, FORMAT JSON) ${claim.sql.replaceAll('$slonik_', '$')}`,
      claim.values as unknown[],
    );
    const { rows: claimed } = await db.app.query<{ endpoint_id: string }>(
      `SELECT endpoint_id FROM webhooks.deliveries WHERE status = 'delivering'`,
    );
    return { plan: rows[0]!['QUERY PLAN'][0].Plan, claimed: claimed.map((r) => r.endpoint_id) };
  } finally {
    await db.app.query('ROLLBACK');
  }
}

test('a claim locks only the rows it takes and reads one index entry of an endpoint whose breaker is open, however large its backlog', async ({
  db,
  receiver,
}) => {
  const endpoints = [];
  for (let i = 0; i < 10; i++) endpoints.push((await addEndpoint(db, `${receiver.url}/${i}`)).id);
  endpoints.sort(); // the claim goes in uuid order: the blocked ones come first
  const blocked = endpoints.slice(0, 3);
  const healthy = endpoints.slice(3);
  await db.app.query(
    `WITH per AS (SELECT id, n FROM unnest($1::uuid[], $2::int[]) AS p(id, n)),
          rows AS (SELECT per.id, row_number() OVER () AS k FROM per CROSS JOIN LATERAL generate_series(1, per.n)),
          o AS (INSERT INTO webhooks.outbox (event_type, payload)
                SELECT 'e', '{}' FROM generate_series(1, (SELECT count(*) FROM rows)) RETURNING id)
     INSERT INTO webhooks.deliveries (outbox_id, endpoint_id, next_attempt_at)
     SELECT o.id, rows.id, now() - interval '1 second'
     FROM (SELECT id, row_number() OVER (ORDER BY id) AS k FROM o) o JOIN rows USING (k)`,
    [
      [...blocked, ...healthy],
      [...blocked.map(() => 2_000), ...healthy.map(() => 50)],
    ],
  );
  await db.pool.query(sql.unsafe`
    INSERT INTO webhooks.endpoint_breakers (endpoint_id, state, open_until)
    SELECT id, 'open', now() + interval '1 minute' FROM unnest(${sql.array(blocked, 'uuid')}) id`);
  await db.app.query('ANALYZE webhooks.deliveries');

  // An idle relay: each endpoint may take 1,000, the claim 100 in all; the relay has not read the breakers yet.
  const { plan, claimed } = await explainClaim(
    db,
    claimFair('claimer', 60_000, 100, { endpointIds: [], quotas: [], fresh: 1_000 }, FIRST_ENDPOINT, 256),
  );
  expect(claimed).toHaveLength(100);
  for (const id of claimed) expect(healthy).toContain(id);
  // Locked: the 100 it claims, not every eligible endpoint's quota (7 × 50) before picking 100 of them.
  const locks = planNodes(plan, (n) => n['Node Type'] === 'LockRows');
  expect(planRows(plan, (n) => n['Node Type'] === 'LockRows')).toBe(100);
  // The per-endpoint scan under the lock ran for the 2 healthy endpoints whose 50 rows make the 100, never for a
  // blocked one (they come first in uuid order: had it run for them, its loops would count them).
  const perEndpoint = locks.flatMap((l) =>
    planNodes(l, (n) => deliveriesIndexScan(n) && Number(n['Actual Loops']) > 0),
  );
  expect(perEndpoint.map((n) => [Number(n['Actual Loops']), planRows(n, () => true)])).toEqual([[2, 100]]);
  // Read from the deliveries indexes in all: well under the blocked endpoints' 6,000 rows, or even the healthy 350.
  expect(planRows(plan, deliveriesIndexScan)).toBeLessThan(350);
});
