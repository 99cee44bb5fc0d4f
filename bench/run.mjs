// npm run bench: sluice side by side with Squid (plain and ssl-bump) and tinyproxy, on the same
// loopback upstream, in one run. Prints one table of absolute figures and sluice/peer ratios and
// writes it to bench/results/latest.md and latest.json. See bench/README.md for what each row means.
//
// Settings (env, see README): BENCH_SECONDS (10), BENCH_QUICK=1 (2-second smoke run, smaller bulk
// and idle rows), BENCH_WARMUP (unrecorded seconds before each load cell, 3), BENCH_CONNECTIONS
// (wrk -c, 50), BENCH_TLS_CONC (TLS client workers, 16), BENCH_BULK_BYTES (1 GiB),
// BENCH_IDLE_TUNNELS (10000), BENCH_IDLE_HOLD (5), BENCH_ONLY=sluice,squid,... (columns),
// BENCH_ROWS=small_get,bulk_http,... (rows), BENCH_KEEP=1 (keep the temp dir with logs),
// BENCH_PORT_OFFSET=N (added to every port below, so two runs can share a machine: the upstream
// gets UPSTREAM_HTTP_PORT / UPSTREAM_HTTPS_PORT, sluice a copy of bench/policy.yaml with its
// upstream rules moved, squid and tinyproxy their shifted port in their generated configs),
// BENCH_SLUICE_NODE_FLAGS="--flag ..." (node flags for the sluice process alone),
// BENCH_LEAK_ROUNDS (3: the leak rows run their columns in turn that many times, best kept),
// BENCH_LEAK_CONCURRENT (5: then that many rounds with sluice and sluice-plain loaded at once),
// BENCH_PLAIN_DETECTOR (plain: what the sluice-plain column runs; layered gives an A/A check).
// The leak rows (group `leak`: post_json_4k, upload_1m) add a column sluice-plain: a second sluice
// started with SLUICE_LEAK_DETECTOR=plain (the shape scan from before issue 22), so the layered
// detector's cost is read in one run as sluice/sluice-plain.
import { json4k, upload1m } from './bodies.mjs';
import { spawn, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const BENCH = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(BENCH, '..');
const RESULTS = path.join(BENCH, 'results');

const DEFAULT_PORTS = {
  upstreamHttp: 18080,
  upstreamHttps: 18443,
  upstreamMcp: 18444,
  squid: 13128,
  tinyproxy: 13129,
  sluice: 13130,
  squidBump: 13132,
  sluicePlain: 13133,
  sluiceAdmin: 19090,
  sluicePlainAdmin: 19092,
  // the startup and rss rows spawn short-lived instances of their own, on ports of their own
  coldSluice: 13140,
  coldSluiceAdmin: 19091,
  coldSquid: 13141,
  coldTinyproxy: 13142,
  coldNode: 13143,
};
const portOffset = portOffsetFromEnv();
const PORTS = Object.fromEntries(Object.entries(DEFAULT_PORTS).map(([name, port]) => [name, port + portOffset]));

// Test credentials from bench/policy.yaml (their sha256 is in the policy; they guard nothing).
const CREDENTIALS = {
  bench: 'bench:sluice-bench-token',
  mitm: 'bench-mitm:bench-mitm-token',
  secret: 'bench-secret:bench-secret-token',
  mcp: 'bench-mcp:bench-mcp-token',
};

const quick = process.env.BENCH_QUICK === '1';
/** the bench_api secret sluice injects (bench-secret tool): random per run */
const secretValue = randomBytes(24).toString('hex');
const MiB = 2 ** 20;
const GiB = 2 ** 30;
const settings = {
  seconds: envNumber('BENCH_SECONDS', quick ? 2 : 10),
  connections: envNumber('BENCH_CONNECTIONS', 50),
  tlsConcurrency: envNumber('BENCH_TLS_CONC', 16),
  bulkBytes: envNumber('BENCH_BULK_BYTES', quick ? 256 * MiB : GiB),
  idleTunnels: envNumber('BENCH_IDLE_TUNNELS', quick ? 1000 : 10000),
  idleHoldSeconds: envNumber('BENCH_IDLE_HOLD', quick ? 2 : 5),
  warmupSeconds: envNumber('BENCH_WARMUP', quick ? 1 : 3),
  /** rounds of the leak rows (their columns in turn; each column's lowest CPU per request kept) */
  leakRounds: envNumber('BENCH_LEAK_ROUNDS', quick ? 1 : 3),
  /** rounds of the leak rows with both sluice columns under load at the same time (the concurrent pair) */
  leakConcurrent: envNumber('BENCH_LEAK_CONCURRENT', quick ? 1 : 5, { zero: true }),
};
const onlyColumns = envList('BENCH_ONLY');
/** node flags for the sluice process only (e.g. to compare GC settings), never for the clients or upstream */
const sluiceNodeFlags = (process.env.BENCH_SLUICE_NODE_FLAGS ?? '').split(' ').filter(Boolean);
/** rows (or row groups, e.g. `startup`) to run: BENCH_ROWS, or `--only a,b` on the command line */
const onlyRows = onlyFromArgs() ?? envList('BENCH_ROWS');

// node = a bare Node `http.createServer().listen()`: the floor of any Node server (startup, rss rows)
// sluice-base = another build of sluice (BENCH_SLUICE_BASE=path/to/dist/cli.js), for an A/B of the cold rows
const sluiceBase = process.env.BENCH_SLUICE_BASE ? path.resolve(process.env.BENCH_SLUICE_BASE) : null;
const BASE_COLUMN = sluiceBase ? ['sluice-base'] : [];
// sluice-plain = sluice with SLUICE_LEAK_DETECTOR=plain, for the leak rows only (started when one is picked)
const LEAK_ROW_IDS = ['post_json_4k', 'upload_1m'];
const leakRowsPicked = !onlyRows || onlyRows.has('leak') || LEAK_ROW_IDS.some((id) => onlyRows.has(id));
const PLAIN_COLUMN = leakRowsPicked ? ['sluice-plain'] : [];
const COLUMNS = ['direct', 'sluice', ...PLAIN_COLUMN, ...BASE_COLUMN, 'squid', 'squid-bump', 'tinyproxy', 'node'];
const RATIOS = [
  ...(leakRowsPicked ? [['sluice/sluice-plain', 'sluice-plain']] : []),
  ['sluice/squid', 'squid'],
  ['sluice/squid-bump', 'squid-bump'],
  ['sluice/tinyproxy', 'tinyproxy'],
  ['sluice/node', 'node'],
  ...(sluiceBase ? [['sluice/sluice-base', 'sluice-base']] : []),
];

function onlyFromArgs() {
  const args = process.argv.slice(2);
  const at = args.findIndex((a) => a === '--only' || a.startsWith('--only='));
  if (at < 0) return null;
  const raw = args[at].startsWith('--only=') ? args[at].slice('--only='.length) : args[at + 1];
  if (!raw) throw new Error('--only needs a list of rows, e.g. --only startup,rss');
  return new Set(
    raw
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
  );
}

/** A row runs when nothing was picked, or when its id or its group was. */
function rowSelected(row) {
  return !onlyRows || onlyRows.has(row.id) || (row.group !== undefined && onlyRows.has(row.group));
}

function envNumber(name, fallback, { zero = false } = {}) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0 || (value === 0 && !zero))
    throw new Error(`${name} must be a ${zero ? 'non-negative' : 'positive'} number, got ${raw}`);
  return value;
}

function portOffsetFromEnv() {
  const raw = process.env.BENCH_PORT_OFFSET;
  if (raw === undefined || raw === '') return 0;
  const offset = Number(raw);
  const highest = Math.max(...Object.values(DEFAULT_PORTS));
  if (!Number.isInteger(offset) || offset < 0 || highest + offset > 65535) {
    throw new Error(`BENCH_PORT_OFFSET must be an integer from 0 to ${65535 - highest}, got ${raw}`);
  }
  return offset;
}

function envList(name) {
  const raw = process.env[name];
  return raw
    ? new Set(
        raw
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean),
      )
    : null;
}

// ---------------------------------------------------------------------------------------------
// processes: everything started here is tracked and ended on exit, Ctrl-C or error

/** @type {Set<import('node:child_process').ChildProcess>} */
const children = new Set();
let tmp = '';
/** set once on Ctrl-C, SIGTERM or an error: no further cells, no results written */
let stopping = false;

