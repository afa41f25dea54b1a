import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkNodeName, nodeDnsName, nodeFromCertificate, parseSubjectAltName } from '../../../src/control/channel-identity.ts';

const AGENT = 'URI:spiffe://cluster.local/ns/weft-system/sa/weft-agent';

test('the node comes from exactly one node DNS name next to the agent SVID', () => {
  const cases: Array<[string | undefined, string | RegExp]> = [
    [`${AGENT}, DNS:node-1.node.weft.internal`, 'node-1'],
    [`DNS:a.b.node.weft.internal, ${AGENT}, DNS:localhost`, 'a.b'],
    [undefined, /names \[\], but a node certificate must name exactly spiffe:\/\/cluster.local\/ns\/weft-system\/sa\/weft-agent/],
    ['URI:spiffe://cluster.local/ns/default/sa/web, DNS:node-1.node.weft.internal', /names \[spiffe:\/\/cluster.local\/ns\/default\/sa\/web\]/],
    ['URI:spiffe://other.td/ns/weft-system/sa/weft-agent, DNS:node-1.node.weft.internal', /other.td/],
    [`${AGENT}, URI:spiffe://cluster.local/ns/x/sa/y, DNS:node-1.node.weft.internal`, /must name exactly/],
    [AGENT, /exactly one DNS name <node>.node.weft.internal, it carries \[\]/],
    [`${AGENT}, DNS:a.node.weft.internal, DNS:b.node.weft.internal`, /it carries \[a.node.weft.internal, b.node.weft.internal\]/],
    [`${AGENT}, DNS:Bad_Node.node.weft.internal`, /"Bad_Node" is not a DNS-1123 subdomain/],
  ];
  for (const [san, expected] of cases) {
    if (typeof expected === 'string') assert.equal(nodeFromCertificate(san, 'cluster.local'), expected, String(san));
    else assert.throws(() => nodeFromCertificate(san, 'cluster.local'), expected, String(san));
  }
});

test('subjectAltName text with quoted values is split correctly', () => {
  assert.deepEqual(parseSubjectAltName('URI:"spiffe://td/a, b", DNS:x, IP Address:1.2.3.4'), { uris: ['spiffe://td/a, b'], dns: ['x'] });
  assert.deepEqual(parseSubjectAltName(undefined), { uris: [], dns: [] });
});

test('node names must be DNS-1123 subdomains short enough for the DNS SAN', () => {
  assert.equal(nodeDnsName('ip-10-0-0-1.ec2.internal'), 'ip-10-0-0-1.ec2.internal.node.weft.internal');
  assert.throws(() => checkNodeName(''), /not a DNS-1123 subdomain/);
  assert.throws(() => checkNodeName('-x'), /not a DNS-1123 subdomain/);
  assert.throws(() => checkNodeName('a'.repeat(240)), /longer than 234 characters/);
});
