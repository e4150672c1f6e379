import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type Received = {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  receivedAt: number;
  /** Epoch ms when the answer was fully written (state 'answered'). */
  answeredAt?: number;
  /** The status sent (once answered). */
  status?: number;
  /** 'answered' once the response was fully written; 'aborted' when the client went away first. */
  state: 'pending' | 'answered' | 'aborted';
};

/** How the receiver answers one request; `hang` never answers (until the client gives up). */
export type Reply =
  | { status: number; headers?: Record<string, string>; body?: string; delayMs?: number }
  | 'hang'
  /** Full control of the response (dribbling, huge bodies, resets). */
  | { raw: (res: ServerResponse) => void };

export type Receiver = {
  url: string;
  requests: Received[];
  /** Requests whose client went away before an answer (aborted or timed out). */
  aborted: number;
  reply(fn: (req: Received, index: number) => Reply): void;
  close(): Promise<void>;
};

/** A real HTTP receiver on 127.0.0.1 that records every request; answers 204 unless told otherwise. */
export async function startReceiver(): Promise<Receiver> {
  let replyFn: (req: Received, index: number) => Reply = () => ({ status: 204 });
  const requests: Received[] = [];
  const receiver: Receiver = {
    url: '',
    requests,
    aborted: 0,
    reply: (fn) => (replyFn = fn),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const received: Received = {
        path: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        receivedAt: Date.now(),
        state: 'pending',
      };
      requests.push(received);
      const reply = replyFn(received, requests.length - 1);
      res.on('close', () => {
        if (received.state !== 'pending') return;
        received.state = 'aborted';
        receiver.aborted++;
      });
      if (reply === 'hang') return;
      if ('raw' in reply) return reply.raw(res);
      const answer = () => {
        if (received.state !== 'pending') return;
        res.writeHead(reply.status, { 'content-type': 'text/plain', ...reply.headers });
        res.end(reply.body ?? '', () => {
          if (received.state !== 'pending') return;
          received.state = 'answered';
          received.answeredAt = Date.now();
          received.status = reply.status;
        });
      };
      if (reply.delayMs === undefined) answer();
      else setTimeout(answer, reply.delayMs);
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`;
  return receiver;
}

/** The parsed Standard Webhooks envelope of a received request. */
export function envelopeOf(r: Received): { type: string; timestamp: string; data: Record<string, unknown> } {
  return JSON.parse(r.body) as { type: string; timestamp: string; data: Record<string, unknown> };
}