function commandExists(cmd) {
  if (cmd.includes('/')) return fs.existsSync(cmd);
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function fdLimits() {
  const [soft, hard] = execFileSync('sh', ['-c', 'ulimit -Sn; ulimit -Hn'], { encoding: 'utf8' })
    .trim()
    .split('\n')
    .map((v) => (v === 'unlimited' ? 1_048_576 : Number(v)));
  return { soft, hard };
}

const fds = fdLimits();
/** File descriptors each process started here gets: the hard limit (raising it needs privileges). */
const maxFds = Math.min(fds.hard, 1_048_576);

/** Raises the child's soft fd limit to the hard one when they differ (prlimit execs in place). */
function withFdLimit(cmd, args) {
  if (fds.soft >= maxFds || !commandExists('prlimit')) return [cmd, args];
  return ['prlimit', [`--nofile=${maxFds}:${maxFds}`, '--', cmd, ...args]];
}

/** All live descendants of `root` (and root itself), from /proc. */
function processTree(root) {
  const parentOf = new Map();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(Number(entry));
    if (stat) parentOf.set(Number(entry), stat.ppid);
  }
  const tree = [root];
  for (let i = 0; i < tree.length; i++) {
    for (const [pid, ppid] of parentOf) if (ppid === tree[i]) tree.push(pid);
  }
  return tree.filter((pid) => parentOf.has(pid));
}

function readStat(pid) {
  let text;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // the command name may hold spaces and parentheses: fields start after the last ')'
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const n = (i) => Number(fields[i]);
  return { ppid: n(1), ticks: n(11) + n(12) + n(13) + n(14) };
}

function readStatusKib(pid, key) {
  try {
    const match = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) : 0;
  } catch {
    return 0;
  }
}

const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/**
 * CPU seconds used so far by a process tree: utime+stime of every live member, plus
 * cutime+cstime (children it already reaped, such as exited squid helpers).
 */
function cpuSeconds(root) {
  let ticks = 0;
  for (const pid of processTree(root)) ticks += readStat(pid)?.ticks ?? 0;
  return ticks / CLOCK_TICKS;
}

function rssKib(root) {
  let kib = 0;
  for (const pid of processTree(root)) kib += readStatusKib(pid, 'VmRSS');
  return kib;
}

/** Samples the tree's summed RSS every 200 ms until stopped; returns the peak in KiB. */
function startRssSampler(root) {
  let peak = rssKib(root);
  const timer = setInterval(() => {
    peak = Math.max(peak, rssKib(root));
  }, 200);
  return () => {
    clearInterval(timer);
    return Math.max(peak, rssKib(root));
  };
}

function portOpen(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Why a service failed, from its log: the first error line, else the last lines. */
function failureFromLog(file) {
  let lines;
  try {
    lines = fs.readFileSync(file, 'utf8').trim().split('\n');
  } catch {
    return '';
  }
  const error = lines.find((l) => /\b(error|fatal)\b/i.test(l) && !/^\s+at /.test(l));
  return (error ?? lines.slice(-3).join(' | ')).trim().slice(0, 300);
}

/**
 * Starts a long-running service in its own process group, logging to tmp/<name>.log, and waits
 * until `port` accepts connections. Throws with the log's tail when it exits or never listens.
 */
async function startService(name, cmd, args, { port, env = {}, cwd = ROOT, timeoutMs = 20_000 }) {
  if (await portOpen(port)) throw new Error(`port ${port} is already in use by another process`);
  const log = path.join(tmp, `${name}.log`);
  const out = fs.openSync(log, 'w');
  const [command, argv] = withFdLimit(cmd, args);
  const child = spawn(command, argv, {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', out, out],
    detached: true,
  });
  fs.closeSync(out);
  children.add(child);
  let exited = null;
  child.once('exit', (code, signal) => {
    exited = signal ?? `exit ${code}`;
    children.delete(child);
  });
  child.once('error', (err) => {
    exited = err.message;
  });
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (exited) throw new Error(`${name} stopped (${exited}): ${failureFromLog(log)}`);
    if (await portOpen(port)) return child;
    await sleep(100);
  }
  throw new Error(`${name} did not listen on ${port} within ${timeoutMs / 1000}s: ${failureFromLog(log)}`);
}

