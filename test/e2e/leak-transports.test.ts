// issue 22 through real sockets: a random credential of every shape, under any chain of up to two
// encodings, on any surface, is refused on each transport the issue names: absolute-form HTTP, a
// request inside an intercepted CONNECT, and a WebSocket message after an Upgrade. Table-driven:
// one property per (transport, shape); each run asserts the answer (403 and X-Sluice-Deny, or the
// 1008 close frame naming secret_leak), that the upstream saw no request head it could log, one
// policy.violation audit event, and the shapes' sluice_leaks_total counts. The detector-level
// tables and the 10,000-sample false-positive count are in test/leak/detect.test.ts; here a few
// dozen runs per transport keep the suite fast. Then the hostname-label spellings that only a
// socket shows (CONNECT host against Host, case and trailing dot on the CONNECT line).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type net from 'node:net';
import fc from '../helpers/fc.js';
import t from 'tap';
import { basicAuth, connectTunnel, exchangeRaw, openSocket, roundTrip, tlsTunnel, type RawResponse } from '../helpers/clients.js';
import { startDns, type DnsServer } from '../helpers/dns.js';
import { scrapeMetrics, total } from '../helpers/metrics.js';
import { issueLeaf, makeTestPki, testCaFile } from '../helpers/pki.js';
import { auditMark, canonicalSince, startTestSluice, TOKEN, TOOL, type TestSluice } from '../helpers/sluice.js';
import { maskedFrame, upgradeRequest } from '../helpers/upgrade.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { applyChain, CREDENTIALS, ENCODINGS, type Encoding } from '../leak/fixtures.js';

/** Runs per shape and transport: 13 shapes x 4 = 52 requests per transport. */
const RUNS = Number(process.env.SLUICE_LEAK_E2E_RUNS ?? 4);
const H = 'allowed.h.test';
const I = 'allowed.i.test';
/** base32 of a sha256: what `<data>.allowed.example` exfiltration writes */
const ENCODED_LABEL = 'mzxw6ytboi2dkmbwgq4tsnzrhe3dkobrgu4wenbvmvrgc3dffz';

let httpUp: Upstream;
let tlsUp: Upstream;
let sluice: TestSluice;
let dns: DnsServer;
let sluiceCa: string;

