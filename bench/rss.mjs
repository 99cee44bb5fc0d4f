// sluice's resident memory, idle and after 1000 requests: the figure the Kubernetes memory request
// (deploy/k8s/gateway/deployment.yaml, deploy/k8s/pod.yaml) is set from.
//
//   npm run build && node bench/rss.mjs [--requests 1000] [--concurrency 10]
//
// Starts bench/upstream.mjs and `dist/cli.js serve --policy bench/policy.yaml` on the bench's
// loopback ports (sluice 13130, admin 19090, upstream 18080/18443), then reads sluice's VmRSS from
// /proc: after start (policy loaded, CA created, 2 s settled), right after the requests (a third
// each of plain HTTP, passthrough HTTPS and intercepted HTTPS, each HTTPS one on a new CONNECT), and
// 5 s later. Prints one JSON line. Uses the bench lock's ports: do not run it beside `npm run bench`.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ProxyAgent, request } from 'undici';

const { values: opt } = parseArgs({
  options: { requests: { type: 'string', default: '1000' }, concurrency: { type: 'string', default: '10' } },
});
const BENCH = path.dirname(new URL(import.meta.url).pathname);
const ROOT = path.resolve(BENCH, '..');
const work = mkdtempSync(path.join(tmpdir(), 'sluice-rss-'));
const children = [];
const stop = () => {
  for (const child of children) child.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
};
process.on('exit', stop);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const rssKiB = (pid) => Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);

async function until(what, probe) {
  for (let i = 0; i < 200; i++) {
    if (await probe().catch(() => false)) return;
    await sleep(50);
  }
  throw new Error(`${what} did not come up`);
}

children.push(spawn(process.execPath, [path.join(BENCH, 'upstream.mjs')], { stdio: 'ignore' }));
await until('the upstream', async () => (await request('http://127.0.0.1:18080/small')).statusCode === 200);

const policy = readFileSync(path.join(BENCH, 'policy.yaml'), 'utf8').replace(
  'upstream_ca: tls/upstream.pem',
  `upstream_ca: ${path.join(BENCH, 'tls/upstream.pem')}`,
);
writeFileSync(path.join(work, 'policy.yaml'), policy);
const sluice = spawn(
  process.execPath,
  [
    path.join(ROOT, 'dist/cli.js'),
    'serve',
    '--policy',
    path.join(work, 'policy.yaml'),
    '--listen',
    '127.0.0.1:13130',
    '--admin',
    '127.0.0.1:19090',
  ],
  {
    env: { ...process.env, SLUICE_CA_DIR: path.join(work, 'certs'), SLUICE_AUDIT: path.join(work, 'audit.log'), BENCH_SECRET: 'rss-bench' },
    stdio: 'ignore',
  },
);
children.push(sluice);
await until('sluice', async () => (await request('http://127.0.0.1:19090/readyz')).statusCode === 200);
await sleep(2000);
const idle = rssKiB(sluice.pid);

const proxy = (tool, token, ca) => new ProxyAgent({ uri: `http://${tool}:${token}@127.0.0.1:13130`, proxyTunnel: false, requestTls: { ca } });
const upstreamCa = readFileSync(path.join(BENCH, 'tls/upstream.pem'));
const sluiceCa = readFileSync(path.join(work, 'certs/ca.pem'));
const plain = proxy('bench', 'sluice-bench-token', upstreamCa);
// One request per connection for HTTPS: each is a CONNECT, a handshake and (intercepted) a leaf.
const routes = [
  { url: 'http://127.0.0.1:18080/small', dispatcher: () => plain },
  { url: 'https://localhost:18443/small', dispatcher: () => proxy('bench', 'sluice-bench-token', upstreamCa) },
  { url: 'https://localhost:18443/small', dispatcher: () => proxy('bench-mitm', 'bench-mitm-token', sluiceCa) },
];
const total = Number(opt.requests);
let next = 0;
const statuses = {};
async function worker() {
  while (next < total) {
    const route = routes[next++ % routes.length];
    const dispatcher = route.dispatcher();
    const res = await request(route.url, { dispatcher, headers: { connection: dispatcher === plain ? 'keep-alive' : 'close' } });
    await res.body.arrayBuffer();
    statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
    if (dispatcher !== plain) await dispatcher.close();
  }
}
await Promise.all(Array.from({ length: Number(opt.concurrency) }, worker));
const loaded = rssKiB(sluice.pid);
await plain.close();
await sleep(5000);
const settled = rssKiB(sluice.pid);
process.stdout.write(
  `${JSON.stringify({ node: process.version, requests: total, statuses, rss_mib: { idle: +(idle / 1024).toFixed(1), after_requests: +(loaded / 1024).toFixed(1), settled_5s: +(settled / 1024).toFixed(1) } })}\n`,
);
process.exit(0);
