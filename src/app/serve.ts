// `sluice serve`: wires the pieces together and owns their lifecycle (start, halt, drain). The
// policy in force, its pin, reloads and file watching belong to the PolicyHolder; this asks it.
import type http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Registry } from 'prom-client';
import { Approvals } from '../approvals/approvals.js';
import { defaultGrantsFile, FileGrantStore, GrantsRefused } from '../approvals/grants.js';
import { approvalRoutes } from '../approvals/http.js';
import { PolicyError, PolicyPinMismatch } from '../config/errors.js';
import type { LoadedPolicy } from '../config/types.js';
import { startAdminServer } from '../observe/admin.js';
import { AuditSink, type AuditHead, type FsyncMode } from '../observe/audit.js';
import { loadAuditSigner, type AuditSigner } from '../observe/audit-key.js';
import type { AuditInput } from '../observe/events.js';
import type { Logger } from '../observe/log.js';
import { createMetrics } from '../observe/metrics.js';
import { AuditingObserver } from '../observe/observer.js';
import type { PolicyRuntime, ProxyDeps } from '../proxy/context.js';
import { createInterceptor } from '../proxy/intercept.js';
import { OpenConnections } from '../proxy/lifecycle.js';
import { ToolLimiter } from '../proxy/limits.js';
import { createProxyServer, DEFAULT_SERVER_OPTIONS, type ProxyServerOptions } from '../proxy/server.js';
import { warmUpstreamClient } from '../net/dial.js';
import { SelfEndpoints } from '../net/self.js';
import { initCa, loadCa, type CertificateAuthority } from '../tls/ca.js';
import { LeafCertificates } from '../tls/leaf.js';
import { PolicyHolder } from './policy-holder.js';
import { buildRuntime, scrubSecrets } from './runtime.js';

export interface Endpoint {
  host: string;
  port: number;
}

export interface ServeOptions {
  policyFile: string;
  listen: Endpoint;
  /** null = no admin port */
  admin: Endpoint | null;
  caDir: string;
  /** audit file; '-' = stdout; null = none (or stdout only, with auditStdout) */
  audit: string | null;
  /** also write the audit to stdout, next to the file (--audit FILE --audit -) */
  auditStdout?: boolean;
  auditFsync: FsyncMode;
  auditMaxBytes: number;
  /** Ed25519 private key file signing audit checkpoints (--audit-key); null/absent = a hash chain only */
  auditKey?: string | null;
  /** the `instance` of every audit record (--audit-instance); default a random id */
  auditInstance?: string;
  /** a checkpoint every this many records (--audit-checkpoint-records; default 1000) */
  auditCheckpointRecords?: number;
  /** and every this long with records (--audit-checkpoint-seconds; default 60 s) */
  auditCheckpointMs?: number;
  /** this worker's index under --workers: labels sluice_audit_last_seq */
  worker?: number | null;
  /** pinned policy digest: a mismatch at start refuses, a drift at run time halts */
  policySha256: string | null;
  /** reload when a file the policy was read from (or a symlink to it) changes; SIGHUP always reloads */
  watchPolicy: boolean;
  /** how long a halted proxy lets open connections finish before closing them */
  haltDrainMs: number;
  /** more proxy ports, each bound to one tool (--listen-tool NAME=HOST:PORT): no Proxy-Authorization needed there */
  toolListeners?: Array<{ tool: string; listen: Endpoint }>;
  /** a sentence appended to the detail of every refusal a client is sent (--deny-message) */
  denyMessage?: string | null;
  /** how long close() lets open transfers finish before it cuts them (--drain-timeout); default 30 s */
  drainMs?: number;
  logger: Logger;
  env: NodeJS.ProcessEnv;
  /** called once when a pinned policy drifted and the proxy halted */
  onHalt?: (detail: string) => void;
  /** global cap on client connections open at once (--max-connections); 0 = none; default 0 */
  maxConnections?: number;
  /** largest request line plus headers accepted (--max-header-bytes); default 32 KiB */
  maxHeaderBytes?: number;
  /** more addresses of this sluice it must never dial (the primary's admin port under --workers) */
  alsoSelf?: Endpoint[];
  // issue 17
  /** the grants file approvals write (--grants); default "<policy dir>/<policy name>.grants.json" */
  grantsFile?: string | null;
  /** the admin token POST /approvals/{id} needs (read from --admin-token-file / --admin-token-env); null = changes refused */
  adminToken?: string | null;
  /** names beyond IP literals and localhost the admin port answers to (--admin-host) */
  adminHosts?: readonly string[];
}

