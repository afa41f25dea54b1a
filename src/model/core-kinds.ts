// Field checks and conversion for the Kubernetes kinds weft reads: Namespace, Node, Pod,
// Service, EndpointSlice, ServiceAccount. Each parser throws FieldError at the first bad field.

import { isIPv4, isIPv6 } from 'node:net';
import type {
  EndpointSliceEndpoint, EndpointSliceObject, EndpointSlicePort, NamespaceObject, NodeObject, PodObject, ServiceAccountObject,
  ServiceObject, ServicePort,
} from './types.ts';
import { SERVICE_NAME_LABEL } from './types.ts';
import { DNS_LABEL, DNS_SUBDOMAIN, FieldError, ipv4, isRecord, labels, list, metadata, port, record, show, str } from './fields.ts';

export function parseNamespace(body: Record<string, unknown>): NamespaceObject {
  const md = metadata(body, false);
  return Object.freeze({ name: md.name, labels: md.labels });
}

export function parseServiceAccount(body: Record<string, unknown>): ServiceAccountObject {
  const md = metadata(body, true);
  return Object.freeze({ name: md.name, namespace: md.namespace });
}

// Kubernetes' IANA_SVC_NAME: 1-15 lower-case letters, digits and '-', at least one letter,
// no '-' at either end or twice in a row.
const PORT_NAME = /^(?=.{1,15}$)(?=[a-z0-9-]*[a-z])[a-z0-9]+(-[a-z0-9]+)*$/;

// The API server makes UUIDs; anything else must still be safe inside a cgroup name.
const POD_UID = /^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/;

export function parsePod(body: Record<string, unknown>): PodObject {
  const md = metadata(body, true);
  const spec = record(body.spec, 'spec', true);
  const status = record(body.status, 'status', true);
  const serviceAccount = spec.serviceAccountName === undefined
    ? 'default'
    : str(spec.serviceAccountName, 'spec.serviceAccountName', DNS_SUBDOMAIN, 'a DNS name');
  const nodeName = spec.nodeName === undefined ? undefined : str(spec.nodeName, 'spec.nodeName', DNS_SUBDOMAIN, 'a DNS name');
  const { ip, ipv6 } = podAddresses(status);
  const phase = status.phase === undefined ? undefined : str(status.phase, 'status.phase');
  if (spec.hostNetwork !== undefined && typeof spec.hostNetwork !== 'boolean') {
    throw new FieldError('spec.hostNetwork', `must be true or false, got ${show(spec.hostNetwork)}`);
  }
  const rawUid = record(body.metadata, 'metadata').uid;
  const uid = rawUid === undefined ? undefined : str(rawUid, 'metadata.uid', POD_UID, 'a UID (letters, digits and -)');
  const containerPorts: number[] = [];
  const namedPorts: Record<string, number> = {};
  list(spec.containers, 'spec.containers', true).forEach((c: unknown, i) => {
    const cr = record(c, `spec.containers[${i}]`);
    list(cr.ports, `spec.containers[${i}].ports`, true).forEach((p: unknown, j) => {
      const f = `spec.containers[${i}].ports[${j}]`;
      const pr = record(p, f);
      const number = port(pr.containerPort, `${f}.containerPort`);
      containerPorts.push(number);
      if (pr.name === undefined || pr.name === null) return;
      const portName = str(pr.name, `${f}.name`, PORT_NAME, 'a port name (up to 15 lower-case letters, digits and -, with a letter)');
      if (namedPorts[portName] !== undefined) throw new FieldError(`${f}.name`, `duplicates port name ${JSON.stringify(portName)} (already port ${namedPorts[portName]})`);
      namedPorts[portName] = number;
    });
  });
  return Object.freeze({
    name: md.name, namespace: md.namespace, labels: md.labels, serviceAccount, nodeName, ip,
    ...(ipv6.length === 0 ? {} : { ipv6: Object.freeze(ipv6) }),
    containerPorts: Object.freeze(containerPorts), ...(Object.keys(namedPorts).length === 0 ? {} : { namedPorts: Object.freeze(namedPorts) }), phase, hostNetwork: spec.hostNetwork === true, ...(uid === undefined ? {} : { uid }),
  });
}

/**
 * status.podIP and status.podIPs: the IPv4 address the mesh uses, and any IPv6 ones. The
 * data path is IPv4 only; IPv6 addresses are kept so the agent can refuse such a pod loudly
 * rather than capture half of its traffic.
 */
