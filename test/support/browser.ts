// Headless Debian Chromium for tests that look at a page as a person would, driven by
// playwright-core (which never downloads a browser of its own). A fresh profile per run;
// flags that work in this sandbox (no GPU, no QUIC, nothing phoning home).

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
/** Screenshots taken by tests: kept as artifacts, not committed (.gitignore). */
export const ARTIFACTS = join(import.meta.dirname, '..', 'artifacts');

const FLAGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync',
];

export interface Browser {
  readonly page: Page;
  /** Saves a full-page PNG under test/artifacts/<dir>/<name>.png; returns its path. */
  screenshot(dir: string, name: string): Promise<string>;
  close(): Promise<void>;
}

export async function openBrowser(): Promise<Browser> {
  const profile = mkdtempSync(join(tmpdir(), 'weft-chromium-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM, headless: true, args: FLAGS, viewport: { width: 1500, height: 1100 },
    });
  } catch (err: unknown) {
    rmSync(profile, { recursive: true, force: true });
    throw err;
  }
  const page = context.pages()[0] ?? await context.newPage();
  return {
    page,
    screenshot: async (dir, name) => {
      const out = join(ARTIFACTS, dir);
      mkdirSync(out, { recursive: true });
      const path = join(out, `${name}.png`);
      await page.screenshot({ path, fullPage: true });
      return path;
    },
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
