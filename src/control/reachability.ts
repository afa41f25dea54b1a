// Can this host reach the control plane? A TLS handshake to its gRPC port, verifying the
// certificate chains to the given CA and carries the control plane's SPIFFE id, as an agent
// would (no token is sent, nothing is asked for).

import { connect } from 'node:tls';
import { parseSubjectAltName } from '../core/subject-alt-name.ts';
import { CONTROL_SERVER_NAME, controlIdentity } from './channel-identity.ts';

export interface Reachability {
  readonly ok: boolean;
  readonly detail: string;
}

export function probeControlPlane(address: string, caPem: string, trustDomain: string, timeoutMs = 5000): Promise<Reachability> {
  const at = address.lastIndexOf(':');
  const host = address.slice(0, at);
  const port = Number(address.slice(at + 1));
  const want = controlIdentity(trustDomain);
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = connect({
      host, port, ca: caPem, servername: CONTROL_SERVER_NAME, ALPNProtocols: ['h2'],
      checkServerIdentity: (_name, cert) => (parseSubjectAltName(cert.subjectaltname).uris.includes(want)
        ? undefined
        : new Error(`the server presented ${cert.subjectaltname ?? 'no subjectAltName'}, not ${want}`)),
    });
    const finish = (r: Reachability): void => {
      socket.destroy();
      resolve(r);
    };
    socket.setTimeout(timeoutMs, () => finish({ ok: false, detail: `no TLS handshake with ${address} within ${timeoutMs} ms` }));
    socket.once('secureConnect', () => {
      const cert = socket.getPeerCertificate();
      finish({ ok: true, detail: `${address}: TLS ${socket.getProtocol() ?? '?'}, ${want}, certificate valid until ${new Date(cert.valid_to).toISOString()} (${Date.now() - started} ms)` });
    });
    socket.once('error', (err: Error) => finish({ ok: false, detail: `${address}: ${err.message}` }));
  });
}