/** Runs a bench client to completion; resolves with its output whatever its exit code. */
function runClient(cmd, args, { env = {}, timeoutMs }) {
  const [command, argv] = withFdLimit(cmd, args);
  return new Promise((resolve) => {
    const child = spawn(command, argv, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (err) => (stderr += err.message));
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

async function stopAll() {
  const trees = [...children].map((child) => processTree(child.pid));
  for (const tree of trees) for (const pid of tree) signal(pid, 'SIGTERM');
  const deadline = Date.now() + 3000;
  while (Date.now() < deadline && trees.some((tree) => tree.some(alive))) await sleep(100);
  for (const tree of trees) for (const pid of tree) if (alive(pid)) signal(pid, 'SIGKILL');
}

function signal(pid, name) {
  try {
    process.kill(pid, name);
  } catch {
    // already gone
  }
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return !fs.readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// the contenders

/**
 * @typedef {{ name: string, port: number, pid?: number, reason?: string,
 *   httpAuth?: string, mitmAuth?: string, mitmCa?: string, intercepts: boolean, plain: boolean }} Proxy
 */

function fill(template, values) {
  let text = fs.readFileSync(path.join(BENCH, template), 'utf8');
  for (const [key, value] of Object.entries(values)) text = text.replaceAll(`@${key}@`, String(value));
  return text;
}

/** A directory squid (which drops root for the `proxy` user) can write in. */
function squidDir(name) {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir, { recursive: true });
  if (process.getuid?.() === 0) {
    const uid = Number(execFileSync('id', ['-u', 'proxy'], { encoding: 'utf8' }));
    const gid = Number(execFileSync('id', ['-g', 'proxy'], { encoding: 'utf8' }));
    execFileSync('chown', ['-R', `${uid}:${gid}`, dir]);
  }
  return dir;
}

async function startSquid() {
  const dir = squidDir('squid');
  const conf = path.join(tmp, 'squid.conf');
  fs.writeFileSync(conf, fill('squid.conf.tmpl', { PORT: PORTS.squid, DIR: dir, MAXFD: maxFds }));
  return startService('squid', 'squid', ['-N', '-n', 'sluicebenchplain', '-f', conf], { port: PORTS.squid });
}

async function startSquidBump() {
  const dir = path.join(tmp, 'squid-bump');
  fs.mkdirSync(dir);
  execFileSync('/usr/lib/squid/security_file_certgen', ['-c', '-s', path.join(dir, 'ssldb'), '-M', '16MB'], {
    stdio: 'ignore',
  });
  squidDir('squid-bump');
  const conf = path.join(tmp, 'squid-bump.conf');
  fs.writeFileSync(conf, fill('squid-bump.conf.tmpl', { PORT: PORTS.squidBump, DIR: dir, MAXFD: maxFds, BENCH }));
  return startService('squid-bump', 'squid', ['-N', '-n', 'sluicebenchbump', '-f', conf], { port: PORTS.squidBump });
}

async function startTinyproxy() {
  const dir = path.join(tmp, 'tinyproxy');
  fs.mkdirSync(dir);
  const conf = path.join(tmp, 'tinyproxy.conf');
  const maxClients = Math.max(2000, settings.idleTunnels + 100);
  fs.writeFileSync(conf, fill('tinyproxy.conf.tmpl', { PORT: PORTS.tinyproxy, DIR: dir, MAXCLIENTS: maxClients }));
  return startService('tinyproxy', 'tinyproxy', ['-d', '-c', conf], { port: PORTS.tinyproxy });
}

/**
 * bench/policy.yaml as sluice must see it this run: unchanged without an offset, else a copy in the
 * temp dir whose upstream rules name the shifted ports (and whose relative CA path still resolves).
 */
function benchPolicy() {
  const original = path.join(BENCH, 'policy.yaml');
  if (portOffset === 0) return original;
  const text = fs
    .readFileSync(original, 'utf8')
    .replaceAll(`:${DEFAULT_PORTS.upstreamHttp}"`, `:${PORTS.upstreamHttp}"`)
    .replaceAll(`:${DEFAULT_PORTS.upstreamHttps}"`, `:${PORTS.upstreamHttps}"`)
    .replaceAll(`:${DEFAULT_PORTS.upstreamMcp}"`, `:${PORTS.upstreamMcp}"`)
    .replace('upstream_ca: tls/upstream.pem', `upstream_ca: ${path.join(BENCH, 'tls', 'upstream.pem')}`);
  const copy = path.join(tmp, 'policy.yaml');
  fs.writeFileSync(copy, text);
  return copy;
}

async function startSluice({ name = 'sluice', port = PORTS.sluice, admin = PORTS.sluiceAdmin, env = {} } = {}) {
  const cli = path.join(ROOT, 'dist', 'cli.js');
  if (!fs.existsSync(cli)) throw new Error('dist/cli.js is missing (build it: npm run build)');
  const policy = benchPolicy();
  const child = await startService(
    name,
    process.execPath,
    [
      ...sluiceNodeFlags,
      cli,
      'serve',
      '--policy',
      policy,
      '--listen',
      `127.0.0.1:${port}`,
      '--admin',
      `127.0.0.1:${admin}`,
      '--ca-dir',
      path.join(tmp, `${name}-ca`),
      '--audit',
      path.join(tmp, `${name}-audit.log`),
    ],
    { port, env: { BENCH_SECRET: secretValue, ...env } },
  );
  return child;
}

/** what the sluice-plain column runs: `plain` (the default), or `layered` for an A/A check of the pairing */
const plainDetector = process.env.BENCH_PLAIN_DETECTOR === 'layered' ? 'layered' : 'plain';

/** The same sluice with the leak detector from before issue 22 (the plain shape scan), for the leak rows. */
function startSluicePlain() {
  return startSluice({
    name: 'sluice-plain',
    port: PORTS.sluicePlain,
    admin: PORTS.sluicePlainAdmin,
    env: { SLUICE_LEAK_DETECTOR: plainDetector },
  });
}

/** sluice's interception CA, as its admin port serves it (DESIGN: GET /ca.pem). */
async function fetchSluiceCa() {
  const file = path.join(tmp, 'sluice-ca.pem');
  try {
    const response = await fetch(`http://127.0.0.1:${PORTS.sluiceAdmin}/ca.pem`, { signal: AbortSignal.timeout(5000) });
    const pem = await response.text();
    if (response.ok && pem.includes('BEGIN CERTIFICATE')) {
      fs.writeFileSync(file, pem);
      return { file };
    }
    return { reason: `admin /ca.pem answered ${response.status}` };
  } catch (err) {
    return { reason: `admin /ca.pem: ${err.message}` };
  }
}

// ---------------------------------------------------------------------------------------------
// measurements: each returns { values: {metric: number}, error?: string }

const UPSTREAM_CA = path.join(BENCH, 'tls', 'upstream.pem');
const HTTP_SMALL = `http://127.0.0.1:${PORTS.upstreamHttp}/small`;
const HTTPS_SMALL = `https://localhost:${PORTS.upstreamHttps}/small`;
const HTTP_UPLOAD = `http://127.0.0.1:${PORTS.upstreamHttp}/upload`;

/** A leak row's request body, written once per run (the same bytes for every column). */
const bodyFiles = new Map();
function benchBody(kind) {
  let file = bodyFiles.get(kind);
  if (!file) {
    file = path.join(tmp, `body-${kind}.bin`);
    fs.writeFileSync(file, kind === 'json4k' ? json4k() : upload1m());
    bodyFiles.set(kind, file);
  }
  return file;
}

/** One request through the route a row uses, so a refusal becomes a readable n/a reason. */
async function probe({ proxyPort, auth, url, ca }) {
  const headers = path.join(tmp, 'probe.headers');
  const args = ['-sS', '--max-time', '15', '-o', '/dev/null', '-D', headers, '-w', '%{http_code} %{size_download}'];
  if (proxyPort) args.push('-x', `http://127.0.0.1:${proxyPort}`);
  if (auth) args.push('--proxy-user', auth);
  if (ca) args.push('--cacert', ca);
  args.push(url);
  const { stdout, stderr } = await runClient('curl', args, { timeoutMs: 20_000 });
  const [status, size] = stdout.trim().split(' ').map(Number);
  if (status === 200 && size > 0) return null;
  let seen = '';
  try {
    seen = fs.readFileSync(headers, 'utf8');
  } catch {
    // curl wrote no headers
  }
  const sluiceSays = /^x-sluice-(?:deny|error): *(.+)$/im.exec(seen)?.[1]?.trim();
  const statusLine = seen.split('\r\n').find((l) => /^HTTP\/\S+ [1-9]/.test(l) && !/ 200 /.test(l));
  return (
    [statusLine, sluiceSays && `X-Sluice: ${sluiceSays}`, stderr.trim().split('\n').at(-1)].filter(Boolean).join('; ').slice(0, 300) ||
    `probe answered ${status}`
  );
}

async function wrkSmallGet({ proxyPort, auth, target, seconds, body, contentType, connections = settings.connections }) {
  const url = proxyPort ? `http://127.0.0.1:${proxyPort}/` : `http://127.0.0.1:${PORTS.upstreamHttp}/`;
  const env = { TARGET: target, AUTH_B64: auth ? Buffer.from(auth).toString('base64') : '' };
  if (body) Object.assign(env, { BODY_FILE: body, CONTENT_TYPE: contentType ?? 'application/octet-stream' });
  const { stdout, stderr } = await runClient(
    'wrk',
    ['-t1', `-c${connections}`, `-d${seconds}s`, '--timeout', '5s', '-s', path.join(BENCH, 'abs.lua'), url],
    { env, timeoutMs: (seconds + 30) * 1000 },
  );
  const line = stdout.split('\n').find((l) => l.startsWith('BENCH_JSON '));
  if (!line) return { error: `wrk: ${(stderr || stdout).trim().split('\n').at(-1)}` };
  const r = JSON.parse(line.slice('BENCH_JSON '.length));
  const good = r.requests - r.errors.status;
  if (good <= 0) return { error: `wrk: no successful request (${JSON.stringify(r.errors)})` };
  const errors = r.errors.connect + r.errors.write + r.errors.status + r.errors.timeout;
  return {
    requests: good,
    values: {
      rps: good / (r.duration_us / 1e6),
      p50_ms: r.p50_us / 1000,
      p99_ms: r.p99_us / 1000,
      errors,
      read_errors: r.errors.read,
    },
  };
}

/** MCP tools/call round trips with the official SDK (bench/mcpload.mjs runs its own MCP server). */
async function mcpCalls({ proxyPort, auth, ca, seconds }) {
  const env = { MCP_PORT: String(PORTS.upstreamMcp), SECONDS: String(seconds), CONC: '8' };
  if (proxyPort) Object.assign(env, { PROXY_URL: `http://127.0.0.1:${proxyPort}`, PROXY_AUTH: auth, CA_FILE: ca });
  const { stdout, stderr } = await runClient(process.execPath, [path.join(BENCH, 'mcpload.mjs')], { env, timeoutMs: (seconds + 30) * 1000 });
  const line = stdout.split('\n').find((l) => l.startsWith('BENCH_JSON '));
  if (!line) return { error: `mcpload: ${(stderr || stdout).trim().split('\n').at(-1)}` };
  const r = JSON.parse(line.slice('BENCH_JSON '.length));
  if (r.requests <= 0) return { error: `mcpload: no successful call (${r.errors} failed)` };
  return {
    requests: r.requests,
    values: { rps: r.requests / (r.duration_us / 1e6), p50_ms: r.p50_us / 1000, p99_ms: r.p99_us / 1000, errors: r.errors },
  };
}

async function tlsLoad({ proxyPort, auth, ca, reuse, seconds }) {
  const args = [
    path.join(BENCH, 'hsload.mjs'),
    '--host',
    'localhost',
    '--port',
    String(PORTS.upstreamHttps),
    '--ca',
    ca,
    '--seconds',
    String(seconds),
    '--conc',
    String(settings.tlsConcurrency),
  ];
  if (proxyPort) args.push('--proxy', String(proxyPort));
  if (auth) args.push('--auth', auth);
  if (reuse) args.push('--reuse');
  const { stdout, stderr } = await runClient(process.execPath, args, { timeoutMs: (seconds + 60) * 1000 });
  let r;
  try {
    r = JSON.parse(stdout.trim().split('\n').at(-1));
  } catch {
    return { error: `hsload: ${(stderr || stdout).trim().split('\n').at(-1)}` };
  }
  if (r.ok === 0) return { error: `hsload: ${r.first_error ?? 'no successful request'}` };
  const rate = reuse ? { rps: r.per_s } : { cps: r.per_s };
  return { requests: r.ok, values: { ...rate, p50_ms: r.p50_ms, p99_ms: r.p99_ms, errors: r.fail } };
}

async function bulk({ proxyPort, auth, url, ca }) {
  const bytes = settings.bulkBytes;
  const args = ['-sS', '--max-time', '900', '-o', '/dev/null', '-w', '%{http_code} %{size_download} %{speed_download}'];
  if (proxyPort) args.push('-x', `http://127.0.0.1:${proxyPort}`);
  if (auth) args.push('--proxy-user', auth);
  if (ca) args.push('--cacert', ca);
  args.push(`${url}?bytes=${bytes}`);
  const { stdout, stderr } = await runClient('curl', args, { timeoutMs: 1_000_000 });
  const [status, size, speed] = stdout.trim().split(' ').map(Number);
  if (status !== 200 || size !== bytes) {
    return { error: `curl: status ${status}, ${size} of ${bytes} bytes; ${stderr.trim().split('\n').at(-1) ?? ''}` };
  }
  return { bytes, values: { mb_s: speed / 1e6 } };
}

/** Opens idle tunnels with bench/idle.mjs and reads the proxy's RSS while they are held. */
async function idleTunnels({ proxyPort, auth, rootPid }) {
  const count = idleTunnelCount();
  const baseline = rssKib(rootPid);
  const args = [
    path.join(BENCH, 'idle.mjs'),
    '--proxy',
    String(proxyPort),
    '--count',
    String(count),
    '--ca',
    UPSTREAM_CA,
    '--port',
    String(PORTS.upstreamHttps),
  ];
  if (auth) args.push('--auth', auth);
  const [command, argv] = withFdLimit(process.execPath, args);
  const child = spawn(command, argv, { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  children.add(child);
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const closed = new Promise((resolve) => child.once('close', resolve));
  try {
    const report = await new Promise((resolve) => {
      let stdout = '';
      const timer = setTimeout(() => resolve(null), 120_000 + count * 20);
      child.stdout.on('data', (d) => {
        stdout += d;
        if (stdout.includes('\n')) {
          clearTimeout(timer);
          resolve(JSON.parse(stdout.split('\n')[0]));
        }
      });
      child.once('close', () => {
        clearTimeout(timer);
        resolve(null);
      });
    });
    if (!report) return { error: `idle.mjs: ${stderr.trim().split('\n').at(-1) ?? 'no report'}` };
    if (report.opened === 0) return { error: `idle.mjs: no tunnel opened (${report.first_error})` };
    await sleep(settings.idleHoldSeconds * 1000);
    let held = 0;
    for (let i = 0; i < 5; i++) {
      held = Math.max(held, rssKib(rootPid));
      await sleep(200);
    }
    return {
      values: {
        tunnels: report.opened,
        failed: report.failed,
        rss_base_mib: baseline / 1024,
        rss_held_mib: held / 1024,
        kib_per_tunnel: (held - baseline) / report.opened,
      },
    };
  } finally {
    child.stdin.end();
    const gone = await Promise.race([closed.then(() => true), sleep(10_000).then(() => false)]);
    if (!gone) child.kill('SIGKILL');
    children.delete(child);
    // let the proxy release the tunnels before the next measurement
    await sleep(1000);
  }
}

function idleTunnelCount() {
  // a proxy holds two descriptors per tunnel (client side and upstream side), plus its own
  // (squid keeps a reserve and refuses new connections near its limit)
  return Math.min(settings.idleTunnels, Math.floor((maxFds - 500) / 2));
}

// ---------------------------------------------------------------------------------------------
// cold rows: startup and resident memory, measured on short-lived instances each row spawns on
// ports of its own (the long-running proxies above are not involved)

const COLD_STARTS = envNumber('BENCH_STARTS', 10);
const RSS_STARTS = envNumber('BENCH_RSS_STARTS', 3);
const RSS_REQUESTS = 1000;
/** when the rss row reads an idle instance a second time (after V8's memory reducer has run) */
const IDLE_SETTLED_MS = 12_000;

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * How to start one fresh instance of a contender. `n` names the instance's own files (audit log,
 * and with newCa its own empty CA directory, so sluice creates a CA as on a first start).
 */
function coldSpec(column, n, { newCa = false } = {}) {
  switch (column) {
    case 'node': {
      const port = PORTS.coldNode;
      // the floor of any Node server: http.createServer().listen(), answering "ok" so the rss row can load it
      const code = `require('node:http').createServer((q, s) => s.end('ok')).listen(${port}, '127.0.0.1')`;
      return { port, cmd: process.execPath, args: ['-e', code], url: `http://127.0.0.1:${port}/` };
    }
    case 'sluice':
    case 'sluice-base': {
      const cli = column === 'sluice' ? path.join(ROOT, 'dist', 'cli.js') : sluiceBase;
      if (!fs.existsSync(cli)) throw new Error('dist/cli.js is missing (build it: npm run build)');
      const port = PORTS.coldSluice;
      const args = [
        ...sluiceNodeFlags,
        cli,
        'serve',
        '--policy',
        benchPolicy(),
        '--listen',
        `127.0.0.1:${port}`,
        '--admin',
        `127.0.0.1:${PORTS.coldSluiceAdmin}`,
        '--ca-dir',
        path.join(tmp, newCa ? `cold-ca-${column}-${n}` : 'cold-ca'),
        '--audit',
        path.join(tmp, `cold-audit-${column}-${n}.log`),
        '--no-watch',
      ];
      return { port, admin: PORTS.coldSluiceAdmin, cmd: process.execPath, args, env: { BENCH_SECRET: secretValue }, auth: CREDENTIALS.bench };
    }
    case 'squid': {
      const dir = squidDir('cold-squid');
      const conf = path.join(tmp, 'cold-squid.conf');
      // squid sizes its descriptor table (and so its memory) by this: a common production figure,
      // not the idle row's hard limit
      fs.writeFileSync(conf, fill('squid.conf.tmpl', { PORT: PORTS.coldSquid, DIR: dir, MAXFD: 4096 }));
      return { port: PORTS.coldSquid, cmd: 'squid', args: ['-N', '-n', 'sluicebenchcold', '-f', conf] };
    }
    case 'tinyproxy': {
      const dir = path.join(tmp, 'cold-tinyproxy');
      fs.mkdirSync(dir, { recursive: true });
      const conf = path.join(tmp, 'cold-tinyproxy.conf');
      fs.writeFileSync(conf, fill('tinyproxy.conf.tmpl', { PORT: PORTS.coldTinyproxy, DIR: dir, MAXCLIENTS: 100 }));
      // it closes the connection after each response: the rss row's client reconnects per request
      return { port: PORTS.coldTinyproxy, cmd: 'tinyproxy', args: ['-d', '-c', conf], closes: true };
    }
    default:
      throw new Error(`no cold start for ${column}`);
  }
}

async function readyzStatus(port) {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(2000) });
    await response.arrayBuffer();
    return response.status;
  } catch {
    return 0;
  }
}

/**
 * Spawns one instance and times spawn → first accepted connection (a TCP connect that succeeds),
 * its CPU until then, and for sluice the first /readyz 200 (polled alongside from the spawn) and
 * whether /readyz said ready when asked right after that first connection.
 */
async function spawnCold(name, spec) {
  const log = path.join(tmp, `${name}.log`);
  const out = fs.openSync(log, 'a');
  const deadline = performance.now() + 20_000;
  const t0 = performance.now();
  const child = spawn(spec.cmd, spec.args, { cwd: ROOT, env: { ...process.env, ...spec.env }, stdio: ['ignore', out, out], detached: true });
  fs.closeSync(out);
  children.add(child);
  let exited = null;
  const gone = new Promise((resolve) => child.once('close', resolve));
  child.once('exit', (code, sig) => (exited = sig ?? `exit ${code}`));
  child.once('error', (err) => (exited = err.message));
  const failed = () => exited !== null || performance.now() > deadline;
  const readyz = spec.admin
    ? (async () => {
        while (!failed()) {
          if ((await readyzStatus(spec.admin)) === 200) return performance.now() - t0;
          await sleep(2);
        }
        return null;
      })()
    : Promise.resolve(null);
  while (!(await portOpen(spec.port))) {
    if (failed()) {
      await stopCold({ child, gone });
      throw new Error(`${name} ${exited ? `stopped (${exited})` : 'did not listen within 20s'}: ${failureFromLog(log)}`);
    }
    await sleep(2);
  }
  const acceptedMs = performance.now() - t0;
  const cpuMs = cpuSeconds(child.pid) * 1000;
  const readyAtAccept = spec.admin ? (await readyzStatus(spec.admin)) === 200 : null;
  const readyzMs = await readyz;
  return { child, gone, acceptedMs, cpuMs, readyAtAccept, readyzMs };
}

/** Ends a cold instance at once (its shutdown is not what is measured) and waits for it. */
async function stopCold({ child, gone }) {
  for (const pid of processTree(child.pid)) signal(pid, 'SIGKILL');
  await Promise.race([gone, sleep(5000)]);
  children.delete(child);
}

const coldCache = new Map();

/** The startup row: COLD_STARTS spawns after one unrecorded one (it warms the page cache). */
async function measureStartup(column, { newCa = false } = {}) {
  const key = `${column}${newCa ? '+new-ca' : ''}`;
  // the bare node server has no CA: its figures are the same for both startup rows
  if (coldCache.has(key)) return coldCache.get(key);
  if (column.startsWith('sluice') && !newCa && !fs.existsSync(path.join(tmp, 'cold-ca'))) {
    execFileSync(process.execPath, [path.join(ROOT, 'dist', 'cli.js'), 'ca', 'init', '--dir', path.join(tmp, 'cold-ca')], { stdio: 'ignore' });
  }
  const runs = [];
  try {
    for (let i = 0; i <= COLD_STARTS; i++) {
      const started = await spawnCold(`cold-${column}`, coldSpec(column, `${newCa ? 'new' : 'start'}-${i}`, { newCa }));
      await stopCold(started);
      if (i > 0) runs.push(started);
    }
  } catch (err) {
    return { na: err.message };
  }
  const values = {
    startup_ms: median(runs.map((r) => r.acceptedMs)),
    startup_cpu_ms: median(runs.map((r) => r.cpuMs)),
  };
  if (runs[0].readyAtAccept !== null) {
    values.readyz_ms = median(runs.map((r) => r.readyzMs ?? Infinity));
    values.ready_at_accept = runs.filter((r) => r.readyAtAccept).length;
  }
  const cell = { values };
  if (column === 'node' && !newCa) coldCache.set('node+new-ca', cell);
  return cell;
}

/** The rss row: RSS of a fresh instance idle for 2 s and for IDLE_SETTLED_MS, then after RSS_REQUESTS small GETs (median of RSS_STARTS). */
async function measureRss(column) {
  const idle = [];
  const settled = [];
  const loaded = [];
  try {
    for (let i = 0; i < RSS_STARTS; i++) {
      const spec = coldSpec(column, `rss-${i}`);
      const started = await spawnCold(`cold-${column}`, spec);
      try {
        await sleep(2000);
        idle.push(rssKib(started.child.pid));
        // V8's memory reducer runs about 8 s into an idle process (a compacting GC that shrinks the
        // young generation the start grew): the figure a sidecar sits at, as against the start's peak
        await sleep(IDLE_SETTLED_MS - 2000);
        settled.push(rssKib(started.child.pid));
        const args = [path.join(BENCH, 'count.mjs'), '--url', spec.url ?? HTTP_SMALL, '--count', String(RSS_REQUESTS), '--conc', '10'];
        if (!spec.url) args.push('--proxy', String(spec.port));
        if (spec.auth) args.push('--auth', spec.auth);
        if (spec.closes) args.push('--close');
        const { stdout, stderr } = await runClient(process.execPath, args, { timeoutMs: 60_000 });
        let report;
        try {
          report = JSON.parse(stdout.trim().split('\n').at(-1));
        } catch {
          throw new Error(`count.mjs: ${(stderr || stdout).trim().split('\n').at(-1)}`);
        }
        if (report.ok !== RSS_REQUESTS) throw new Error(`count.mjs: ${report.ok} of ${RSS_REQUESTS} answered 200 (${report.first_error})`);
        await sleep(1000);
        loaded.push(rssKib(started.child.pid));
      } finally {
        await stopCold(started);
      }
    }
  } catch (err) {
    return { na: err.message };
  }
  return { values: { idle_rss_mib: median(idle) / 1024, idle_settled_rss_mib: median(settled) / 1024, rss_1k_mib: median(loaded) / 1024 } };
}

// ---------------------------------------------------------------------------------------------
// rows

const METRICS = {
  rps: { label: 'requests/s', better: 'higher', digits: 0 },
  cps: { label: 'new connections/s', better: 'higher', digits: 0 },
  p50_ms: { label: 'p50 latency ms', better: 'lower', digits: 2 },
  p99_ms: { label: 'p99 latency ms', better: 'lower', digits: 2 },
  errors: { label: 'failed requests', better: 'lower', digits: 0, ratio: false },
  read_errors: { label: 'wrk read errors (closed connections)', better: 'lower', digits: 0, ratio: false },
  cpu_ms_per_1k: { label: 'proxy CPU ms / 1000 req', better: 'lower', digits: 1 },
  cpu_ms_per_req: { label: 'proxy CPU ms / req', better: 'lower', digits: 3 },
  mb_s: { label: 'MB/s', better: 'higher', digits: 0 },
  cpu_s_per_gib: { label: 'proxy CPU s / GiB', better: 'lower', digits: 2 },
  peak_rss_mib: { label: 'peak RSS MiB', better: 'lower', digits: 1 },
  tunnels: { label: 'tunnels held', better: 'higher', digits: 0, ratio: false },
  failed: { label: 'tunnels failed', better: 'lower', digits: 0, ratio: false },
  rss_base_mib: { label: 'RSS before MiB', better: 'lower', digits: 1 },
  rss_held_mib: { label: 'RSS holding tunnels MiB', better: 'lower', digits: 1 },
  kib_per_tunnel: { label: 'KiB per idle tunnel', better: 'lower', digits: 1 },
  startup_ms: { label: 'spawn → first accepted connection ms (median)', better: 'lower', digits: 1 },
  startup_cpu_ms: { label: 'CPU ms until then (median)', better: 'lower', digits: 0 },
  readyz_ms: { label: 'spawn → /readyz 200 ms (median)', better: 'lower', digits: 1, ratio: false },
  ready_at_accept: { label: `/readyz 200 right after the first connection (of ${COLD_STARTS})`, better: 'higher', digits: 0, ratio: false },
  idle_rss_mib: { label: 'RSS idle 2 s after start MiB', better: 'lower', digits: 1 },
  idle_settled_rss_mib: { label: `RSS idle ${IDLE_SETTLED_MS / 1000} s after start MiB`, better: 'lower', digits: 1 },
  rss_1k_mib: { label: `RSS after ${RSS_REQUESTS} small GETs MiB`, better: 'lower', digits: 1 },
};

/**
 * Each row: which columns it has, and for a column the route (proxy port, credentials, target).
 * `measure(route)` runs the client; CPU and peak RSS of the proxy are added around it.
 */
const ROWS = [
  {
    id: 'startup',
    group: 'startup',
    title: `startup, existing CA (median of ${COLD_STARTS} spawns)`,
    columns: ['sluice', ...BASE_COLUMN, 'squid', 'tinyproxy', 'node'],
    metrics: ['startup_ms', 'startup_cpu_ms', 'readyz_ms', 'ready_at_accept'],
    cold: (column) => measureStartup(column),
  },
  {
    id: 'startup_new_ca',
    group: 'startup',
    title: `startup, first start that creates the CA (median of ${COLD_STARTS} spawns)`,
    columns: ['sluice', ...BASE_COLUMN, 'node'],
    metrics: ['startup_ms', 'startup_cpu_ms', 'readyz_ms', 'ready_at_accept'],
    cold: (column) => measureStartup(column, { newCa: true }),
  },
  {
    id: 'rss',
    group: 'rss',
    title: `resident memory of a fresh instance, idle and after ${RSS_REQUESTS} small GETs (median of ${RSS_STARTS})`,
    columns: ['sluice', ...BASE_COLUMN, 'squid', 'tinyproxy', 'node'],
    metrics: ['idle_rss_mib', 'idle_settled_rss_mib', 'rss_1k_mib'],
    cold: measureRss,
  },
  {
    id: 'small_get',
    title: 'small GET 1 KiB, keep-alive, absolute-form (wrk -t1)',
    columns: ['direct', 'sluice', 'squid', 'tinyproxy'],
    metrics: ['rps', 'p50_ms', 'p99_ms', 'errors', 'read_errors', 'cpu_ms_per_1k', 'peak_rss_mib'],
    route: (p) => ({ auth: p.httpAuth, url: HTTP_SMALL, target: p.direct ? '/small' : HTTP_SMALL }),
    measure: wrkSmallGet,
    warmup: true,
  },
  {
    id: 'small_get_secret',
    title: 'small GET 1 KiB with a secret injected (sluice only; compare with the row above)',
    columns: ['sluice'],
    metrics: ['rps', 'p50_ms', 'p99_ms', 'errors', 'cpu_ms_per_1k', 'peak_rss_mib'],
    route: () => {
      const url = `http://127.0.0.1:${PORTS.upstreamHttp}/small`;
      return { auth: CREDENTIALS.secret, url, target: url };
    },
    measure: wrkSmallGet,
    warmup: true,
  },
  // issue 22: the layered leak detector (sluice) against the plain shape scan (sluice-plain), same run
  {
    id: 'post_json_4k',
    group: 'leak',
    title: 'small POST, 4 KiB JSON body, keep-alive, absolute-form (wrk -t1): leak detector layered (sluice) vs plain (sluice-plain)',
    columns: ['direct', 'sluice', 'sluice-plain', 'squid', 'tinyproxy'],
    metrics: ['rps', 'p50_ms', 'p99_ms', 'errors', 'read_errors', 'cpu_ms_per_req', 'peak_rss_mib'],
    route: (p) => ({
      auth: p.httpAuth,
      url: HTTP_UPLOAD,
      target: p.direct ? '/upload' : HTTP_UPLOAD,
      body: benchBody('json4k'),
      contentType: 'application/json',
    }),
    measure: wrkSmallGet,
    warmup: true,
    best: { by: 'cpu_ms_per_req' },
  },
  {
    id: 'upload_1m',
    group: 'leak',
    title: 'upload, 1 MiB random-bytes body, keep-alive, 8 connections (wrk -t1): leak detector layered (sluice) vs plain (sluice-plain)',
    columns: ['direct', 'sluice', 'sluice-plain', 'squid', 'tinyproxy'],
    metrics: ['rps', 'p50_ms', 'p99_ms', 'errors', 'read_errors', 'cpu_ms_per_req', 'peak_rss_mib'],
    route: (p) => ({
      auth: p.httpAuth,
      url: HTTP_UPLOAD,
      target: p.direct ? '/upload' : HTTP_UPLOAD,
      body: benchBody('upload1m'),
      connections: 8,
    }),
    measure: wrkSmallGet,
    warmup: true,
    best: { by: 'cpu_ms_per_req' },
  },
  {
    id: 'tls_new_conn',
    title: 'new connection per request: CONNECT + TLS + GET, passthrough (hsload)',
    columns: ['direct', 'sluice', 'squid', 'tinyproxy'],
    metrics: ['cps', 'p50_ms', 'p99_ms', 'errors', 'cpu_ms_per_1k', 'peak_rss_mib'],
    route: (p) => ({ auth: p.httpAuth, url: HTTPS_SMALL, ca: UPSTREAM_CA, reuse: false }),
    measure: tlsLoad,
    warmup: true,
  },
  {
    id: 'tls_reuse',
    title: 'GETs over kept-alive CONNECT tunnels, passthrough (hsload --reuse)',
    columns: ['direct', 'sluice', 'squid', 'tinyproxy'],
    metrics: ['rps', 'p50_ms', 'p99_ms', 'errors', 'cpu_ms_per_1k', 'peak_rss_mib'],
    route: (p) => ({ auth: p.httpAuth, url: HTTPS_SMALL, ca: UPSTREAM_CA, reuse: true }),
    measure: tlsLoad,
    warmup: true,
  },
  {
    id: 'mitm_new_conn',
    title: 'intercepted HTTPS, new handshake per request (hsload)',
    columns: ['direct', 'sluice', 'squid-bump'],
    metrics: ['cps', 'p50_ms', 'p99_ms', 'errors', 'cpu_ms_per_1k', 'peak_rss_mib'],
    route: (p) => ({ auth: p.mitmAuth, url: HTTPS_SMALL, ca: p.direct ? UPSTREAM_CA : p.mitmCa, reuse: false }),
    measure: tlsLoad,
    warmup: true,
  },
  {
    id: 'mitm_reuse',
    title: 'intercepted HTTPS, GETs over kept-alive tunnels (hsload --reuse)',
    columns: ['direct', 'sluice', 'squid-bump'],
    metrics: ['rps', 'p50_ms', 'p99_ms', 'errors', 'cpu_ms_per_1k', 'peak_rss_mib'],
    route: (p) => ({ auth: p.mitmAuth, url: HTTPS_SMALL, ca: p.direct ? UPSTREAM_CA : p.mitmCa, reuse: true }),
    measure: tlsLoad,
    warmup: true,
  },
  {
    id: 'bulk_http',
    title: 'bulk download, plain HTTP (curl)',
    columns: ['direct', 'sluice', 'squid', 'tinyproxy'],
    metrics: ['mb_s', 'cpu_s_per_gib', 'peak_rss_mib'],
    route: (p) => ({ auth: p.httpAuth, url: `http://127.0.0.1:${PORTS.upstreamHttp}/bulk` }),
    measure: bulk,
  },
  {
    id: 'bulk_tunnel',
    title: 'bulk download through a CONNECT tunnel (curl)',
    columns: ['direct', 'sluice', 'squid', 'tinyproxy'],
    metrics: ['mb_s', 'cpu_s_per_gib', 'peak_rss_mib'],
    route: (p) => ({ auth: p.httpAuth, url: `https://localhost:${PORTS.upstreamHttps}/bulk`, ca: UPSTREAM_CA }),
    measure: bulk,
  },
  {
    id: 'bulk_mitm',
    title: 'bulk download, intercepted HTTPS (curl)',
    columns: ['direct', 'sluice', 'squid-bump'],
    metrics: ['mb_s', 'cpu_s_per_gib', 'peak_rss_mib'],
    route: (p) => ({
      auth: p.mitmAuth,
      url: `https://localhost:${PORTS.upstreamHttps}/bulk`,
      ca: p.direct ? UPSTREAM_CA : p.mitmCa,
    }),
    measure: bulk,
  },
  {
    id: 'mcp_call',
    title: 'MCP tools/call round trips, official SDK client and server, 8 sessions (sluice reads every call; mcpload)',
    columns: ['direct', 'sluice'],
    metrics: ['rps', 'p50_ms', 'p99_ms', 'errors', 'cpu_ms_per_1k', 'peak_rss_mib'],
    route: (p) => ({ auth: CREDENTIALS.mcp, ca: p.direct ? UPSTREAM_CA : p.mitmCa }),
    measure: mcpCalls,
    warmup: true,
    // The MCP server runs inside mcpload.mjs: there is nothing to probe before it starts.
    noProbe: true,
    intercepted: true,
  },
  {
    id: 'idle_tunnels',
    title: 'memory holding idle CONNECT tunnels (TLS, one GET each, then idle; run first, on fresh processes)',
    columns: ['sluice', 'squid', 'tinyproxy'],
    metrics: ['tunnels', 'failed', 'rss_base_mib', 'rss_held_mib', 'kib_per_tunnel'],
    route: (p) => ({ auth: p.httpAuth, url: HTTPS_SMALL, ca: UPSTREAM_CA }),
    measure: idleTunnels,
    noCost: true,
    // What idle tunnels cost, not what earlier load rows left in each proxy's heap.
    runFirst: true,
  },
];

/** Runs one row for one column; returns metric values or an n/a reason. */
async function runCell(row, column, proxy) {
  const direct = column === 'direct';
  if (!direct && proxy.reason) return { na: proxy.reason };
  if (row.id.startsWith('mitm') || row.id === 'bulk_mitm' || row.intercepted) {
    if (!direct && !proxy.mitmCa) return { na: proxy.mitmReason ?? 'no interception CA' };
  }
  const route = { ...row.route({ ...proxy, direct }), proxyPort: direct ? undefined : proxy.port, rootPid: proxy.pid };
  const refused = row.noProbe ? null : await probe(route);
  if (refused) return { na: `probe: ${refused}` };
  // an unrecorded first pass, so a JIT-compiled proxy is measured warm like the others
  if (row.warmup) await row.measure({ ...route, seconds: settings.warmupSeconds });

  const before = direct ? 0 : cpuSeconds(proxy.pid);
  const stopSampler = direct ? null : startRssSampler(proxy.pid);
  const result = await row.measure({ ...route, seconds: settings.seconds });
  const peakKib = stopSampler?.() ?? 0;
  const cpu = direct ? 0 : cpuSeconds(proxy.pid) - before;
  if (result.error) return { na: result.error };

  const values = { ...result.values };
  if (!direct && !row.noCost) {
    values.peak_rss_mib = peakKib / 1024;
    if (result.requests) values.cpu_ms_per_1k = (cpu * 1000) / (result.requests / 1000);
    if (result.requests && row.metrics.includes('cpu_ms_per_req')) values.cpu_ms_per_req = (cpu * 1000) / result.requests;
    if (result.bytes) values.cpu_s_per_gib = cpu / (result.bytes / GiB);
  }
  return { values };
}

// ---------------------------------------------------------------------------------------------
// report

function versionOf(cmd, args) {
  try {
    const out = execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return out.trim().split('\n')[0];
  } catch (err) {
    // wrk -v exits 1 after printing its version
    return (
      String(err.stdout ?? '')
        .trim()
        .split('\n')[0] || 'unknown'
    );
  }
}

const loadAtStart = os.loadavg().map((l) => +l.toFixed(2));

function machineInfo() {
  const cpuModel = /model name\s*:\s*(.+)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? os.cpus()[0]?.model;
  const osName = /PRETTY_NAME="?([^"\n]+)/.exec(fs.readFileSync('/etc/os-release', 'utf8'))?.[1] ?? os.type();
  let sluice = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version;
  try {
    sluice += ` (${execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim()})`;
  } catch {
    // not a git checkout
  }
  return {
    cpu: cpuModel,
    cores: os.cpus().length,
    memory_gib: +(os.totalmem() / GiB).toFixed(1),
    kernel: os.release(),
    os: osName,
    node: process.version,
    sluice,
    squid: versionOf('squid', ['-v']),
    tinyproxy: versionOf('tinyproxy', ['-v']),
    wrk: versionOf('wrk', ['-v']).replace(/\s*Copyright.*/, ''),
    curl: versionOf('curl', ['--version']),
    fd_limit: maxFds,
    // other work on the machine makes figures noisy: this says how busy it was
    load_average_at_start: loadAtStart,
  };
}

