// Who is on the other end of the control channel, read from certificates.
//
// An agent's node certificate is an X.509-SVID for the agent's service account with the
// node name in a DNS SAN:
//   URI SAN  spiffe://<trust-domain>/ns/weft-system/sa/weft-agent   (exactly one URI SAN, per SPIFFE)
//   DNS SAN  <node>.node.weft.internal
// The node is a DNS name rather than a second URI so the certificate stays a valid SVID, and
// the `.node.weft.internal` suffix (a private-use TLD) keeps it from ever matching a real host.
// The control plane's certificate carries spiffe://<trust-domain>/ns/weft-system/sa/weft-control.

import { controlError, ControlErrors } from './errors.ts';
import { parseSubjectAltName } from '../core/subject-alt-name.ts';

export const SYSTEM_NAMESPACE = 'weft-system';
export const AGENT_SERVICE_ACCOUNT = 'weft-agent';
export const CONTROL_SERVICE_ACCOUNT = 'weft-control';
export const NODE_DNS_SUFFIX = '.node.weft.internal';
/** The name agents use for TLS server name and :authority, whatever address they dial. */
export const CONTROL_SERVER_NAME = 'weft-control';

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const MAX_DNS_NAME = 253;

export function agentIdentity(trustDomain: string): string {
  return `spiffe://${trustDomain}/ns/${SYSTEM_NAMESPACE}/sa/${AGENT_SERVICE_ACCOUNT}`;
}

export function controlIdentity(trustDomain: string): string {
  return `spiffe://${trustDomain}/ns/${SYSTEM_NAMESPACE}/sa/${CONTROL_SERVICE_ACCOUNT}`;
}

/** Throws unless `node` is a Kubernetes node name that fits the certificate's DNS SAN. */
export function checkNodeName(node: string): string {
  if (typeof node !== 'string' || !DNS_SUBDOMAIN.test(node)) {
    throw controlError(ControlErrors.BAD_NODE_NAME, `node name ${JSON.stringify(node)} is not a DNS-1123 subdomain`);
  }
  if (node.length + NODE_DNS_SUFFIX.length > MAX_DNS_NAME) {
    throw controlError(ControlErrors.BAD_NODE_NAME, `node name ${node.slice(0, 40)}... is longer than ${MAX_DNS_NAME - NODE_DNS_SUFFIX.length} characters`);
  }
  return node;
}

export function nodeDnsName(node: string): string {
  return `${checkNodeName(node)}${NODE_DNS_SUFFIX}`;
}

export { parseSubjectAltName, type SubjectAltNames } from '../core/subject-alt-name.ts';

/**
 * The node a verified client certificate speaks for. The chain was verified by TLS against
 * the mesh CA; this checks that the certificate is an agent's node certificate (not, say, a
 * workload SVID from the same CA) and reads the node from it.
 */
export function nodeFromCertificate(subjectAltName: string | undefined, trustDomain: string): string {
  const sans = parseSubjectAltName(subjectAltName);
  const expected = agentIdentity(trustDomain);
  if (sans.uris.length !== 1 || sans.uris[0] !== expected) {
    throw controlError(
      ControlErrors.UNAUTHENTICATED,
      `the client certificate names [${sans.uris.join(', ')}], but a node certificate must name exactly ${expected}`,
    );
  }
  const nodes = sans.dns.filter((d) => d.endsWith(NODE_DNS_SUFFIX)).map((d) => d.slice(0, -NODE_DNS_SUFFIX.length));
  if (nodes.length !== 1) {
    throw controlError(
      ControlErrors.UNAUTHENTICATED,
      `the client certificate must carry exactly one DNS name <node>${NODE_DNS_SUFFIX}, it carries [${sans.dns.join(', ')}]`,
    );
  }
  return checkNodeName(nodes[0]);
}
