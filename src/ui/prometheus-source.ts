// Traffic rates from a Prometheus that scrapes the mesh (`weft control --prometheus URL`),
// with the queries Istio's dashboards use: `sum by (...) (rate(metric[1m]))`. When Prometheus
// does not answer, the agents are read directly and the page says why.

import { FAMILIES, type CounterFamily, type MeshRates, type Rate } from './mesh-rates.ts';
import type { Sample } from './samples.ts';

export interface PrometheusSourceOptions {
  /** e.g. http://127.0.0.1:9090 */
  readonly url: string;
  readonly timeoutMs?: number;
  /** Asked when Prometheus fails. */
  readonly fallback: { rates(): Promise<MeshRates> };
  readonly now?: () => number;
  readonly fetch?: typeof fetch;
}

export const WINDOW = '1m';

/**
 * The PromQL of each family, one query per metric name (rate() drops the name, so two names
 * in one query would collide); their results are concatenated, as the agents' are summed.
 */
export function familyQueries(): Record<CounterFamily, string[]> {
  const q = {} as Record<CounterFamily, string[]>;
  for (const [family, spec] of Object.entries(FAMILIES) as [CounterFamily, { names: readonly string[]; by: readonly string[]; only?: Readonly<Record<string, string>> }][]) {
    const only = Object.entries(spec.only ?? {}).map(([k, v]) => `${k}="${v}"`).join(',');
    q[family] = spec.names.map((name) => `sum by (${spec.by.join(', ')}) (rate(${name}{${only}}[${family === 'certificateFailures' ? '5m' : WINDOW}]))`);
  }
  return q;
}

interface VectorResult {
  readonly metric: Record<string, string>;
  readonly value: [number, string];
}

export class PrometheusSource {
  readonly #o: PrometheusSourceOptions;
  readonly #fetch: typeof fetch;

  constructor(options: PrometheusSourceOptions) {
    this.#o = options;
    this.#fetch = options.fetch ?? fetch;
  }

  async rates(): Promise<MeshRates> {
    try {
      return await this.#query();
    } catch (err: unknown) {
      const rates = await this.#o.fallback.rates();
      return { ...rates, note: `Prometheus at ${this.#o.url} did not answer (${err instanceof Error ? err.message : String(err)}); showing what the agents report directly` };
    }
  }

  async #query(): Promise<MeshRates> {
    const queries = familyQueries();
    const families = Object.keys(queries) as CounterFamily[];
    const [results, expiry, connected, down] = await Promise.all([
      Promise.all(families.map(async (f) => (await Promise.all(queries[f].map((q) => this.#vector(q)))).flat())),
      this.#vector('weft_agent_certificate_expiry_timestamp_seconds'),
      this.#vector('weft_agent_control_connected'),
      this.#vector('up{job="weft-agent"} == 0'),
    ]);
    const lists = {} as Record<CounterFamily, Rate[]>;
    families.forEach((f, i) => {
      lists[f] = (results[i] ?? []).map((r) => ({ labels: r.metric, rate: Number(r.value[1]) }));
    });
    const asSamples = (v: readonly VectorResult[], name: string): Sample[] => v.map((r) => ({ name, labels: r.metric, value: Number(r.value[1]) }));
    return {
      at: (this.#o.now ?? Date.now)(), windowSeconds: 60, source: 'prometheus', ...lists,
      certificateExpiry: asSamples(expiry, 'weft_agent_certificate_expiry_timestamp_seconds'),
      controlConnected: asSamples(connected, 'weft_agent_control_connected'),
      unreachable: down.map((r) => ({ instance: r.metric.instance ?? '?', error: 'Prometheus cannot scrape it (up == 0)' })),
    };
  }

  async #vector(query: string): Promise<VectorResult[]> {
    const url = `${this.#o.url.replace(/\/$/, '')}/api/v1/query?query=${encodeURIComponent(query)}`;
    const res = await this.#fetch(url, { signal: AbortSignal.timeout(this.#o.timeoutMs ?? 5000) });
    const body = await res.json() as { status?: string; error?: string; data?: { resultType?: string; result?: VectorResult[] } };
    if (!res.ok || body.status !== 'success') throw new Error(`query ${query} failed: ${body.error ?? `HTTP ${res.status}`}`);
    if (body.data?.resultType !== 'vector') throw new Error(`query ${query} did not return a vector`);
    return body.data.result ?? [];
  }
}