function format(value, metric) {
  if (typeof value !== 'number' || !Number.isFinite(value)) return '';
  const { digits } = METRICS[metric];
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function toMarkdown(report) {
  const notes = [];
  const noteFor = (reason) => {
    let i = notes.indexOf(reason);
    if (i < 0) i = notes.push(reason) - 1;
    return `n/a[^${i + 1}]`;
  };
  const header = ['row', 'metric', ...COLUMNS, ...RATIOS.map(([label]) => label)];
  const lines = [
    `# sluice bench, ${report.date}`,
    '',
    `Machine: ${report.machine.cpu}, ${report.machine.cores} cores, ${report.machine.memory_gib} GiB, ` +
      `${report.machine.os}, kernel ${report.machine.kernel}; node ${report.machine.node}, ` +
      `sluice ${report.machine.sluice}, ${report.machine.squid}, ${report.machine.tinyproxy}, ${report.machine.wrk}; ` +
      `load average at start ${report.machine.load_average_at_start.join(' ')}.`,
    '',
    `Settings: ${report.settings.seconds}s per cell, wrk -t1 -c${report.settings.connections}, ` +
      `${report.settings.tlsConcurrency} TLS workers, bulk ${(report.settings.bulkBytes / MiB).toFixed(0)} MiB, ` +
      `${report.settings.idleTunnels} idle tunnels${report.settings.quick ? ' (BENCH_QUICK smoke run)' : ''}.`,
    '',
    `Ratios are sluice ÷ peer: for a ↑ metric above 1 favours sluice, for a ↓ metric below 1 does. ` +
      `"—" = not applicable to that column. Compare ratios within one run; absolute figures move between runs.`,
    '',
    `| ${header.join(' | ')} |`,
    `|${header.map((_, i) => (i < 2 ? '---' : '---:')).join('|')}|`,
  ];
  for (const row of report.rows) {
    row.metrics.forEach((m, index) => {
      const arrow = METRICS[m.metric].better === 'higher' ? '↑' : '↓';
      const cells = COLUMNS.map((column) => {
        if (!row.columns.includes(column)) return '—';
        if (row.na[column]) return index === 0 ? noteFor(`${column}: ${row.na[column]}`) : 'n/a';
        return m.values[column] === undefined ? '—' : format(m.values[column], m.metric);
      });
      const ratios = RATIOS.map(([label]) => (m.ratios[label] === undefined ? '' : `${m.ratios[label].toFixed(2)}×`));
      lines.push(`| ${index === 0 ? row.title : ''} | ${METRICS[m.metric].label} ${arrow} | ${[...cells, ...ratios].join(' | ')} |`);
    });
  }
  const paired = report.rows.filter((row) => row.paired);
  if (paired.length) {
    lines.push('');
    for (const row of paired)
      lines.push(
        `Paired, ${row.id}: ${row.paired.label} ${row.paired.metric} in each round (the two cells back to back) ` +
          `${row.paired.rounds.map((r) => r.toFixed(2)).join(', ')}; median **${row.paired.median.toFixed(2)}×**.`,
      );
  }
  for (const row of report.rows.filter((r) => r.concurrent))
    lines.push(
      '',
      `Concurrent, ${row.id}: ${row.concurrent.label} ${row.concurrent.metric} with both under load at once ` +
        `(sluice-plain running \`${row.concurrent.plainDetector}\`), by round ` +
        `${row.concurrent.rounds.map((r) => r.toFixed(2)).join(', ')}; median **${row.concurrent.median.toFixed(2)}×**.`,
    );
  if (notes.length) {
    lines.push('');
    notes.forEach((note, i) => lines.push(`[^${i + 1}]: ${note.replace(/\|/g, '/')}`));
  }
  if (report.caveats.length) {
    lines.push('', ...report.caveats.map((c) => `- ${c}`));
  }
  return lines.join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------------
// main

/** Runs every column of one row; cold rows measure on their own, the others through runCell. */
async function runRow(row, proxies) {
  const result = { id: row.id, title: row.title, columns: row.columns, na: {}, cells: {} };
  // A row with `best` runs its columns in turn that many rounds and keeps each column's best cell
  // (lowest `best.by`): on a shared machine one cell can be disturbed, and turns spread that over all.
  const rounds = row.best ? settings.leakRounds : 1;
  /** per column, the `best.by` figure of each round (for the paired ratio below) */
  const perRound = {};
  for (let round = 0; round < rounds; round++)
    for (const column of row.columns) {
      if (stopping) break;
      if (result.na[column]) continue;
      // direct and the bare node server are references: BENCH_ONLY never skips them
      const followsSluice = column === 'sluice-plain' && onlyColumns?.has('sluice');
      if (onlyColumns && !['direct', 'node', 'sluice-base'].includes(column) && !onlyColumns.has(column) && !followsSluice) {
        result.na[column] = 'skipped (BENCH_ONLY)';
        continue;
      }
      process.stdout.write(`bench: ${row.id} / ${column}${rounds > 1 ? ` (round ${round + 1}/${rounds})` : ''} ... `);
      const cell = row.cold ? await row.cold(column) : await runCell(row, column, proxies[column]);
      if (cell.na) {
        result.na[column] = cell.na;
        console.log(`n/a (${cell.na})`);
      } else {
        const kept = result.cells[column];
        const by = row.best?.by;
        if (by && typeof cell.values[by] === 'number') (perRound[column] ??= [])[round] = cell.values[by];
        if (!kept || !by || !(kept[by] <= cell.values[by])) result.cells[column] = cell.values;
        console.log(
          row.metrics
            .map((m) => `${m}=${format(cell.values[m], m)}`)
            .filter((s) => !s.endsWith('='))
            .join(' '),
        );
      }
    }
  result.metrics = row.metrics.map((metric) => {
    const values = {};
    for (const column of row.columns) {
      const v = result.cells[column]?.[metric];
      if (typeof v === 'number') values[column] = +v.toFixed(4);
    }
    const ratios = {};
    if (METRICS[metric].ratio !== false && values.sluice !== undefined) {
      for (const [label, peer] of RATIOS) if (values[peer]) ratios[label] = +(values.sluice / values[peer]).toFixed(4);
    }
    return { metric, label: METRICS[metric].label, better: METRICS[metric].better, values, ratios };
  });
  // The paired figure: sluice ÷ sluice-plain in each round, the two cells run back to back, and
  // the median of those. The VM's speed drifts over a run; a pair shares most of its drift, where
  // the best cell of each column may come from different rounds.
  const layered = perRound.sluice ?? [];
  const plain = perRound['sluice-plain'] ?? [];
  const pairs = layered
    .map((v, i) => (typeof v === 'number' && typeof plain[i] === 'number' && plain[i] > 0 ? v / plain[i] : null))
    .filter((r) => r !== null);
  if (row.best && pairs.length > 0) {
    const mid = median(pairs);
    result.paired = { metric: row.best.by, label: 'sluice/sluice-plain', rounds: pairs.map((r) => +r.toFixed(4)), median: +mid.toFixed(4) };
    console.log(
      `bench: ${row.id} sluice/sluice-plain ${row.best.by} by round ${pairs.map((r) => r.toFixed(2)).join(', ')}; median ${mid.toFixed(2)}`,
    );
  }
  if (row.best && settings.leakConcurrent > 0 && !stopping) {
    const concurrent = await runConcurrentPairs(row, proxies);
    if (concurrent) result.concurrent = concurrent;
  }
  delete result.cells;
  return result;
}

/**
 * The concurrent pair: sluice and sluice-plain each under its own wrk at the same time, for
 * BENCH_LEAK_CONCURRENT rounds, and each one's `best.by` figure compared within the round. Cells
 * run in turn see the VM's speed at different moments (one cell moves ±20% here); two cells run at
 * once share it, so their ratio keeps the detector's cost and loses most of the drift.
 */
async function runConcurrentPairs(row, proxies) {
  if (onlyColumns && !onlyColumns.has('sluice')) return null;
  const by = row.best.by;
  const routes = [];
  for (const column of ['sluice', 'sluice-plain']) {
    const proxy = proxies[column];
    if (!proxy || proxy.reason) return null;
    const route = { ...row.route({ ...proxy, direct: false }), proxyPort: proxy.port, rootPid: proxy.pid };
    if (await probe(route)) return null;
    routes.push({ proxy, route });
  }
  const ratios = [];
  for (let round = 0; round < settings.leakConcurrent && !stopping; round++) {
    process.stdout.write(`bench: ${row.id} / sluice + sluice-plain at once (round ${round + 1}/${settings.leakConcurrent}) ... `);
    await Promise.all(routes.map(({ route }) => row.measure({ ...route, seconds: settings.warmupSeconds })));
    const before = routes.map(({ proxy }) => cpuSeconds(proxy.pid));
    const results = await Promise.all(routes.map(({ route }) => row.measure({ ...route, seconds: settings.seconds })));
    const cpu = routes.map(({ proxy }, i) => cpuSeconds(proxy.pid) - before[i]);
    const failed = results.find((r) => r.error);
    if (failed) {
      console.log(`n/a (${failed.error})`);
      continue;
    }
    const figures = results.map((r, i) => (by === 'cpu_ms_per_req' ? (cpu[i] * 1000) / r.requests : r.values[by]));
    ratios.push(figures[0] / figures[1]);
    console.log(`${by} ${figures.map((f) => f.toFixed(3)).join(' / ')} = ${(figures[0] / figures[1]).toFixed(3)}`);
  }
  if (ratios.length === 0) return null;
  const mid = median(ratios);
  console.log(
    `bench: ${row.id} sluice/sluice-plain ${by}, loaded at once, by round ${ratios.map((r) => r.toFixed(2)).join(', ')}; median ${mid.toFixed(2)}`,
  );
  return { metric: by, label: 'sluice/sluice-plain', plainDetector, rounds: ratios.map((r) => +r.toFixed(4)), median: +mid.toFixed(4) };
}

async function main() {
  const required = ['squid', 'tinyproxy', 'wrk', 'curl', '/usr/lib/squid/security_file_certgen'];
  const missing = required.filter((cmd) => !commandExists(cmd));
  if (missing.length) {
    console.error(`missing: ${missing.join(', ')}. Install the peers first: sudo bench/install-peers.sh`);
    process.exit(1);
  }

  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-'));
  // squid drops root for the proxy user, which must reach its own subdirectory
  fs.chmodSync(tmp, 0o755);
  const caveats = [
    `${os.cpus().length} cores shared by the client, the upstream and the proxy; wrk runs one thread and the node clients one core each.`,
    'tinyproxy closes the client connection after each response, so wrk reconnects: its read errors are those closes, not failures.',
    'the idle-tunnel row runs first, before any load, so each proxy holds its tunnels from a fresh start; the table lists it last.',
  ];
  if (idleTunnelCount() < settings.idleTunnels) {
    caveats.push(
      `idle tunnels capped at ${idleTunnelCount()} (asked ${settings.idleTunnels}): the fd hard limit here is ${maxFds} and a proxy needs two per tunnel.`,
    );
  }

  const shifted = portOffset ? `; ports shifted by ${portOffset}` : '';
  console.log(`bench: temp dir ${tmp}; ${settings.seconds}s per cell${quick ? ' (quick)' : ''}${shifted}`);
  await startService('upstream', process.execPath, [path.join(BENCH, 'upstream.mjs')], {
    port: PORTS.upstreamHttps,
    env: { UPSTREAM_HTTP_PORT: String(PORTS.upstreamHttp), UPSTREAM_HTTPS_PORT: String(PORTS.upstreamHttps) },
  });

  const selected = ROWS.filter(rowSelected);
  const byId = new Map();
  // Cold rows (startup, rss) spawn their own short-lived instances: they run first, before the
  // long-running proxies are started, so nothing else of the bench is on the machine.
  for (const row of selected.filter((r) => r.cold)) {
    if (stopping) return;
    byId.set(row.id, await runRow(row, null));
  }

  /** @type {Record<string, any>} */
  let proxies = {};
  if (selected.some((r) => !r.cold)) {
    proxies = {
      direct: { name: 'direct' },
      sluice: { name: 'sluice', port: PORTS.sluice, httpAuth: CREDENTIALS.bench, mitmAuth: CREDENTIALS.mitm },
      ...(leakRowsPicked
        ? { 'sluice-plain': { name: 'sluice-plain', port: PORTS.sluicePlain, httpAuth: CREDENTIALS.bench, mitmReason: 'not a leak row' } }
        : {}),
      squid: { name: 'squid', port: PORTS.squid, mitmReason: 'plain squid does not intercept (see squid-bump)' },
      'squid-bump': { name: 'squid-bump', port: PORTS.squidBump, mitmCa: path.join(BENCH, 'tls', 'mitm-ca.pem') },
      tinyproxy: { name: 'tinyproxy', port: PORTS.tinyproxy, mitmReason: 'tinyproxy does not intercept' },
    };
    const starters = {
      sluice: startSluice,
      ...(leakRowsPicked ? { 'sluice-plain': startSluicePlain } : {}),
      squid: startSquid,
      'squid-bump': startSquidBump,
      tinyproxy: startTinyproxy,
    };
    for (const [name, start] of Object.entries(starters)) {
      // sluice-plain goes with sluice: BENCH_ONLY=sluice keeps both
      if (onlyColumns && !onlyColumns.has(name) && !(name === 'sluice-plain' && onlyColumns.has('sluice'))) {
        proxies[name].reason = 'skipped (BENCH_ONLY)';
        continue;
      }
      try {
        proxies[name].pid = (await start()).pid;
        console.log(`bench: ${name} up on 127.0.0.1:${proxies[name].port} (pid ${proxies[name].pid})`);
      } catch (err) {
        proxies[name].reason = err.message;
        console.log(`bench: ${name} n/a: ${err.message}`);
      }
    }
    if (proxies.sluice.pid) {
      const ca = await fetchSluiceCa();
      proxies.sluice.mitmCa = ca.file;
      proxies.sluice.mitmReason = ca.reason;
    }

    // Rows marked runFirst run before any load, on freshly started proxies; the table keeps ROWS order.
    const warm = selected.filter((r) => !r.cold);
    for (const row of [...warm.filter((r) => r.runFirst), ...warm.filter((r) => !r.runFirst)]) {
      if (stopping) return;
      byId.set(row.id, await runRow(row, proxies));
    }
  }
  const rows = ROWS.filter((row) => byId.has(row.id)).map((row) => byId.get(row.id));

  if (stopping) return;
  const report = {
    date: new Date().toISOString(),
    machine: machineInfo(),
    settings: { ...settings, quick },
    proxies: Object.fromEntries(
      Object.entries(proxies)
        .filter(([name]) => name !== 'direct')
        .map(([name, p]) => [
          name,
          {
            port: p.port,
            status: p.reason ? 'n/a' : 'ok',
            reason: p.reason,
            lifetime_peak_rss_mib: p.pid
              ? +(processTree(p.pid).reduce((s, pid) => s + readStatusKib(pid, 'VmHWM'), 0) / 1024).toFixed(1)
              : undefined,
          },
        ]),
    ),
    rows,
    caveats,
  };
  const markdown = toMarkdown(report);
  fs.mkdirSync(RESULTS, { recursive: true });
  fs.writeFileSync(path.join(RESULTS, 'latest.md'), markdown);
  fs.writeFileSync(path.join(RESULTS, 'latest.json'), JSON.stringify(report, null, 2) + '\n');
  console.log('\n' + markdown);
  console.log(`bench: wrote ${path.relative(ROOT, RESULTS)}/latest.md and latest.json`);
}

async function shutdown(code) {
  if (stopping) return;
  stopping = true;
  await stopAll();
  if (tmp && process.env.BENCH_KEEP !== '1') fs.rmSync(tmp, { recursive: true, force: true });
  else if (tmp) console.log(`bench: logs kept in ${tmp}`);
  process.exit(code);
}
process.on('SIGINT', () => void shutdown(130));
process.on('SIGTERM', () => void shutdown(143));
process.on('uncaughtException', (err) => {
  console.error(`bench: ${err.stack ?? err}`);
  void shutdown(1);
});
main().then(
  () => shutdown(0),
  (err) => {
    console.error(`bench: ${err.stack ?? err}`);
    return shutdown(1);
  },
);
