// pg-transactional-outbox (npm) in logical-replication mode, as a team would wire it: its replication listener
// hands each outbox message to a handler that POSTs it to every endpoint with undici (signed like outbox-relay);
// a non-2xx answer throws, so the library retries the message. Full-concurrency controller (the most parallel
// strategy it ships), max-attempts and poison protection off as in its README's outbox example.
import { createHmac, createSecretKey } from 'node:crypto';
import pgto from 'pg-transactional-outbox';
import { Agent, request } from 'undici';

const { initializeReplicationMessageListener, createReplicationFullConcurrencyController, getDisabledLogger } = pgto;

const endpoints = (process.env.ENDPOINTS ?? '').split(',').filter(Boolean);
const key = createSecretKey(Buffer.from(process.env.SECRET_B64!, 'base64'));
const agent = new Agent({ keepAliveTimeout: 60_000 });
const u = new URL(process.env.DATABASE_URL!);
const db = {
  host: u.hostname,
  port: Number(u.port),
  user: decodeURIComponent(u.username),
  password: decodeURIComponent(u.password),
  database: u.pathname.slice(1),
};

async function post(endpoint: string, id: string, body: string): Promise<void> {
  const ts = Math.floor(Date.now() / 1000);
  const sig = createHmac('sha256', key).update(`${id}.${ts}.${body}`).digest('base64');
  const res = await request(endpoint, {
    method: 'POST',
    dispatcher: agent,
    headers: {
      'content-type': 'application/json',
      'webhook-id': id,
      'webhook-timestamp': String(ts),
      'webhook-signature': `v1,${sig}`,
    },
    body,
    headersTimeout: 15_000,
    bodyTimeout: 15_000,
  });
  await res.body.dump();
  if (res.statusCode < 200 || res.statusCode >= 300) throw new Error(`receiver answered ${res.statusCode}`);
}

const [shutdown] = initializeReplicationMessageListener(
  {
    outboxOrInbox: 'outbox',
    dbListenerConfig: db,
    dbHandlerConfig: db,
    settings: {
      dbSchema: 'bench_pgto',
      dbTable: 'outbox',
      dbPublication: 'bench_pgto_pub',
      dbReplicationSlot: 'bench_pgto_slot',
      enableMaxAttemptsProtection: false,
      enablePoisonousMessageProtection: false,
      messageCleanupIntervalInMs: 0,
    },
  },
  {
    handle: async (message) => {
      const body = JSON.stringify({ type: message.messageType, timestamp: message.createdAt, data: message.payload });
      await Promise.all(endpoints.map((e) => post(e, message.id, body)));
    },
  },
  getDisabledLogger(),
  { concurrencyStrategy: createReplicationFullConcurrencyController() },
);

const exit = () => {
  void Promise.race([shutdown(), new Promise((r) => setTimeout(r, 3_000))]).then(() => process.exit(0));
};
process.once('SIGTERM', exit);
process.on('disconnect', exit);
process.send?.({ type: 'ready' });
