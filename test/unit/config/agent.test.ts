import { test } from 'node:test';
import assert from 'node:assert/strict';
import { agentConfigFromArgv } from '../../../src/config/agent.ts';

const base = ['--node', 'node-1', '--capture-address', '198.18.1.1', '--control', 'weft-control.weft-system.svc:15010', '--mode', 'iptables'];

test('agent flags: defaults, NODE_NAME from the environment, a frozen config', () => {
  const c = agentConfigFromArgv(base, {}, 8);
  assert.equal(c.node, 'node-1');
  assert.equal(c.workers, 2);
  assert.equal(c.trustDomain, 'cluster.local');
  assert.equal(c.logLevel, 'info');
  assert.ok(Object.isFrozen(c));
  const fromEnv = agentConfigFromArgv(base.slice(2), { NODE_NAME: 'node-7' }, 2);
  assert.equal(fromEnv.node, 'node-7');
});

test('agent flags: every refusal names the flag and the value', () => {
  const cases: Array<[string[], string, RegExp]> = [
    [['--capture-address', '198.18.1.1', '--control', 'c:1'], 'WEFT_CONFIG_INVALID', /^--node \(not given\): is required/],
    [[...base, '--mode', 'magic'], 'WEFT_CONFIG_INVALID', /^--mode "magic": must be one of auto, ebpf, iptables, off/],
    [[...base, '--capture-address', 'x'], 'WEFT_CONFIG_INVALID', /^--capture-address "x": must be an IPv4 address/],
    [[...base, '--control', 'nowhere'], 'WEFT_CONFIG_INVALID', /^--control "nowhere": must be HOST:PORT/],
    [[...base, '--manifests', '/m'], 'WEFT_CONFIG_INVALID', /^--control ".*": give exactly one of --control HOST:PORT or --manifests DIR/],
    [[...base, '--workers', '0'], 'WEFT_CONFIG_INVALID', /^--workers "0": must be a whole number from 1 to 64/],
    [[...base, '--exclude-ports', '80,x'], 'WEFT_CONFIG_INVALID', /^--exclude-ports "x": must list ports 1-65535/],
    [[...base, '--log-level', 'loud'], 'WEFT_CONFIG_INVALID', /^--log-level "loud": must be one of/],
    [[...base, '--what'], 'WEFT_CLI_USAGE', /Unknown option '--what'/],
  ];
  for (const [argv, code, message] of cases) assert.throws(() => agentConfigFromArgv(argv, {}, 2), { code, message }, argv.join(' '));
});
