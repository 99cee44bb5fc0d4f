// Issue 13, the table-driven test: one table of policy cases, one table of transports (absolute-form,
// passthrough CONNECT, intercepted CONNECT, Upgrade over HTTP, Upgrade inside intercepted TLS), and
// every pair where the case applies must give the same outcome: status, X-Sluice-Deny reason, the
// canonical audit event (type, decision, reason, tool, host) and exactly that increment of
// sluice_requests_total{tool,decision,reason} on the admin /metrics. A tunnel that carried the
// case's request adds its own allowed net.tunnel event when it closes; the test expects that too,
// and nothing else. Real clients where they fit (undici's ProxyAgent, ws), raw bytes otherwise.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { basicAuth, connectTunnel, curl, nodeFetchViaProxy, openSocket, proxyUrl, roundTrip, tlsTunnel } from '../helpers/clients.js';
import { startDns, type DnsServer } from '../helpers/dns.js';
import { scrapeMetrics, total } from '../helpers/metrics.js';
import { inNetns, netnsSkip, PRIVATE_CANARY_IP, startCanary, type Canary } from '../helpers/netns.js';
import { issueLeaf, makeTestPki, testCaFile } from '../helpers/pki.js';
import { auditMark, canonicalSince, startTestSluice, TOKEN, TOOL, type AuditRecord, type TestSluice } from '../helpers/sluice.js';
import { maskedFrame, upgradeRequest, wsOverSocket } from '../helpers/upgrade.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const WRONG_TOKEN = 'not-the-token';
const LOOKALIKE: [string, string] = ['Transfer_Encoding', 'chunked'];
/** A port no rule allows (and nothing listens on): refused before any dial. Not one of fetch's "bad ports". */
const CLOSED_PORT = 8;

let httpUp: Upstream;
let tlsUp: Upstream;
let canary: Canary | null = null;
let sluice: TestSluice;
let dns: DnsServer;
let testCaPem: string;
let sluiceCa: string;

/** Domains: h = plain HTTP, p = passthrough HTTPS (no methods/paths), i = intercepted HTTPS. */
type Domain = 'h' | 'p' | 'i';
const LABELS = ['allowed', 'nothing', 'method', 'path', 'private', 'encoded'] as const;
/** issue 22: a base32 label (of a sha256) under a wildcard rule, "*.w.<domain>.test" */
const ENCODED_LABEL = 'mzxw6ytboi2dkmbwgq4tsnzrhe3dkobrgu4wenbvmvrgc3dffz';
const hostOf = (label: string, domain: Domain): string =>
  label === 'encoded' ? `${ENCODED_LABEL}.w.${domain}.test` : `${label}.${domain}.test`;

t.before(async () => {
  await makeTestPki();
  const testCa = await testCaFile();
  testCaPem = readFileSync(testCa, 'utf8');
  httpUp = await startUpstream({ host: '127.0.0.2' });
  // One certificate for both HTTPS domains: the client verifies it in passthrough, sluice when intercepting.
  tlsUp = await startUpstream({ host: '127.0.0.2', tls: await issueLeaf(['*.p.test', '*.i.test']) });
  if (inNetns()) canary = await startCanary(PRIVATE_CANARY_IP);
  const zone: Record<string, Array<{ type: 'A'; address: string }>> = {};
  for (const domain of ['h', 'p', 'i'] as const) {
    for (const label of LABELS) zone[hostOf(label, domain)] = [{ type: 'A', address: label === 'private' ? PRIVATE_CANARY_IP : '127.0.0.2' }];
  }
  dns = await startDns(zone);
  const canaryPort = canary?.port ?? CLOSED_PORT + 1;
  sluice = await startTestSluice({
    policy: `
version: 1
network:
  allow_private_cidrs: ["127.0.0.2/32"]
  dns_servers: ["${dns.address}"]
  allow_ports: [${httpUp.port}, ${tlsUp.port}]
tls:
  upstream_ca: ${testCa}
tools:
  ${TOOL}:
    token_sha256: "\${TOKEN_SHA}"
    allow:
      - host: allowed.h.test
      - host: method.h.test
        methods: [POST]
      - host: path.h.test
        paths: ["/allowed/**"]
      - host: private.h.test
        ports: [${canaryPort}]
      - host: "*.w.h.test"
      - host: "*.w.p.test"
      - host: "*.w.i.test"
        paths: ["/**"]
      - host: allowed.p.test
      - host: private.p.test
        ports: [${canaryPort}]
      - host: allowed.i.test
        paths: ["/**"]
      - host: method.i.test
        methods: [POST]
      - host: path.i.test
        paths: ["/allowed/**"]
      - host: private.i.test
        paths: ["/**"]
        ports: [${canaryPort}]
`,
  });
  sluiceCa = readFileSync(path.join(sluice.caDir, 'ca.pem'), 'utf8');
});
t.teardown(async () => {
  await sluice.close();
  await httpUp.close();
  await tlsUp.close();
  await canary?.close();
  await dns.close();
});

