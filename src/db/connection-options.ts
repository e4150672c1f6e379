// DATABASE_URL → what pg and slonik need to connect, with libpq's TLS parameters. slonik's URL parser knows only
// three sslmode values (and a ZodError for the rest) and pg's treats every mode as verify-full, so the TLS
// parameters are taken out of the URL here and become one node `tls` options object that every connection
// gets: the pool, the migration connections and the replication stream.
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import { coerceError, RelayError } from '../errors.ts';

export const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export type SslMode = (typeof SSL_MODES)[number];

/** pg's `ssl` option: false is plain TCP. */
export type PgSsl = false | ConnectionOptions;

export type DatabaseConnection = Readonly<{
  /** DATABASE_URL without its TLS parameters (host, user, database and the other parameters untouched). */
  url: string;
  sslMode: SslMode;
  /** How the first attempt connects. */
  ssl: PgSsl;
  /** allow and prefer only: how to connect when the first attempt fails (libpq's fallback). */
  fallback?: PgSsl;
  /** What the server's certificate is checked against, for messages; undefined when it is not checked. */
  trust?: string;
}>;

/**
 * TCP keepalive on every database connection (the pool's and the replication stream's): an idle connection whose
 * peer went silent is probed after this long, then every 1 s, 10 times (Node's settings), so it is found dead
 * within 20 s. Keepalive probes only an idle connection: one with a statement outstanding is bounded by the
 * statement deadline (pool.ts), the stream by its idle watchdog (STREAM_IDLE_TIMEOUT).
 */
export const KEEPALIVE_IDLE_MS = 10_000;

/** TCP connect plus the startup handshake, for every database connection. */
export const DB_CONNECT_TIMEOUT_MS = 10_000;

/** node-postgres options that detect a silent link (see KEEPALIVE_IDLE_MS). */
export const linkOptions = {
  keepAlive: true,
  keepAliveInitialDelayMillis: KEEPALIVE_IDLE_MS,
  connectionTimeoutMillis: DB_CONNECT_TIMEOUT_MS,
} as const;

const TLS_PARAMS = ['sslmode', 'sslrootcert', 'sslcert', 'sslkey', 'sslpassword'] as const;

/**
 * Parses DATABASE_URL's TLS parameters the way libpq reads them and reads the certificate files (at start, so
 * a missing file stops the process with a message naming it). Modes:
 *
 *   disable      plain TCP
 *   allow        plain TCP; TLS (unverified) if the plain connection is refused
 *   prefer       TLS (unverified) if the server offers it, else plain TCP. The default, as in libpq
 *   require      TLS, certificate unverified; with sslrootcert it is verified as in verify-ca (as libpq does)
 *   verify-ca    TLS, certificate chain verified against sslrootcert; the host name is not checked
 *   verify-full  TLS, chain verified (sslrootcert, or the system's trusted CAs) and the host name checked
 *
 * sslrootcert without sslmode means verify-full: a CA given is a CA meant to be checked. `sslrootcert=system`
 * (libpq 16) is the system's trusted CAs and implies verify-full. `no-verify` (a node-postgres spelling) is
 * read as require without verification.
 */
