// The Istio peer labels shared by the TCP and request metrics: names, `unknown` fill-ins, and
// a key that tells apart every label set the labels tell apart.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { istioPeerKey, istioPeerLabels } from '../../../src/telemetry/istio-labels.ts';

const source = { workload: 'client', namespace: 'shop', principal: 'spiffe://cluster.local/ns/shop/sa/client', app: 'client' };
const destination = { workload: 'api-v1', namespace: 'shop', principal: 'spiffe://cluster.local/ns/shop/sa/api', app: 'api' };
const service = { host: 'api.shop.svc.cluster.local', name: 'api', namespace: 'shop' };

test('istioPeerLabels: every peer label, with the cluster on both sides', () => {
  assert.deepEqual(istioPeerLabels({ reporter: 'source', source, destination, service }, 'Kubernetes'), {
    reporter: 'source',
    source_workload: 'client', source_workload_namespace: 'shop', source_principal: source.principal, source_app: 'client', source_cluster: 'Kubernetes',
    destination_workload: 'api-v1', destination_workload_namespace: 'shop', destination_principal: destination.principal, destination_app: 'api',
    destination_service: 'api.shop.svc.cluster.local', destination_service_name: 'api', destination_service_namespace: 'shop', destination_cluster: 'Kubernetes',
  });
});

test('istioPeerLabels: what is not known reads unknown, as Istio writes it', () => {
  const l = istioPeerLabels({ reporter: 'destination', source: {}, destination: { workload: 'api-v1' }, service: undefined }, 'c');
  assert.equal(l.source_workload, 'unknown');
  assert.equal(l.source_principal, 'unknown');
  assert.equal(l.destination_app, 'unknown');
  assert.equal(l.destination_service, 'unknown');
  assert.equal(l.destination_service_name, 'unknown');
});

test('istioPeerKey: equal inputs share a key; any differing peer field changes it', () => {
  const base = { reporter: 'source' as const, source, destination, service };
  assert.equal(istioPeerKey(base), istioPeerKey({ ...base, source: { ...source } }));
  const variants = [
    { ...base, reporter: 'destination' as const },
    { ...base, source: { ...source, workload: 'other' } },
    { ...base, source: { ...source, app: undefined } },
    { ...base, destination: { ...destination, principal: 'spiffe://x' } },
    { ...base, service: undefined },
    { ...base, service: { ...service, namespace: 'other' } },
  ];
  const keys = new Set([istioPeerKey(base), ...variants.map(istioPeerKey)]);
  assert.equal(keys.size, variants.length + 1);
});