interface Case {
  name: string;
  label: (typeof LABELS)[number];
  port: 'upstream' | 'closed' | 'canary';
  token: string;
  /** the path is one the host's rule refuses */
  deniedPath?: boolean;
  /** a look-alike framing header on the request */
  lookalike?: boolean;
  /** decided on the CONNECT line, so CONNECT-based transports are refused there */
  atConnect: boolean;
  /** only transports that see requests (not passthrough) */
  needsRequests: boolean;
  netns?: boolean;
  /** null for the allowed case: its status and event type depend on the transport */
  deny: { status: number; reason: string } | null;
}

const CASES: Case[] = [
  { name: 'allowed', label: 'allowed', port: 'upstream', token: TOKEN, atConnect: false, needsRequests: false, deny: null },
  {
    name: 'host with no rule (no_rule)',
    label: 'nothing',
    port: 'upstream',
    token: TOKEN,
    atConnect: true,
    needsRequests: false,
    deny: { status: 403, reason: 'no_rule' },
  },
  {
    name: 'port not allowed (port_not_allowed)',
    label: 'allowed',
    port: 'closed',
    token: TOKEN,
    atConnect: true,
    needsRequests: false,
    deny: { status: 403, reason: 'port_not_allowed' },
  },
  // For an intercepted host too the address is vetted on CONNECT: the canary is never dialled and no tunnel opens.
  {
    name: 'private address (private_ip)',
    label: 'private',
    port: 'canary',
    token: TOKEN,
    atConnect: true,
    needsRequests: false,
    netns: true,
    deny: { status: 403, reason: 'private_ip' },
  },
  {
    name: 'wrong token (unauthenticated)',
    label: 'allowed',
    port: 'upstream',
    token: WRONG_TOKEN,
    atConnect: true,
    needsRequests: false,
    deny: { status: 407, reason: 'unauthenticated' },
  },
  {
    name: 'method not allowed (method_not_allowed)',
    label: 'method',
    port: 'upstream',
    token: TOKEN,
    atConnect: false,
    needsRequests: true,
    deny: { status: 403, reason: 'method_not_allowed' },
  },
  {
    name: 'path not allowed (path_not_allowed)',
    label: 'path',
    port: 'upstream',
    token: TOKEN,
    deniedPath: true,
    atConnect: false,
    needsRequests: true,
    deny: { status: 403, reason: 'path_not_allowed' },
  },
  // issue 22: strict mode (the default) judges the labels a wildcard rule matched, on the CONNECT line too.
  {
    name: 'encoded hostname label under a wildcard (encoded_hostname)',
    label: 'encoded',
    port: 'upstream',
    token: TOKEN,
    atConnect: true,
    needsRequests: false,
    deny: { status: 403, reason: 'encoded_hostname' },
  },
  {
    name: 'look-alike framing header (bad_request)',
    label: 'allowed',
    port: 'upstream',
    token: TOKEN,
    lookalike: true,
    atConnect: false,
    needsRequests: true,
    deny: { status: 400, reason: 'bad_request' },
  },
];

interface Target {
  host: string;
  port: number;
  token: string;
  path: string;
  headers: Record<string, string>;
}

interface Observed {
  /** null when no HTTP answer reached the client */
  status: number | null;
  deny: string | undefined;
  /** what failed on the client side, for the assertion message */
  error?: string;
}

interface Transport {
  name: string;
  domain: Domain;
  seesRequests: boolean;
  /** a CONNECT transport: refusals on the CONNECT line come back there */
  connects: boolean;
  /** the case's request rides in a tunnel sluice terminates, which reports its own net.tunnel when it closes */
  tunnelled: boolean;
  upgrade: boolean;
  allowed: { status: number; type: 'net.req' | 'net.tunnel' };
  run(c: Case, target: Target): Promise<Observed>;
}

/** The raw CONNECT line: its answer is what a CONNECT-phase refusal looks like to any client. */
async function connectOnly(target: Target): Promise<Observed> {
  const tunnel = await connectTunnel(sluice.port, `${target.host}:${target.port}`, basicAuth(TOOL, target.token), { timeoutMs: 10_000 });
  tunnel.socket.destroy();
  return { status: tunnel.status, deny: tunnel.headers['x-sluice-deny'] };
}

