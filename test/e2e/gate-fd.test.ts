// Issue 13, contract item 2 under a real fd limit: `sluice serve` (the built CLI) runs under
// `prlimit --nofile=1024:1024`. One tool opens 2,000 intercepted CONNECTs in bounded batches and
// abandons them (half half-close right after the 200, half stay silent until sluice closes them);
// another tool makes a plain request between batches and is served every time. Afterwards sluice's
// fd count (/proc/PID/fd) is back where it started and the audit holds one net.tunnel per CONNECT.
// On the code before the fix the abandoned sockets are never closed, the process runs out of fds
// near the thousandth, and every tool gets errors until restart.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import t from 'tap';
import { basicAuth, connectTunnel } from '../helpers/clients.js';
import { serveCliProcess, type ServedCli } from '../helpers/gate-cli.js';
import { waitSocketClosed } from '../helpers/gate-tunnel.js';
import { sha256, TOKEN } from '../helpers/sluice.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const FD_LIMIT = 1024;
const HEADER_TIMEOUT_MS = 400;
const TUNNELS = 2000;
const BATCH = 100;
/** How long a batch may take to be closed by sluice: ten times the header timeout. */
const CLOSE_BOUND_MS = 10 * HEADER_TIMEOUT_MS;
const ABANDONER = 'abandoner';
const STEADY = 'steady';

let upstream: Upstream;
let sluice: ServedCli;

t.before(async () => {
  upstream = await startUpstream({ host: '127.0.0.2' });
  sluice = await serveCliProcess(
    `
version: 1
network:
  allow_private_cidrs: ["127.0.0.2/32"]
  allow_ports: [443, ${upstream.port}]
limits:
  header_timeout_ms: ${HEADER_TIMEOUT_MS}
tools:
  ${ABANDONER}:
    token_sha256: "${sha256(TOKEN)}"
    allow:
      - host: 93.184.216.34
        paths: ["/**"]
  ${STEADY}:
    token_sha256: "${sha256(TOKEN)}"
    allow:
      - host: 127.0.0.2
`,
    { wrapper: ['prlimit', `--nofile=${FD_LIMIT}:${FD_LIMIT}`] },
  );
});
t.teardown(async () => {
  await sluice.stop();
  await upstream.close();
});

/** fds of the sluice process, or -1 once it is gone. */
function fds(): number {
  try {
    return sluice.fdCount();
  } catch {
    return -1;
  }
}

/** One plain GET by the other tool; its status, 0 when it got no response. */
function steadyRequest(path: string): Promise<number> {
  const authority = `127.0.0.2:${upstream.port}`;
  return new Promise((resolve) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: sluice.port,
        path: `http://${authority}${path}`,
        agent: false,
        timeout: 5000,
        headers: { Host: authority, Connection: 'close', 'Proxy-Authorization': basicAuth(STEADY, TOKEN) },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
    req.end();
  });
}

async function waitUntil(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

t.test(`${TUNNELS} abandoned intercepted CONNECTs under prlimit --nofile=${FD_LIMIT}`, async (t) => {
  const limits = readFileSync(`/proc/${sluice.pid}/limits`, 'utf8');
  t.match(limits, new RegExp(`^Max open files\\s+${FD_LIMIT}\\s+${FD_LIMIT}\\s`, 'm'), 'sluice runs with the fd limit');

  t.equal(await steadyRequest('/anything/warm-up'), 200, 'the other tool is served before the run');
  // The warm-up's client connection closes a moment after its response.
  await new Promise((r) => setTimeout(r, 200));
  const before = fds();
  t.comment(`sluice fds before the run: ${before}`);

  let opened = 0;
  let refusedOrFailed = 0;
  let notClosedBySluice = 0;
  /** tunnels sluice left open; destroyed at the end so a failing run does not hold them forever */
  const leftOpen: net.Socket[] = [];
  const steady: Array<{ batch: number; status: number }> = [];
  let stalled = false;

  for (let batch = 0; batch < TUNNELS / BATCH; batch++) {
    const tunnels = await Promise.all(
      Array.from({ length: BATCH }, (_, i) =>
        connectTunnel(sluice.port, '93.184.216.34:443', basicAuth(ABANDONER, TOKEN), { timeoutMs: 5000 }).then(
          (tunnel) => ({ tunnel, halfClose: i % 2 === 0 }),
          () => null,
        ),
      ),
    );
    const closes: Array<Promise<{ socket: net.Socket; closed: boolean }>> = [];
    for (const entry of tunnels) {
      if (!entry || entry.tunnel.status !== 200) {
        refusedOrFailed++;
        entry?.tunnel.socket.destroy();
        continue;
      }
      opened++;
      const socket = entry.tunnel.socket;
      socket.on('error', () => undefined);
      socket.resume();
      if (entry.halfClose) socket.end();
      // Once one batch was left open there is no point in waiting for the next ones.
      closes.push(waitSocketClosed(socket, stalled ? 0 : CLOSE_BOUND_MS).then((closed) => ({ socket, closed })));
    }
    for (const { socket, closed } of await Promise.all(closes)) {
      if (closed) continue;
      notClosedBySluice++;
      leftOpen.push(socket);
    }
    if (notClosedBySluice > 0) stalled = true;
    steady.push({ batch, status: await steadyRequest(`/anything/batch-${batch}`) });
  }

  t.equal(refusedOrFailed, 0, `every CONNECT was answered 200 (${opened} were)`);
  t.equal(notClosedBySluice, 0, 'sluice closed every abandoned tunnel itself');
  t.same(
    steady.filter((r) => r.status !== 200),
    [],
    'the other tool was served after every batch',
  );
  t.equal(steady.length, TUNNELS / BATCH);

  for (const socket of leftOpen) socket.resetAndDestroy();
  const back = await waitUntil(() => fds() <= before, 10_000);
  const after = fds();
  t.ok(back, `sluice's fd count is back where it started (before ${before}, after ${after})`);

  await waitUntil(() => sluice.audit().filter((r) => r.tool === ABANDONER).length >= TUNNELS, 10_000);
  t.equal(await sluice.stop(), 0, 'sluice exits 0 on SIGTERM (the audit is flushed)');
  const records = sluice.audit().filter((r) => r.tool === ABANDONER && r.type !== 'secret.use');
  t.equal(records.length, TUNNELS, 'one audit event per CONNECT');
  t.equal(records.filter((r) => r.type === 'net.tunnel').length, TUNNELS, 'each a net.tunnel');
});
