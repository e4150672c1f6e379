import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { RelayError } from '../errors.ts';
import type { Logger } from '../log.ts';

/** Answers from state the relay keeps current: it never waits on the database or anything else. */
export type Readiness = () => { ready: boolean; detail: Record<string, unknown> };

export type HealthServer = { port: number; host: string; close(): Promise<void> };

export type HealthServerOptions = {
  port: number;
  /** HTTP_HOST; undefined: every interface, IPv6 and IPv4 (Node's default). */
  host?: string | undefined;
  /** METRICS_TOKEN; when set, /metrics needs `Authorization: Bearer <token>`. */
  metricsToken?: string | undefined;
};

const digest = (text: string) => createHash('sha256').update(text).digest();

/**
 * A check of `Authorization: Bearer <token>` in constant time: both sides are hashed first, so neither the
 * token's length nor how much of it matched shows in the timing.
 */
function bearerCheck(token: string | undefined): (header: string | undefined) => boolean {
  if (token === undefined) return () => true;
  const expected = digest(token);
  return (header) => {
    const given = /^Bearer +(\S+)$/i.exec(header ?? '')?.[1] ?? '';
    return timingSafeEqual(digest(given), expected);
  };
}

/**
 * `/healthz` (alive), `/readyz` (can do its job), `/metrics` (Prometheus, behind METRICS_TOKEN when set).
 * Nothing else is served. /healthz and /readyz stay open: the kubelet's probes carry no credentials.
 */
export async function startHealthServer(
  { port, host, metricsToken }: HealthServerOptions,
  deps: { readiness: Readiness; registry: Registry; log: Logger },
): Promise<HealthServer> {
  const authorized = bearerCheck(metricsToken);
  const server: Server = createServer((req, res) => {
    const send = (status: number, type: string, body: string, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', ...headers });
      res.end(body);
    };
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET') return send(405, 'text/plain', 'method not allowed\n');
    if (path === '/healthz') return send(200, 'application/json', '{"status":"ok"}\n');
    if (path === '/readyz') {
      const { ready, detail } = deps.readiness();
      return send(ready ? 200 : 503, 'application/json', JSON.stringify({ ready, ...detail }) + '\n');
    }
    if (path === '/metrics') {
      if (!authorized(req.headers.authorization)) {
        return send(401, 'text/plain', 'unauthorized: send Authorization: Bearer <METRICS_TOKEN>\n', {
          'www-authenticate': 'Bearer realm="metrics"',
        });
      }
      deps.registry
        .metrics()
        .then((text) => send(200, deps.registry.contentType, text))
        .catch((err: unknown) => {
          deps.log.error({ err }, 'rendering metrics failed');
          send(500, 'text/plain', 'metrics failed; see the relay log\n');
        });
      return;
    }
    send(404, 'text/plain', 'not found\n');
  });
  server.on('error', (err) => deps.log.error({ err }, 'health server error'));
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(listenError(err, port, host)));
    if (host === undefined) server.listen(port, () => resolve());
    else server.listen(port, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  return {
    port: address.port,
    host: address.address,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function listenError(err: NodeJS.ErrnoException, port: number, host: string | undefined): Error {
  if (err.code === 'EADDRINUSE') {
    return new RelayError('CONFIG_INVALID', `HTTP_PORT: port ${port} is already in use; set HTTP_PORT to a free port`, {
      cause: err,
    });
  }
  if (err.code === 'EADDRNOTAVAIL' && host !== undefined) {
    return new RelayError(
      'CONFIG_INVALID',
      `HTTP_HOST: ${host} is not an address of this machine; set one of its addresses, or unset it for every interface`,
      { cause: err },
    );
  }
  return err;
}
