// The alternative a team writes by hand: a polling relay. WORKERS loops each take a batch of undelivered outbox
// rows with FOR UPDATE SKIP LOCKED (the row locks are the lease, held by the open transaction), POST every row to
// every endpoint with undici (signed like outbox-relay: Standard Webhooks HMAC with one cached key), mark the
// batch delivered, commit, and poll again at once when the batch was full, else after POLL_IDLE_MS.
// A row whose POSTs did not all succeed stays undelivered and is retried by a later poll.
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { closeSignedPost, signedPost } from './signed-post.ts';

const url = process.env.DATABASE_URL!;
const endpoints = (process.env.ENDPOINTS ?? '').split(',').filter(Boolean);
const WORKERS = Number(process.env.WORKERS ?? '4');
const BATCH = Number(process.env.BATCH ?? '500');
const IN_FLIGHT = Number(process.env.IN_FLIGHT ?? '64'); // per worker
const POLL_IDLE_MS = Number(process.env.POLL_IDLE_MS ?? '100');
const stop = new AbortController();

type Row = { id: string; event_type: string; payload: string; created_at: string };

async function post(endpoint: string, row: Row): Promise<boolean> {
  const body = `{"type":${JSON.stringify(row.event_type)},"timestamp":${JSON.stringify(row.created_at)},"data":${row.payload}}`;
  try {
    const status = await signedPost(endpoint, `msg_${row.id}`, body);
    return status >= 200 && status < 300;
  } catch {
    return false;
  }
}

/** Runs fn over items with at most `limit` in flight. */
async function pool<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

async function worker(): Promise<void> {
  const client = new pg.Client({ connectionString: url, application_name: 'bench-poller' });
  client.on('error', () => {});
  await client.connect();
  while (!stop.signal.aborted) {
    let full = false;
    try {
      await client.query('BEGIN');
      const { rows } = await client.query<Row>({
        name: 'claim',
        text: `SELECT id::text, event_type, payload::text AS payload,
                      to_json(created_at)#>>'{}' AS created_at
                 FROM bench_poll.outbox WHERE delivered_at IS NULL
                ORDER BY id LIMIT ${BATCH} FOR UPDATE SKIP LOCKED`,
      });
      full = rows.length === BATCH;
      const done: string[] = [];
      const pairs = rows.flatMap((row) => endpoints.map((e) => ({ row, e })));
      const failed = new Set<string>();
      await pool(pairs, IN_FLIGHT, async ({ row, e }) => {
        if (!(await post(e, row))) failed.add(row.id);
      });
      for (const row of rows) if (!failed.has(row.id)) done.push(row.id);
      if (done.length > 0) {
        await client.query({
          name: 'done',
          text: 'UPDATE bench_poll.outbox SET delivered_at = now() WHERE id = ANY($1::bigint[])',
          values: [done],
        });
      }
      await client.query('COMMIT');
    } catch (err) {
      process.stderr.write(`poller: ${String(err)}\n`);
      await client.query('ROLLBACK').catch(() => {});
    }
    if (!full) await sleep(POLL_IDLE_MS);
  }
  await client.end().catch(() => {});
}

process.once('SIGTERM', () => stop.abort());
process.on('disconnect', () => stop.abort());
const workers = Array.from({ length: WORKERS }, () => worker());
process.send?.({ type: 'ready' });
await Promise.all(workers);
await closeSignedPost();
process.exit(0);
