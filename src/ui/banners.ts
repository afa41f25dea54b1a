// The dashboard's banners: the conditions deploy/prometheus/weft-rules.yaml alerts on, worked
// out from the same data the page shows, so a person sees what the pager would say.

import type { MeshRates } from './mesh-rates.ts';
import type { ControlView } from './control-view.ts';
import type { SecurityView } from './security-view.ts';

export interface Banner {
  /** The alert of weft-rules.yaml it mirrors. */
  readonly alert: string;
  readonly severity: 'warning' | 'critical';
  readonly message: string;
}

/** Thresholds shared with weft-rules.yaml. */
export const CERTIFICATE_WARN_SECONDS = 6 * 3600;
export const REFUSALS_PER_SECOND = 0.1;

const workloadName = (id: string): string => id.replace(/^workload:/, '');

export function banners(rates: MeshRates, security: SecurityView, control: ControlView): Banner[] {
  const out: Banner[] = [];
  for (const e of security.plaintextEdges) {
    out.push({
      alert: 'WeftPlaintextIntoEnrolledWorkload', severity: 'warning',
      message: `Plaintext traffic into enrolled workload ${workloadName(e.to)} from ${workloadName(e.from)} (no mutual TLS)`,
    });
  }
  for (const c of security.certificates) {
    if (c.secondsLeft < CERTIFICATE_WARN_SECONDS) {
      out.push({ alert: 'WeftCertificateNearExpiry', severity: 'critical', message: `Certificate of ${c.identity} on ${c.instance} expires in ${Math.max(0, Math.round(c.secondsLeft / 60))} min` });
    }
    if (c.renewalFailing) out.push({ alert: 'WeftCertificateRenewalFailing', severity: 'warning', message: `Certificate requests for ${c.identity} on ${c.instance} are failing` });
  }
  const perInstance = (list: MeshRates['denials']): Map<string, number> => {
    const m = new Map<string, number>();
    for (const r of list) m.set(r.labels.instance ?? '', (m.get(r.labels.instance ?? '') ?? 0) + r.rate);
    return m;
  };
  for (const [instance, rate] of perInstance(rates.handshakeFailures)) {
    if (rate > REFUSALS_PER_SECOND) out.push({ alert: 'WeftHandshakeFailuresHigh', severity: 'warning', message: `Tunnel handshakes refused on ${instance}: ${rate.toFixed(2)}/s` });
  }
  for (const [instance, rate] of perInstance(rates.denials)) {
    if (rate > REFUSALS_PER_SECOND) out.push({ alert: 'WeftPolicyDenialsHigh', severity: 'warning', message: `Authorization policy denies ${rate.toFixed(2)} connections/s on ${instance}` });
  }
  for (const a of control.agents) {
    if (a.state === 'DISCONNECTED' || !a.metricsReachable) {
      out.push({ alert: 'WeftAgentDown', severity: 'critical', message: `Agent on ${a.node} is ${a.state === 'DISCONNECTED' ? 'not connected to the control plane' : 'not answering on its metrics port'}` });
    }
    if (a.state === 'NACK') {
      out.push({ alert: 'WeftAgentConfigRejected', severity: 'warning', message: `Agent on ${a.node} refused ${a.rejected.map((r) => r.key).join(', ')}: ${a.rejected[0]?.message ?? ''}` });
    }
  }
  for (const s of rates.controlConnected) {
    if (s.value === 0) out.push({ alert: 'WeftControlPlaneUnreachable', severity: 'critical', message: `Agent ${s.labels.instance ?? '?'} cannot reach the control plane` });
  }
  return out;
}
