// Role-based access control as the Kubernetes API evaluates it, over the Roles, ClusterRoles
// and their bindings the server holds: a request is allowed when some binding whose subject
// is the user grants a rule matching verb, API group, resource (and subresource) and name.
// Pure, tested with tables; the simulated API server enforces it, so a chart missing a
// permission fails in the simulator as it would on a cluster.

import type { ApiUser } from './tokens.ts';

export interface RbacRequest {
  readonly verb: string;
  readonly apiGroup: string;
  readonly resource: string;
  readonly subresource?: string | undefined;
  readonly namespace?: string | undefined;
  readonly name?: string | undefined;
}

interface Rule {
  readonly apiGroups?: readonly string[];
  readonly resources?: readonly string[];
  readonly verbs?: readonly string[];
  readonly resourceNames?: readonly string[];
}

type Obj = Record<string, unknown> & { metadata?: { name?: string; namespace?: string }; rules?: Rule[] };

export interface RbacObjects {
  readonly roles: readonly Obj[];
  readonly clusterRoles: readonly Obj[];
  readonly roleBindings: readonly Obj[];
  readonly clusterRoleBindings: readonly Obj[];
}

const has = (list: readonly string[] | undefined, v: string): boolean => list !== undefined && (list.includes('*') || list.includes(v));

function ruleAllows(rule: Rule, r: RbacRequest): boolean {
  const resource = r.subresource === undefined ? r.resource : `${r.resource}/${r.subresource}`;
  if (!has(rule.verbs, r.verb) || !has(rule.apiGroups, r.apiGroup)) return false;
  if (!has(rule.resources, resource)) return false;
  const names = rule.resourceNames ?? [];
  return names.length === 0 || (r.name !== undefined && names.includes(r.name));
}

function isSubject(binding: Obj, user: ApiUser): boolean {
  const subjects = Array.isArray(binding.subjects) ? binding.subjects as { kind?: string; name?: string; namespace?: string }[] : [];
  return subjects.some((s) => {
    if (s.kind === 'ServiceAccount') return user.username === `system:serviceaccount:${s.namespace ?? binding.metadata?.namespace}:${s.name}`;
    if (s.kind === 'User') return user.username === s.name;
    if (s.kind === 'Group') return s.name !== undefined && user.groups.includes(s.name);
    return false;
  });
}

function roleRef(binding: Obj): { kind: string; name: string } | undefined {
  const ref = binding.roleRef as { kind?: unknown; name?: unknown } | undefined;
  return typeof ref?.kind === 'string' && typeof ref.name === 'string' ? { kind: ref.kind, name: ref.name } : undefined;
}

export function rbacAllows(objects: RbacObjects, user: ApiUser, r: RbacRequest): boolean {
  if (user.groups.includes('system:masters')) return true;
  const clusterRole = (name: string) => objects.clusterRoles.find((c) => c.metadata?.name === name);
  for (const b of objects.clusterRoleBindings) {
    const ref = roleRef(b);
    if (ref?.kind !== 'ClusterRole' || !isSubject(b, user)) continue;
    if ((clusterRole(ref.name)?.rules ?? []).some((rule) => ruleAllows(rule, r))) return true;
  }
  if (r.namespace === undefined) return false;
  for (const b of objects.roleBindings) {
    if (b.metadata?.namespace !== r.namespace || !isSubject(b, user)) continue;
    const ref = roleRef(b);
    const role = ref?.kind === 'Role'
      ? objects.roles.find((x) => x.metadata?.namespace === r.namespace && x.metadata?.name === ref.name)
      : ref?.kind === 'ClusterRole' ? clusterRole(ref.name) : undefined;
    if ((role?.rules ?? []).some((rule) => ruleAllows(rule, r))) return true;
  }
  return false;
}
