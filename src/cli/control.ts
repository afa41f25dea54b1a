// `weft control`: the control plane. Runs until SIGTERM/SIGINT, then ends agent streams
// cleanly (they keep serving their config and reconnect) and exits. `weft control revoke`
// talks to a running one's admin endpoint (revoke.ts).

import { runControlPlane } from '../app/control.ts';
import { controlConfigFromArgv } from '../config/control.ts';

export async function controlCommand(argv: readonly string[]): Promise<number> {
  if (argv[0] === 'revoke') return (await import('./revoke.ts')).revokeCommand(argv.slice(1));
  const plane = await runControlPlane(controlConfigFromArgv(argv, process.env));
  await new Promise<void>((resolve) => {
    const stop = (): void => void plane.close().then(resolve);
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  return 0;
}
