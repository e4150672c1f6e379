/**
 * How many WAL rows fan-out can take now: as many as their deliveries fit in the scheduler's room, by the
 * deliveries per row seen lately. The WAL is the queue: a batch bigger than memory would have its overflow
 * written to the table and claimed back, two more row writes per delivery (measured: 2.2 per delivery for ten
 * endpoints per event, against 1.0 once batches fit). At least `minRows`, so a full scheduler still moves (the
 * batch then waits for places, or writes what cannot wait). No I/O.
 */
export function createPace(room: () => number, minRows = 16) {
  let perRow = 1; // deliveries per row, a moving average
  return {
    /** A batch of `rows` rows made `deliveries` deliveries. */
    observe(rows: number, deliveries: number): void {
      if (rows > 0) perRow = 0.7 * perRow + 0.3 * (deliveries / rows);
    },
    fits: (): number => Math.max(minRows, Math.floor(room() / Math.max(perRow, 0.001))),
  };
}
