// `node bench/claim-plan.ts [pending] [rounds]`: what reading webhooks.outbox.traceparent costs the claim.
// On an embedded Postgres, `pending` due deliveries (default 20,000; their outbox rows carry a traceparent) are
// claimed 500 at a time with EXPLAIN (ANALYZE, BUFFERS), inside a rolled-back transaction, alternating the claim
// as shipped and the same statement without the column, `rounds` times each (default 30); prints the medians of
// execution time and shared buffers touched, and both plans' shapes.
import { claimFair, FIRST_ENDPOINT } from '../src/scheduler/queries.ts';
import { planShape, type PlanNode } from './plan.ts';
import { insertEndpoints, median, withScratchDatabase } from './scratch.ts';

const pending = Number(process.argv[2] ?? 20_000);
const rounds = Number(process.argv[3] ?? 30);
await withScratchDatabase('claim_plan', async (db) => {
  const endpoints = await insertEndpoints(db, 10);
  await db.query(
    `WITH o AS (INSERT INTO webhooks.outbox (event_type, payload, traceparent)
       SELECT 'bench.event', jsonb_build_object('seq', g),
              '00-' || md5(random()::text) || '-' || left(md5(random()::text), 16) || '-01'
       FROM generate_series(1, $1::int) g RETURNING id)
     INSERT INTO webhooks.deliveries (outbox_id, endpoint_id)
     SELECT o.id, ($2::uuid[])[1 + o.id % 10] FROM o`,
    [pending, endpoints],
  );
  await db.query('VACUUM ANALYZE webhooks.deliveries, webhooks.outbox');

  const shipped = claimFair('bench', 60_000, 500, { endpointIds: [], quotas: [], fresh: 500 }, FIRST_ENDPOINT, 100);
  const statements = {
    'with traceparent': shipped.sql.replaceAll('$slonik_', '$'), // slonik's placeholders, as pg reads them
    'without traceparent': shipped.sql.replaceAll('$slonik_', '$').replace(/o\.traceparent,\s*/, ''),
  };
  if (statements['without traceparent'] === statements['with traceparent'])
    throw new Error('the claim no longer reads o.traceparent');
  type Plan = { Plan: PlanNode; 'Execution Time': number };
  const samples: Record<string, { ms: number[]; buffers: number[]; plan: string }> = {};
  for (let i = 0; i < rounds; i++) {
    for (const [name, text] of Object.entries(statements)) {
      await db.query('BEGIN');
      const { rows } = await db.query<{ 'QUERY PLAN': Plan[] }>(
        `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${text}`,
        shipped.values as unknown[],
      );
      await db.query('ROLLBACK');
      const plan = rows[0]!['QUERY PLAN'][0]!;
      const s = (samples[name] ??= { ms: [], buffers: [], plan: '' });
      s.ms.push(plan['Execution Time']);
      s.buffers.push(sharedBuffers(plan.Plan));
      s.plan = planShape(plan.Plan);
    }
  }
  for (const [name, s] of Object.entries(samples)) {
    console.log(
      `${name}: median ${median(s.ms).toFixed(2)} ms, ${median(s.buffers)} shared buffers (${rounds} claims of 500 from ${pending})`,
    );
  }
  const [a, b] = Object.values(samples);
  console.log(a!.plan === b!.plan ? 'plans: identical node for node' : `plans differ:\n${a!.plan}\n---\n${b!.plan}`);
});

function sharedBuffers(node: Record<string, unknown>): number {
  return Number(node['Shared Hit Blocks'] ?? 0) + Number(node['Shared Read Blocks'] ?? 0);
}