function podAddresses(status: Record<string, unknown>): { ip: string | undefined; ipv6: string[] } {
  const all: [string, string][] = [];
  if (status.podIP !== undefined) all.push([str(status.podIP, 'status.podIP'), 'status.podIP']);
  list(status.podIPs, 'status.podIPs', true).forEach((entry, i) => {
    all.push([str(record(entry, `status.podIPs[${i}]`).ip, `status.podIPs[${i}].ip`), `status.podIPs[${i}].ip`]);
  });
  for (const [address, field] of all) {
    if (!isIPv4(address) && !isIPv6(address)) throw new FieldError(field, `must be an IPv4 or IPv6 address, got ${JSON.stringify(address)}`);
  }
  const ip = all.find(([a]) => isIPv4(a))?.[0];
  return { ip, ipv6: [...new Set(all.map(([a]) => a).filter((a) => isIPv6(a)))] };
}

/** Why an address cannot be a service VIP (unspecified, loopback, link-local, multicast, reserved, broadcast). */
export function vipProblem(ip: string): string | undefined {
  const [a = 0, b = 0] = ip.split('.').map(Number);
  if (a === 0) return 'it is in 0.0.0.0/8 (this network)';
  if (a === 127) return 'it is a loopback address';
  if (a === 169 && b === 254) return 'it is a link-local address';
  if (a >= 224 && a <= 239) return 'it is a multicast address';
  if (a >= 240) return 'it is reserved or broadcast';
  return undefined;
}

/** Why an address cannot be a node's (unspecified, multicast, reserved, broadcast); loopback is allowed for local test beds. */
export function nodeAddressProblem(ip: string): string | undefined {
  const [a = 0] = ip.split('.').map(Number);
  if (a === 0) return 'it is in 0.0.0.0/8 (this network)';
  if (a >= 224 && a <= 239) return 'it is a multicast address';
  if (a >= 240) return 'it is reserved or broadcast';
  return undefined;
}

// Other agents dial this address on 15008. InternalIP first, as kube-proxy and most CNIs
// do; IPv6 entries are skipped (the data path is IPv4 only).
const NODE_ADDRESS_TYPES = ['InternalIP', 'ExternalIP'] as const;

export function parseNode(body: Record<string, unknown>): NodeObject {
  const md = metadata(body, false);
  const status = record(body.status, 'status', true);
  const entries = list(status.addresses, 'status.addresses', true).map((a: unknown, i) => {
    const f = `status.addresses[${i}]`;
    const r = record(a, f);
    return { type: str(r.type, `${f}.type`), address: str(r.address, `${f}.address`) };
  });
  for (const type of NODE_ADDRESS_TYPES) {
    const found = entries.find((e) => e.type === type && isIPv4(e.address) && nodeAddressProblem(e.address) === undefined);
    if (found !== undefined) return Object.freeze({ name: md.name, labels: md.labels, address: found.address });
  }
  const seen = entries.length === 0 ? 'none' : entries.map((e) => `${e.type} ${e.address}`).join(', ');
  throw new FieldError('status.addresses', `has no usable IPv4 InternalIP or ExternalIP (got: ${seen}), so other nodes' agents cannot reach this node`);
}

// Kubernetes checks appProtocol as a qualified name: an optional DNS-subdomain prefix and `/`,
// then up to 63 letters, digits, '-', '_', '.'.
const APP_PROTOCOL = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;

export function parseService(body: Record<string, unknown>): ServiceObject {
  const md = metadata(body, true);
  const spec = record(body.spec, 'spec');
  if (spec.clusterIP === 'None') {
    throw new FieldError('spec.clusterIP', 'headless Services (clusterIP None) have no virtual IP; clients reach their pods by pod IP, which needs no Service');
  }
  const vip = ipv4(spec.clusterIP, 'spec.clusterIP');
  const bad = vipProblem(vip);
  if (bad !== undefined) throw new FieldError('spec.clusterIP', `${JSON.stringify(vip)} cannot be a cluster IP: ${bad}`);
  if (!Array.isArray(spec.ports) || spec.ports.length === 0) throw new FieldError('spec.ports', 'must be a non-empty list');
  const seen = new Set<number>();
  const ports: ServicePort[] = spec.ports.map((p: unknown, i): ServicePort => {
    const f = `spec.ports[${i}]`;
    const pr = record(p, f);
    const number = port(pr.port, `${f}.port`);
    if (seen.has(number)) throw new FieldError(`${f}.port`, `duplicates port ${number}`);
    seen.add(number);
    // A named target port is resolved per selected pod (resolve.ts), and checked by vet (crosscheck.ts).
    const targetPort = pr.targetPort === undefined
      ? number
      : typeof pr.targetPort === 'string'
        ? str(pr.targetPort, `${f}.targetPort`, PORT_NAME, 'a port number 1-65535 or a container port name (up to 15 lower-case letters, digits and -, with a letter)')
        : port(pr.targetPort, `${f}.targetPort`);
    if (pr.protocol !== undefined && pr.protocol !== 'TCP') {
      throw new FieldError(`${f}.protocol`, `only TCP is supported, got ${JSON.stringify(pr.protocol)}`);
    }
    const name = pr.name === undefined ? undefined : str(pr.name, `${f}.name`, DNS_LABEL, 'a DNS label');
    const appProtocol = pr.appProtocol === undefined || pr.appProtocol === null
      ? undefined
      : str(pr.appProtocol, `${f}.appProtocol`, APP_PROTOCOL, 'a protocol name such as http, grpc or kubernetes.io/h2c (an optionally domain-prefixed name)');
    return Object.freeze({ name, port: number, targetPort, protocol: 'TCP', ...(appProtocol === undefined ? {} : { appProtocol }) });
  });
  return Object.freeze({
    name: md.name, namespace: md.namespace, vip, ports: Object.freeze(ports),
    selector: labels(spec.selector, 'spec.selector'),
  });
}

