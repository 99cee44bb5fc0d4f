// `sluice serve`: wires the pieces together and owns their lifecycle (start, halt, drain). The
// policy in force, its pin, reloads and file watching belong to the PolicyHolder; this asks it.
import type http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Registry } from 'prom-client';
import { PolicyError, PolicyPinMismatch } from '../config/errors.js';
import { startAdminServer } from '../observe/admin.js';
import { AuditSink, type AuditHead, type FsyncMode } from '../observe/audit.js';
import { loadAuditSigner, type AuditSigner } from '../observe/audit-key.js';
import type { Logger } from '../observe/log.js';
import { createMetrics } from '../observe/metrics.js';
import { AuditingObserver } from '../observe/observer.js';
import type { PolicyRuntime, ProxyDeps } from '../proxy/context.js';
import { createInterceptor } from '../proxy/intercept.js';
import { OpenConnections } from '../proxy/lifecycle.js';
import { ToolLimiter } from '../proxy/limits.js';
import { createProxyServer, DEFAULT_SERVER_OPTIONS, type ProxyServerOptions } from '../proxy/server.js';
import { SelfEndpoints } from '../net/self.js';
import { loadCa } from '../tls/ca.js';
import { LeafCertificates } from '../tls/leaf.js';
import { PolicyHolder } from './policy-holder.js';
import { scrubSecrets } from './runtime.js';

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
  /** audit file; '-' = stdout; null = none */
  audit: string | null;
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
}

export interface RunningSluice {
  proxy: AddressInfo;
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
  close(): Promise<void>;
}

export class StartupError extends Error {}

export async function startSluice(opts: ServeOptions): Promise<RunningSluice> {
  let policy: PolicyHolder;
  try {
    policy = await PolicyHolder.open({ file: opts.policyFile, pin: opts.policySha256, env: opts.env, logger: opts.logger });
  } catch (err) {
    // Policy problems and a pin mismatch name their file; a secret that cannot load names its alias.
    const named = err instanceof PolicyError || err instanceof PolicyPinMismatch;
    throw new StartupError(named ? (err as Error).message : `${opts.policyFile}: ${(err as Error).message}`);
  }
  const ca = await loadCa(opts.caDir, { create: true }).catch(async (err: Error) => {
    await policy.close();
    throw new StartupError(err.message);
  });
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
    stdout: opts.audit === '-',
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
  if (opts.audit !== null) metrics.auditSeq(() => sink.head.seq, opts.worker);
  metrics.halted(() => haltedDetail !== null);
  // Invariant 4 (no unaudited traffic): once a record cannot be written, sluice halts as on drift.
  const observer = new AuditingObserver({ sink, metrics, onAuditFailure: (err) => auditFailed(err) });
  // Announces the policy (policy.load) and starts watching; a drift of a pinned policy halts.
  policy.start({ observer, watch: opts.watchPolicy, halted: () => haltedDetail, onDrift: (detail) => halt(detail) });

  // sluice's own endpoints, compared as addresses (any spelling, any name for them), never dialled.
  const self = await SelfEndpoints.create(opts.alsoSelf ?? []).catch((err: Error) => {
    throw new StartupError(`cannot resolve sluice's own addresses: ${err.message}`);
  });
  const deps: ProxyDeps = {
    current: () => policy.current(),
    halted: () => haltedDetail,
    observer,
    self,
    limiter: new ToolLimiter(),
    open: new OpenConnections(),
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
  const server = createProxyServer(deps, createInterceptor(deps, leaves, serverOpts), serverOpts);
  // One shared listener (on() rather than once(): 'close' fires once) costs nothing per socket.
  function forget(this: Socket): void {
    sockets.delete(this);
  }
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', forget);
  });
  // The admin port listens first, so /readyz answers (200) from the moment the proxy port accepts,
  // and no request can reach the proxy before sluice knows the admin port as its own.
  let serving = false;
  const admin = opts.admin
    ? await startAdminServer({
        listen: opts.admin,
        registry: metrics.registry,
        caPem: () => ca.certPem,
        auditHead: () => sink.lastCheckpoint,
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

  const close = async (): Promise<void> => {
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
      setTimeout(() => {
        for (const s of sockets) s.destroy();
      }, 2_000).unref();
    });
    await admin?.close();
    await policy.close();
    closing = true;
    await sink.close();
  };

  return {
    proxy,
    admin: admin?.address ?? null,
    current: () => policy.current(),
    policy,
    reload: async () => ['reloaded', 'unchanged'].includes(await policy.reload()),
    halted: () => haltedDetail,
    flushAudit: () => sink.flush(),
    auditHead: () => sink.lastCheckpoint,
    registry: metrics.registry,
    close,
  };
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
