// pg-transactional-outbox (npm) in logical-replication mode, as a team would wire it: its replication listener
// hands each outbox message to a handler that POSTs it to every endpoint with undici (signed like outbox-relay);
// a non-2xx answer throws, so the library retries the message. Full-concurrency controller (the most parallel
// strategy it ships), max-attempts and poison protection off as in its README's outbox example.
import pgto from 'pg-transactional-outbox';
import { signedPost } from './signed-post.ts';

const { initializeReplicationMessageListener, createReplicationFullConcurrencyController, getDisabledLogger } = pgto;

const endpoints = (process.env.ENDPOINTS ?? '').split(',').filter(Boolean);
const u = new URL(process.env.DATABASE_URL!);
const db = {
  host: u.hostname,
  port: Number(u.port),
  user: decodeURIComponent(u.username),
  password: decodeURIComponent(u.password),
  database: u.pathname.slice(1),
};

async function post(endpoint: string, id: string, body: string): Promise<void> {
  const status = await signedPost(endpoint, id, body);
  if (status < 200 || status >= 300) throw new Error(`receiver answered ${status}`);
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
