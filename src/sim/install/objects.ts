// What `weft sim up --install PATH` installs: the rendered objects (deploy/weft.yaml, or a
// directory of them), split into what the simulated API server stores and the workloads the
// simulator runs as pods (each Deployment and DaemonSet), with the overrides a user asked for
// applied as named patches to the pod templates (as `kubectl patch` would), so the objects in
// the API say exactly what runs. Pure: tested with tables.

import { WeftError } from '../../core/errors.ts';
import { splitManifests, formatProblem, type ManifestFile } from '../../model/manifests.ts';
import { SimErrors } from '../errors.ts';

export type Body = Record<string, unknown>;

export interface InstallWorkload {
  readonly kind: 'Deployment' | 'DaemonSet';
  readonly name: string;
  readonly namespace: string;
  /** Deployment replicas (1 when unset); undefined for a DaemonSet. */
  readonly replicas: number | undefined;
  /** spec.template, after the patches. */
  readonly template: Body;
  /** `control` or `agent`: the weft subcommand its first container runs (args[0]), else the workload's name. */
  readonly role: string;
}

export interface InstallSet {
  /** Every object, patched, CustomResourceDefinitions first (the API serves a kind once its CRD exists). */
  readonly objects: readonly Body[];
  readonly workloads: readonly InstallWorkload[];
  /** One line per patch applied, for the person running `sim up`. */
  readonly patches: readonly string[];
}

export interface InstallOverrides {
  /** `--mesh MODE`: replaces the agent's `--mode` value. */
  readonly agentMode?: string | undefined;
  /** `--agent-args`: appended to the agent container's args (a repeated flag's last value wins). */
  readonly agentArgs?: readonly string[];
  /** `--control-args`: appended to the control-plane container's args. */
  readonly controlArgs?: readonly string[];
  /** Appended to the control-plane container's args by the simulator itself (its add-ons), e.g. `--prometheus URL`. */
  readonly controlAddonArgs?: readonly string[];
}

const isRecord = (v: unknown): v is Body => typeof v === 'object' && v !== null && !Array.isArray(v);

function metadataOf(o: Body): { name: string; namespace: string | undefined } {
  const md = isRecord(o.metadata) ? o.metadata : {};
  return { name: typeof md.name === 'string' ? md.name : '', namespace: typeof md.namespace === 'string' ? md.namespace : undefined };
}

function firstContainer(template: Body): Body | undefined {
  const spec = isRecord(template.spec) ? template.spec : {};
  const containers = Array.isArray(spec.containers) ? spec.containers : [];
  return isRecord(containers[0]) ? containers[0] : undefined;
}

/** The weft subcommand a pod template runs: its first container's args[0] when that is `control` or `agent`. */
export function roleOf(template: Body, fallback: string): string {
  const args: unknown = firstContainer(template)?.args;
  const first: unknown = Array.isArray(args) ? (args as unknown[])[0] : undefined;
  return first === 'control' || first === 'agent' ? first : fallback;
}

/** A copy of `template` with its first container's args rewritten by `edit`. */
function withArgs(template: Body, edit: (args: string[]) => string[]): Body {
  const spec = isRecord(template.spec) ? template.spec : {};
  const containers: unknown[] = Array.isArray(spec.containers) ? [...(spec.containers as unknown[])] : [];
  const c = isRecord(containers[0]) ? containers[0] : {};
  const args = Array.isArray(c.args) ? c.args.map(String) : [];
  containers[0] = { ...c, args: edit(args) };
  return { ...template, spec: { ...spec, containers } };
}

/** Replaces the value of `flag` (the next arg, or `flag=value`), or appends the pair when absent. */
export function setFlag(args: readonly string[], flag: string, value: string): string[] {
  const out = [...args];
  for (let i = 0; i < out.length; i++) {
    if (out[i] === flag && i + 1 < out.length) {
      out[i + 1] = value;
      return out;
    }
    if (out[i]?.startsWith(`${flag}=`) === true) {
      out[i] = `${flag}=${value}`;
      return out;
    }
  }
  return [...out, flag, value];
}

