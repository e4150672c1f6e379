import { expect, test } from 'vitest';
import { createLedger } from '../src/fanout/ledger.ts';

const settled = async (p: Promise<void>) => {
  let state = 'pending';
  p.then(
    () => (state = 'resolved'),
    () => (state = 'rejected'),
  );
  await new Promise((r) => setImmediate(r));
  return state;
};

test('a batch resolves once every delivery of it is recorded, in any order; other keys do not count', async () => {
  const ledger = createLedger();
  const batch = ledger.track(['1/a', '1/b', '2/a']);
  ledger.recorded(['2/a', '9/z']);
  expect(await settled(batch)).toBe('pending');
  ledger.recorded(['1/b', '1/a']);
  expect(await settled(batch)).toBe('resolved');
  expect(ledger.size()).toBe(0);
});

test('a batch with no deliveries sent from the stream is resolved at once', async () => {
  expect(await settled(createLedger().track([]))).toBe('resolved');
});

test('a delivery dropped unrecorded fails its batch once, and leaves other batches alone', async () => {
  const ledger = createLedger();
  const first = ledger.track(['1/a', '1/b']);
  const second = ledger.track(['2/a']);
  first.catch(() => {});
  ledger.dropped(['1/a', '1/b'], new Error('fenced'));
  expect(await settled(first)).toBe('rejected');
  expect(ledger.size()).toBe(1); // the failed batch's other keys are forgotten with it
  ledger.recorded(['1/b']); // too late: ignored
  ledger.recorded(['2/a']);
  expect(await settled(second)).toBe('resolved');
});