const fetched = (r: { status: number | null; headers: Record<string, string>; error: string | null }): Observed => ({
  status: r.status,
  deny: r.headers['x-sluice-deny'],
  ...(r.error ? { error: r.error } : {}),
});

const TRANSPORTS: Transport[] = [
  {
    name: 'absolute-form',
    domain: 'h',
    seesRequests: true,
    connects: false,
    tunnelled: false,
    upgrade: false,
    allowed: { status: 200, type: 'net.req' },
    // curl rather than undici here: undici's ProxyAgent turns a 407 into an error without the answer's headers.
    run: async (_c, target) => {
      const headerArgs = Object.entries(target.headers).flatMap(([n, v]) => ['-H', `${n}: ${v}`]);
      const r = await curl(
        ['-x', proxyUrl(sluice.port, TOOL, target.token), ...headerArgs, `http://${target.host}:${target.port}${target.path}`],
        { timeoutMs: 10_000 },
      );
      return {
        status: r.status === 0 ? null : r.status,
        deny: r.headers['x-sluice-deny'],
        ...(r.status === 0 ? { error: r.stderr.trim() } : {}),
      };
    },
  },
  {
    name: 'passthrough CONNECT',
    domain: 'p',
    seesRequests: false,
    connects: true,
    tunnelled: false,
    upgrade: false,
    allowed: { status: 200, type: 'net.tunnel' },
    run: async (c, target) =>
      c.atConnect
        ? connectOnly(target)
        : fetched(
            await nodeFetchViaProxy({
              proxy: proxyUrl(sluice.port, TOOL, target.token),
              url: `https://${target.host}:${target.port}${target.path}`,
              caPem: testCaPem,
              timeoutMs: 10_000,
            }),
          ),
  },
  {
    name: 'intercepted CONNECT',
    domain: 'i',
    seesRequests: true,
    connects: true,
    tunnelled: true,
    upgrade: false,
    allowed: { status: 200, type: 'net.req' },
    run: async (c, target) =>
      c.atConnect
        ? connectOnly(target)
        : fetched(
            await nodeFetchViaProxy({
              proxy: proxyUrl(sluice.port, TOOL, target.token),
              url: `https://${target.host}:${target.port}${target.path}`,
              headers: target.headers,
              caPem: sluiceCa,
              timeoutMs: 10_000,
            }),
          ),
  },
  {
    name: 'Upgrade over HTTP',
    domain: 'h',
    seesRequests: true,
    connects: false,
    tunnelled: false,
    upgrade: true,
    allowed: { status: 101, type: 'net.req' },
    // No WebSocket client speaks absolute-form to a proxy: the handshake is written by hand.
    run: async (_c, target) => {
      const authority = `${target.host}:${target.port}`;
      const socket = await openSocket(sluice.port);
      const handshake = upgradeRequest({
        target: `http://${authority}${target.path}`,
        host: authority,
        proxyAuthorization: basicAuth(TOOL, target.token),
        headers: Object.entries(target.headers).map(([n, v]) => `${n}: ${v}`),
      });
      const r = await roundTrip(socket, handshake, { timeoutMs: 10_000 }).catch((err: Error) => err);
      if (r instanceof Error) {
        socket.destroy();
        return { status: null, deny: undefined, error: r.message };
      }
      if (r.status === 101) {
        // Prove the relay works, then hang up: the exchange is reported when the connection closes.
        socket.resume();
        const echoed = new Promise<void>((resolve) => {
          let got = r.rest;
          const check = (): void => (got.includes('hi') ? resolve() : undefined);
          socket.on('data', (chunk: Buffer) => {
            got = Buffer.concat([got, chunk]);
            check();
          });
          check();
        });
        socket.write(maskedFrame('hi'));
        await echoed;
      }
      socket.destroy();
      return { status: r.status, deny: r.headers['x-sluice-deny'] };
    },
  },
  {
    name: 'Upgrade inside intercepted TLS',
    domain: 'i',
    seesRequests: true,
    connects: true,
    tunnelled: true,
    upgrade: true,
    allowed: { status: 101, type: 'net.req' },
    run: async (c, target) => {
      if (c.atConnect) return connectOnly(target);
      const socket = await tlsTunnel(sluice.port, `${target.host}:${target.port}`, basicAuth(TOOL, target.token), { ca: sluiceCa });
      const ws = await wsOverSocket(`wss://${target.host}:${target.port}${target.path}`, socket, { headers: target.headers }).catch(
        (err: Error) => err,
      );
      socket.destroy();
      if (ws instanceof Error) return { status: null, deny: undefined, error: ws.message };
      const deny = ws.headers['x-sluice-deny'];
      return { status: ws.status, deny: Array.isArray(deny) ? deny.join(', ') : deny };
    },
  },
];

