// What one route decision costs (decideRoute over a compiled table), the work the HTTP layer
// adds per request for routing. Run: node test/unit/model/route-decision.bench.ts [requests]
// Prints nanoseconds per decision for: no route attached, a 16-rule HTTPRoute hit by its
// default (last-precedence) rule, an RE2 path match, a header+query match, and the compile
// time of the table.

import { decide, meshWith, parent, request, route } from './route-fixture.ts';

const n = Number(process.argv[2] ?? 200_000);
const be = (name: string, weight = 1) => ({ name, port: 80, weight });
const rules = [
  ...Array.from({ length: 12 }, (_, i) => ({ matches: [{ path: { type: 'PathPrefix', value: `/api/v${i}` } }], backendRefs: [be('echo-v1')] })),
  { matches: [{ path: { type: 'RegularExpression', value: '/users/[0-9]+/orders/[a-z0-9-]+' } }], backendRefs: [be('echo-v2')] },
  { matches: [{ headers: [{ name: 'x-canary', value: 'yes' }], queryParams: [{ name: 'pin', value: 'v2' }] }], backendRefs: [be('echo-v2')] },
  { matches: [{ path: { type: 'Exact', value: '/healthz' } }], backendRefs: [be('echo-v1')] },
  { backendRefs: [be('echo-v1', 80), be('echo-v2', 20)] },
];
const t0 = process.hrtime.bigint();
const state = meshWith([route('HTTPRoute', 'bench', { parentRefs: [parent('echo', { port: 80 })], rules })]);
const compileMs = Number(process.hrtime.bigint() - t0) / 1e6;
const none = meshWith([]);

function time(label: string, run: () => unknown): void {
  for (let i = 0; i < 10_000; i++) run();
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) run();
  const ns = Number(process.hrtime.bigint() - start) / n;
  process.stdout.write(`${label.padEnd(44)} ${ns.toFixed(0).padStart(6)} ns/decision\n`);
}

const headers = { 'user-agent': 'curl/8', accept: '*/*', 'x-request-id': 'abc' };
time('no route attached', () => decide(none, 'echo', request('/anything', { headers })));
time('16 rules, default rule (checked last)', () => decide(state, 'echo', request('/checkout/cart?item=1', { headers })));
time('16 rules, RE2 path match', () => decide(state, 'echo', request('/users/42/orders/ab-12', { headers })));
time('16 rules, header + query match', () => decide(state, 'echo', request('/?pin=v2', { headers: { ...headers, 'x-canary': 'yes' } })));
time('16 rules, prefix match', () => decide(state, 'echo', request('/api/v7/items', { headers })));
process.stdout.write(`compile (parse + build state + route table)   ${compileMs.toFixed(1)} ms\n`);