function sliceEndpoint(v: unknown, f: string, namespace: string): EndpointSliceEndpoint {
  const e = record(v, f);
  const addresses = list(e.addresses, `${f}.addresses`);
  if (addresses.length === 0) throw new FieldError(`${f}.addresses`, 'must list at least one address');
  const ips = addresses.map((a, k) => ipv4(a, `${f}.addresses[${k}]`));
  const conditions = record(e.conditions, `${f}.conditions`, true);
  if (conditions.ready !== undefined && conditions.ready !== null && typeof conditions.ready !== 'boolean') {
    throw new FieldError(`${f}.conditions.ready`, `must be true or false, got ${show(conditions.ready)}`);
  }
  const nodeName = e.nodeName === undefined || e.nodeName === null ? undefined : str(e.nodeName, `${f}.nodeName`, DNS_SUBDOMAIN, 'a DNS name');
  let podName: string | undefined;
  if (isRecord(e.targetRef) && e.targetRef.kind === 'Pod') {
    const ns = e.targetRef.namespace;
    if (ns !== undefined && ns !== namespace) {
      throw new FieldError(`${f}.targetRef.namespace`, `must be the slice's namespace ${JSON.stringify(namespace)}, got ${show(ns)}`);
    }
    podName = str(e.targetRef.name, `${f}.targetRef.name`, DNS_SUBDOMAIN, 'a DNS name');
  }
  return Object.freeze({ addresses: Object.freeze(ips), ready: conditions.ready !== false, nodeName, podName });
}

export function parseEndpointSlice(body: Record<string, unknown>): EndpointSliceObject {
  const md = metadata(body, true);
  const serviceName = md.labels[SERVICE_NAME_LABEL];
  if (serviceName === undefined) {
    throw new FieldError(`metadata.labels.${SERVICE_NAME_LABEL}`, 'is required: it names the Service this slice belongs to');
  }
  const addressType = str(body.addressType, 'addressType');
  if (!['IPv4', 'IPv6', 'FQDN'].includes(addressType)) {
    throw new FieldError('addressType', `must be IPv4, IPv6 or FQDN, got ${JSON.stringify(addressType)}`);
  }
  const ports: EndpointSlicePort[] = [];
  list(body.ports, 'ports', true).forEach((p: unknown, i) => {
    const pr = record(p, `ports[${i}]`);
    // UDP and SCTP ports (e.g. DNS) are not meshed: skipped, not refused.
    if (pr.protocol !== undefined && pr.protocol !== null && pr.protocol !== 'TCP') return;
    const name = pr.name === undefined || pr.name === null || pr.name === '' ? undefined : str(pr.name, `ports[${i}].name`, DNS_LABEL, 'a DNS label');
    ports.push(Object.freeze({ name, port: port(pr.port, `ports[${i}].port`) }));
  });
  // A dual-stack cluster also has IPv6 slices; they are valid but carry nothing weft uses.
  const endpoints = addressType !== 'IPv4'
    ? []
    : list(body.endpoints, 'endpoints', true).map((e, i) => sliceEndpoint(e, `endpoints[${i}]`, md.namespace));
  return Object.freeze({
    name: md.name, namespace: md.namespace, serviceName, ports: Object.freeze(ports), endpoints: Object.freeze(endpoints),
  });
}
