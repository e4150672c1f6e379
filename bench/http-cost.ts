// CPU per signed webhook POST in this process, no database: the floor under any relay's deliveries per second.
// Sends `n` requests, 64 in flight, to the bench receiver (its own process) through
//   relay: outbox-relay's delivery path (SSRF-guarded undici Agent, Standard Webhooks signer, deadline, capped read)
//   bare:  the bench's signed-post module (one undici request + HMAC, body dumped), what both alternatives use
// and prints requests/s and process CPU (user + system) per request for each, alternating, `rounds` times.
//   node bench/http-cost.ts [n=20000] [rounds=2]
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createDeliver } from '../src/delivery/deliver.ts';
import { createHttpClient } from '../src/delivery/http.ts';
import { createGuardedConnector } from '../src/delivery/ssrf.ts';
import type { Job } from '../src/domain.ts';
import { createSigner } from '../src/signing/sign.ts';
import { SECRET, SECRET_B64 } from './systems.ts';

process.env.SECRET_B64 = SECRET_B64; // read by signed-post.ts when it loads
const { closeSignedPost, signedPost } = await import('./signed-post.ts');

const n = Number(process.argv[2] ?? 20_000);
const rounds = Number(process.argv[3] ?? 2);
const IN_FLIGHT = 64;

const receiver = fork(fileURLToPath(new URL('./receiver.ts', import.meta.url)), ['1'], {
  serialization: 'advanced',
  stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
});
const { ports } = await new Promise<{ ports: number[] }>((resolve) => receiver.once('message', resolve));
const url = `http://127.0.0.1:${ports[0]}/hooks`;

const ssrf = { allowPrivateNetworks: true, allowCidrs: [], allowHttp: true };
const http = createHttpClient({ maxResponseBytes: 65_536, connect: createGuardedConnector(ssrf) });
const deliver = createDeliver({
  http,
  ssrf,
  signer: createSigner(),
  timeoutMs: 15_000,
  retryAfterMaxMs: 3_600_000,
  userAgent: 'http-cost',
});
const never = new AbortController().signal;

const job = (seq: number): Job => ({
  deliveryId: String(seq),
  outboxId: String(seq),
  endpointId: 'e',
  tenant: null,
  attempt: 1,
  eventType: 'bench.event',
  payload: `{"seq": ${seq}, "sentAt": ${performance.now()}}`,
  createdAtMs: Date.now(),
  url,
  secrets: [SECRET],
  maxInFlight: null,
  ratePerSecond: null,
  traceparent: null,
});

const senders: Record<string, (seq: number) => Promise<void>> = {
  relay: async (seq) => {
    const attempt = await deliver(job(seq), never);
    if (attempt.kind !== 'delivered') throw new Error(`not delivered: ${JSON.stringify(attempt)}`);
  },
  bare: async (seq) => {
    const body = `{"type":"bench.event","timestamp":"${new Date().toISOString()}","data":{"seq": ${seq}}}`;
    const status = await signedPost(url, `msg_${seq}`, body);
    if (status !== 204) throw new Error(`HTTP ${status}`);
  },
};

async function run(send: (seq: number) => Promise<void>, count: number): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < count) await send(next++);
    }),
  );
}

try {
  for (const send of Object.values(senders)) await run(send, 2_000); // warm-up: JIT, keep-alive sockets
  for (let round = 1; round <= rounds; round++) {
    for (const [name, send] of Object.entries(senders)) {
      const cpu = process.cpuUsage();
      const started = performance.now();
      await run(send, n);
      const used = process.cpuUsage(cpu);
      const seconds = (performance.now() - started) / 1000;
      const perRequest = (us: number) => (us / n).toFixed(1);
      console.log(
        `${name.padEnd(5)} round ${round}: ${Math.round(n / seconds)} requests/s, CPU ${perRequest(used.user + used.system)} µs/request ` +
          `(user ${perRequest(used.user)}, system ${perRequest(used.system)})`,
      );
    }
  }
} finally {
  receiver.kill();
  await Promise.all([http.close(), closeSignedPost()]);
}