export function parseDatabaseUrl(databaseUrl: string): DatabaseConnection {
  const url = new URL(databaseUrl);
  const params = Object.fromEntries(TLS_PARAMS.map((name) => [name, url.searchParams.get(name) ?? undefined]));
  const unsupported = [...url.searchParams.keys()].filter(
    (key) => key.startsWith('ssl') && !(TLS_PARAMS as readonly string[]).includes(key),
  );
  for (const name of [...TLS_PARAMS, ...unsupported]) url.searchParams.delete(name);
  const problems: string[] = unsupported.map((key) =>
    key === 'ssl'
      ? 'the "ssl" parameter is not read; use sslmode=verify-full (or require, to skip verification)'
      : `the "${key}" parameter is not supported; supported: ${TLS_PARAMS.join(', ')}`,
  );

  const rootcert = params.sslrootcert;
  const systemTrust = rootcert === 'system';
  let sslMode: SslMode | 'no-verify';
  const given = params.sslmode;
  if (given === undefined) {
    sslMode = rootcert === undefined ? 'prefer' : 'verify-full';
  } else if ((SSL_MODES as readonly string[]).includes(given) || given === 'no-verify') {
    sslMode = given as SslMode | 'no-verify';
  } else {
    problems.push(`sslmode: expected one of ${SSL_MODES.join(', ')}, got "${given}"`);
    sslMode = 'disable';
  }
  if (systemTrust && sslMode !== 'verify-full') {
    problems.push(`sslrootcert=system verifies against the system's trusted CAs and needs sslmode=verify-full`);
  }
  if (sslMode === 'verify-ca' && (rootcert === undefined || systemTrust)) {
    problems.push(
      'sslmode=verify-ca needs sslrootcert=<file of the CA that signed the server certificate> (any server ' +
        'certified by a public CA would pass); or use sslmode=verify-full',
    );
  }
  if ((params.sslcert === undefined) !== (params.sslkey === undefined)) {
    problems.push('sslcert and sslkey go together: give both files (the client certificate and its key)');
  }
  const read = (name: 'sslrootcert' | 'sslcert' | 'sslkey'): string | undefined => {
    const path = params[name];
    if (path === undefined || (name === 'sslrootcert' && systemTrust)) return undefined;
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? coerceError(err).message;
      problems.push(`${name}=${path} cannot be read (${code}); check the path, and that this process may read it`);
      return undefined;
    }
  };
  const ca = read('sslrootcert');
  const cert = read('sslcert');
  const key = read('sslkey');
  if (problems.length > 0) {
    throw new RelayError(
      'CONFIG_INVALID',
      `invalid configuration, fix these environment variables:\n${problems.map((p) => `  DATABASE_URL: ${p}`).join('\n')}`,
    );
  }

  const client: ConnectionOptions = {
    ...(cert === undefined ? {} : { cert }),
    ...(key === undefined ? {} : { key }),
    ...(params.sslpassword === undefined ? {} : { passphrase: params.sslpassword }),
  };
  const unverified: ConnectionOptions = { ...client, rejectUnauthorized: false };
  const trust = rootcert === undefined || systemTrust ? "the system's trusted CAs" : `sslrootcert=${rootcert}`;
  // verify-ca: the chain is checked by rejectUnauthorized; returning undefined accepts any host name.
  const verifyCa: ConnectionOptions = { ...client, ca, rejectUnauthorized: true, checkServerIdentity: () => undefined };
  const base = { url: url.toString() };
  switch (sslMode) {
    case 'disable':
      return { ...base, sslMode, ssl: false };
    case 'allow':
      return { ...base, sslMode, ssl: false, fallback: unverified };
    case 'prefer':
      return { ...base, sslMode, ssl: unverified, fallback: false };
    case 'no-verify':
      return { ...base, sslMode: 'require', ssl: unverified };
    case 'require':
      return ca === undefined ? { ...base, sslMode, ssl: unverified } : { ...base, sslMode, ssl: verifyCa, trust };
    case 'verify-ca':
      return { ...base, sslMode, ssl: verifyCa, trust };
    case 'verify-full':
      return {
        ...base,
        sslMode,
        ssl: { ...client, ...(ca === undefined ? {} : { ca }), rejectUnauthorized: true },
        trust,
      };
  }
}

/**
 * Opens a connection with `open`, the way libpq does for the mode: one attempt, or for allow and prefer a
 * second one the other way when the first fails. A certificate the server presents that does not verify
 * becomes one line saying so (and what to check) instead of a TLS error deep in a stack.
 */
export async function connectWith<T>(conn: DatabaseConnection, open: (ssl: PgSsl) => Promise<T>): Promise<T> {
  try {
    return await open(conn.ssl);
  } catch (err) {
    if (conn.fallback === undefined) throw explainConnectError(err, conn);
    try {
      return await open(conn.fallback);
    } catch (fallbackErr) {
      throw explainConnectError(fallbackErr, conn);
    }
  }
}

/** For modes with a fallback: which `ssl` a connection made later should use, found by one trial connection. */
export async function chooseSsl(conn: DatabaseConnection, probe: (ssl: PgSsl) => Promise<void>): Promise<PgSsl> {
  if (conn.fallback === undefined) return conn.ssl;
  return connectWith(conn, async (ssl) => {
    await probe(ssl);
    return ssl;
  });
}

// OpenSSL's X509 verification results and Node's host name check, as they appear in `err.code`.
const CERT_ERROR = /^(ERR_TLS_CERT_ALTNAME_INVALID|HOSTNAME_MISMATCH|INVALID_CA|(.*_)?CERT(_.*)?|UNABLE_TO_.*)$/;

/** A TLS verification failure (looking through `cause`) as a RelayError saying what to check; else `err`. */
export function explainConnectError(err: unknown, conn: DatabaseConnection): unknown {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; depth++, e = e.cause) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code !== 'string' || !CERT_ERROR.test(code)) continue;
    const message =
      code === 'ERR_TLS_CERT_ALTNAME_INVALID'
        ? `the server's certificate does not name the host in DATABASE_URL (${e.message}); connect by a name ` +
          `the certificate holds, or use sslmode=verify-ca to check only the CA`
        : `the server's certificate was not verified with ${conn.trust ?? 'its CA'} (${e.message}); ` +
          `check sslrootcert or sslmode`;
    return new RelayError('DB_TLS_UNVERIFIED', `cannot connect to the database: ${message}`, { cause: err });
  }
  return err;
}
