// Traffic rates read from the agents themselves (the embedded default: the control plane
// knows every node's address). Each refresh scrapes every agent's /metrics at once, with a
// timeout, and rates are the difference from the previous scrape; a refresh within
// `minIntervalMs` of the last answers from it, so many viewers cost one scrape.

import { groupScrape, ratesBetween, type GroupedScrape, type MeshRates } from './mesh-rates.ts';
import { parseSamples } from './samples.ts';
import { FAMILIES } from './mesh-rates.ts';

export interface ScrapeTarget {
  /** The node name; the `instance` label of what it reports. */
  readonly instance: string;
  readonly url: string;
}

export interface AgentSourceOptions {
  readonly targets: () => readonly ScrapeTarget[];
  /** Per scrape. Default 2 s. */
  readonly timeoutMs?: number;
  /** Default 2 s. */
  readonly minIntervalMs?: number;
  readonly now?: () => number;
  /** Default: global fetch. */
  readonly fetch?: typeof fetch;
}

const WANTED = new Set<string>([
  ...Object.values(FAMILIES).flatMap((f) => f.names),
  'weft_agent_certificate_expiry_timestamp_seconds', 'weft_agent_control_connected',
]);

export class AgentSource {
  readonly #o: AgentSourceOptions;
  readonly #now: () => number;
  readonly #fetch: typeof fetch;
  #previous = new Map<string, GroupedScrape>();
  #last: { at: number; rates: MeshRates } | undefined;
  #inFlight: Promise<MeshRates> | undefined;

  constructor(options: AgentSourceOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
    this.#fetch = options.fetch ?? fetch;
  }

  rates(): Promise<MeshRates> {
    const last = this.#last;
    if (last !== undefined && this.#now() - last.at < (this.#o.minIntervalMs ?? 2000)) return Promise.resolve(last.rates);
    this.#inFlight ??= this.#refresh().finally(() => { this.#inFlight = undefined; });
    return this.#inFlight;
  }

  async #refresh(): Promise<MeshRates> {
    // A first look has nothing to take a difference from: take a second scrape a second later.
    if (this.#previous.size === 0) {
      this.#previous = (await this.#scrapeAll()).scrapes;
      await new Promise((resolve) => setTimeout(resolve, 1000).unref());
    }
    const { scrapes, unreachable } = await this.#scrapeAll();
    const at = this.#now();
    const rates = ratesBetween(this.#previous, scrapes, unreachable, at);
    // An agent that did not answer keeps its older scrape as the base for next time.
    this.#previous = new Map([...this.#previous, ...scrapes]);
    this.#last = { at, rates };
    return rates;
  }

  async #scrapeAll(): Promise<{ scrapes: Map<string, GroupedScrape>; unreachable: { instance: string; error: string }[] }> {
    const targets = this.#o.targets();
    const scrapes = new Map<string, GroupedScrape>();
    const unreachable: { instance: string; error: string }[] = [];
    await Promise.all(targets.map(async (t) => {
      try {
        const res = await this.#fetch(t.url, { signal: AbortSignal.timeout(this.#o.timeoutMs ?? 2000) });
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        const text = await res.text();
        scrapes.set(t.instance, groupScrape(parseSamples(text, (n) => WANTED.has(n)), t.instance, this.#now()));
      } catch (err: unknown) {
        unreachable.push({ instance: t.instance, error: `${t.url}: ${err instanceof Error ? err.message : String(err)}` });
      }
    }));
    return { scrapes, unreachable };
  }
}
