import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import { createHttpClient, type HttpClient, type HttpResult } from '../src/delivery/http.ts';

type TestServer = { url: string; port: number; connections: number; requests: number; server: Server };

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

type Handler = (req: IncomingMessage, res: ServerResponse) => unknown;

async function startServer(handler: Handler): Promise<TestServer> {
  // A handler that throws breaks that one exchange, as a buggy receiver would.
  const server = createServer(
    (req, res) => void Promise.resolve(handler(req, res)).catch((err: unknown) => res.destroy(err as Error)),
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const state: TestServer = { url: `http://127.0.0.1:${port}/hooks`, port, connections: 0, requests: 0, server };
  server.on('connection', () => state.connections++);
  server.on('request', () => state.requests++);
  cleanups.push(async () => {
    server.closeAllConnections();
    server.close();
    await once(server, 'close');
  });
  return state;
}

function client(maxResponseBytes = 64 * 1024): HttpClient {
  const http = createHttpClient({ maxResponseBytes });
  cleanups.push(() => http.close());
  return http;
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

const HEADERS = { 'content-type': 'application/json', 'webhook-id': 'msg_1' };
const BODY = '{"type":"invoice.paid","data":{"id":42,"note":"café"}}';

function expectError(result: HttpResult): Extract<HttpResult, { kind: 'error' }> {
  expect(result.kind).toBe('error');
  return result as Extract<HttpResult, { kind: 'error' }>;
}

function expectResponse(result: HttpResult): Extract<HttpResult, { kind: 'response' }> {
  expect(result, result.kind === 'error' ? result.error : '').toMatchObject({ kind: 'response' });
  return result as Extract<HttpResult, { kind: 'response' }>;
}

describe('createHttpClient post', () => {
  test('POSTs the body and headers as given and returns status and body snippet', async () => {
    const seen: { method?: string; headers?: IncomingMessage['headers']; body?: string } = {};
    const receiver = await startServer(async (req, res) => {
      Object.assign(seen, { method: req.method, headers: req.headers, body: await readBody(req) });
      res.end('thanks');
    });
    const result = expectResponse(await client().post(receiver.url, HEADERS, BODY, { timeoutMs: 5000 }));
    expect(result).toMatchObject({ status: 200, snippet: 'thanks', retryAfter: undefined });
    expect(result.durationMs).toBeGreaterThan(0);
    expect(seen.method).toBe('POST');
    expect(seen.body).toBe(BODY);
    expect(seen.headers).toMatchObject({ ...HEADERS, 'content-length': String(Buffer.byteLength(BODY)) });
    expect(seen.headers).not.toHaveProperty('accept-encoding');
  });

  test('a 500 is a response with that status, and Retry-After is passed through raw', async () => {
    const receiver = await startServer((req, res) => {
      if (req.url?.endsWith('busy')) res.writeHead(503, { 'retry-after': '120' }).end();
      else res.writeHead(500).end('boom');
    });
    const http = client();
    const failed = expectResponse(await http.post(receiver.url, HEADERS, BODY, { timeoutMs: 5000 }));
    expect(failed).toMatchObject({ status: 500, snippet: 'boom', retryAfter: undefined });
    const busy = expectResponse(await http.post(`${receiver.url}/busy`, HEADERS, BODY, { timeoutMs: 5000 }));
    expect(busy).toMatchObject({ status: 503, snippet: '', retryAfter: '120' });
  });

  test('keeps only the first 1024 bytes of the body as the snippet', async () => {
    const text = 'é'.repeat(1500); // 3000 bytes; byte 1024 falls on a character boundary
    const receiver = await startServer((_req, res) => res.end(text));
    const result = expectResponse(await client().post(receiver.url, HEADERS, BODY, { timeoutMs: 5000 }));
    expect(Buffer.byteLength(result.snippet)).toBe(1024);
    expect(result.snippet).toBe('é'.repeat(512));
  });

  test('a 302 is returned as is and the redirect is not followed', async () => {
    const target = await startServer((_req, res) => res.end('followed'));
    const redirector = await startServer((_req, res) => res.writeHead(302, { location: target.url }).end());
    const result = expectResponse(await client().post(redirector.url, HEADERS, BODY, { timeoutMs: 5000 }));
    expect(result.status).toBe(302);
    expect(target.requests).toBe(0);
    expect(target.connections).toBe(0);
  });

  test('a receiver that never answers is cut off at timeoutMs', async () => {
    let socketClosed: Promise<unknown> = Promise.resolve();
    const receiver = await startServer((req) => {
      socketClosed = once(req.socket, 'close'); // never respond
    });
    const result = expectError(await client().post(receiver.url, HEADERS, BODY, { timeoutMs: 300 }));
    expect(result).toMatchObject({ error: 'timed out after 300ms', timedOut: true });
    expect(result.durationMs).toBeGreaterThanOrEqual(290);
    expect(result.durationMs).toBeLessThan(1500);
    await socketClosed; // the abandoned request does not hold its socket open
  });

  test('a receiver that sends headers and then dribbles the body is cut off at the deadline', async () => {
    let bytesSent = 0;
    const receiver = await startServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.flushHeaders();
      const timer = setInterval(() => {
        res.write('x');
        bytesSent++;
      }, 100);
      res.on('close', () => clearInterval(timer));
    });
    const result = expectError(await client().post(receiver.url, HEADERS, BODY, { timeoutMs: 500 }));
    expect(result).toMatchObject({ error: 'timed out after 500ms', timedOut: true });
    expect(result.durationMs).toBeGreaterThanOrEqual(490);
    expect(result.durationMs).toBeLessThan(1500);
    expect(bytesSent).toBeGreaterThanOrEqual(2); // the deadline hit while the body was arriving
  });

  test('a huge body is read only up to maxResponseBytes and the connection is dropped', async () => {
    const totalBytes = 50 * 1024 * 1024;
    const chunk = Buffer.alloc(64 * 1024, 'y');
    chunk.write('START-OF-BODY');
    let written = 0;
    let finished = false;
    let closed: Promise<unknown> = Promise.resolve();
    const receiver = await startServer((_req, res) => {
      closed = once(res, 'close');
      res.writeHead(200, { 'content-length': String(totalBytes) });
      // Write with backpressure, so `written` tracks what the client actually pulled.
      const pump = () => {
        while (written < totalBytes && !res.destroyed) {
          written += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        if (written >= totalBytes) res.end(() => (finished = true));
      };
      pump();
    });
    const result = expectResponse(await client(256 * 1024).post(receiver.url, HEADERS, BODY, { timeoutMs: 10_000 }));
    expect(result.status).toBe(200);
    expect(result.snippet).toMatch(/^START-OF-BODYy+$/);
    expect(result.snippet).toHaveLength(1024);
    expect(result.durationMs).toBeLessThan(2000);
    await closed;
    expect(finished).toBe(false);
    expect(written).toBeLessThan(totalBytes / 2); // socket buffers, not the whole body
  });

  test('a connection reset after 2xx headers still counts as the 2xx response', async () => {
    const receiver = await startServer(async (req, res) => {
      await readBody(req); // a fully read request makes destroy() a clean FIN, not an RST
      res.writeHead(200, { 'content-length': '100' });
      res.write('partial', () => res.socket?.destroy());
    });
    const result = expectResponse(await client().post(receiver.url, HEADERS, BODY, { timeoutMs: 5000 }));
    expect(result).toMatchObject({ status: 200, snippet: 'partial' });
  });

  test('connection refused is an error naming the address', async () => {
    const probe = createServer().listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const { port } = probe.address() as AddressInfo;
    probe.close();
    await once(probe, 'close');
    const result = expectError(
      await client().post(`http://127.0.0.1:${port}/hooks`, HEADERS, BODY, { timeoutMs: 5000 }),
    );
    expect(result).toMatchObject({ error: `connect ECONNREFUSED 127.0.0.1:${port}`, timedOut: false });
  });

  test('the caller aborting mid-request ends it with the abort reason', async () => {
    const controller = new AbortController();
    const receiver = await startServer(() => controller.abort(new Error('lease lost')));
    const started = performance.now();
    const result = expectError(
      await client().post(receiver.url, HEADERS, BODY, { timeoutMs: 10_000, signal: controller.signal }),
    );
    expect(result).toMatchObject({ error: 'aborted: lease lost', timedOut: false });
    expect(performance.now() - started).toBeLessThan(5000);
    expect(receiver.requests).toBe(1);
  });

  test('a caller abort while the body is being read also ends the attempt as aborted', async () => {
    const controller = new AbortController();
    const receiver = await startServer((_req, res) => {
      res.writeHead(200).write('first bytes', () => controller.abort('shutting down'));
    });
    const result = expectError(
      await client().post(receiver.url, HEADERS, BODY, { timeoutMs: 10_000, signal: controller.signal }),
    );
    expect(result).toMatchObject({ error: 'aborted: shutting down', timedOut: false });
  });

  test('an already aborted signal sends nothing', async () => {
    const receiver = await startServer((_req, res) => res.end());
    const controller = new AbortController();
    controller.abort(new Error('lease lost'));
    const result = await client().post(receiver.url, HEADERS, BODY, { timeoutMs: 5000, signal: controller.signal });
    expect(result).toMatchObject({ kind: 'error', error: 'aborted: lease lost', timedOut: false });
    expect(receiver.connections).toBe(0);
  });

  test('sequential posts reuse one keep-alive socket when the origin is limited to one connection', async () => {
    const receiver = await startServer(async (req, res) => {
      await readBody(req);
      res.end('ok');
    });
    const http = createHttpClient({ maxResponseBytes: 1024, connectionsPerOrigin: 1 });
    cleanups.push(() => http.close());
    for (let i = 0; i < 3; i++) {
      expectResponse(await http.post(receiver.url, HEADERS, BODY, { timeoutMs: 5000 }));
    }
    expect(receiver.requests).toBe(3);
    expect(receiver.connections).toBe(1);
  });

  test('without a connection limit, back-to-back posts still reuse sockets instead of reconnecting', async () => {
    const receiver = await startServer(async (req, res) => {
      await readBody(req);
      res.end('ok');
    });
    const http = client();
    for (let i = 0; i < 6; i++) {
      expectResponse(await http.post(receiver.url, HEADERS, BODY, { timeoutMs: 5000 }));
    }
    expect(receiver.requests).toBe(6);
    // undici's pool marks a socket free one tick after its response ends, so a post issued in the
    // same tick opens a second socket; from then on the two alternate. Never one socket per post.
    expect(receiver.connections).toBeLessThanOrEqual(2);
  });

  test('an unparseable URL is an error result, not a throw', async () => {
    const result = expectError(await client().post('not a url', HEADERS, BODY, { timeoutMs: 5000 }));
    expect(result.error).toMatch(/url/i);
    expect(result.timedOut).toBe(false);
  });
});
