// One POST to one receiver, as data: a status or a short error, never an exception.
// undici.request on a shared keep-alive Agent: Node's fetch cost ~6x the CPU per delivery (DESIGN.md).
import type { Readable } from 'node:stream';
import { Agent, request } from 'undici';
import { coerceError } from '../errors.ts';
import { SSRF_BLOCKED } from './ssrf.ts';

export type HttpResult =
  | { kind: 'response'; status: number; retryAfter: string | undefined; snippet: string; durationMs: number }
  | { kind: 'error'; error: string; timedOut: boolean; code?: string; durationMs: number };

export type HttpClientOptions = {
  /** Response body bytes read before the connection is dropped; the rest is never buffered. */
  maxResponseBytes: number;
  /** Sockets per origin; undefined leaves undici's default (no limit). */
  connectionsPerOrigin?: number;
  /** Passed to undici's Agent as is: connector options or a connector function (the SSRF guard plugs in here). */
  connect?: Agent.Options['connect'];
};

export type PostOptions = {
  /** Deadline for the whole attempt: connect, request, response headers and reading the body. */
  timeoutMs: number;
  /** The caller's reason to give up early, e.g. a lost lease; its reason ends up in the error text. */
  signal?: AbortSignal;
};

export type HttpClient = {
  post(url: string, headers: Record<string, string>, body: string, opts: PostOptions): Promise<HttpResult>;
  /** Lets in-flight requests finish (each is bounded by its timeoutMs), then closes every socket. */
  close(): Promise<void>;
};

/** Bytes of the response body kept for the delivery record; the rest is only drained. */
export const SNIPPET_BYTES = 1024;
const MAX_ERROR_CHARS = 300;
const UNDICI_TIMEOUTS = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

export function createHttpClient({ maxResponseBytes, connectionsPerOrigin, connect }: HttpClientOptions): HttpClient {
  // One Agent for the process: one pool of keep-alive sockets per receiver origin. No interceptors,
  // so redirects are never followed and nothing is decompressed; no proxy, so env proxies are ignored.
  const agent = new Agent({ connections: connectionsPerOrigin ?? null, connect });

  async function post(
    url: string,
    headers: Record<string, string>,
    body: string,
    { timeoutMs, signal }: PostOptions,
  ): Promise<HttpResult> {
    const startedMs = performance.now();
    const elapsedMs = () => performance.now() - startedMs;
    const fail = (err: unknown): HttpResult => ({ kind: 'error', ...describeFailure(err), durationMs: elapsedMs() });

    // One controller and one timer per attempt, both released the moment the attempt ends. (AbortSignal.timeout
    // and AbortSignal.any kept every signal alive for the whole timeout; at thousands of deliveries a second
    // that was most of the old-space garbage.)
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort(new Error(`timed out after ${timeoutMs}ms`));
    }, timeoutMs);
    const onCallerAbort = () => controller.abort(signal?.reason);
    signal?.addEventListener('abort', onCallerAbort, { once: true });

    function describeFailure(err: unknown): { error: string; timedOut: boolean; code?: string } {
      if (!timedOut && signal?.aborted) return { error: `aborted: ${reasonText(signal.reason)}`, timedOut: false };
      if (timedOut || UNDICI_TIMEOUTS.has(errorCode(err) ?? '')) {
        return { error: `timed out after ${timeoutMs}ms`, timedOut: true };
      }
      // undici's own connect timeout (10 s by default) can fire before a longer timeoutMs.
      const code = errorCode(err);
      // A refused destination's message is the whole story (`blocked destination: … is loopback`).
      if (code === SSRF_BLOCKED) return { error: coerceError(err).message, timedOut: false, code };
      return {
        error: describeError(err),
        timedOut: code === 'UND_ERR_CONNECT_TIMEOUT',
        ...(code === undefined ? {} : { code }),
      };
    }

    try {
      return await attempt();
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onCallerAbort);
    }

    async function attempt(): Promise<HttpResult> {
      if (signal?.aborted) return fail(signal.reason);

      let response: Awaited<ReturnType<typeof request>>;
      try {
        response = await request(url, {
          dispatcher: agent,
          method: 'POST',
          headers,
          body,
          signal: controller.signal,
          // The signal is the real deadline; these keep undici's 300 s defaults from outliving it.
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs,
        });
      } catch (err) {
        return fail(err);
      }

      const { statusCode, headers: responseHeaders, body: responseBody } = response;
      const retryAfterHeader = responseHeaders['retry-after'];
      const retryAfter = Array.isArray(retryAfterHeader) ? retryAfterHeader[0] : retryAfterHeader;
      const { head, error } = await readCapped(responseBody, maxResponseBytes);

      // Outcome of an error while reading the body, decided once:
      // - our deadline or the caller's signal fired: the attempt failed (timed out / aborted). A receiver
      //   that never finishes its answer within the deadline has not answered.
      // - anything else (reset, socket closed mid-body): the status line already arrived, and the status
      //   is the receiver's decision, so the response stands: a 2xx whose body was cut off is delivered.
      if (error !== undefined && (controller.signal.aborted || UNDICI_TIMEOUTS.has(errorCode(error) ?? ''))) {
        return fail(error);
      }
      return {
        kind: 'response',
        status: statusCode,
        retryAfter,
        // Postgres text cannot hold NUL (a gzip or binary body has them): one such snippet would fail every
        // outcome write of its batch.
        snippet: head.toString('utf8').replaceAll('\0', ''),
        durationMs: elapsedMs(),
      };
    }
  }

  return { post, close: () => agent.close() };
}

/**
 * Reads the body until it ends or `maxBytes` have been read, keeping only the first SNIPPET_BYTES.
 * A body read to its end leaves the socket free for the next request; a longer one is destroyed,
 * which makes undici drop that connection instead of draining it.
 */
async function readCapped(body: Readable, maxBytes: number): Promise<{ head: Buffer; error?: unknown }> {
  const parts: Buffer[] = [];
  let keptBytes = 0;
  let readBytes = 0;
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      if (keptBytes < SNIPPET_BYTES) {
        const part = chunk.subarray(0, SNIPPET_BYTES - keptBytes);
        parts.push(part);
        keptBytes += part.length;
      }
      readBytes += chunk.length;
      if (readBytes >= maxBytes) break;
    }
    return { head: Buffer.concat(parts) };
  } catch (error) {
    return { head: Buffer.concat(parts), error };
  } finally {
    // Always release the connection; an unfinished body errors on destroy, which nobody needs to see.
    if (!body.destroyed) body.on('error', () => {}).destroy();
  }
}

function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

function reasonText(reason: unknown): string {
  const message = (reason as { message?: unknown } | null | undefined)?.message;
  return String(message ?? reason);
}

/** A short, log-safe description: `connect ECONNREFUSED 127.0.0.1:1234`, `other side closed (UND_ERR_SOCKET)`. */
function describeError(err: unknown): string {
  let text: string;
  if (err instanceof AggregateError && err.errors.length > 0) {
    // Happy eyeballs tries every address and reports each failure; the top-level message is empty.
    text = [...new Set(err.errors.map((inner) => describeError(inner)))].join('; ');
  } else if (err instanceof Error) {
    text = err.message || err.name;
    const code = errorCode(err);
    if (code && !text.includes(code)) text += ` (${code})`;
    if (err.cause instanceof Error && err.cause.message && !text.includes(err.cause.message)) {
      text += `: ${err.cause.message}`;
    }
  } else {
    text = reasonText(err);
  }
  return text.length > MAX_ERROR_CHARS ? `${text.slice(0, MAX_ERROR_CHARS - 1)}…` : text;
}
