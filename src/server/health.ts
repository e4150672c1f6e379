import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { RelayError } from '../errors.ts';
import type { Logger } from '../log.ts';

export type Readiness = () => Promise<{ ready: boolean; detail: Record<string, unknown> }>;

export type HealthServer = { port: number; close(): Promise<void> };

/** `/healthz` (alive), `/readyz` (can do its job), `/metrics` (Prometheus). Nothing else is served. */
export async function startHealthServer(
  port: number,
  deps: { readiness: Readiness; registry: Registry; log: Logger },
): Promise<HealthServer> {
  const server: Server = createServer((req, res) => {
    const send = (status: number, type: string, body: string) => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET') return send(405, 'text/plain', 'method not allowed\n');
    if (path === '/healthz') return send(200, 'application/json', '{"status":"ok"}\n');
    if (path === '/readyz') {
      deps
        .readiness()
        .then(({ ready, detail }) =>
          send(ready ? 200 : 503, 'application/json', JSON.stringify({ ready, ...detail }) + '\n'),
        )
        .catch((err: unknown) =>
          send(503, 'application/json', JSON.stringify({ ready: false, error: String(err) }) + '\n'),
        );
      return;
    }
    if (path === '/metrics') {
      deps.registry
        .metrics()
        .then((text) => send(200, deps.registry.contentType, text))
        .catch((err: unknown) => send(500, 'text/plain', `${String(err)}\n`));
      return;
    }
    send(404, 'text/plain', 'not found\n');
  });
  server.on('error', (err) => deps.log.error({ err }, 'health server error'));
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'EADDRINUSE'
          ? new RelayError(
              'CONFIG_INVALID',
              `HTTP_PORT: port ${port} is already in use; set HTTP_PORT to a free port`,
              {
                cause: err,
              },
            )
          : err,
      ),
    );
    server.listen(port, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
