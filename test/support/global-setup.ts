import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { migrate } from '../../src/db/migrate.ts';
import { createLogger } from '../../src/log.ts';
import { startCluster } from './cluster.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    pgAdminUrl: string;
    pgTemplate: string;
  }
}

export const TEMPLATE = 'outbox_relay_template';

/** One Postgres for the run; a migrated template database each test file clones (fast, isolated). */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const cluster = await startCluster();
  const admin = new pg.Client({ connectionString: cluster.adminUrl });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${TEMPLATE} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${TEMPLATE}`);
  await admin.end();
  const templateUrl = new URL(cluster.adminUrl);
  templateUrl.pathname = `/${TEMPLATE}`;
  // Schema and publication only: slots are cluster-wide, so each clone creates its own.
  await migrate({
    databaseUrl: templateUrl.toString(),
    slotName: 'unused',
    publicationName: 'outbox_relay',
    log: createLogger('warn'),
    createSlot: false,
  });
  project.provide('pgAdminUrl', cluster.adminUrl);
  project.provide('pgTemplate', TEMPLATE);
  return () => cluster.stop();
}
