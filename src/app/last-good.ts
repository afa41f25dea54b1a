// The agent's last good config on disk: every config it accepts, with its certificates and
// trust bundle, in its state directory (mode 0600: it holds private keys). An agent that
// starts while the control plane is unreachable serves from it until its certificates
// expire, and says so (readiness, weft_agent_config_source).

import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { Gauge, type Registry } from 'prom-client';
import { describeError, WeftError } from '../core/errors.ts';
import type { CredentialMaterial } from './credentials.ts';
import type { NodeConfig } from './mesh-feed.ts';

export const LAST_GOOD_FILE = 'last-good-config.json';
const FORMAT = 1;

export interface SavedConfig {
  readonly config: NodeConfig;
  readonly certificates: readonly CredentialMaterial[];
  /** Epoch ms. */
  readonly savedAt: number;
}

/** A bad file: named, never thrown at the agent (it starts without a saved config instead). */
export const LAST_GOOD_INVALID = 'WEFT_AGENT_LAST_GOOD_INVALID';

function invalid(path: string, why: string): never {
  throw new WeftError(LAST_GOOD_INVALID, `${path}: ${why}`);
}

/** Checks what a file holds; throws LAST_GOOD_INVALID naming the first thing wrong. */
export function parseSaved(text: string, path: string): SavedConfig {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err: unknown) {
    invalid(path, `not JSON (${describeError(err)})`);
  }
  const d = doc as { format?: unknown; savedAt?: unknown; config?: Partial<NodeConfig>; certificates?: unknown };
  if (typeof d !== 'object' || d === null || d.format !== FORMAT) invalid(path, `format must be ${FORMAT}`);
  if (typeof d.savedAt !== 'number') invalid(path, 'savedAt must be a number');
  const c = d.config;
  if (typeof c !== 'object' || c === null || typeof c.version !== 'string' || typeof c.trustBundlePem !== 'string'
    || (c.crlPem !== undefined && typeof c.crlPem !== 'string') || typeof c.content !== 'object' || c.content === null
    || !Array.isArray(c.content.workloads) || typeof c.content.trustDomain !== 'string') {
    invalid(path, 'config must hold version, trustBundlePem, content {trustDomain, workloads, ...}');
  }
  if (!Array.isArray(d.certificates) || !d.certificates.every((x: unknown) => {
    const m = x as Partial<CredentialMaterial> | null;
    return m !== null && typeof m === 'object' && typeof m.identity === 'string' && typeof m.keyPem === 'string' && typeof m.certPem === 'string' && Array.isArray(m.chainPem);
  })) invalid(path, 'certificates must be a list of {identity, keyPem, certPem, chainPem}');
  return { config: c as NodeConfig, certificates: d.certificates as CredentialMaterial[], savedAt: d.savedAt };
}

export class LastGoodConfig {
  readonly path: string;
  readonly #logger: Logger;
  #pending: SavedConfig | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(stateDir: string, logger: Logger) {
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    this.path = join(stateDir, LAST_GOOD_FILE);
    this.#logger = logger;
  }

  /** The saved config, or undefined (none, or unusable: logged with its reason). */
  load(): SavedConfig | undefined {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch {
      return undefined;
    }
    try {
      return parseSaved(text, this.path);
    } catch (err: unknown) {
      this.#logger.warn({ err: describeError(err) }, 'the last good config on disk is unusable; starting without it');
      return undefined;
    }
  }

  /**
   * Saves (coalesced: bursts of changes cost one write per 200 ms). Written beside and
   * renamed, so a crash leaves the previous file whole.
   */
  save(config: NodeConfig, certificates: readonly CredentialMaterial[], now = Date.now()): void {
    this.#pending = { config, certificates, savedAt: now };
    this.#timer ??= setTimeout(() => this.flush(), 200);
    this.#timer.unref();
  }

  /** Writes what is pending now (also on shutdown). */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const s = this.#pending;
    this.#pending = undefined;
    if (s === undefined) return;
    const tmp = `${this.path}.tmp`;
    try {
      writeFileSync(tmp, JSON.stringify({ format: FORMAT, savedAt: s.savedAt, config: s.config, certificates: s.certificates }), { mode: 0o600 });
      chmodSync(tmp, 0o600); // an existing tmp file keeps its mode on write
      renameSync(tmp, this.path);
    } catch (err: unknown) {
      this.#logger.error({ err: describeError(err), path: this.path }, 'cannot save the last good config; a restart without the control plane would start empty');
    }
  }
}

const SOURCES = ['control', 'manifests', 'disk'] as const;

/** weft_agent_config_source{source}: 1 for where the config being served came from. */
export class ConfigSourceMetric {
  readonly #gauge: Gauge<'source'>;

  constructor(registry: Registry) {
    this.#gauge = new Gauge({
      name: 'weft_agent_config_source', labelNames: ['source'], registers: [registry],
      help: 'Where the config this agent serves came from: control (the control plane), manifests (standalone), disk (the last good config, saved before a restart, while the control plane has not answered)',
    });
  }

  set(source: (typeof SOURCES)[number]): void {
    for (const s of SOURCES) this.#gauge.set({ source: s }, s === source ? 1 : 0);
  }
}
