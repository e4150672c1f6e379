import { test as base } from 'vitest';
import { cloneTemplate, type TestDb } from './support/postgres.ts';
import { startReceiver, type Receiver } from './support/receiver.ts';

/** Each test gets its own database (with its own slot) and a fresh receiver. */
export const test = base.extend<{ db: TestDb; receiver: Receiver }>({
  db: async ({}, use) => {
    const db = await cloneTemplate();
    await use(db);
    await db.drop();
  },

  receiver: async ({}, use) => {
    const receiver = await startReceiver();
    await use(receiver);
    await receiver.close();
  },
});