function patchTemplate(role: string, template: Body, o: InstallOverrides, notes: string[], where: string): Body {
  let t = template;
  if (role === 'agent') {
    if (o.agentMode !== undefined) {
      t = withArgs(t, (a) => setFlag(a, '--mode', o.agentMode ?? ''));
      notes.push(`${where}: --mode ${o.agentMode} (sim up --mesh)`);
    }
    if ((o.agentArgs ?? []).length > 0) {
      t = withArgs(t, (a) => [...a, ...(o.agentArgs ?? [])]);
      notes.push(`${where}: args += ${(o.agentArgs ?? []).join(' ')} (sim up --agent-args)`);
    }
  }
  if (role === 'control') {
    if ((o.controlArgs ?? []).length > 0) {
      t = withArgs(t, (a) => [...a, ...(o.controlArgs ?? [])]);
      notes.push(`${where}: args += ${(o.controlArgs ?? []).join(' ')} (sim up --control-args)`);
    }
    if ((o.controlAddonArgs ?? []).length > 0) {
      t = withArgs(t, (a) => [...a, ...(o.controlAddonArgs ?? [])]);
      notes.push(`${where}: args += ${(o.controlAddonArgs ?? []).join(' ')} (a sim up add-on)`);
    }
  }
  return t;
}

/** Reads the rendered install: every object, the workloads to run, the patches made. */
export function installSet(files: readonly ManifestFile[], overrides: InstallOverrides = {}): InstallSet {
  const split = splitManifests(files);
  if (split.problems.length > 0) {
    throw new WeftError(SimErrors.BAD_MANIFEST, `the install manifests have ${split.problems.length} problem(s):\n${split.problems.slice(0, 20).map((p) => `  ${formatProblem(p)}`).join('\n')}`);
  }
  const objects: Body[] = [];
  const workloads: InstallWorkload[] = [];
  const patches: string[] = [];
  for (const raw of split.objects) {
    let body = raw.body;
    const { name, namespace } = metadataOf(body);
    if (raw.kind === 'Deployment' || raw.kind === 'DaemonSet') {
      const spec = isRecord(body.spec) ? body.spec : {};
      const template = isRecord(spec.template) ? spec.template : undefined;
      const where = `${raw.kind}/${namespace ?? 'default'}/${name}`;
      if (template === undefined || firstContainer(template) === undefined) {
        throw new WeftError(SimErrors.BAD_MANIFEST, `${raw.source.file}: ${where}: spec.template.spec.containers is empty: nothing to run`);
      }
      const role = roleOf(template, name);
      const patched = patchTemplate(role, template, overrides, patches, where);
      body = { ...body, spec: { ...spec, template: patched } };
      const replicas = raw.kind === 'Deployment' ? (typeof spec.replicas === 'number' ? spec.replicas : 1) : undefined;
      if (replicas !== undefined && (!Number.isInteger(replicas) || replicas < 0 || replicas > 5)) {
        throw new WeftError(SimErrors.BAD_MANIFEST, `${raw.source.file}: ${where}: spec.replicas ${JSON.stringify(spec.replicas)}: the simulator runs 0 to 5 replicas`);
      }
      workloads.push(Object.freeze({ kind: raw.kind, name, namespace: namespace ?? 'default', replicas, template: patched, role }));
    }
    objects.push(body);
  }
  if (!workloads.some((w) => w.role === 'control') || !workloads.some((w) => w.role === 'agent')) {
    throw new WeftError(SimErrors.BAD_MANIFEST, `the install manifests (${files.map((f) => f.path).join(', ')}) must hold a workload running \`weft control\` and one running \`weft agent\` (found: ${workloads.map((w) => `${w.kind}/${w.name} (${w.role})`).join(', ') || 'no Deployment or DaemonSet'})`);
  }
  const crdsFirst = [...objects].sort((a, b) => Number(b.kind === 'CustomResourceDefinition') - Number(a.kind === 'CustomResourceDefinition'));
  return Object.freeze({ objects: Object.freeze(crdsFirst), workloads: Object.freeze(workloads), patches: Object.freeze(patches) });
}
