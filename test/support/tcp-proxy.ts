import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';

export type TcpProxy = {
  port: number;
  /** Statements clients sent through the proxy so far (Postgres `Query` and `Execute` messages). */
  statements: () => number;
  /** Connections open through the proxy now, and how many of those hang forever (see `blackholeForever`). */
  open: () => { all: number; hung: number };
  /** The link hangs: nothing is forwarded either way and new connections wait, but no socket closes. */
  blackhole(): void;
  /** Forwarding resumes where it stopped (held bytes are delivered), and waiting connections go through. */
  heal(): void;
  /**
   * Every connection open now hangs forever, both ways, and no socket closes (a half-open path that never
   * comes back; `heal` does not revive them); connections opened later go through.
   */
  blackholeForever(): void;
  /** Resets every open connection (RST on both sides), as a broken network path or a restarted NAT would. */
  reset(): void;
  /** Each forwarded chunk waits this long, in both directions (0 = none). */
  latency(ms: number): void;
  /**
   * The next statement whose SQL text contains `statement` (and whose answer contains `answer`, when given)
   * runs and commits, then its connection is reset before the answer reaches the client: a result lost after
   * its commit. Resolves once that happened.
   */
  loseResultOf(statement: string, answer?: string): Promise<void>;
  close(): Promise<void>;
};

type Link = {
  client: Socket;
  upstream?: Socket;
  /** Held while the link is black-holed: bytes from the client, and from the server. */
  held: { up: Buffer[]; down: Buffer[] };
  /** Never forwards again (blackholeForever). */
  hung: boolean;
  /** A statement whose answer is to be lost: the answer collected so far. */
  watching?: { trap: Trap; answer: Buffer };
  /** Splits what the client sends into frontend messages. */
  frontend: (chunk: Buffer) => Message[];
};

type Trap = { statement: Buffer; answer?: Buffer; sprung: () => void };

/**
 * A TCP proxy in front of Postgres for tests that break the database link without touching the server (the
 * shared test cluster): a black-holed link hangs like a dead network path rather than refusing, a reset one
 * breaks at once. It reads the frontend protocol enough to count statements (so a test can prove a code path
 * sent none) and to find a given statement, and the backend protocol enough to see where its answer ends.
 */
export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const links = new Set<Link>();
  let blackholed = false;
  let latencyMs = 0;
  let statements = 0;
  const traps: Trap[] = [];

  const send = (to: Socket | undefined, chunk: Buffer) => {
    if (to === undefined) return;
    if (latencyMs === 0) to.write(chunk);
    else setTimeout(() => to.destroyed || to.write(chunk), latencyMs);
  };

  const reset = (link: Link) => {
    link.client.resetAndDestroy();
    link.upstream?.resetAndDestroy();
  };

  const splice = (link: Link) => {
    const upstream = connect(target.port, target.host);
    link.upstream = upstream;
    upstream.on('error', () => link.client.destroy());
    upstream.on('close', () => link.client.destroy());
    upstream.on('data', (chunk: Buffer) => {
      if (link.hung) return; // dropped: the path is dead
      if (blackholed) return void link.held.down.push(chunk);
      if (link.watching !== undefined) return watchAnswer(link, link.watching, chunk);
      send(link.client, chunk);
    });
  };

  /** Collects a trapped statement's answer until ReadyForQuery (the commit is done by then); resets or forwards it. */
  const watchAnswer = (link: Link, watching: NonNullable<Link['watching']>, chunk: Buffer) => {
    watching.answer = Buffer.concat([watching.answer, chunk]);
    if (!endsWithReadyForQuery(watching.answer)) return;
    link.watching = undefined;
    const { trap, answer } = watching;
    if (trap.answer === undefined || answer.includes(trap.answer)) {
      reset(link);
      trap.sprung();
    } else {
      traps.push(trap); // not the answer this trap waits for: arm it again
      send(link.client, answer);
    }
  };

  const forwardUp = (link: Link, chunk: Buffer) => {
    for (const message of link.frontend(chunk)) {
      if (message.type === 0x51 || message.type === 0x45) statements++; // 'Q', 'E'
      if (message.type !== 0x51 && message.type !== 0x50) continue; // SQL text: 'Q' and 'P' (Parse)
      const index = traps.findIndex((t) => message.body.includes(t.statement));
      if (index >= 0 && link.watching === undefined) {
        link.watching = { trap: traps.splice(index, 1)[0]!, answer: Buffer.alloc(0) };
      }
    }
    send(link.upstream, chunk);
  };

  const server = createServer((client) => {
    const link: Link = { client, held: { up: [], down: [] }, hung: false, frontend: frontendMessages() };
    links.add(link);
    client.on('error', () => link.upstream?.destroy());
    client.on('close', () => {
      link.upstream?.destroy();
      links.delete(link);
    });
    // Always read what the client sends (held or dropped when the link is down), so its close is noticed.
    client.on('data', (chunk: Buffer) => {
      if (link.hung) return;
      if (blackholed || link.upstream === undefined) return void link.held.up.push(chunk);
      forwardUp(link, chunk);
    });
    if (!blackholed) splice(link);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };

  return {
    port,
    statements: () => statements,
    open: () => ({ all: links.size, hung: [...links].filter((l) => l.hung).length }),
    blackhole: () => {
      blackholed = true;
    },
    heal: () => {
      blackholed = false;
      for (const link of links) {
        if (link.hung) continue;
        if (link.upstream === undefined) splice(link);
        const { up, down } = link.held;
        link.held = { up: [], down: [] };
        for (const chunk of up) forwardUp(link, chunk);
        for (const chunk of down) send(link.client, chunk);
      }
    },
    blackholeForever: () => {
      for (const link of links) link.hung = true;
    },
    reset: () => {
      for (const link of links) reset(link);
    },
    latency: (ms) => {
      latencyMs = ms;
    },
    loseResultOf: (statement, answer) =>
      new Promise<void>((resolve) => {
        traps.push({
          statement: Buffer.from(statement),
          ...(answer === undefined ? {} : { answer: Buffer.from(answer) }),
          sprung: resolve,
        });
      }),
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

type Message = { type: number; body: Buffer };

/**
 * Splits what a client sends into frontend messages: an untyped startup packet (after an optional SSLRequest,
 * whose answer is a single byte), then type byte + int32 length + body.
 */
function frontendMessages() {
  let buffered = Buffer.alloc(0);
  let typed = false;
  return (chunk: Buffer): Message[] => {
    const messages: Message[] = [];
    buffered = Buffer.concat([buffered, chunk]);
    for (;;) {
      const header = typed ? 5 : 4;
      if (buffered.length < header) return messages;
      const length = buffered.readInt32BE(typed ? 1 : 0) + (typed ? 1 : 0);
      if (buffered.length < length) return messages;
      if (typed) messages.push({ type: buffered[0]!, body: buffered.subarray(5, length) });
      // The startup packet carries protocol 3.0; an SSLRequest (80877103) is followed by another one.
      else if (buffered.readInt32BE(4) === 196_608) typed = true;
      buffered = buffered.subarray(length);
    }
  };
}

/** Whether backend messages (type byte + int32 length each, starting at offset 0) end with ReadyForQuery. */
function endsWithReadyForQuery(answer: Buffer): boolean {
  let offset = 0;
  let last = -1;
  while (offset + 5 <= answer.length) {
    const end = offset + 1 + answer.readInt32BE(offset + 1);
    if (end > answer.length) return false;
    last = answer[offset]!;
    offset = end;
  }
  return offset === answer.length && last === 0x5a; // 'Z'
}
