// Load generator: its own process and its own Postgres connections. One event per transaction (an autocommit
// INSERT), paced open-loop at a target rate, or a burst committed as one transaction. For every event it records
// `committedAt[seq]`: performance.timeOrigin + performance.now() taken right after the INSERT's commit returned,
// which bench/run.ts joins with the receivers' first receipt of that seq (commit→receipt latency). The payload
// also carries `sentAt` (taken just before the INSERT was sent), for a receiver-only reading.
import pg from 'pg';

const now = () => performance.timeOrigin + performance.now();

type Paced = { cmd: 'paced'; url: string; sql: string; rate: number; durationMs: number; conns: number };
type Burst = { cmd: 'burst'; url: string; sql: string; n: number };

async function paced(m: Paced) {
  const total = Math.max(1, Math.round((m.rate * m.durationMs) / 1000));
  const committedAt = new Float64Array(total).fill(NaN);
  const clients: pg.Client[] = [];
  for (let i = 0; i < m.conns; i++) {
    const c = new pg.Client({ connectionString: m.url, application_name: 'bench-load' });
    c.on('error', () => {});
    await c.connect();
    clients.push(c);
  }
  const free = [...clients];
  let issued = 0;
  let done = 0;
  let errors = 0;
  let maxLateMs = 0;
  const t0 = now();
  let lastCommitAt = t0;
  await new Promise<void>((resolve) => {
    const pump = () => {
      const t = now();
      const due = Math.min(total, Math.floor(((t - t0) * m.rate) / 1000) + 1);
      while (issued < due && free.length > 0) {
        const seq = issued++;
        maxLateMs = Math.max(maxLateMs, t - (t0 + (seq * 1000) / m.rate));
        const client = free.pop()!;
        const payload = `{"seq": ${seq}, "sentAt": ${now()}}`;
        client
          .query({ name: 'bench_insert', text: m.sql, values: [payload] })
          .then(
            () => {
              committedAt[seq] = lastCommitAt = now();
            },
            () => {
              errors++;
            },
          )
          .finally(() => {
            free.push(client);
            if (++done === total) resolve();
            else pump();
          });
      }
    };
    const tick = () => {
      pump();
      if (issued < total) setTimeout(tick, 1);
    };
    tick();
  });
  await Promise.all(clients.map((c) => c.end().catch(() => {})));
  const committed = total - errors;
  return {
    committedAt,
    committed,
    errors,
    t0,
    lastCommitAt,
    achievedRate: committed / ((lastCommitAt - t0) / 1000),
    maxLateMs,
  };
}

async function burst(m: Burst) {
  const c = new pg.Client({ connectionString: m.url, application_name: 'bench-load' });
  await c.connect();
  const t0 = now();
  // One transaction: n rows whose payload carries seq and the send time (the same for all).
  await c.query(m.sql, [t0, m.n]);
  const t1 = now();
  await c.end();
  return {
    committedAt: new Float64Array(m.n).fill(t1),
    committed: m.n,
    errors: 0,
    t0,
    lastCommitAt: t1,
    achievedRate: NaN,
    maxLateMs: 0,
  };
}

process.on('message', (m: Paced | Burst) => {
  (m.cmd === 'paced' ? paced(m) : burst(m)).then(
    (r) => process.send!({ type: 'done', ...r }),
    (err: Error) => process.send!({ type: 'error', error: String(err.stack ?? err) }),
  );
});
process.on('disconnect', () => process.exit(0));
process.send!({ type: 'ready' });
