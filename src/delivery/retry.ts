// Retry timing: pure functions, so the schedule can be tested without clocks or databases.

/**
 * How long to wait after the `attemptsMade`-th failed attempt (1-based): `scheduleMs[attemptsMade - 1]`
 * scaled by a uniform factor in [1 - jitter, 1 + jitter], rounded to whole ms and never negative.
 * `undefined` once the schedule is used up: the delivery goes `dead`. A schedule of 7 delays therefore
 * allows 8 attempts in all.
 *
 * Jitter spreads the retries of a burst that failed together (a receiver outage) so they do not all
 * come back in the same second.
 */
export function nextDelayMs(
  attemptsMade: number,
  scheduleMs: readonly number[],
  jitter: number,
  random: () => number = Math.random,
): number | undefined {
  if (!Number.isSafeInteger(attemptsMade) || attemptsMade < 1) {
    throw new RangeError(`attemptsMade must be an integer >= 1, got ${attemptsMade}`);
  }
  const baseMs = scheduleMs[attemptsMade - 1];
  if (baseMs === undefined) return undefined;
  const factor = 1 + jitter * (2 * random() - 1);
  return Math.max(0, Math.round(baseMs * factor));
}

// delta-seconds is 1*DIGIT (RFC 9110 §10.2.3): no sign, no fraction.
const DELTA_SECONDS = /^\d+$/;

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'] as const;
const MONTH = MONTHS.join('|');
const TIME = String.raw`(\d{2}):(\d{2}):(\d{2})`;

// The three HTTP-date forms a recipient must accept (RFC 9110 §5.6.7), parsed by hand because
// Date.parse accepts almost anything ("1", "May 5") and reads zone-less dates in local time.
const IMF_FIXDATE = new RegExp(String.raw`^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{2}) (${MONTH}) (\d{4}) ${TIME} GMT$`);
const RFC850_DATE = new RegExp(
  String.raw`^(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), (\d{2})-(${MONTH})-(\d{2}) ${TIME} GMT$`,
);
const ASCTIME_DATE = new RegExp(String.raw`^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (${MONTH}) ([ \d]\d) ${TIME} (\d{4})$`);

function utcMs(day: string, month: string, year: number, h: string, m: string, s: string): number | undefined {
  const monthIndex = MONTHS.indexOf(month as (typeof MONTHS)[number]);
  const [dd, hh, mm, ss] = [Number(day), Number(h), Number(m), Number(s)];
  if (dd < 1 || dd > 31 || hh > 23 || mm > 59 || ss > 60) return undefined;
  const ms = Date.UTC(year, monthIndex, dd, hh, mm, Math.min(ss, 59));
  // Date.UTC rolls "31 Feb" over into March; such a date is garbage, not a moment.
  return new Date(ms).getUTCDate() === dd ? ms : undefined;
}

function parseHttpDateMs(value: string, nowMs: number): number | undefined {
  let match = IMF_FIXDATE.exec(value);
  if (match) {
    const [, day = '', month = '', year = '', h = '', m = '', s = ''] = match;
    return utcMs(day, month, Number(year), h, m, s);
  }
  match = RFC850_DATE.exec(value);
  if (match) {
    const [, day = '', month = '', yy = '', h = '', m = '', s = ''] = match;
    // RFC 9110: a two-digit year that reads as more than 50 years ahead is the most recent past one.
    const thisYear = new Date(nowMs).getUTCFullYear();
    let year = thisYear - (thisYear % 100) + Number(yy);
    if (year > thisYear + 50) year -= 100;
    return utcMs(day, month, year, h, m, s);
  }
  match = ASCTIME_DATE.exec(value);
  if (match) {
    const [, month = '', day = '', h = '', m = '', s = '', year = ''] = match;
    return utcMs(day.trim(), month, Number(year), h, m, s);
  }
  return undefined;
}

/**
 * Reads a `Retry-After` header (delta-seconds or HTTP-date) as a wait in ms from `nowMs`, clamped to
 * [0, maxMs] so a receiver cannot park a delivery for a year. A date in the past means "now" (0).
 * `undefined` for an absent, empty, negative, fractional or unparseable value: the caller then falls
 * back to its own schedule.
 */
export function parseRetryAfter(value: string | undefined, nowMs: number, maxMs: number): number | undefined {
  if (value === undefined) return undefined;
  const trimmed = value.trim();
  if (trimmed === '') return undefined;
  let waitMs: number | undefined;
  if (DELTA_SECONDS.test(trimmed)) {
    waitMs = Number(trimmed) * 1000;
  } else {
    const atMs = parseHttpDateMs(trimmed, nowMs);
    if (atMs === undefined) return undefined;
    waitMs = atMs - nowMs;
  }
  return Math.min(maxMs, Math.max(0, waitMs));
}
