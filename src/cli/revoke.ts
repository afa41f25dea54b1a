// `weft control revoke`: asks the control plane's admin endpoint to revoke certificates (by
// serial, by node, by identity) and prints what it put on the CRL. The control plane pushes
// the CRL to every agent at once; agents close tunnels that used a revoked certificate.

import { readFile } from 'node:fs/promises';
import { describeError, WeftError } from '../core/errors.ts';
import { revokeConfigFromArgv } from '../config/control.ts';
import { ControlErrors } from '../control/errors.ts';

export interface RevokeOutput {
  write(text: string): void;
}

export async function revokeCommand(argv: readonly string[], out: RevokeOutput = process.stdout): Promise<number> {
  const config = revokeConfigFromArgv(argv);
  let token: string;
  try {
    token = (await readFile(config.tokenFile, 'utf8')).trim();
  } catch (err: unknown) {
    throw new WeftError(ControlErrors.ADMIN_UNAUTHENTICATED, `cannot read the admin token ${config.tokenFile}: ${describeError(err)}`, { cause: err });
  }
  let res: Response;
  try {
    res = await fetch(`http://${config.admin}/revoke`, {
      method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(config.request),
      signal: AbortSignal.timeout(30_000),
    });
  } catch (err: unknown) {
    throw new WeftError(ControlErrors.UNAVAILABLE, `the control plane's admin endpoint at ${config.admin} did not answer: ${describeError(err)}`, { cause: err });
  }
  const body = await res.json().catch(() => ({})) as { code?: string; message?: string; revoked?: string[]; node?: string; disconnected?: number };
  if (!res.ok) throw new WeftError(body.code ?? ControlErrors.UNAVAILABLE, `revocation refused (${res.status}): ${body.message ?? res.statusText}`);
  const what = 'serial' in config.request ? `serial ${config.request.serial}` : 'node' in config.request ? `node ${config.request.node}` : `identity ${config.request.identity}`;
  out.write(`revoked ${what}: ${body.revoked?.length ?? 0} certificate(s) on the CRL${body.revoked?.length ? ` (${body.revoked.join(', ')})` : ''}`
    + `${body.node === undefined ? '' : `; node ${body.node} refused from now on (${body.disconnected ?? 0} config stream(s) ended)`}\n`);
  return 0;
}
