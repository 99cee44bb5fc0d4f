// `sluice serve --workers N`: N worker processes (node:cluster) accept on one shared listen socket;
// the primary serves the admin port, aggregates the workers' metrics and passes signals on.
//
// Audit: one hash chain per worker, in FILE.w1 … FILE.wN. A single writer in the primary would cost
// an IPC message (serialise, send, parse) per record on both sides — more than building the record
// — and would make one process the bottleneck again; per-worker chains keep every record's
// tamper evidence; each verifies on its own and `sluice audit verify` takes them all together. A
// worker that is restarted continues its own file's chain (after a break checkpoint when signed and
// the worker died without sealing it). The admin's /audit/head lists each worker's last checkpoint.
import cluster, { type Worker } from 'node:cluster';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { AggregatorRegistry, type PrometheusContentType, type Registry } from 'prom-client';
import { startAdminServer, type AdminServer, type AdminStatus } from '../observe/admin.js';
import type { AuditHead } from '../observe/audit.js';
import type { Logger } from '../observe/log.js';
import { loadCa } from '../tls/ca.js';
import type { Endpoint, RunningSluice } from './serve.js';

const WORKER_INDEX_ENV = 'SLUICE_WORKER_INDEX';
const STATUS_MESSAGE = 'sluice:status';
/** how often a worker re-reports its status (policy reloads by file watch, halts) */
const STATUS_INTERVAL_MS = 1000;

interface WorkerStatus {
  ready: boolean;
  why: string | null;
  policy: { sha256: string; loadedAt: string; tools: Array<{ name: string; rules: number; secrets: string[] }> };
  /** the worker's last signed audit checkpoint (null when unsigned) */
  auditHead: AuditHead | null;
}

/**
 * `--workers auto`: one worker per core this process may use (the CPU affinity, capped by a cgroup
 * v2 quota: a pod limited to 2 CPUs on a 64-core node gets 2, not 64), and a single process on 2
 * cores or fewer, where a second worker competes for the same cores with the tool it serves and
 * with the bench's own clients (issue 20).
 */
export function autoWorkers(cores: number = availableParallelism(), cpuQuota: number | null = cgroupCpuQuota()): number {
  const usable = cpuQuota === null ? cores : Math.min(cores, Math.max(1, Math.floor(cpuQuota)));
  return usable > 2 ? usable : 1;
}

/** CPUs the cgroup v2 quota allows (cpu.max "QUOTA PERIOD"), null without a quota or cgroup v2. */
function cgroupCpuQuota(): number | null {
  try {
    const [quota, period] = readFileSync('/sys/fs/cgroup/cpu.max', 'utf8').trim().split(/\s+/);
    const cpus = Number(quota) / Number(period);
    return quota === 'max' || !Number.isFinite(cpus) || cpus <= 0 ? null : cpus;
  } catch {
    return null;
  }
}

/** 1…N inside a worker started by runPrimary, null in a single process or the primary. */
export function workerIndex(): number | null {
  if (!cluster.isWorker) return null;
  const index = Number(process.env[WORKER_INDEX_ENV]);
  return Number.isInteger(index) && index > 0 ? index : null;
}

/** The audit file of worker `index`: its own chain. */
export function workerAuditFile(file: string, index: number): string {
  return `${file}.w${index}`;
}

/**
 * Inside a worker: answer the primary's metric requests from this registry and keep it told of the
 * status. Returns a function that reports at once (after a reload).
 */
export function reportToPrimary(running: RunningSluice, registry: Registry): () => void {
  // Constructing one installs prom-client's worker-side listener for the primary's metric requests.
  new AggregatorRegistry<PrometheusContentType>();
  AggregatorRegistry.setRegistries([registry]);
  let last = '';
  const send = (): void => {
    const runtime = running.current();
    const halted = running.halted();
    const status: WorkerStatus = {
      ready: halted === null,
      why: halted,
      policy: {
        sha256: runtime.loaded.digest,
        loadedAt: runtime.loaded.loadedAt.toISOString(),
        tools: [...runtime.compiled.tools.values()].map((t) => ({ name: t.name, rules: t.rules.length, secrets: [...t.secrets] })),
      },
      auditHead: running.auditHead(),
    };
    const text = JSON.stringify(status);
    if (text === last || !process.connected) return;
    last = text;
    process.send?.({ type: STATUS_MESSAGE, status });
  };
  send();
  setInterval(send, STATUS_INTERVAL_MS).unref();
  return send;
}

/** Serves /metrics from every worker: counters and gauges summed per label set. */
class ClusterRegistry extends AggregatorRegistry<PrometheusContentType> {
  override metrics(): Promise<string> {
    return this.clusterMetrics();
  }
}

export interface PrimaryOptions {
  workers: number;
  admin: Endpoint | null;
  /** names beyond IP literals and localhost the admin port answers to (--admin-host) */
  adminHosts?: readonly string[];
  listen: Endpoint;
  caDir: string;
  logger: Logger;
}

