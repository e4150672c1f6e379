import { sql, type DatabasePool } from 'slonik';
import { z } from 'zod';
import { fail, parseCommand, printJson, printText, usageError, wantsHelp, withDatabase } from '../ops/args.ts';

const USAGE = 'usage: outbox-relay grants --role NAME [--json]';

const HELP = `${USAGE}

  Prints the GRANT statements "outbox-relay run" (with MIGRATE_ON_START=false) needs as role NAME for the
  schema installed in DATABASE_URL's database, besides the role attributes LOGIN REPLICATION. The status and
  deliveries commands work with them too. Run it as the role that migrated (it only reads the catalog) and
  apply the output with psql. What an application's role needs to write events is printed as comments.`;

type TableNeed = {
  table: string;
  privileges: readonly ('SELECT' | 'INSERT' | 'UPDATE' | 'DELETE')[];
  /** Column-level UPDATE, where the relay updates only some columns. */
  updateColumns?: readonly string[];
  why: string;
};

/**
 * What the relay's statements do to each table, read from them: fanout/queries.ts, scheduler/queries.ts
 * (claims, outcome writes, leases), limits/queries.ts (membership, shared breakers), sweep/queries.ts, retention/queries.ts, metrics/db-stats.ts, plus the reads
 * of ops/queries.ts for status and deliveries. Keep this list in step with those files; test/roles.test.ts
 * runs the relay with exactly these grants.
 */
const RUN_NEEDS: readonly TableNeed[] = [
  {
    table: 'outbox',
    privileges: ['SELECT', 'DELETE'],
    // SELECT … FOR UPDATE needs UPDATE on some column; the relay never updates an outbox row.
    updateColumns: ['created_at'],
    why: 'fan-out checks rows are visible, claims read payloads; retention locks and deletes old rows with no deliveries',
  },
  {
    table: 'endpoints',
    privileges: ['SELECT'],
    // The outcome writer keeps endpoint health, and retention clears a previous secret whose rotation window
    // ended; url, secret and event_types stay out of the relay's reach.
    updateColumns: [
      'enabled',
      'failing_since',
      'disabled_reason',
      'disabled_at',
      'consecutive_failures',
      'previous_secret',
      'previous_secret_expires_at',
      'updated_at',
    ],
    why: 'fan-out and claims read subscriptions, URLs and secrets; outcome writes track failures and auto-disable; retention clears expired previous secrets',
  },
  {
    table: 'idempotency_keys',
    privileges: ['SELECT', 'DELETE'],
    why: 'retention forgets idempotency keys older than the longest retention window',
  },
  {
    table: 'deliveries',
    privileges: ['SELECT', 'INSERT', 'UPDATE', 'DELETE'],
    why: 'fan-out inserts, claims, leases, outcomes and the sweep update, retention deletes',
  },
  {
    table: 'relay_publications',
    privileges: ['SELECT'],
    why: 'a stream session checks the slot has passed the endpoints publication before naming it',
  },
  {
    table: 'delivery_attempts',
    privileges: ['SELECT', 'INSERT'],
    why: 'outcome writes log failed attempts; status reads them',
  },
  {
    table: 'relays',
    privileges: ['SELECT', 'INSERT', 'UPDATE', 'DELETE'],
    why: 'each relay renews its membership row every CLUSTER_POLL_INTERVAL and deletes it when it stops (limits are split between live relays)',
  },
  {
    table: 'endpoint_breakers',
    privileges: ['SELECT', 'INSERT', 'UPDATE'],
    why: 'the shared circuit breaker: polled by every relay, written on a trip, a probe taken, a probe decided',
  },
];

/**
 * Functions the relay calls. They write relay.* operational events into the outbox as their owner (SECURITY
 * DEFINER), so the relay's role needs EXECUTE on them and no INSERT on the outbox; EXECUTE is revoked from PUBLIC.
 */
const RUN_FUNCTIONS = [
  { name: 'report_dead_deliveries', why: 'outcome writes and the sweep report dead deliveries (relay.delivery.dead)' },
  { name: 'flush_dead_notices', why: 'the sweep writes the relay.delivery.dead events coalescing held back' },
] as const;

const Catalog = z.object({
  quotedRole: z.string(),
  roleExists: z.boolean(),
  canLogin: z.boolean(),
  canReplicate: z.boolean(),
  isSuperuser: z.boolean(),
  tables: z.array(z.object({ name: z.string(), columns: z.array(z.string()) })),
});

