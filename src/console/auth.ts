// Who may do what in the console: bearer tokens (full or read-only), sessions made by signing in with a token,
// and a limit on failed sign-ins. No I/O; the server applies the verdicts.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export type Role = 'full' | 'read';

const digest = (token: string) => createHash('sha256').update(token).digest();

/**
 * Resolves a presented token to its role. Tokens are compared as SHA-256 digests with timingSafeEqual, every
 * configured token each time, so neither a token's length nor how much of it matched shows in the timing.
 */
export function createTokenCheck(fullTokens: readonly string[], readTokens: readonly string[]) {
  const known = [
    ...fullTokens.map((t) => ({ digest: digest(t), role: 'full' as const })),
    ...readTokens.map((t) => ({ digest: digest(t), role: 'read' as const })),
  ];
  return (presented: string): Role | null => {
    const d = digest(presented);
    let role: Role | null = null;
    for (const k of known) {
      // A token listed in both lists is full: the operator granted it write access somewhere.
      if (timingSafeEqual(k.digest, d) && role !== 'full') role = k.role;
    }
    return role;
  };
}

/** `Authorization: Bearer <token>` → the token; anything else → undefined. */
export function bearerOf(header: string | undefined): string | undefined {
  const match = /^Bearer +(\S+) *$/i.exec(header ?? '');
  return match?.[1];
}

export type Session = { role: Role; expiresAtMs: number };

/**
 * Sessions in this process's memory: 32 random bytes per id, only the id's digest kept as the key. A restart
 * signs everyone out, which is the point of a short-lived operator session. At most `max` live sessions; the
 * oldest goes first.
 */
export function createSessions({
  ttlMs,
  max = 10_000,
  now = Date.now,
}: {
  ttlMs: number;
  max?: number;
  now?: () => number;
}) {
  const sessions = new Map<string, Session>();
  const key = (id: string) => digest(id).toString('base64url');
  return {
    create(role: Role): string {
      const id = randomBytes(32).toString('base64url');
      if (sessions.size >= max) sessions.delete(sessions.keys().next().value!);
      sessions.set(key(id), { role, expiresAtMs: now() + ttlMs });
      return id;
    },
    get(id: string | undefined): Session | null {
      if (id === undefined || !/^[A-Za-z0-9_-]{43}$/.test(id)) return null;
      const k = key(id);
      const session = sessions.get(k);
      if (session === undefined) return null;
      if (session.expiresAtMs <= now()) {
        sessions.delete(k);
        return null;
      }
      return session;
    },
    end(id: string | undefined): void {
      if (id !== undefined) sessions.delete(key(id));
    },
    size: () => sessions.size,
  };
}

/**
 * Failed sign-ins (a wrong token in the form or in an Authorization header) per client address: after
 * `maxFailures` within `windowMs` the address is refused, right token or not, until the window has passed since
 * its oldest counted failure. At most `maxKeys` addresses are tracked; the oldest is forgotten first.
 */
export function createLoginLimiter({
  maxFailures = 10,
  windowMs = 60_000,
  maxKeys = 10_000,
  now = Date.now,
}: { maxFailures?: number; windowMs?: number; maxKeys?: number; now?: () => number } = {}) {
  const failures = new Map<string, number[]>();
  const recent = (key: string) => (failures.get(key) ?? []).filter((at) => at > now() - windowMs);
  return {
    /** 0 when `key` may try now; otherwise the ms until it may. */
    retryAfterMs(key: string): number {
      const times = recent(key);
      if (times.length < maxFailures) return 0;
      return Math.max(1, (times[times.length - maxFailures] ?? 0) + windowMs - now());
    },
    failed(key: string): void {
      const times = recent(key);
      times.push(now());
      failures.delete(key); // re-insert: the map's order is the order of last failure
      failures.set(key, times.slice(-maxFailures));
      if (failures.size > maxKeys) failures.delete(failures.keys().next().value!);
    },
    succeeded(key: string): void {
      failures.delete(key);
    },
  };
}

export type LoginLimiter = ReturnType<typeof createLoginLimiter>;
export type Sessions = ReturnType<typeof createSessions>;
export type TokenCheck = ReturnType<typeof createTokenCheck>;

/** The request may change something only when it comes from our own pages (CSRF): see `sameOrigin`. */
export type OriginVerdict = { ok: true } | { ok: false; reason: string };

/**
 * A state-changing request from a browser must come from this console's own pages. Sec-Fetch-Site, when the
 * browser sends it, says so directly; otherwise Origin must name this host (the scheme
 * is not compared: behind a proxy that terminates TLS the browser's origin is https while we serve http). A request with neither is refused: every
 * browser that could carry our cookie sends one of them on a POST. SameSite=Strict on the cookie is the second
 * layer.
 */
export function sameOrigin(headers: { secFetchSite?: string; origin?: string; host?: string }): OriginVerdict {
  if (headers.secFetchSite !== undefined) {
    return headers.secFetchSite === 'same-origin'
      ? { ok: true }
      : { ok: false, reason: `cross-site request refused (Sec-Fetch-Site: ${headers.secFetchSite})` };
  }
  if (headers.origin === undefined) return { ok: false, reason: 'request without Origin refused' };
  if (headers.host !== undefined && URL.parse(headers.origin)?.host === headers.host.toLowerCase()) return { ok: true };
  return { ok: false, reason: 'cross-origin request refused' };
}