t.before(async () => {
  await makeTestPki();
  const testCa = await testCaFile();
  httpUp = await startUpstream({ host: '127.0.0.2' });
  tlsUp = await startUpstream({ host: '127.0.0.2', tls: await issueLeaf([I, '*.w.i.test']) });
  dns = await startDns({ [H]: [{ type: 'A', address: '127.0.0.2' }], [I]: [{ type: 'A', address: '127.0.0.2' }] });
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
      - host: ${H}
      - host: ${I}
        paths: ["/**"]
      - host: "*.w.i.test"
        paths: ["/**"]
`,
  });
  sluiceCa = readFileSync(path.join(sluice.caDir, 'ca.pem'), 'utf8');
});
t.teardown(async () => {
  await sluice.close();
  await httpUp.close();
  await tlsUp.close();
  await dns.close();
});

type Surface = 'query' | 'header' | 'json' | 'form' | 'path';
/** Head surfaces carry one line: no wrapped base64 there (a line break would end the header). */
const HEAD_ENCODINGS = ENCODINGS.filter((e) => e !== 'wrapped-base64');
const chainFor = (encodings: readonly Encoding[]) => fc.array(fc.constantFrom(...encodings), { minLength: 0, maxLength: 2 });

/** The bytes of one request carrying `value` on `surface`; origin-form inside a tunnel, else absolute-form. */
function requestBytes(surface: Surface, value: string, authority: string, absolute: boolean): string {
  const base = absolute ? `http://${authority}` : '';
  const auth = absolute ? [`Proxy-Authorization: ${basicAuth(TOOL, TOKEN)}`] : [];
  const pathAndQuery = surface === 'query' ? `/upload?a=1&v=${value}` : surface === 'path' ? `/notes/${value}` : '/upload';
  const body = surface === 'json' ? `{"id":1,"note":"${value.replace(/\r\n/g, '\\r\\n')}"}` : surface === 'form' ? `id=1&note=${value}` : '';
  const headers = [
    `Host: ${authority}`,
    ...auth,
    ...(surface === 'header' ? [`X-Note: ${value}`] : []),
    ...(body === '' ? [] : [`Content-Type: ${surface === 'json' ? 'application/json' : 'application/x-www-form-urlencoded'}`]),
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Connection: close',
  ];
  return `${body === '' ? 'GET' : 'POST'} ${base}${pathAndQuery} HTTP/1.1\r\n${headers.join('\r\n')}\r\n\r\n${body}`;
}

interface Seen {
  ok: boolean;
  why: string;
}

function refused(r: RawResponse): Seen {
  const deny = r.headers['x-sluice-deny'];
  return { ok: r.status === 403 && deny === 'secret_leak', why: `status ${r.status}, X-Sluice-Deny ${String(deny)}` };
}

interface Transport {
  name: string;
  upstream: () => Upstream;
  /** body surfaces go upstream once the body was scanned; a refused head never does */
  arbitrary: fc.Arbitrary<{ surface: Surface | 'text' | 'binary'; chain: Encoding[] }>;
  run(surface: Surface | 'text' | 'binary', value: string): Promise<Seen>;
}

const headOrBody = (surfaces: Surface[]) =>
  fc
    .constantFrom(...surfaces)
    .chain((surface) => chainFor(surface === 'json' || surface === 'form' ? ENCODINGS : HEAD_ENCODINGS).map((chain) => ({ surface, chain })));

const TRANSPORTS: Transport[] = [
  {
    name: 'absolute-form',
    upstream: () => httpUp,
    arbitrary: headOrBody(['query', 'header', 'json', 'form', 'path']),
    run: async (surface, value) => {
      const socket = await openSocket(sluice.port);
      return refused(await exchangeRaw(socket, requestBytes(surface as Surface, value, `${H}:${httpUp.port}`, true), { timeoutMs: 10_000 }));
    },
  },
  {
    name: 'intercepted CONNECT',
    upstream: () => tlsUp,
    // No path surface: the rule restricts paths, and a percent-encoded "/" is refused there first (path_not_allowed).
    arbitrary: headOrBody(['query', 'header', 'json', 'form']),
    run: async (surface, value) => {
      const authority = `${I}:${tlsUp.port}`;
      const socket = await tlsTunnel(sluice.port, authority, basicAuth(TOOL, TOKEN), { ca: sluiceCa });
      return refused(await exchangeRaw(socket, requestBytes(surface as Surface, value, authority, false), { timeoutMs: 10_000 }));
    },
  },
  {
    name: 'WebSocket frame',
    upstream: () => httpUp,
    arbitrary: fc.record({ surface: fc.constantFrom('text' as const, 'binary' as const), chain: chainFor(ENCODINGS) }),
    run: async (surface, value) => {
      const authority = `${H}:${httpUp.port}`;
      const socket = await openSocket(sluice.port);
      const opened = await roundTrip(
        socket,
        upgradeRequest({ target: `http://${authority}/ws`, host: authority, proxyAuthorization: basicAuth(TOOL, TOKEN) }),
        { timeoutMs: 10_000 },
      );
      if (opened.status !== 101) {
        socket.destroy();
        return { ok: false, why: `upgrade answered ${opened.status}` };
      }
      const frames = readFrames(socket, opened.rest);
      const payload =
        surface === 'text' ? `{"op":"save","data":"${value.replace(/\r\n/g, '\\r\\n')}"}` : Buffer.from(`\u0000\u0001${value}\u0002`);
      socket.write(maskedFrame(payload, surface === 'text' ? 0x1 : 0x2));
      const got = await frames;
      socket.destroy();
      const close = got.find((f) => f.opcode === 0x8);
      const data = got.filter((f) => f.opcode === 0x1 || f.opcode === 0x2);
      const code = close && close.payload.length >= 2 ? close.payload.readUInt16BE(0) : null;
      const reason = close ? close.payload.subarray(2).toString('utf8') : '';
      return {
        ok: code === 1008 && reason.startsWith('secret_leak') && data.length === 0,
        why: `close ${String(code)} "${reason.split(':')[0]}", ${data.length} message(s) echoed`,
      };
    },
  },
];

interface Frame {
  opcode: number;
  payload: Buffer;
}

/** Server frames (unmasked, short) until the connection closes or a close frame arrives; bounded by a timeout. */
function readFrames(socket: net.Socket, first: Buffer): Promise<Frame[]> {
  return new Promise((resolve) => {
    let buf = first;
    const frames: Frame[] = [];
    const done = (): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      resolve(frames);
    };
    const parse = (): boolean => {
      for (;;) {
        if (buf.length < 2) return false;
        let len = buf[1]! & 0x7f;
        let at = 2;
        if (len === 126) {
          if (buf.length < 4) return false;
          len = buf.readUInt16BE(2);
          at = 4;
        }
        if (buf.length < at + len) return false;
        const frame = { opcode: buf[0]! & 0x0f, payload: buf.subarray(at, at + len) };
        frames.push(frame);
        buf = buf.subarray(at + len);
        if (frame.opcode === 0x8) return true;
      }
    };
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      if (parse()) done();
    };
    const timer = setTimeout(done, 10_000);
    socket.on('data', onData);
    socket.once('close', done);
    socket.resume();
    if (parse()) done();
  });
}