export interface RunningSluice {
  proxy: AddressInfo;
  /** the ports bound to one tool, in the order given */
  toolListeners: Array<{ tool: string; address: AddressInfo }>;
  admin: AddressInfo | null;
  current(): PolicyRuntime;
  /** the policy in force, its reloads and their subscribers */
  policy: PolicyHolder;
  /** reloads the policy file; false when the new policy was rejected (the old one stays) or sluice halted */
  reload(): Promise<boolean>;
  halted(): string | null;
  /** waits until every audit event so far is on disk */
  flushAudit(): Promise<void>;
  /** the last signed audit checkpoint; null when the audit is not signed */
  auditHead(): AuditHead | null;
  /** this process's metrics (a --workers primary aggregates them) */
  registry: Registry;
  /** the supervisor's queue and the grants (issue 17) */
  approvals: Approvals;
  close(): Promise<void>;
}

export class StartupError extends Error {}

/** The drain timeout at shutdown: what compose's stop_grace_period and Kubernetes' grace period give by default. */
export const DEFAULT_DRAIN_MS = 30_000;

/**
 * A worker under --workers builds no policy with on_violation: ask: its queue would be its own while
 * the admin port is the primary's, so nobody could answer and every held request would time out.
 * Refused at start and at reload (the previous policy stays) rather than offered.
 */
async function buildWithoutAsk(loaded: LoadedPolicy, env: NodeJS.ProcessEnv): Promise<PolicyRuntime> {
  const asking = Object.entries(loaded.doc.tools).filter(([, tool]) => tool.on_violation === 'ask');
  if (asking.length > 0) {
    throw new Error(
      `tool ${asking.map(([name]) => name).join(', ')} has on_violation: ask, which needs --workers 1: under --workers the admin port that answers approvals is the primary's, and the held requests would be each worker's`,
    );
  }
  return buildRuntime(loaded, env);
}

