import type { DatabasePool } from 'slonik';
import type { OutboxEvent } from '../domain.ts';
import { promoteHeads } from '../db/ordering.ts';

/**
 * After keyed events were written: every keyed delivery of an ordered endpoint is written waiting, and the head
 * of each of their keys is made due here (one statement, only when the batch has keyed events).
 */
export async function promoteKeyed(pool: DatabasePool, events: readonly OutboxEvent[]): Promise<void> {
  const keyed = events.filter((e) => e.orderingKey !== null).map((e) => e.id);
  if (keyed.length > 0) await pool.one(promoteHeads(keyed));
}
