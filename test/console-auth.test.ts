import { describe, expect, test } from 'vitest';
import { bearerOf, createLoginLimiter, createSessions, createTokenCheck, sameOrigin } from '../src/console/auth.ts';
import { html } from '../src/console/html.ts';

describe('tokens', () => {
  const check = createTokenCheck(
    ['full-token-0123456789', 'both-token-0123456789'],
    ['read-token-0123456789', 'both-token-0123456789'],
  );
  test('a token maps to its role; unknown, prefixes and extensions of a token map to none', () => {
    expect(check('full-token-0123456789')).toBe('full');
    expect(check('read-token-0123456789')).toBe('read');
    expect(check('both-token-0123456789')).toBe('full');
    for (const wrong of ['', 'full-token-012345678', 'full-token-01234567890', 'FULL-TOKEN-0123456789']) {
      expect(check(wrong)).toBeNull();
    }
  });
  test('only "Bearer <token>" is read from Authorization', () => {
    expect(bearerOf('Bearer abc')).toBe('abc');
    expect(bearerOf('bearer abc')).toBe('abc');
    expect(bearerOf('Basic abc')).toBeUndefined();
    expect(bearerOf('Bearer a b')).toBeUndefined();
    expect(bearerOf(undefined)).toBeUndefined();
  });
});

describe('sessions', () => {
  test('a session lives until its ttl, ends on sign-out, and unknown or malformed ids are nobody', () => {
    let now = 1_000;
    const sessions = createSessions({ ttlMs: 60_000, now: () => now });
    const id = sessions.create('read');
    expect(id).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(sessions.get(id)).toMatchObject({ role: 'read' });
    expect(sessions.get(`${id.slice(0, -1)}${id.endsWith('A') ? 'B' : 'A'}`)).toBeNull();
    expect(sessions.get('../etc')).toBeNull();
    now += 60_000;
    expect(sessions.get(id)).toBeNull();
    const other = sessions.create('full');
    sessions.end(other);
    expect(sessions.get(other)).toBeNull();
  });
  test('at most `max` sessions: the oldest goes first', () => {
    const sessions = createSessions({ ttlMs: 60_000, max: 2 });
    const [a, b, c] = [sessions.create('full'), sessions.create('full'), sessions.create('full')];
    expect([sessions.get(a), sessions.get(b), sessions.get(c)].map((s) => s !== null)).toEqual([false, true, true]);
  });
});

describe('failed sign-ins', () => {
  test('after maxFailures within the window an address waits until its oldest failure leaves the window', () => {
    let now = 0;
    const limiter = createLoginLimiter({ maxFailures: 3, windowMs: 60_000, now: () => now });
    for (let i = 0; i < 3; i++) {
      expect(limiter.retryAfterMs('10.0.0.1')).toBe(0);
      limiter.failed('10.0.0.1');
      now += 1_000;
    }
    expect(limiter.retryAfterMs('10.0.0.1')).toBe(57_000);
    expect(limiter.retryAfterMs('10.0.0.2')).toBe(0); // per address
    now = 60_001;
    expect(limiter.retryAfterMs('10.0.0.1')).toBe(0);
  });
  test('a success forgets the failures; the table of addresses is bounded', () => {
    const limiter = createLoginLimiter({ maxFailures: 1, maxKeys: 2 });
    limiter.failed('a');
    limiter.succeeded('a');
    expect(limiter.retryAfterMs('a')).toBe(0);
    limiter.failed('b');
    limiter.failed('c');
    limiter.failed('d');
    expect(limiter.retryAfterMs('b')).toBe(0); // forgotten, oldest first
    expect(limiter.retryAfterMs('d')).toBeGreaterThan(0);
  });
});

describe('CSRF: same origin', () => {
  test.each([
    [{ secFetchSite: 'same-origin' }, true],
    [{ secFetchSite: 'same-site', origin: 'http://console:8081', host: 'console:8081' }, false],
    [{ secFetchSite: 'cross-site' }, false],
    [{ origin: 'http://console:8081', host: 'console:8081' }, true],
    [{ origin: 'https://console.example', host: 'console.example' }, true],
    [{ origin: 'https://evil.example', host: 'console.example' }, false],
    [{ origin: 'null', host: 'console.example' }, false],
    [{ host: 'console.example' }, false],
  ])('%o → %s', (headers, ok) => expect(sameOrigin(headers).ok).toBe(ok));
});

test('html escapes every interpolated value, nested lists too, and keeps Html as markup', () => {
  const hostile = `<script>alert("x")</script>' onmouseover='x`;
  const out = html`<p title="${hostile}">${hostile}${[hostile, html`<b>${hostile}</b>`]}</p>`.value;
  expect(out).not.toContain('<script>');
  expect(out).not.toContain(`'x`);
  expect(out).toContain('<b>&lt;script&gt;');
  expect(out.match(/&lt;script&gt;alert\(&quot;x&quot;\)/g)).toHaveLength(4);
});