export async function startSluice(opts: ServeOptions): Promise<RunningSluice> {
  let policy: PolicyHolder;
  try {
    policy = await PolicyHolder.open({
      file: opts.policyFile,
      pin: opts.policySha256,
      env: opts.env,
      logger: opts.logger,
      ...(opts.worker != null ? { build: buildWithoutAsk } : {}),
    });
  } catch (err) {
    // Policy problems and a pin mismatch name their file; a secret that cannot load names its alias.
    const named = err instanceof PolicyError || err instanceof PolicyPinMismatch;
    throw new StartupError(named ? (err as Error).message : `${opts.policyFile}: ${(err as Error).message}`);
  }
  const ca = await openCa(opts.caDir, opts.logger).catch(async (err: Error) => {
    await policy.close();
    throw new StartupError(err.message);
  });
  // issue 17: the grants store; a file that is not a grants file refuses the start like a bad policy.
  const grantsFile = opts.grantsFile ?? defaultGrantsFile(opts.policyFile);
  let store: FileGrantStore;
  try {
    store = FileGrantStore.open(grantsFile);
  } catch (err) {
    await policy.close();
    throw new StartupError(err instanceof GrantsRefused ? err.message : `${grantsFile}: ${(err as Error).message}`);
  }
  let signer: AuditSigner | null = null;
  try {
    signer = opts.auditKey ? loadAuditSigner(opts.auditKey) : null;
  } catch (err) {
    await policy.close();
    throw new StartupError((err as Error).message);
  }

  let haltedDetail: string | null = null;
  // A record refused after close() began is shutdown noise, not a reason to halt.
  let closing = false;
  const sockets = new Set<Socket>();
  const metrics = createMetrics();
  // A tail that cannot be continued (torn, foreign) refuses the start like a bad policy does.
  const sink = await AuditSink.open({
    file: opts.audit === '-' ? null : opts.audit,
    stdout: opts.audit === '-' || opts.auditStdout === true,
    fsync: opts.auditFsync,
    maxBytes: opts.auditMaxBytes,
    onError: (err) => auditFailed(err),
    scrub: (text) => scrubSecrets(policy.current(), text),
    signer,
    ...(opts.auditInstance !== undefined ? { instance: opts.auditInstance } : {}),
    ...(opts.auditCheckpointRecords !== undefined ? { checkpointRecords: opts.auditCheckpointRecords } : {}),
    ...(opts.auditCheckpointMs !== undefined ? { checkpointIntervalMs: opts.auditCheckpointMs } : {}),
  }).catch(async (err: Error) => {
    await policy.close();
    throw new StartupError(err.message);
  });
  const opening = sink.opening;
  if (opening.kind === 'break') {
    opts.logger.warn(
      { audit: opts.audit, detail: opening.detail },
      'audit: the trail found was not sealed; a new file opens with a break checkpoint',
    );
  }
  if (opts.audit !== null || opts.auditStdout) metrics.auditSeq(() => sink.head.seq, opts.worker);
  metrics.halted(() => haltedDetail !== null);
  // Invariant 4 (no unaudited traffic): once a record cannot be written, sluice halts as on drift.
  const observer = new AuditingObserver({
    sink,
    metrics,
    onAuditFailure: (err) => auditFailed(err),
    // --log-level debug: one line per request or tunnel, from its canonical record (query cut off).
    ...(opts.logger.isLevelEnabled('debug') ? { onRequest: (e: AuditInput) => debugRequest(opts.logger, e) } : {}),
  });
  // Announces the policy (policy.load) and starts watching; a drift of a pinned policy halts.
  policy.start({ observer, watch: opts.watchPolicy, halted: () => haltedDetail, onDrift: (detail) => halt(detail) });

  // sluice's own endpoints, compared as addresses (any spelling, any name for them), never dialled.
  const self = await SelfEndpoints.create(opts.alsoSelf ?? []).catch((err: Error) => {
    throw new StartupError(`cannot resolve sluice's own addresses: ${err.message}`);
  });
  // issue 17: held requests, decisions and grants. The grants file has its own digest in the audit;
  // a change sluice did not make is refused (the grants in memory stay), and halts a pinned policy like drift.
  const approvals = new Approvals({
    store,
    event: (e) => observer.event(e),
    metrics: { pending: (tool, n) => metrics.approvalsPending(tool, n), decision: (tool, d) => metrics.approvalDecision(tool, d) },
    onRefused: (refusal) => {
      if (opts.policySha256 === null) {
        opts.logger.warn({ grants: grantsFile, found: refusal.found }, 'grants file changed outside sluice; refused, the grants in force stay');
        return;
      }
      const detail = `the grants file ${grantsFile} of a pinned policy was changed by something other than sluice; sluice halted`;
      observer.event({ type: 'policy.drift', detail, reason: 'policy_halted', grants_sha256: store.snapshot().digest });
      opts.logger.error({ grants: grantsFile }, 'grants file of a pinned policy changed outside sluice; halting');
      halt(detail);
    },
  });
  observer.event({
    type: 'grants.load',
    detail: `grants from ${grantsFile}: ${store.snapshot().grants.length}`,
    grants_sha256: store.snapshot().digest,
  });
  let grantsTimer: NodeJS.Timeout | null = null;
  const stopGrantsWatch = opts.watchPolicy
    ? store.watch(() => {
        if (grantsTimer) clearTimeout(grantsTimer);
        grantsTimer = setTimeout(() => void approvals.checkStore(), 50);
        grantsTimer.unref();
      })
    : () => undefined;
  const deps: ProxyDeps = {
    current: () => policy.current(),
    halted: () => haltedDetail,
    observer,
    self,
    limiter: new ToolLimiter(),
    open: new OpenConnections(),
    approvals,
    denyMessage: opts.denyMessage ?? null,
  };
  // Open passthrough tunnels the new policy no longer allows are closed at once.
  policy.onReload((next) => deps.open.recheck(next));
  const leaves = new LeafCertificates(ca, { onIssued: () => observer.certIssued() });
  // http.Server options are fixed at creation: the header timeout is the one in the policy at start.
  const serverOpts: ProxyServerOptions = {
    ...DEFAULT_SERVER_OPTIONS,
    headerTimeoutMs: policy.current().loaded.doc.limits.header_timeout_ms,
    maxConnections: opts.maxConnections ?? DEFAULT_SERVER_OPTIONS.maxConnections,
    maxHeaderBytes: opts.maxHeaderBytes ?? DEFAULT_SERVER_OPTIONS.maxHeaderBytes,
  };
  const interceptor = createInterceptor(deps, leaves, serverOpts);
  const server = createProxyServer(deps, interceptor, serverOpts);
  // One shared listener (on() rather than once(): 'close' fires once) costs nothing per socket.
  function forget(this: Socket): void {
    sockets.delete(this);
  }
  function track(s: Socket): void {
    sockets.add(s);
    s.on('close', forget);
  }
  // The upstream HTTP client (undici: about 2 MiB of code and heap) loads at the first request, while
  // its admission runs, not in a sidecar that sits idle or only answers TCP probes (issue 20).
  // dial.ts would load it on the first forward otherwise; loading twice is a no-op.
  function warm(): void {
    setImmediate(warmUpstreamClient).unref();
  }
  function watch(s: http.Server): void {
    s.on('connection', track);
    for (const event of ['request', 'connect', 'upgrade']) s.once(event, warm);
  }
  watch(server);
  // The admin port listens first, so /readyz answers (200) from the moment the proxy port accepts,
  // and no request can reach the proxy before sluice knows the admin port as its own.
  let serving = false;
  const admin = opts.admin
    ? await startAdminServer({
        listen: opts.admin,
        registry: metrics.registry,
        caPem: () => ca.certPem,
        auditHead: () => sink.lastCheckpoint,
        extra: approvalRoutes({ approvals, token: opts.adminToken ?? null }),
        allowedHosts: opts.adminHosts ?? [],
        status: () => {
          const runtime = policy.current();
          return {
            ready: serving && haltedDetail === null,
            why: haltedDetail ?? (serving ? null : 'starting: the proxy port is not listening yet'),
            policy: {
              sha256: runtime.loaded.digest,
              loadedAt: runtime.loaded.loadedAt,
              tools: [...runtime.compiled.tools.values()].map((t) => ({
                name: t.name,
                rules: t.rules.length,
                secrets: [...t.secrets],
              })),
            },
          };
        },
      })
    : null;
  if (admin) await self.add({ host: opts.admin!.host, port: admin.address.port });

  const proxy = await listen(server, opts.listen).catch(async (err: Error) => {
    await admin?.close();
    throw err;
  });
  serving = true;
  // Later checks for "is this sluice itself" need the real port when 0 was asked for.
  await self.add({ host: opts.listen.host, port: proxy.port });
  // Ports bound to one tool: the same pipeline, the tool known from the port instead of a header.
  const servers = [server];
  const toolListeners: RunningSluice['toolListeners'] = [];
  for (const bound of opts.toolListeners ?? []) {
    if (!policy.current().compiled.tools.has(bound.tool)) {
      await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
      await admin?.close();
      await policy.close();
      throw new StartupError(`--listen-tool ${bound.tool}=${bound.listen.host}:${bound.listen.port}: the policy has no tool ${bound.tool}`);
    }
    const boundServer = createProxyServer(deps, interceptor, serverOpts, bound.tool);
    watch(boundServer);
    const address = await listen(boundServer, bound.listen);
    servers.push(boundServer);
    toolListeners.push({ tool: bound.tool, address });
    await self.add({ host: bound.listen.host, port: address.port });
  }

  // The holder has written policy.drift and logged it; this stops the traffic.
  function halt(detail: string): void {
    if (haltedDetail) return;
    haltedDetail = detail;
    drainThenHalt(detail);
  }

  function auditFailed(err: Error): void {
    if (haltedDetail || closing) return;
    haltedDetail = `the audit could not be written (${err.message}); sluice halted`;
    opts.logger.error({ err: err.message }, 'audit sink failed; halting');
    drainThenHalt(haltedDetail);
  }

  function drainThenHalt(detail: string): void {
    setTimeout(() => {
      for (const s of sockets) s.destroy();
    }, opts.haltDrainMs).unref();
    opts.onHalt?.(detail);
  }

  // Shutdown: stop accepting, let what is open finish for up to the drain timeout, then cut what
  // is left (each recorded as cut, with its bytes so far), flush the audit and say so.
  const drainMs = opts.drainMs ?? DEFAULT_DRAIN_MS;
  let closed: Promise<void> | null = null;
  const close = (): Promise<void> => (closed ??= shutdown());
  const shutdown = async (): Promise<void> => {
    stopGrantsWatch();
    if (grantsTimer) clearTimeout(grantsTimer);
    // Held requests are answered (approval_timeout) before the drain: they would only wait it out.
    approvals.close();
    const busy = deps.open.busy;
    opts.logger.info({ connections: busy, drain_timeout_ms: drainMs }, `draining ${busy} connections`);
    const serverClosed = Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())))).then(() => undefined);
    // A kept-alive connection is closed as soon as it is between requests, here and inside tunnels.
    const closeIdle = (): void => {
      for (const s of servers) s.closeIdleConnections();
      interceptor.closeIdle();
    };
    closeIdle();
    const sweeper = setInterval(closeIdle, 100);
    let timer: NodeJS.Timeout | undefined;
    const drained = await Promise.race([
      Promise.all([deps.open.drained(), serverClosed]).then(() => true),
      new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), drainMs))),
    ]);
    clearTimeout(timer);
    if (!drained) {
      const cut = deps.open.cutAll(drainMs);
      opts.logger.warn({ cut, drain_timeout_ms: drainMs }, `drain timeout: cut ${cut} open transfers`);
      // Their 503s and resets get a moment to go out before the sockets are destroyed.
      await Promise.race([serverClosed, new Promise((resolve) => setTimeout(resolve, 250).unref())]);
      for (const s of sockets) s.destroy();
      await serverClosed;
    }
    clearInterval(sweeper);
    await admin?.close();
    await policy.close();
    closing = true;
    await sink.close();
    opts.logger.info({ cut_transfers: !drained }, 'stopped');
  };

  return {
    proxy,
    toolListeners,
    admin: admin?.address ?? null,
    current: () => policy.current(),
    policy,
    reload: async () => {
      const result = await policy.reload();
      // A reload (SIGHUP) also looks at the grants file for a change sluice did not make.
      await approvals.checkStore();
      return ['reloaded', 'unchanged'].includes(result);
    },
    halted: () => haltedDetail,
    flushAudit: () => sink.flush(),
    auditHead: () => sink.lastCheckpoint,
    registry: metrics.registry,
    approvals,
    close,
  };
}

function debugRequest(logger: Logger, e: AuditInput): void {
  const path = e.path?.split('?', 1)[0] ?? null;
  const where = `${e.host ?? '?'}${e.port ? `:${e.port}` : ''}${path ?? ''}`;
  logger.debug(
    { type: e.type, tool: e.tool, method: e.method, host: e.host, port: e.port, path, status: e.status, reason: e.reason, ms: e.duration_ms },
    `${e.tool ?? '-'} ${e.method ?? '-'} ${where} -> ${e.status ?? '-'}${e.reason ? ` ${e.reason}` : ''}`,
  );
}

/** The interception CA, created on first start: a new one is said in the log, since clients must trust it. */
async function openCa(dir: string, logger: Logger): Promise<CertificateAuthority> {
  const { created, certPath } = await initCa(dir);
  if (created)
    logger.info(
      { ca: certPath },
      `created a new interception CA: ${certPath} (also GET /ca.pem on the admin port); intercepted clients must trust it`,
    );
  return loadCa(dir, { create: false });
}

function listen(server: http.Server, at: Endpoint): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port, at.host, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}
