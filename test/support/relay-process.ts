import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { until } from './until.ts';

const MAIN = fileURLToPath(new URL('../../src/main.ts', import.meta.url));

export type RelayProcess = {
  child: ChildProcess;
  /** JSON log lines seen so far. */
  logs: Record<string, unknown>[];
  httpPort: () => number | undefined;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal: NodeJS.Signals): void;
  stdout: () => string;
  stderr: () => string;
};

/** Runs `outbox-relay <args>` as a real child process (for signals: SIGKILL, SIGSTOP, SIGTERM). */
export function spawnRelay(env: Record<string, string>, args: string | string[] = 'run'): RelayProcess {
  const child = spawn(process.execPath, [MAIN, ...(typeof args === 'string' ? [args] : args)], {
    env: {
      PATH: process.env.PATH ?? '',
      ...env,
      LOG_LEVEL: env.LOG_LEVEL === 'silent' ? 'info' : (env.LOG_LEVEL ?? 'info'),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Record<string, unknown>[] = [];
  let stderr = '';
  let stdout = '';
  let buffered = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    buffered += chunk;
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines) {
      try {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        logs.push({ msg: line });
      }
    }
    if (process.env.TEST_RELAY_LOGS) process.stdout.write(chunk);
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    logs,
    httpPort: () => logs.find((l) => l.msg === 'relay started')?.httpPort as number | undefined,
    exited,
    kill: (signal) => child.kill(signal),
    stdout: () => stdout,
    stderr: () => stderr,
  };
}

/** Polls the relay's /readyz until it answers 200 with the wanted stream state. */
export async function untilReady(relay: RelayProcess, stream: 'streaming' | 'standby' = 'streaming'): Promise<void> {
  await until(
    async () => {
      const port = relay.httpPort();
      if (port === undefined) return false;
      const res = await fetch(`http://127.0.0.1:${port}/readyz`);
      const body = (await res.json()) as { stream?: string };
      return res.status === 200 && body.stream === stream;
    },
    { what: `relay ready (${stream})`, timeoutMs: 30_000 },
  ).catch((err: unknown) => {
    // What the process said by now (a configuration error, say), not what it had said when the wait began.
    throw new Error(`${(err as Error).message}; stderr: ${relay.stderr().slice(0, 500)}`);
  });
}