interface ExpectedEvent {
  type: string;
  decision: 'allow' | 'deny';
  reason: string | null;
  tool: string | null;
  host: string | null;
}

/** The canonical events one (case, transport) pair must leave, and nothing else. */
function expectedEvents(c: Case, tr: Transport, host: string): ExpectedEvent[] {
  const events: ExpectedEvent[] = [];
  const unauthenticated = c.deny?.reason === 'unauthenticated';
  events.push(
    c.deny === null
      ? { type: tr.allowed.type, decision: 'allow', reason: null, tool: TOOL, host }
      : // Authentication comes first, so an unauthenticated request has no tool and no parsed target yet.
        {
          type: 'policy.violation',
          decision: 'deny',
          reason: c.deny.reason,
          tool: unauthenticated ? null : TOOL,
          host: unauthenticated ? null : host,
        },
  );
  if (tr.tunnelled && !c.atConnect) events.push({ type: 'net.tunnel', decision: 'allow', reason: null, tool: TOOL, host });
  return events;
}

const seriesKey = (e: { tool: string | null; decision: string; reason: string | null }): string =>
  `${e.tool ?? 'unknown'}|${e.decision}|${e.reason ?? ''}`;
const byType = (a: { type: string }, b: { type: string }): number => a.type.localeCompare(b.type);

for (const c of CASES) {
  for (const tr of TRANSPORTS) {
    if (c.needsRequests && !tr.seesRequests) continue;
    const skip = c.netns ? netnsSkip() : false;
    t.test(`${c.name} via ${tr.name}`, { skip }, async (t) => {
      const host = hostOf(c.label, tr.domain);
      const port = c.port === 'closed' ? CLOSED_PORT : c.port === 'canary' ? canary!.port : tr.domain === 'h' ? httpUp.port : tlsUp.port;
      const target: Target = {
        host,
        port,
        token: c.token,
        path: tr.upgrade ? (c.deniedPath ? '/denied/ws' : '/ws') : c.deniedPath ? '/denied/x' : '/anything/transports',
        headers: c.lookalike ? Object.fromEntries([LOOKALIKE]) : {},
      };
      const expected = expectedEvents(c, tr, host);
      const upstream = tr.domain === 'h' ? httpUp : tlsUp;
      const upstreamBefore = upstream.requests.length;
      const mark = await auditMark(sluice);
      const before = await scrapeMetrics(sluice.adminPort);

      const observed = await tr.run(c, target);

      t.equal(observed.status, c.deny?.status ?? tr.allowed.status, `status${observed.error ? ` (${observed.error})` : ''}`);
      t.equal(observed.deny, c.deny?.reason, 'X-Sluice-Deny');
      const events = (await canonicalSince(sluice, mark, expected.length)).sort(byType);
      t.equal(
        events.length,
        expected.length,
        `exactly ${expected.length} canonical audit event(s): ${events.map((e) => `${e.type}/${e.reason ?? ''}`).join(', ')}`,
      );
      for (const [i, want] of [...expected].sort(byType).entries()) t.match(pick(events[i]), want, `audit event ${want.type}`);

      const after = await scrapeMetrics(sluice.adminPort);
      const delta = (where: Record<string, string> = {}): number =>
        total(after, 'sluice_requests_total', where) - total(before, 'sluice_requests_total', where);
      const counts = new Map<string, number>();
      for (const e of expected) counts.set(seriesKey(e), (counts.get(seriesKey(e)) ?? 0) + 1);
      for (const [key, n] of counts) {
        const [tool, decision, reason] = key.split('|') as [string, string, string];
        t.equal(delta({ tool, decision, reason }), n, `sluice_requests_total{tool="${tool}",decision="${decision}",reason="${reason}"} +${n}`);
      }
      t.equal(delta(), expected.length, 'no other request series moved');

      if (c.deny !== null) t.equal(upstream.requests.length, upstreamBefore, 'nothing reached the upstream');
      if (c.port === 'canary') t.equal(canary!.connections(), 0, 'the private canary was never dialled');
    });
  }
}

/** The fields the table compares, so a mismatch prints only those. */
function pick(e: AuditRecord | undefined): Partial<ExpectedEvent> | undefined {
  return e === undefined
    ? undefined
    : { type: e.type, decision: e.decision as ExpectedEvent['decision'], reason: e.reason ?? null, tool: e.tool ?? null, host: e.host ?? null };
}
