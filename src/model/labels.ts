import type { Labels } from './types.ts';

/** Kubernetes equality-based selection: every key of `selector` has the same value in `labels`. An empty selector selects nothing (as for Services). */
export function selects(selector: Labels, labels: Labels): boolean {
  const keys = Object.keys(selector);
  if (keys.length === 0) return false;
  return keys.every((k) => labels[k] === selector[k]);
}
