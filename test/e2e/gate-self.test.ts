// Issue 13, contract item 5: sluice never dials itself, whatever the spelling. The check must compare
// addresses, not strings: an IPv4-mapped IPv6 literal, a name that resolves to a mapped address, an
// admin port bound to "localhost" reached as 127.0.0.1, and a wildcard listen reached through any
// local address are all 403 private_ip with a detail naming sluice itself, in absolute form and in a
// CONNECT alike. The policy allows every one of these addresses, so only the self check stands in
// the way; the spellings that today's string compare already catches are kept as guards.
import { readFileSync, writeFileSync } from 'node:fs';
import t, { type Test } from 'tap';
import { basicAuth, connectTunnel, rawRequest } from '../helpers/clients.js';
import { startDns, type DnsServer } from '../helpers/dns.js';
import { netnsSkip, PRIVATE_CANARY_IP, PUBLIC_UPSTREAM_IP } from '../helpers/netns.js';
import { startTestSluice, TOKEN, TOOL, type TestSluice } from '../helpers/sluice.js';

let dns: DnsServer;
const auth = basicAuth(TOOL, TOKEN);

t.before(async () => {
  dns = await startDns({
    'v4.self.test': [{ type: 'A', address: '127.0.0.1' }],
    'mapped.self.test': [{ type: 'AAAA', address: '::ffff:127.0.0.1' }],
    'lo2.self.test': [{ type: 'A', address: '127.0.0.2' }],
    localhost: [{ type: 'A', address: '127.0.0.1' }],
  });
});
t.teardown(() => dns.close());

// Every address a case below names is allowed, so a refusal can only come from the self check.
const policy = (ports: number[]): string => `
version: 1
# All of 127/8 (every spelling of loopback): wider than strict mode's /16 for a private exception.
strict: false
network:
  allow_private_cidrs: ["127.0.0.0/8", "::1/128", "${PRIVATE_CANARY_IP}/32"]
  dns_servers: ["${dns.address}"]
  allow_ports: [${ports.join(', ')}]
tools:
  ${TOOL}:
    token_sha256: "\${TOKEN_SHA}"
    allow:
      - host: 127.0.0.1
      - host: 127.0.0.2
      - host: 127.0.0.53
      - host: "[::ffff:127.0.0.1]"
      - host: "[::ffff:127.0.0.2]"
      - host: "[::1]"
      - host: ${PUBLIC_UPSTREAM_IP}
      - host: ${PRIVATE_CANARY_IP}
      - host: localhost
      - host: "*.self.test"
`;

/** sluice on the given listen/admin hosts, its policy then reloaded to allow its own two ports. */
async function selfSluice(listenHost?: string, adminHost?: string): Promise<TestSluice> {
  const sluice = await startTestSluice({
    policy: policy([80]),
    ...(listenHost === undefined ? {} : { listenHost }),
    ...(adminHost === undefined ? {} : { adminHost }),
  });
  writeFileSync(
    sluice.policyFile,
    readFileSync(sluice.policyFile, 'utf8').replace('allow_ports: [80]', `allow_ports: [${sluice.port}, ${sluice.adminPort}]`),
  );
  if (!(await sluice.running.reload())) throw new Error("the policy allowing sluice's own ports did not load");
  return sluice;
}

/**
 * Asks for `host:port` in absolute form (GET http://host:port/metrics) and by CONNECT, and asserts
 * both are 403 private_ip naming sluice itself. `host` is written exactly as given.
 */
