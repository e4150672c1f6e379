import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';

/** Debian's chromium package: Playwright's own browser download cannot work on these machines. */
export const CHROMIUM = '/usr/bin/chromium';

/**
 * Flags for a closed network: no first-run, sync, component updates or background fetches, each of which would
 * otherwise wait on a connection that never comes. A fresh profile per launch.
 */
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export type TestBrowser = { context: BrowserContext; close(): Promise<void> };

/** Launches Debian's Chromium; fails (never skips) with what to install when it is missing. */
export async function launchChromium(): Promise<TestBrowser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `Chromium is not installed at ${CHROMIUM}: the browser tests need Debian's package ` +
        '(apt-get install -y --no-install-recommends chromium; .ci/run installs it when missing)',
    );
  }
  const profile = await mkdtemp(join(tmpdir(), 'outbox-relay-chromium-'));
  // launchPersistentContext passes the profile as --user-data-dir (Playwright refuses it among args).
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    timeout: 30_000,
    viewport: { width: 1280, height: 800 },
  });
  context.setDefaultTimeout(10_000);
  context.setDefaultNavigationTimeout(10_000);
  return {
    context,
    close: async () => {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}