/** The role as a quoted identifier (the server's quote_ident), its attributes, and the installed relations. */
const readCatalog = (role: string) => sql.type(Catalog)`
  SELECT quote_ident(${role}) AS "quotedRole",
         r.oid IS NOT NULL AS "roleExists",
         coalesce(r.rolcanlogin, false) AS "canLogin",
         coalesce(r.rolreplication, false) AS "canReplicate",
         coalesce(r.rolsuper, false) AS "isSuperuser",
         coalesce((
           SELECT json_agg(json_build_object('name', c.relname, 'columns', (
                    SELECT coalesce(json_agg(a.attname ORDER BY a.attnum), '[]')
                    FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)) ORDER BY c.relname)
           FROM pg_catalog.pg_class c
           WHERE c.relnamespace = 'webhooks'::regnamespace AND c.relkind IN ('r', 'p', 'v')), '[]') AS tables
  FROM (SELECT 1) one LEFT JOIN pg_catalog.pg_roles r ON r.rolname = ${role}`;

/**
 * What else a write to `tables` runs as the writing role: the sequences of serial columns (nextval needs USAGE;
 * identity columns need no grant) and functions outside pg_catalog that CHECK constraints and column defaults
 * call (EXECUTE; granted to PUBLIC unless revoked, printed so a revoked one still works).
 */
const readDependencies = (tables: readonly string[]) => sql.type(
  z.object({ kind: z.enum(['sequence', 'function']), name: z.string() }),
)`
  SELECT DISTINCT 'sequence' AS kind, format('%I.%I', sn.nspname, s.relname) AS name
  FROM pg_catalog.pg_depend d
  JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S'
  JOIN pg_catalog.pg_namespace sn ON sn.oid = s.relnamespace
  JOIN pg_catalog.pg_class t ON t.oid = d.refobjid
  WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass
    AND d.deptype = 'a' AND t.relnamespace = 'webhooks'::regnamespace
    AND t.relname = ANY (${sql.array(tables, 'text')})
  UNION
  SELECT DISTINCT 'function', format('%I.%I(%s)', pn.nspname, p.proname, pg_catalog.oidvectortypes(p.proargtypes))
  FROM pg_catalog.pg_depend d
  JOIN pg_catalog.pg_proc p ON p.oid = d.refobjid
  JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace AND pn.nspname <> 'pg_catalog'
  LEFT JOIN pg_catalog.pg_constraint con
    ON d.classid = 'pg_catalog.pg_constraint'::regclass AND con.oid = d.objid AND con.contype = 'c'
  LEFT JOIN pg_catalog.pg_attrdef def ON d.classid = 'pg_catalog.pg_attrdef'::regclass AND def.oid = d.objid
  JOIN pg_catalog.pg_class t ON t.oid = coalesce(con.conrelid, def.adrelid)
  WHERE d.refclassid = 'pg_catalog.pg_proc'::regclass AND t.relnamespace = 'webhooks'::regnamespace
    AND t.relname = ANY (${sql.array(tables, 'text')})
  ORDER BY 1, 2`;

/** The installed functions of schema webhooks with these names, with their signatures as GRANT writes them. */
const readFunctions = (names: readonly string[]) => sql.type(z.object({ proname: z.string(), name: z.string() }))`
  SELECT p.proname, format('%I.%I(%s)', pn.nspname, p.proname, pg_catalog.oidvectortypes(p.proargtypes)) AS name
  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace
  WHERE pn.nspname = 'webhooks' AND p.proname = ANY (${sql.array(names, 'text')})
  ORDER BY 2`;

export type Grants = {
  role: string;
  /** The role as SQL writes it (quote_ident). */
  quotedRole: string;
  /** The role attributes `run` needs, which GRANT cannot give. */
  attributes: 'LOGIN REPLICATION';
  /** What the role lacks of them (empty when it has them, or is a superuser); null when it does not exist. */
  missingAttributes: string[] | null;
  statements: string[];
  /** For an application's role that writes events (plain INSERT, or emit() where installed). */
  application: string[];
};

