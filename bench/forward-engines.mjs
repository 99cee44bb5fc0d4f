// Which library should carry sluice's forward path? Runs the same bare forward proxy (no policy,
// no audit: only the forwarding) on three engines against bench/upstream.mjs and loads each with
// wrk, absolute-form keep-alive GETs of 1 KiB as in the main bench:
//   http-proxy   createProxyServer with a keep-alive http.Agent
//   node-http    http.request with a keep-alive http.Agent, piping both ways
//   undici       a Pool per upstream and pool.stream() into the response
// Prints requests/s and CPU ms per 1000 requests for each, rounds interleaved, and writes
// bench/results/forward-engines.md. Usage: npm run bench:engines (needs wrk; BENCH_SECONDS, 8).
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const BENCH = path.dirname(fileURLToPath(import.meta.url));
const UPSTREAM_PORT = Number(process.env.UPSTREAM_HTTP_PORT ?? 18080);
const PROXY_PORT = Number(process.env.ENGINE_PROXY_PORT ?? 13140);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const ENGINES = ['http-proxy', 'node-http', 'undici'];

// ---------------------------------------------------------------------------------------------
// the proxy side: `node forward-engines.mjs --serve ENGINE` runs one engine in its own process

async function serve(engine) {
  const upstream = `http://127.0.0.1:${UPSTREAM_PORT}`;
  const originPath = (url) => {
    const parsed = new URL(url);
    return parsed.pathname + parsed.search;
  };
  let handler;
  if (engine === 'http-proxy') {
    const { default: httpProxy } = await import('http-proxy');
    const proxy = httpProxy.createProxyServer({ target: upstream, agent: new http.Agent({ keepAlive: true, maxSockets: 256 }), xfwd: false });
    proxy.on('error', (_err, _req, res) => res.destroy());
    handler = (req, res) => {
      req.url = originPath(req.url);
      proxy.web(req, res);
    };
  } else if (engine === 'node-http') {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
    handler = (req, res) => {
      const up = http.request(
        { host: '127.0.0.1', port: UPSTREAM_PORT, method: req.method, path: originPath(req.url), headers: req.headers, agent },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      up.on('error', () => res.destroy());
      req.pipe(up);
    };
  } else if (engine === 'undici') {
    const { Pool } = await import('undici');
    const pool = new Pool(upstream, { pipelining: 1 });
    handler = (req, res) => {
      const { host: _host, connection: _connection, ...headers } = req.headers;
      pool
        .stream(
          { path: originPath(req.url), method: req.method, headers, body: req.method === 'GET' ? null : req },
          ({ statusCode, headers: answer }) => {
            res.writeHead(statusCode, answer);
            return res;
          },
        )
        .catch(() => res.destroy());
    };
  } else {
    throw new Error(`unknown engine ${engine}`);
  }
  http.createServer({ keepAliveTimeout: 60_000 }, handler).listen(PROXY_PORT, '127.0.0.1', () => console.log('ready'));
}

// ---------------------------------------------------------------------------------------------
// the driver

function cpuSeconds(pid) {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function start(cmd, args, readyText) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, UPSTREAM_HTTP_PORT: String(UPSTREAM_PORT) } });
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}`)));
    child.stdout.on('data', (chunk) => {
      if (String(chunk).includes(readyText)) resolve(child);
    });
  });
}

function wrk(seconds) {
  const url = `http://127.0.0.1:${UPSTREAM_PORT}/small`;
  const out = execFileSync(
    'wrk',
    ['-t1', '-c50', `-d${seconds}s`, '--timeout', '5s', '-s', path.join(BENCH, 'abs.lua'), `http://127.0.0.1:${PROXY_PORT}/`],
    {
      encoding: 'utf8',
      env: { ...process.env, TARGET: url, AUTH_B64: '' },
    },
  );
  const line = out.split('\n').find((l) => l.startsWith('BENCH_JSON '));
  const r = JSON.parse(line.slice('BENCH_JSON '.length));
  const good = r.requests - r.errors.status;
  return {
    requests: good,
    rps: good / (r.duration_us / 1e6),
    p99_ms: r.p99_us / 1000,
    errors: r.errors.status + r.errors.connect + r.errors.timeout,
  };
}

async function measure(engine) {
  const proxy = await start(process.execPath, [fileURLToPath(import.meta.url), '--serve', engine], 'ready');
  try {
    wrk(2); // warm-up: JIT and pooled connections
    const before = cpuSeconds(proxy.pid);
    const r = wrk(SECONDS);
    const cpu = cpuSeconds(proxy.pid) - before;
    return { ...r, cpu_ms_per_1k: (cpu * 1000) / (r.requests / 1000) };
  } finally {
    proxy.kill();
    await sleep(300);
  }
}

async function main() {
  const upstream = await start(process.execPath, [path.join(BENCH, 'upstream.mjs')], 'upstream ready');
  try {
    const results = Object.fromEntries(ENGINES.map((e) => [e, []]));
    for (let round = 0; round < ROUNDS; round++) {
      for (const engine of ENGINES) {
        const r = await measure(engine);
        results[engine].push(r);
        console.log(
          `${engine.padEnd(11)} ${r.rps.toFixed(0).padStart(6)} req/s  p99 ${r.p99_ms.toFixed(2)} ms  ${r.cpu_ms_per_1k.toFixed(1)} CPU ms/1000  errors ${r.errors}`,
        );
      }
    }
    const best = (list, key) => Math.max(...list.map((r) => r[key]));
    const least = (list, key) => Math.min(...list.map((r) => r[key]));
    const lines = [
      `# forward engines, ${new Date().toISOString()}`,
      '',
      `${os.cpus()[0]?.model}, ${os.cpus().length} cores; node ${process.version}; wrk -t1 -c50, ${SECONDS}s per cell, ${ROUNDS} rounds interleaved (best shown).`,
      'A bare forward proxy per engine (no policy, audit or secrets), absolute-form 1 KiB GETs over keep-alive.',
      '',
      '| engine | requests/s ↑ | p99 ms ↓ | CPU ms / 1000 req ↓ |',
      '|---|---:|---:|---:|',
      ...ENGINES.map(
        (e) =>
          `| ${e} | ${best(results[e], 'rps').toFixed(0)} | ${least(results[e], 'p99_ms').toFixed(2)} | ${least(results[e], 'cpu_ms_per_1k').toFixed(1)} |`,
      ),
      '',
    ];
    fs.mkdirSync(path.join(BENCH, 'results'), { recursive: true });
    fs.writeFileSync(path.join(BENCH, 'results', 'forward-engines.md'), lines.join('\n'));
    console.log(lines.join('\n'));
  } finally {
    upstream.kill();
  }
}

if (process.argv[2] === '--serve') await serve(process.argv[3]);
else await main();
