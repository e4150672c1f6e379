// Benchmark receivers: their own process (forked by bench/run.ts, IPC with structured clone), N HTTP servers on
// 127.0.0.1, one per endpoint. Each answers 204 (or, in slow mode, 204 after 2 s) and records, per request:
// the receive time (performance.timeOrigin + performance.now(), same clock as the load generator) against the
// payload's `seq`, and a count per `webhook-id`. Lost events and duplicates are counted from these receipts only.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

const SLOW_MS = 2_000;
const SEQ_RE = /"seq":\s*(\d+)/;

type Port = {
  server: Server;
  port: number;
  slow: boolean;
  requests: number;
  perId: Map<string, number>;
  /** First receive time per seq (NaN = never received). */
  firstRecv: Float64Array;
};

const now = () => performance.timeOrigin + performance.now();
const ports: Port[] = [];

function grow(p: Port, seq: number): void {
  if (seq < p.firstRecv.length) return;
  let size = p.firstRecv.length || 1024;
  while (size <= seq) size *= 2;
  const next = new Float64Array(size).fill(NaN);
  next.set(p.firstRecv);
  p.firstRecv = next;
}

async function listen(p: Omit<Port, 'server' | 'port'>): Promise<Port> {
  const port = p as Port;
  port.server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const t = now();
      port.requests++;
      const id = req.headers['webhook-id'];
      const key = typeof id === 'string' ? id : '?';
      port.perId.set(key, (port.perId.get(key) ?? 0) + 1);
      const m = SEQ_RE.exec(Buffer.concat(chunks).toString('utf8'));
      if (m !== null) {
        const seq = Number(m[1]);
        if (seq < 50_000_000) {
          grow(port, seq);
          if (Number.isNaN(port.firstRecv[seq]!)) port.firstRecv[seq] = t;
        }
      }
      if (port.slow) setTimeout(() => res.writeHead(204).end(), SLOW_MS).unref();
      else res.writeHead(204).end();
    });
  });
  port.server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => port.server.listen(0, '127.0.0.1', resolve));
  port.port = (port.server.address() as AddressInfo).port;
  return port;
}

type Msg = { cmd: 'reset'; slow: number[] } | { cmd: 'progress' } | { cmd: 'collect' } | { cmd: 'exit' };

process.on('message', (msg: Msg) => {
  if (msg.cmd === 'reset') {
    for (const [i, p] of ports.entries()) {
      p.slow = msg.slow.includes(i);
      p.requests = 0;
      p.perId = new Map();
      p.firstRecv = new Float64Array(0);
    }
    process.send!({ type: 'reset' });
  } else if (msg.cmd === 'progress') {
    process.send!({ type: 'progress', ports: ports.map((p) => ({ requests: p.requests, distinct: p.perId.size })) });
  } else if (msg.cmd === 'collect') {
    process.send!({
      type: 'collect',
      ports: ports.map((p) => {
        let duplicated = 0;
        for (const n of p.perId.values()) if (n > 1) duplicated++;
        return { requests: p.requests, distinct: p.perId.size, duplicated, firstRecv: p.firstRecv };
      }),
    });
  } else if (msg.cmd === 'exit') {
    for (const p of ports) p.server.closeAllConnections();
    process.exit(0);
  }
});
process.on('disconnect', () => process.exit(0)); // the bench died: never outlive it

const count = Number(process.argv[2] ?? '10');
for (let i = 0; i < count; i++) {
  ports.push(await listen({ slow: false, requests: 0, perId: new Map(), firstRecv: new Float64Array(0) }));
}
process.send!({ type: 'ready', ports: ports.map((p) => p.port) });
