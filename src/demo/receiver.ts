// The demo's webhook receiver: what a customer's server does, verifying every request with the public
// `standardwebhooks` package rather than our own signing code, so the demo proves interoperability.
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { coerceError } from '../errors.ts';

export type ReceiverEndpoint = {
  /** Path segment and display name: the endpoint's URL is `<baseUrl>/<name>`. */
  name: string;
  secret: string;
  /** Answer 500 to the first attempt of each message, so the demo shows the relay retrying. */
  failFirstAttempt: boolean;
};

export type Receipt = {
  endpoint: string;
  msgId: string;
  eventType: string;
  verified: boolean;
  /** Why verification failed; never a header or secret. */
  problem?: string;
  /** What this receiver answered. */
  status: number;
  /** 1 for the first request of this message at this endpoint. */
  attempt: number;
  receivedAtMs: number;
  /** The envelope's `timestamp`: the outbox row's created_at. */
  createdAtMs: number;
  /** The raw body exactly as received. */
  body: string;
};

export type DemoReceiver = {
  baseUrl: string;
  receipts: readonly Receipt[];
  close(): Promise<void>;
};

/** Listens on 127.0.0.1 (a free port) and calls `onReceipt` as each request is answered. */
export async function startDemoReceiver(
  endpoints: readonly ReceiverEndpoint[],
  onReceipt: (receipt: Receipt) => void,
): Promise<DemoReceiver> {
  const byPath = new Map(endpoints.map((e) => [`/${e.name}`, { ...e, webhook: new Webhook(e.secret) }]));
  const receipts: Receipt[] = [];
  const seen = new Map<string, number>(); // `${endpoint} ${msgId}` → requests so far

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const receivedAtMs = Date.now();
      const body = Buffer.concat(chunks).toString('utf8');
      const endpoint = byPath.get(req.url ?? '');
      const msgId = header(req.headers, 'webhook-id');
      const key = `${endpoint?.name ?? req.url} ${msgId}`;
      const attempt = (seen.get(key) ?? 0) + 1;
      seen.set(key, attempt);

      let problem: string | undefined;
      try {
        if (endpoint === undefined) throw new Error(`no endpoint at ${req.url}`);
        endpoint.webhook.verify(body, {
          'webhook-id': msgId,
          'webhook-timestamp': header(req.headers, 'webhook-timestamp'),
          'webhook-signature': header(req.headers, 'webhook-signature'),
        });
      } catch (err) {
        problem = coerceError(err).message;
      }
      // A real receiver answers 401 to a bad signature; the demo records it and answers as scripted, so a signing
      // bug shows as a failed check in the summary rather than as retries until the deadline.
      const status = endpoint?.failFirstAttempt === true && attempt === 1 ? 500 : 204;
      res.writeHead(status).end();

      const envelope = parseEnvelope(body);
      const receipt: Receipt = {
        endpoint: endpoint?.name ?? req.url ?? '?',
        msgId,
        eventType: envelope.type,
        verified: problem === undefined,
        ...(problem === undefined ? {} : { problem }),
        status,
        attempt,
        receivedAtMs,
        createdAtMs: envelope.createdAtMs,
        body,
      };
      receipts.push(receipt);
      onReceipt(receipt);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    receipts,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections(); // the relay's keep-alive sockets would otherwise hold close() open
        server.close(() => resolve());
      }),
  };
}

function header(headers: IncomingHttpHeaders, name: string): string {
  const value = headers[name];
  return (Array.isArray(value) ? value[0] : value) ?? '';
}

/** Reads only `type` and `timestamp`; `data` is checked as raw text, never through JSON.parse. */
function parseEnvelope(body: string): { type: string; createdAtMs: number } {
  try {
    const { type, timestamp } = JSON.parse(body) as { type?: unknown; timestamp?: unknown };
    return {
      type: typeof type === 'string' ? type : '?',
      createdAtMs: typeof timestamp === 'string' ? Date.parse(timestamp) : NaN,
    };
  } catch {
    return { type: '?', createdAtMs: NaN };
  }
}
