import { coerceError, isRelayError } from '../errors.ts';
import type { Attempt, Job } from '../domain.ts';
import type { Signer } from '../signing/sign.ts';
import type { AttemptTrace } from '../tracing/tracing.ts';
import type { HttpClient } from './http.ts';
import { parseRetryAfter } from './retry.ts';
import { checkUrl, SSRF_BLOCKED, type SsrfPolicy } from './ssrf.ts';

export type DeliverDeps = {
  http: HttpClient;
  ssrf: SsrfPolicy;
  signer: Signer;
  timeoutMs: number;
  retryAfterMaxMs: number;
  userAgent?: string;
  /** The attempt's trace: a traceparent header for the receiver and a span (undefined: the event has no trace). */
  trace?: (job: Job) => AttemptTrace | undefined;
};

const MAX_CACHED_URLS = 10_000;
const USER_AGENT = 'outbox-relay/0.1 (+https://www.standardwebhooks.com)';

/** The Standard Webhooks envelope. `data` is the stored jsonb text, never re-serialised (bigints stay exact). */
export function envelope(eventType: string, createdAtMs: number, payload: string): string {
  return `{"type":${JSON.stringify(eventType)},"timestamp":${JSON.stringify(new Date(createdAtMs).toISOString())},"data":${payload}}`;
}

/** Sends one signed attempt and reports what happened; never throws for a receiver's failure. */
export function createDeliver(deps: DeliverDeps): (job: Job, signal: AbortSignal) => Promise<Attempt> {
  // Verdicts per URL string: the policy is fixed for the process, and parsing every attempt's URL cost more CPU
  // than signing it. Bounded like the signer's key cache (oldest first).
  const verdicts = new Map<string, { ok: true } | { ok: false; reason: string }>();
  const check = (url: string) => {
    let verdict = verdicts.get(url);
    if (verdict === undefined) {
      const checked = checkUrl(url, deps.ssrf);
      verdict = checked.ok ? { ok: true } : checked; // the parsed URL is not kept
      if (verdicts.size >= MAX_CACHED_URLS) verdicts.delete(verdicts.keys().next().value!);
      verdicts.set(url, verdict);
    }
    return verdict;
  };

  return async (job, signal) => {
    // Checked on every attempt: endpoints are plain rows, so a URL can change between attempts (a changed URL is
    // a new cache key). The connector checks every resolved address again at connect time.
    const url = check(job.url);
    if (!url.ok) return { kind: 'failed', error: url.reason, permanent: true, durationMs: 0 };
    const body = envelope(job.eventType, job.createdAtMs, job.payload);
    const msgId = `msg_${job.outboxId}`;
    const timestampSec = Math.floor(Date.now() / 1000);
    let signature: string;
    try {
      signature = deps.signer.sign(msgId, timestampSec, body, job.secrets); // KeyObject cached per secret
    } catch (err) {
      return {
        kind: 'failed',
        error: `endpoint secret invalid: ${coerceError(err).message}`,
        permanent: true,
        durationMs: 0,
      };
    }
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'user-agent': deps.userAgent ?? USER_AGENT,
      'webhook-id': msgId,
      'webhook-timestamp': String(timestampSec),
      'webhook-signature': signature,
    };
    const trace = job.traceparent === null ? undefined : deps.trace?.(job);
    if (trace === undefined) return send(job, headers, body, signal);
    headers.traceparent = trace.traceparent; // the same trace id, this attempt's span id
    const attempt = await send(job, headers, body, signal);
    trace.end(attempt);
    return attempt;
  };

  async function send(job: Job, headers: Record<string, string>, body: string, signal: AbortSignal): Promise<Attempt> {
    const result = await deps.http.post(job.url, headers, body, { timeoutMs: deps.timeoutMs, signal });
    if (signal.aborted && isRelayError(signal.reason, 'LEASE_LOST')) {
      return { kind: 'lease-lost' };
    }
    if (result.kind === 'error') {
      const permanent = result.code === SSRF_BLOCKED ? { permanent: true as const } : {};
      return { kind: 'failed', error: result.error, durationMs: result.durationMs, ...permanent };
    }
    if (result.status >= 200 && result.status < 300) {
      return { kind: 'delivered', status: result.status, durationMs: result.durationMs };
    }
    const retryAfterMs =
      result.status === 429 || result.status === 503
        ? parseRetryAfter(result.retryAfter, Date.now(), deps.retryAfterMaxMs)
        : undefined;
    return {
      kind: 'failed',
      status: result.status,
      // 410 disables the endpoint; it says nothing about the endpoint's health for the breaker.
      ...(result.status === 410 ? { permanent: true as const } : {}),
      error:
        result.status >= 300 && result.status < 400
          ? `redirect ${result.status} not followed`
          : `HTTP ${result.status}`,
      snippet: result.snippet,
      durationMs: result.durationMs,
      ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
    };
  }
}
