// The enrollment reconciler against a redirector double that applies the real target
// checks (validateTarget): a pod with IPv6 addresses is refused for good — released if it
// was captured, logged once as an error, not retried — while the other pods are captured.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Logger } from 'pino';
import { EnrollmentReconciler, type CaptureRequest } from '../../../src/app/enrollment.ts';
import { validateTarget } from '../../../src/redirect/options.ts';
import type { CaptureTarget, Redirector } from '../../../src/redirect/index.ts';

class RecordingRedirector implements Redirector {
  readonly mode = 'ebpf' as const;
  readonly pods = new Map<string, CaptureTarget>();
  readonly calls: string[] = [];
  start(): Promise<void> {
    return Promise.resolve();
  }

  enroll(pod: CaptureTarget): Promise<void> {
    this.calls.push(`enroll ${pod.podId}`);
    const valid = validateTarget(pod);
    this.pods.set(valid.podId, valid);
    return Promise.resolve();
  }

  unenroll(podId: string): Promise<void> {
    this.calls.push(`unenroll ${podId}`);
    this.pods.delete(podId);
    return Promise.resolve();
  }

  enrolled(): readonly string[] {
    return [...this.pods.keys()].sort();
  }

  openInboundSocket(): Promise<number | undefined> {
    return Promise.resolve(undefined);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

function logger(): { log: Logger; lines: { level: string; fields: Record<string, unknown>; msg: string }[] } {
  const lines: { level: string; fields: Record<string, unknown>; msg: string }[] = [];
  const at = (level: string) => (fields: Record<string, unknown>, msg: string): void => void lines.push({ level, fields, msg });
  return { log: { info: at('info'), warn: at('warn'), error: at('error') } as unknown as Logger, lines };
}

const at = (path: string) => (): string => path;
const web: CaptureRequest = { podId: 'shop/web', ip: '198.18.1.10', cgroupPath: at('/sys/fs/cgroup/web') };
const dual: CaptureRequest = { podId: 'shop/dual', ip: '198.18.1.11', cgroupPath: at('/sys/fs/cgroup/dual'), ipv6: ['fd00::11'] };

test('a pod with IPv6 addresses is refused loudly and not retried; the others are captured', async () => {
  const redirector = new RecordingRedirector();
  const { log, lines } = logger();
  const r = new EnrollmentReconciler(redirector, log);
  r.reconcile([web, dual]);
  await r.idle();
  assert.deepEqual(redirector.enrolled(), ['shop/web']);
  assert.equal(r.settled, true, 'a refusal is final, so it does not hold readiness back');
  assert.deepEqual(r.refused().map((x) => x.pod), ['shop/dual']);
  assert.match(r.refused()[0]?.reason ?? '', /IPv6 address\(es\) fd00::11/);
  const errors = lines.filter((l) => l.level === 'error');
  assert.equal(errors.length, 1);
  assert.equal(errors[0]?.fields.code, 'WEFT_REDIRECT_IPV6_UNSUPPORTED');

  redirector.calls.length = 0;
  r.reconcile([web, dual]);
  await r.idle();
  assert.deepEqual(redirector.calls, [], 'nothing is tried again while the pod is unchanged');
  assert.equal(lines.filter((l) => l.level === 'error').length, 1, 'and the error is not repeated');
});

test('a captured pod that gains an IPv6 address is released, not left half-captured', async () => {
  const redirector = new RecordingRedirector();
  const { log } = logger();
  const r = new EnrollmentReconciler(redirector, log);
  r.reconcile([{ ...dual, ipv6: undefined }]);
  await r.idle();
  assert.deepEqual(redirector.enrolled(), ['shop/dual']);
  r.reconcile([dual]);
  await r.idle();
  assert.deepEqual(redirector.enrolled(), []);
  assert.deepEqual(r.refused().map((x) => x.pod), ['shop/dual']);
  r.reconcile([{ ...dual, ipv6: undefined }]);
  await r.idle();
  assert.deepEqual(redirector.enrolled(), ['shop/dual'], 'IPv4 only again: captured again');
  assert.deepEqual(r.refused(), []);
});

test('a pod whose cgroup is not there yet is retried, and captured once the kubelet made it', async () => {
  const redirector = new RecordingRedirector();
  const { log, lines } = logger();
  const r = new EnrollmentReconciler(redirector, log);
  let made = false;
  const late: CaptureRequest = {
    podId: 'shop/late', ip: '198.18.1.12',
    cgroupPath: () => {
      if (!made) throw new Error('no cgroup for uid 1234 yet');
      return '/sys/fs/cgroup/late';
    },
  };
  r.reconcile([web, late]);
  await r.idle();
  assert.deepEqual(redirector.enrolled(), ['shop/web']);
  assert.equal(r.settled, false, 'not ready while an enrolled pod is not captured');
  assert.match(String(lines.find((l) => l.fields.pod === 'shop/late')?.fields.err), /no cgroup for uid 1234/);
  made = true;
  r.reconcile([web, late]); // what the retry tick does
  await r.idle();
  assert.deepEqual(redirector.enrolled(), ['shop/late', 'shop/web']);
  assert.equal(redirector.pods.get('shop/late')?.cgroupPath, '/sys/fs/cgroup/late');
  assert.equal(r.settled, true);
  // A pod with IPv6 is refused even when its cgroup cannot be found.
  r.reconcile([web, late, { ...dual, cgroupPath: () => { throw new Error('none'); } }]);
  await r.idle();
  assert.deepEqual(r.refused().map((x) => x.pod), ['shop/dual']);
});