/**
 * Runs the primary: forks the workers, waits until each reports ready, then serves the admin port.
 * Resolves with an exit code if sluice must stop (2: a worker refused to start; 3: a pinned policy
 * halted a worker), or -1 while it keeps serving (exit comes from the signal handlers).
 */
export async function runPrimary(opts: PrimaryOptions): Promise<number> {
  // Workers accept on the shared socket themselves; round robin would pass every connection
  // through the primary.
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  // Created here, once, so workers never race to create it; they load the same CA.
  let caPem: string;
  try {
    caPem = (await loadCa(opts.caDir, { create: true })).certPem;
  } catch (err) {
    process.stderr.write(`sluice serve: refusing to start: ${(err as Error).message}\n`);
    return 2;
  }

  const statuses = new Map<number, WorkerStatus>();
  const workers = new Map<number, Worker>();
  const registry = new ClusterRegistry();
  let admin: AdminServer | null = null;
  let stopping = false;
  let everyoneReady = false;
  let settle: (code: number) => void = () => {};
  const outcome = new Promise<number>((resolve) => (settle = resolve));

  const stopAll = (code: number): void => {
    if (stopping) return;
    stopping = true;
    for (const worker of workers.values()) worker.process.kill('SIGTERM');
    const finish = (): void => {
      void (admin?.close() ?? Promise.resolve()).then(() => {
        // Once serving, runPrimary has already returned (-1, "keep running"), so this code can no
        // longer go back to src/cli.ts: the primary exits with it itself.
        // eslint-disable-next-line no-restricted-properties
        if (everyoneReady) process.exit(code);
        else settle(code);
      });
    };
    if (workers.size === 0) finish();
    else cluster.on('exit', () => workers.size === 0 && finish());
  };

  const fork = (index: number): void => {
    const worker = cluster.fork({ [WORKER_INDEX_ENV]: String(index) });
    workers.set(index, worker);
    worker.on('message', (message: { type?: string; status?: WorkerStatus }) => {
      if (message?.type !== STATUS_MESSAGE || !message.status) return;
      statuses.set(index, message.status);
      if (!everyoneReady && statuses.size === opts.workers) void allReady();
    });
    worker.on('exit', (code, signal) => {
      workers.delete(index);
      statuses.delete(index);
      if (stopping) return;
      if (code === 3) {
        opts.logger.error({ worker: index }, 'a worker halted on a pinned-policy drift; stopping every worker');
        return stopAll(3);
      }
      if (!everyoneReady) return stopAll(code === 2 ? 2 : 1);
      opts.logger.error({ worker: index, code, signal }, 'worker exited; starting a replacement');
      fork(index);
    });
  };

  const allReady = async (): Promise<void> => {
    everyoneReady = true;
    if (opts.admin) {
      try {
        admin = await startAdminServer({
          listen: opts.admin,
          registry,
          caPem: () => caPem,
          status: () => clusterStatus(statuses, opts.workers),
          auditHead: () => clusterAuditHead(statuses),
          allowedHosts: opts.adminHosts ?? [],
        });
      } catch (err) {
        process.stderr.write(`sluice serve: refusing to start: admin ${(err as Error).message}\n`);
        everyoneReady = false;
        return stopAll(2);
      }
    }
    const address = admin?.address;
    opts.logger.info(
      { listen: `${opts.listen.host}:${opts.listen.port}`, admin: address ? `${address.address}:${address.port}` : null, workers: opts.workers },
      'sluice serving',
    );
    settle(-1);
  };

  process.on('SIGHUP', () => {
    for (const worker of workers.values()) worker.process.kill('SIGHUP');
  });
  process.once('SIGTERM', () => stopAll(0));
  process.once('SIGINT', () => stopAll(0));
  for (let index = 1; index <= opts.workers; index++) fork(index);
  return outcome;
}

/** Each worker's last checkpoint (as of its last status report, at most a second old); null when none is signed. */
function clusterAuditHead(statuses: ReadonlyMap<number, WorkerStatus>): object | null {
  const workers = [...statuses.entries()]
    .filter(([, s]) => s.auditHead !== null)
    .sort(([a], [b]) => a - b)
    .map(([worker, s]) => ({ worker, ...s.auditHead }));
  return workers.length > 0 ? { workers } : null;
}

/** Ready when every worker is; the policy shown is worker 1's (all load the same file). */
function clusterStatus(statuses: ReadonlyMap<number, WorkerStatus>, expected: number): AdminStatus {
  const all = [...statuses.values()];
  const notReady = all.find((s) => !s.ready);
  const first = statuses.get(1) ?? all[0];
  return {
    ready: all.length === expected && !notReady,
    why: notReady?.why ?? (all.length < expected ? `${expected - all.length} of ${expected} workers are starting` : null),
    policy: first ? { ...first.policy, loadedAt: new Date(first.policy.loadedAt) } : null,
  };
}
