// Both phases in one call, for the control plane: validate raw objects aside, then build
// the state once. Pass the previous result's objects so an object that turned invalid
// keeps its last good version instead of vanishing.

import type { MeshObjects, RawObject } from './types.ts';
import { parseObjects, type ManifestProblem, type ParsedManifests } from './manifests.ts';
import { buildMeshState, type MeshState } from './state.ts';

export interface LoadOptions {
  readonly trustDomain?: string;
  readonly previous?: MeshObjects;
}

export interface LoadResult {
  readonly objects: ParsedManifests;
  readonly state: MeshState;
  readonly problems: readonly ManifestProblem[];
}

export function loadMesh(raw: readonly RawObject[], options: LoadOptions = {}): LoadResult {
  const objects = parseObjects(raw, options.previous === undefined ? {} : { previous: options.previous });
  const state = buildMeshState(objects, options.trustDomain === undefined ? {} : { trustDomain: options.trustDomain });
  return { objects, state, problems: objects.problems };
}