async function refusedBoth(t: Test, sluice: TestSluice, host: string, port: number, label: string): Promise<void> {
  const authority = `${host}:${port}`;
  const r = await rawRequest(
    sluice.port,
    `GET http://${authority}/metrics HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: ${auth}\r\n\r\n`,
    { timeoutMs: 5000 },
  );
  t.equal(r.status, 403, `absolute-form ${authority} (${label}): 403`);
  t.equal(r.headers['x-sluice-deny'], 'private_ip', `absolute-form ${authority} (${label}): private_ip`);
  t.match(detailOf(r.body), /sluice itself/, `absolute-form ${authority} (${label}): the detail says it is sluice itself`);

  const tunnel = await connectTunnel(sluice.port, authority, auth, { timeoutMs: 5000 });
  tunnel.socket.destroy();
  t.equal(tunnel.status, 403, `CONNECT ${authority} (${label}): 403`);
  t.equal(tunnel.headers['x-sluice-deny'], 'private_ip', `CONNECT ${authority} (${label}): private_ip`);
  t.match(detailOf(tunnel.body), /sluice itself/, `CONNECT ${authority} (${label}): the detail says it is sluice itself`);
}

function detailOf(body: string): string {
  try {
    return (JSON.parse(body) as { detail?: string }).detail ?? '';
  } catch {
    return '';
  }
}

const SPELLINGS = [
  { host: '127.0.0.1', what: 'the listen address itself (guard)' },
  { host: '127.1', what: 'a short IPv4 spelling (guard)' },
  { host: '2130706433', what: 'IPv4 as one number (guard)' },
  { host: '[::ffff:127.0.0.1]', what: 'IPv4-mapped IPv6, dotted' },
  { host: '[::ffff:7f00:1]', what: 'IPv4-mapped IPv6, hex' },
  { host: '[0:0:0:0:0:ffff:7f00:1]', what: 'IPv4-mapped IPv6, uncompressed' },
  { host: 'v4.self.test', what: 'a name resolving to 127.0.0.1 (guard)' },
  { host: 'mapped.self.test', what: 'a name resolving to ::ffff:127.0.0.1 only' },
];

t.test('listen and admin on 127.0.0.1: every spelling of either port is sluice itself', async (t) => {
  const sluice = await selfSluice();
  t.teardown(() => sluice.close());
  for (const s of SPELLINGS) {
    for (const [port, which] of [
      [sluice.port, 'proxy'],
      [sluice.adminPort, 'admin'],
    ] as const) {
      await refusedBoth(t, sluice, s.host, port, `${s.what}, ${which} port`);
    }
  }
});

t.test('listen and admin bound to "localhost": reached as 127.0.0.1, as the name, or mapped, it is sluice itself', async (t) => {
  const sluice = await selfSluice('localhost', 'localhost');
  t.teardown(() => sluice.close());
  t.equal(sluice.running.proxy.address, '127.0.0.1', 'here "localhost" binds 127.0.0.1, where the client connects');
  for (const host of ['127.0.0.1', 'localhost', '[::ffff:127.0.0.1]', 'v4.self.test']) {
    await refusedBoth(t, sluice, host, sluice.adminPort, 'admin port');
    await refusedBoth(t, sluice, host, sluice.port, 'proxy port');
  }
});

t.test('a wildcard listen (0.0.0.0): reached through any local address, it is sluice itself', async (t) => {
  const sluice = await selfSluice('0.0.0.0');
  t.teardown(() => sluice.close());
  for (const host of ['127.0.0.1', '127.0.0.2', '127.0.0.53', '[::ffff:127.0.0.2]', 'lo2.self.test']) {
    await refusedBoth(t, sluice, host, sluice.port, 'wildcard listen');
  }
});

t.test('a wildcard listen (0.0.0.0): reached through the namespace addresses, it is sluice itself', { skip: netnsSkip() }, async (t) => {
  const sluice = await selfSluice('0.0.0.0');
  t.teardown(() => sluice.close());
  for (const host of [PUBLIC_UPSTREAM_IP, PRIVATE_CANARY_IP]) {
    await refusedBoth(t, sluice, host, sluice.port, 'wildcard listen, namespace address');
  }
});

t.test('a wildcard listen (::): reached through IPv4, IPv6 loopback or a mapped address, it is sluice itself', async (t) => {
  const sluice = await selfSluice('::');
  t.teardown(() => sluice.close());
  for (const host of ['127.0.0.1', '[::1]', '[::ffff:127.0.0.1]', '127.0.0.2']) {
    await refusedBoth(t, sluice, host, sluice.port, 'dual-stack wildcard listen');
  }
});
