import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';

export type TcpProxy = {
  port: number;
  /** Statements clients sent through the proxy so far (Postgres `Query` and `Execute` messages). */
  statements: () => number;
  /** The link hangs: nothing is forwarded either way and new connections wait, but no socket closes. */
  blackhole(): void;
  /** Forwarding resumes where it stopped (held bytes are delivered), and waiting connections go through. */
  heal(): void;
  close(): Promise<void>;
};

type Link = { client: Socket; upstream?: Socket };

/**
 * A TCP proxy in front of Postgres for tests that take the database link away without touching the server
 * (the shared test cluster): a black-holed link hangs like a dead network path rather than refusing. It also
 * reads the frontend protocol enough to count statements, so a test can prove a code path sent none.
 */
export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const links = new Set<Link>();
  let blackholed = false;
  let statements = 0;

  const splice = (link: Link) => {
    const upstream = connect(target.port, target.host);
    upstream.on('error', () => link.client.destroy());
    link.client.on('error', () => upstream.destroy());
    upstream.on('close', () => link.client.destroy());
    link.client.on('close', () => {
      upstream.destroy();
      links.delete(link);
    });
    link.upstream = upstream;
    link.client.on('data', countStatements());
    link.client.pipe(upstream);
    upstream.pipe(link.client);
  };

  /** Frontend messages: an untyped startup packet (after an optional SSLRequest), then type byte + int32 length. */
  const countStatements = () => {
    let buffered = Buffer.alloc(0);
    let typed = false;
    return (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        const header = typed ? 5 : 4;
        if (buffered.length < header) return;
        const length = buffered.readInt32BE(typed ? 1 : 0) + (typed ? 1 : 0);
        if (buffered.length < length) return;
        if (typed && (buffered[0] === 0x51 || buffered[0] === 0x45)) statements++; // 'Q', 'E'
        // The startup packet carries protocol 3.0; an SSLRequest (80877103) is followed by another one.
        if (!typed && buffered.readInt32BE(4) === 196_608) typed = true;
        buffered = buffered.subarray(length);
      }
    };
  };

  const server = createServer((client) => {
    const link: Link = { client };
    links.add(link);
    if (blackholed) client.pause();
    else splice(link);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };

  return {
    port,
    statements: () => statements,
    blackhole: () => {
      blackholed = true;
      for (const { client, upstream } of links) {
        client.unpipe();
        upstream?.unpipe();
        client.pause();
        upstream?.pause();
      }
    },
    heal: () => {
      blackholed = false;
      for (const link of links) {
        if (link.upstream === undefined) {
          splice(link);
          link.client.resume();
        } else {
          link.client.pipe(link.upstream);
          link.upstream.pipe(link.client);
        }
      }
    },
    close: async () => {
      for (const { client, upstream } of links) {
        client.destroy();
        upstream?.destroy();
      }
      server.close();
      await once(server, 'close');
    },
  };
}