for (const tr of TRANSPORTS) {
  t.test(`property: a credential of every shape, up to two encodings, is refused via ${tr.name}`, async (t) => {
    const before = await scrapeMetrics(sluice.adminPort);
    let runs = 0;
    for (const [shape, credential] of Object.entries(CREDENTIALS)) {
      const failures: string[] = [];
      await fc
        .assert(
          fc.asyncProperty(credential, tr.arbitrary, async (value, { surface, chain }) => {
            const upstreamBefore = tr.upstream().requests.length;
            const mark = await auditMark(sluice);
            const seen = await tr.run(surface, applyChain(value, chain)).catch((err: Error): Seen => ({ ok: false, why: err.message }));
            const events = await canonicalSince(sluice, mark, 1);
            const violation = events.find((e) => e.type === 'policy.violation' && e.reason === 'secret_leak');
            // A body or a frame is scanned as it streams: its head may have gone upstream, never the bytes that leak.
            const headReached = ['query', 'header', 'path'].includes(surface) && tr.upstream().requests.length !== upstreamBefore;
            runs++;
            if (seen.ok && violation && !headReached) return true;
            // The value never goes into the message: shape, surface, chain and what was seen.
            failures.push(`${shape} on ${surface} under [${chain.join(', ')}]: ${seen.why}, audit ${violation ? 'ok' : 'missing'}`);
            return false;
          }),
          { numRuns: RUNS, endOnFailure: true },
          // fast-check's own message prints the counterexample (the credential): only ours is reported.
        )
        .catch(() => (failures.length === 0 ? failures.push(`${shape}: the property failed`) : 0));
      t.same(failures, [], `${shape}: refused on every run`);
    }
    const after = await scrapeMetrics(sluice.adminPort);
    const leaks = total(after, 'sluice_leaks_total', { tool: TOOL }) - total(before, 'sluice_leaks_total', { tool: TOOL });
    t.comment(`${tr.name}: ${runs} runs over ${Object.keys(CREDENTIALS).length} shapes`);
    t.equal(leaks, runs, 'sluice_leaks_total counted each refusal');
  });
}

// Hostname labels (issue 22), the spellings a socket shows; the policy is strict by default, so the check is on.
t.test('encoded label on the CONNECT line: upper case and trailing dot are the same name', async (t) => {
  for (const host of [`${ENCODED_LABEL.toUpperCase()}.w.i.test`, `${ENCODED_LABEL}.w.i.test.`, `${ENCODED_LABEL}.W.I.TEST.`]) {
    const mark = await auditMark(sluice);
    const tunnel = await connectTunnel(sluice.port, `${host}:${tlsUp.port}`, basicAuth(TOOL, TOKEN), { timeoutMs: 10_000 });
    tunnel.socket.destroy();
    t.equal(tunnel.status, 403, host.slice(-12));
    t.equal(tunnel.headers['x-sluice-deny'], 'encoded_hostname');
    const [event] = await canonicalSince(sluice, mark, 1);
    t.match(event, { type: 'policy.violation', reason: 'encoded_hostname', host: `${ENCODED_LABEL}.w.i.test` }, 'audited on the canonical name');
    t.match(String(event?.detail), /label 1 of the 1 the wildcard matched reads as encoded data \(50 characters, \d\.\d bits\/char/);
  }
});

t.test('a Host header naming an encoded label inside a tunnel to an allowed host is refused (bad_request)', async (t) => {
  const authority = `${I}:${tlsUp.port}`;
  const before = tlsUp.requests.length;
  const socket = await tlsTunnel(sluice.port, authority, basicAuth(TOOL, TOKEN), { ca: sluiceCa });
  const r = await exchangeRaw(socket, `GET / HTTP/1.1\r\nHost: ${ENCODED_LABEL}.w.i.test:${tlsUp.port}\r\nConnection: close\r\n\r\n`, {
    timeoutMs: 10_000,
  });
  t.equal(r.status, 400);
  t.equal(r.headers['x-sluice-deny'], 'bad_request', 'the request is decided on the CONNECT target, never on Host');
  t.equal(tlsUp.requests.length, before, 'nothing reached the upstream');
});

t.test('an IPv6 literal is not judged, and an ordinary name under the wildcard passes the label check', async (t) => {
  // Not in the policy: refused as no_rule, never encoded_hostname (an address has no labels).
  const v6 = await connectTunnel(sluice.port, `[2001:db8::1]:${tlsUp.port}`, basicAuth(TOOL, TOKEN), { timeoutMs: 10_000 });
  v6.socket.destroy();
  t.equal(v6.headers['x-sluice-deny'], 'no_rule');
  // Not in DNS either: the label check let it through to the address step (dns_failure).
  const plain = await connectTunnel(sluice.port, `api-eu-west-1.w.i.test:${tlsUp.port}`, basicAuth(TOOL, TOKEN), { timeoutMs: 10_000 });
  plain.socket.destroy();
  t.not(plain.headers['x-sluice-deny'], 'encoded_hostname');
  t.equal(plain.headers['x-sluice-deny'], 'dns_failure');
});
