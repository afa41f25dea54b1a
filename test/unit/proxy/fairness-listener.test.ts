// The listener skeleton with fairness (ListenerCore + SourceFairness's admit): a held source's
// connection waits, unread, and is served once let through; a refused one is reset at once,
// gets no record, its handler never runs, and the gate gets its descriptors back. Real
// sockets on loopback.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connect, createServer, type Socket } from 'node:net';

import type { ConnectionGate, LiveConnection } from '../../../src/proxy/connection-registry.ts';
import type { ConnectionObserver } from '../../../src/proxy/contracts.ts';
import { NO_TELEMETRY } from '../../../src/proxy/contracts.ts';
import { ListenerCore } from '../../../src/proxy/listener.ts';
import type { Admission, AdmissionKind } from '../../../src/proxy/resilience/source-fairness.ts';

interface Scene {
  port: number;
  handled: number;
  records: number;
  gate: { admitted: number; released: number };
  let: (outcome: Admission) => void;
  close(): Promise<void>;
}

/** A listener whose fairness answers every admission with the promise the test settles (or 'now'). */
async function scene(mode: 'hold' | 'now'): Promise<Scene> {
  let settle: (a: Admission) => void = () => undefined;
  const held = new Promise<Admission>((resolve) => { settle = resolve; });
  const fairness = {
    admit: (_source: string, kind: AdmissionKind): 'now' | Promise<Admission> => {
      assert.equal(kind, 'connection');
      return mode === 'now' ? 'now' : held;
    },
  };
  const s = { handled: 0, records: 0, gate: { admitted: 0, released: 0 } };
  const gate: ConnectionGate = {
    admit: () => { s.gate.admitted += 1; return undefined; },
    released: (_c: LiveConnection) => { s.gate.released += 1; },
  };
  const observer: ConnectionObserver = { ...NO_TELEMETRY, open: (...a) => { s.records += 1; return NO_TELEMETRY.open(...a); } };
  // eslint-disable-next-line prefer-const -- the server's callback needs the core it is given to
  let core: ListenerCore | undefined;
  const server = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket: Socket) => {
    void core?.serve(socket, '127.0.0.1', async () => {
      s.handled += 1;
      socket.resume();
      socket.end('served\n');
      await new Promise((r) => socket.once('close', r));
      return ['-'];
    }, { resetOnFailure: true });
  });
  core = new ListenerCore('outbound', server, { host: '127.0.0.1', port: 0, reusePort: false }, { gate, observer, fairness });
  const address = await core.listen();
  return Object.assign(s, {
    port: address.port,
    let: settle,
    close: async () => {
      core?.stopAccepting();
      await core?.drainConnections(0);
    },
  });
}

function dial(port: number): Promise<{ data: string; ending: string }> {
  return new Promise((resolve) => {
    let data = '';
    const c = connect({ host: '127.0.0.1', port });
    c.on('data', (b: Buffer) => { data += b.toString(); });
    c.on('end', () => resolve({ data, ending: 'end' }));
    c.on('error', (err: NodeJS.ErrnoException) => resolve({ data, ending: err.code ?? 'error' }));
  });
}

test('fairness: a held connection waits unread, then is served once let through', async () => {
  const s = await scene('hold');
  const call = dial(s.port);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(s.handled, 0, 'not served while held');
  assert.equal(s.records, 0);
  s.let('waited');
  assert.deepEqual(await call, { data: 'served\n', ending: 'end' });
  assert.equal(s.handled, 1);
  assert.equal(s.records, 1);
  await s.close();
  assert.deepEqual(s.gate, { admitted: 1, released: 1 });
});

test('fairness: a refused connection is reset at once; no record, no handler, the gate gets its descriptors back', async () => {
  const s = await scene('hold');
  const call = dial(s.port);
  await new Promise((r) => setTimeout(r, 50));
  s.let('refused');
  assert.deepEqual(await call, { data: '', ending: 'ECONNRESET' });
  assert.equal(s.handled, 0);
  assert.equal(s.records, 0);
  assert.deepEqual(s.gate, { admitted: 1, released: 1 });
  await s.close();
});

test('fairness: a source that is not held is served at once', async () => {
  const s = await scene('now');
  assert.deepEqual(await dial(s.port), { data: 'served\n', ending: 'end' });
  await s.close();
  assert.deepEqual(s.gate, { admitted: 1, released: 1 });
});
