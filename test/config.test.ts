import { describe, expect, test } from 'vitest';
import { loadConfig, parseDuration } from '../src/config.ts';
import { RelayError } from '../src/errors.ts';

describe('parseDuration', () => {
  test.each([
    ['500ms', 500],
    ['30s', 30_000],
    ['1.5s', 1_500],
    ['5m', 300_000],
    ['2h', 7_200_000],
    ['7d', 604_800_000],
    ['0', 0],
    [' 10s ', 10_000],
  ])('%s is %d ms', (text, ms) => expect(parseDuration(text)).toBe(ms));

  test.each(['', '10', 'ten seconds', '5 minutes', '-1s', '1e3ms', '5M'])('"%s" is rejected', (text) =>
    expect(parseDuration(text)).toBeUndefined(),
  );
});

describe('loadConfig', () => {
  test('defaults describe a safe production relay', () => {
    const c = loadConfig({ DATABASE_URL: 'postgres://u:p@db/app' });
    expect(c).toMatchObject({
      httpPort: 8080,
      allowPrivateNetworks: false,
      slotName: 'outbox_relay',
      leaseMs: 60_000,
      requestTimeoutMs: 15_000,
      retryScheduleMs: [5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000],
      retryJitter: 0.2,
    });
    expect(c.workerId).toMatch(/-\d+$/);
    expect(Object.isFrozen(c)).toBe(true);
  });

  test('every bad variable is named in one error, with what to fix', () => {
    let error: unknown;
    try {
      loadConfig({ HTTP_PORT: '80a', LEASE: '5 minutes', ALLOW_PRIVATE_NETWORKS: 'maybe', SLOT_NAME: 'Bad-Name' });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(RelayError);
    expect((error as RelayError).code).toBe('CONFIG_INVALID');
    const message = (error as Error).message;
    expect(message).toContain('HTTP_PORT: expected a whole number 0-65535, got "80a"');
    expect(message).toContain('LEASE: expected a duration such as 500ms, 30s, 5m or 2h, got "5 minutes"');
    expect(message).toContain('ALLOW_PRIVATE_NETWORKS: expected true or false, got "maybe"');
    expect(message).toContain('SLOT_NAME: expected a lower-case Postgres identifier');
  });

  test('a lease that does not outlive an attempt plus two heartbeats is refused', () => {
    expect(() => loadConfig({ LEASE: '20s', REQUEST_TIMEOUT: '15s', HEARTBEAT_INTERVAL: '5s' })).toThrow(
      /LEASE: must exceed REQUEST_TIMEOUT \+ 2 x HEARTBEAT_INTERVAL \(25s\).*got 20s/,
    );
    expect(() => loadConfig({ LEASE: '26s', REQUEST_TIMEOUT: '15s', HEARTBEAT_INTERVAL: '5s' })).not.toThrow();
  });

  test('empty strings count as unset', () => {
    expect(loadConfig({ HTTP_PORT: '', LOG_LEVEL: '' }).httpPort).toBe(8080);
  });

  test('RETRY_SCHEDULE is the list of waits after each failed attempt', () => {
    expect(loadConfig({ RETRY_SCHEDULE: '1s, 10s,1m' }).retryScheduleMs).toEqual([1_000, 10_000, 60_000]);
  });
});

test('PAYLOAD_BUDGET reads sizes with units and refuses what it cannot read, naming an example', () => {
  expect(loadConfig({ PAYLOAD_BUDGET: '512MB' }).payloadBudgetBytes).toBe(512_000_000);
  expect(loadConfig({ PAYLOAD_BUDGET: '1GiB' }).payloadBudgetBytes).toBe(2 ** 30);
  expect(loadConfig({}).payloadBudgetBytes).toBe(64 * 2 ** 20);
  expect(() => loadConfig({ PAYLOAD_BUDGET: 'lots' })).toThrow(/PAYLOAD_BUDGET: expected a size .* such as 64MiB/);
  expect(() => loadConfig({ PAYLOAD_BUDGET: '10kB' })).toThrow(/PAYLOAD_BUDGET/); // below 1 MiB
});
