#!/usr/bin/env node
// Runs the test suite (tap) inside a private network namespace made by this run, so that nothing a
// test does can leave the machine: the namespace has only `lo`, no route out and no DNS. The run adds
// the addresses the e2e tests need to `lo` (a public-looking upstream and denied canaries) and sets
// SLUICE_TEST_NETNS=1. Without root or unshare, or with SLUICE_TEST_NO_NETNS=1, tap runs on the host
// with SLUICE_TEST_NETNS unset and the tests that need those addresses skip themselves.
//
// Usage: node scripts/test-netns.mjs [tap args...]   (npm test -- [tap args...])
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { constants as osConstants } from 'node:os';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const tapArgs = process.argv.slice(2);
const localTap = join(repoRoot, 'node_modules', '.bin', 'tap');
const tapCommand = existsSync(localTap) ? [localTap] : ['npx', '--no', 'tap'];

// Addresses added to `lo` inside the namespace; test/helpers/netns.ts names the same ones.
const NETNS_IPV4 = ['93.184.216.34/32', '10.0.0.1/32', '169.254.169.254/32'];
const NETNS_IPV6 = ['2001:db8::1/128'];

// Runs inside `unshare -n`. "$@" is the tap command line. Exit 97 marks a refusal.
const namespaceScript = `
set -eu
ip link set lo up
links=$(ip -o link show | cut -d: -f2 | tr -d ' ' | tr '\\n' ' ')
if [ "$links" != "lo " ]; then
  echo "test-netns: refusing to run: the namespace must have only 'lo', found: $links" >&2
  exit 97
fi
${NETNS_IPV4.map((cidr) => `ip addr add ${cidr} dev lo`).join('\n')}
SLUICE_TEST_NETNS_IPV6=0
if [ -e /proc/sys/net/ipv6 ] && ${NETNS_IPV6.map((cidr) => `ip -6 addr add ${cidr} dev lo nodad 2>/dev/null`).join(' && ')}; then
  SLUICE_TEST_NETNS_IPV6=1
fi
SLUICE_TEST_NETNS=1
export SLUICE_TEST_NETNS SLUICE_TEST_NETNS_IPV6
exec "$@"
`;

function isRoot() {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

function unshareWorks() {
  const probe = spawnSync('unshare', ['-n', '--', 'true'], { stdio: 'ignore' });
  return probe.status === 0;
}

function run(command, args, env) {
  const child = spawn(command, args, { stdio: 'inherit', env, cwd: repoRoot });
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
  child.on('error', (error) => {
    console.error(`test-netns: could not start ${command}: ${error.message}`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => {
    if (code === 97) console.error('test-netns: no tests were run.');
    if (signal) process.exit(128 + (osConstants.signals[signal] ?? 0));
    process.exit(code ?? 1);
  });
}

const hostEnv = { ...process.env };
delete hostEnv.SLUICE_TEST_NETNS;
delete hostEnv.SLUICE_TEST_NETNS_IPV6;

if (process.env.SLUICE_TEST_NO_NETNS === '1') {
  console.error('test-netns: SLUICE_TEST_NO_NETNS=1, running on the host; netns-only tests will skip.');
  run(tapCommand[0], [...tapCommand.slice(1), ...tapArgs], hostEnv);
} else if (!isRoot() || !unshareWorks()) {
  console.error('test-netns: not root or `unshare -n` unavailable, running on the host; netns-only tests will skip.');
  run(tapCommand[0], [...tapCommand.slice(1), ...tapArgs], hostEnv);
} else {
  run('unshare', ['-n', '--', 'sh', '-c', namespaceScript, 'sluice-test-netns', ...tapCommand, ...tapArgs], hostEnv);
}