/** The grants for `role` on the schema installed in `pool`'s database; null when there is no schema. */
export async function computeGrants(pool: DatabasePool, role: string): Promise<Grants | null> {
  const catalog = await pool.one(readCatalog(role));
  const installed = new Map(catalog.tables.map((t) => [t.name, new Set(t.columns)]));
  if (!installed.has('deliveries')) return null;
  const to = catalog.quotedRole;
  const statements = [`GRANT USAGE ON SCHEMA webhooks TO ${to};`];
  const written: string[] = [];
  for (const need of RUN_NEEDS) {
    const columns = installed.get(need.table);
    if (columns === undefined) continue;
    statements.push(`-- ${need.why}`);
    statements.push(`GRANT ${need.privileges.join(', ')} ON TABLE webhooks.${need.table} TO ${to};`);
    const updatable = (need.updateColumns ?? []).filter((c) => columns.has(c));
    if (updatable.length > 0) {
      statements.push(`GRANT UPDATE (${updatable.join(', ')}) ON TABLE webhooks.${need.table} TO ${to};`);
    }
    if (need.privileges.some((p) => p === 'INSERT' || p === 'UPDATE') || updatable.length > 0) {
      written.push(need.table);
    }
  }
  const functions = await pool.any(readFunctions(RUN_FUNCTIONS.map((f) => f.name)));
  for (const f of RUN_FUNCTIONS) {
    const installed = functions.filter((i) => i.proname === f.name);
    if (installed.length > 0) statements.push(`-- ${f.why}`);
    for (const { name } of installed) statements.push(`GRANT EXECUTE ON FUNCTION ${name} TO ${to};`);
  }
  const dependencies = await pool.any(readDependencies(written));
  if (dependencies.length > 0) statements.push('-- what the CHECK constraints and defaults of those tables call');
  for (const dep of dependencies) {
    statements.push(
      dep.kind === 'sequence'
        ? `GRANT USAGE ON SEQUENCE ${dep.name} TO ${to};`
        : `GRANT EXECUTE ON FUNCTION ${dep.name} TO ${to};`,
    );
  }

  const application = ['GRANT USAGE ON SCHEMA webhooks TO <app role>;'];
  application.push('GRANT INSERT ON TABLE webhooks.outbox TO <app role>;');
  application.push('GRANT SELECT (id) ON TABLE webhooks.outbox TO <app role>;  -- only for INSERT … RETURNING id');
  for (const dep of await pool.any(readDependencies(['outbox']))) {
    application.push(
      dep.kind === 'sequence'
        ? `GRANT USAGE ON SEQUENCE ${dep.name} TO <app role>;`
        : `GRANT EXECUTE ON FUNCTION ${dep.name} TO <app role>;`,
    );
  }
  for (const emit of await pool.any(readFunctions(['emit']))) {
    application.push(`GRANT EXECUTE ON FUNCTION ${emit.name} TO <app role>;  -- webhooks.emit(), the documented way`);
  }

  const missing = [...(catalog.canLogin ? [] : ['LOGIN']), ...(catalog.canReplicate ? [] : ['REPLICATION'])];
  return {
    role,
    quotedRole: to,
    attributes: 'LOGIN REPLICATION',
    missingAttributes: !catalog.roleExists ? null : catalog.isSuperuser ? [] : missing,
    statements,
    application,
  };
}

/** Role names GRANT would read as something else, or that Postgres reserves. */
const RESERVED = /^(public|none|current_user|current_role|session_user|pg_.*)$/i;

/** `outbox-relay grants --role NAME`: the least privileges of the role `run` uses. */
export async function main(args: string[]): Promise<number> {
  if (wantsHelp(args)) {
    printText([HELP]);
    return 0;
  }
  const { values } = parseCommand(args, { role: { type: 'string' }, json: { type: 'boolean' } }, USAGE);
  const role = values.role;
  if (role === undefined || role === '') throw usageError('--role: the name of the role "run" uses is required', USAGE);
  // A Postgres identifier: at most 63 bytes, no NUL; anything else is quoted by the server's quote_ident.
  if (Buffer.byteLength(role) > 63 || role.includes('\0') || RESERVED.test(role)) {
    throw usageError(`--role: "${role}" cannot be a role name (at most 63 bytes; not PUBLIC or pg_…)`, USAGE);
  }
  return withDatabase('grants', async (pool) => {
    const grants = await computeGrants(pool, role);
    if (grants === null) return fail('schema "webhooks" is missing or incomplete: run "outbox-relay migrate" first');
    if (values.json === true) {
      printJson(grants);
    } else {
      printText(render(grants));
    }
    if (grants.missingAttributes === null) {
      process.stderr.write(`outbox-relay: warning: role "${role}" does not exist yet; create it LOGIN REPLICATION\n`);
    } else if (grants.missingAttributes.length > 0) {
      process.stderr.write(`outbox-relay: warning: role "${role}" lacks ${grants.missingAttributes.join(' and ')}\n`);
    }
    return 0;
  });
}

/** SQL a psql session can run as is: the statements, and everything else as comments. */
function render(g: Grants): string[] {
  const role = g.quotedRole;
  const attributes =
    g.missingAttributes === null
      ? [`--   it does not exist yet: CREATE ROLE ${role} LOGIN REPLICATION PASSWORD '…';`]
      : g.missingAttributes.length > 0
        ? [`--   it lacks ${g.missingAttributes.join(' and ')}: ALTER ROLE ${role} ${g.missingAttributes.join(' ')};`]
        : [];
  return [
    `-- "outbox-relay run" as role ${role}, with MIGRATE_ON_START=false. The role needs LOGIN REPLICATION`,
    ...attributes,
    '-- and these privileges on the installed schema (migrate runs as the role that owns schema webhooks):',
    ...g.statements,
    '--',
    '-- An application role that writes events needs USAGE on the schema and EXECUTE on webhooks.emit() (it writes',
    '-- as its owner), or INSERT on webhooks.outbox for plain INSERTs (identity columns need no sequence grant):',
    ...g.application.map((s) => `--   ${s}`),
  ];
}
