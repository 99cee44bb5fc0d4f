// `sluice serve`: wires the pieces together and owns their lifecycle (start, reload, halt, drain).
import { watch, type FSWatcher } from 'node:fs';
import type http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import path from 'node:path';
import type { Registry } from 'prom-client';
import { loadPolicy } from '../config/load.js';
import { PolicyError, PolicyPinMismatch } from '../config/errors.js';
import type { LoadedPolicy } from '../config/types.js';
import { startAdminServer } from '../observe/admin.js';
import { AuditSink, type FsyncMode } from '../observe/audit.js';
import type { Logger } from '../observe/log.js';
import { createMetrics } from '../observe/metrics.js';
import { AuditingObserver } from '../observe/observer.js';
import type { PolicyRuntime, ProxyDeps } from '../proxy/context.js';
import { createInterceptor } from '../proxy/intercept.js';
import { ToolLimiter } from '../proxy/limits.js';
import { createProxyServer, DEFAULT_SERVER_OPTIONS, type ProxyServerOptions } from '../proxy/server.js';
import { loadCa } from '../tls/ca.js';
import { LeafCertificates } from '../tls/leaf.js';
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
  /** audit file; '-' = stdout; null = none */
  audit: string | null;
  auditFsync: FsyncMode;
  auditMaxBytes: number;
  /** pinned policy digest: a mismatch at start refuses, a drift at run time halts */
  policySha256: string | null;
  /** reload when the policy file changes (SIGHUP always reloads) */
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
  /** reloads the policy file; false when the new policy was rejected (the old one stays) */
  reload(): Promise<boolean>;
  halted(): string | null;
  /** waits until every audit event so far is on disk */
  flushAudit(): Promise<void>;
  /** this process's metrics (a --workers primary aggregates them) */
  registry: Registry;
  close(): Promise<void>;
}

export class StartupError extends Error {}

export async function startSluice(opts: ServeOptions): Promise<RunningSluice> {
  let loaded: LoadedPolicy;
  try {
    loaded = loadPolicy(opts.policyFile);
  } catch (err) {
    throw new StartupError((err as Error).message);
  }
  // The policy's one digest: what `sluice check` prints and audit events, metrics and /policy carry.
  let digest = loaded.digest;
  if (opts.policySha256 && digest !== opts.policySha256.toLowerCase()) {
    throw new StartupError(new PolicyPinMismatch(opts.policyFile, digest, opts.policySha256).message);
  }
  let runtime: PolicyRuntime;
  try {
    runtime = await buildRuntime(loaded, opts.env);
  } catch (err) {
    // The upstream CA problem names its file; a secret that cannot load names its alias.
    throw new StartupError(err instanceof PolicyError ? err.message : `${opts.policyFile}: ${(err as Error).message}`);
  }
  const ca = await loadCa(opts.caDir, { create: true }).catch((err: Error) => {
    throw new StartupError(err.message);
  });

  let haltedDetail: string | null = null;
  // A record refused after close() began is shutdown noise, not a reason to halt.
  let closing = false;
  const sockets = new Set<Socket>();
  const metrics = createMetrics();
  const sink = await AuditSink.open({
    file: opts.audit === '-' ? null : opts.audit,
    stdout: opts.audit === '-',
    fsync: opts.auditFsync,
    maxBytes: opts.auditMaxBytes,
    onError: (err) => auditFailed(err),
    scrub: (text) => scrubSecrets(runtime, text),
  });
  // Invariant 4 (no unaudited traffic): once a record cannot be written, sluice halts as on drift.
  const observer = new AuditingObserver({ sink, metrics, onAuditFailure: (err) => auditFailed(err) });
  const announce = (kind: 'policy.load', rt: PolicyRuntime): void => {
    observer.setPolicy({
      sha256: rt.loaded.digest,
      tools: [...rt.compiled.tools.keys()],
      secrets: [...rt.compiled.secrets.keys()],
    });
    observer.event({ type: kind, detail: `loaded ${rt.loaded.file}` });
  };
  announce('policy.load', runtime);

  const deps: ProxyDeps = {
    current: () => runtime,
    halted: () => haltedDetail,
    observer,
    self: [opts.listen, ...(opts.admin ? [opts.admin] : []), ...(opts.alsoSelf ?? [])],
    limiter: new ToolLimiter(),
  };
  const leaves = new LeafCertificates(ca, { onIssued: () => observer.certIssued() });
  // http.Server options are fixed at creation: the header timeout is the one in the policy at start.
  const serverOpts: ProxyServerOptions = {
    ...DEFAULT_SERVER_OPTIONS,
    headerTimeoutMs: loaded.doc.limits.header_timeout_ms,
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
  const proxy = await listen(server, opts.listen);
  // Later checks for "is this sluice itself" need the real port when 0 was asked for.
  (deps.self as Endpoint[])[0] = { host: opts.listen.host, port: proxy.port };

  const admin = opts.admin
    ? await startAdminServer({
        listen: opts.admin,
        registry: metrics.registry,
        caPem: () => ca.certPem,
        status: () => ({
          ready: haltedDetail === null,
          why: haltedDetail,
          policy: {
            sha256: runtime.loaded.digest,
            loadedAt: runtime.loaded.loadedAt,
            tools: [...runtime.compiled.tools.values()].map((t) => ({
              name: t.name,
              rules: t.rules.length,
              secrets: [...t.secrets],
            })),
          },
        }),
      })
    : null;
  if (admin) (deps.self as Endpoint[]).push({ host: opts.admin!.host, port: admin.address.port });

  const halt = (detail: string, newSha: string): void => {
    if (haltedDetail) return;
    haltedDetail = detail;
    observer.event({ type: 'policy.drift', detail, expected_sha256: opts.policySha256, reason: 'policy_halted' });
    opts.logger.error({ expected: opts.policySha256, found: newSha }, 'pinned policy drifted; halting');
    drainThenHalt(detail);
  };

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

  const reload = async (): Promise<boolean> => {
    if (haltedDetail) return false;
    let next: LoadedPolicy;
    try {
      next = loadPolicy(opts.policyFile);
      const nextDigest = next.digest;
      if (opts.policySha256 && nextDigest !== opts.policySha256.toLowerCase()) {
        halt(
          `the pinned policy ${opts.policyFile} changed at run time (sha256 ${nextDigest}, pinned ${opts.policySha256}); sluice halted`,
          nextDigest,
        );
        return false;
      }
      if (nextDigest === digest) return true;
      const nextRuntime = await buildRuntime(next, opts.env);
      const previous = runtime;
      runtime = nextRuntime;
      digest = nextDigest;
      announce('policy.load', nextRuntime);
      void previous.pools.close();
      previous.secrets.close();
      opts.logger.info({ sha256: next.digest }, 'policy reloaded');
      return true;
    } catch (err) {
      const detail = (err as Error).message;
      observer.event({ type: 'policy.reload_failed', detail });
      opts.logger.warn({ error: detail }, 'policy reload rejected; the previous policy stays in force');
      return false;
    }
  };

  let watcher: FSWatcher | null = null;
  if (opts.watchPolicy) {
    // Watch the directory: editors and Kubernetes replace files rather than write them in place.
    const base = path.basename(opts.policyFile);
    let timer: NodeJS.Timeout | null = null;
    watcher = watch(path.dirname(path.resolve(opts.policyFile)), (_event, name) => {
      if (name !== null && name !== base && !name.startsWith('..')) return;
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => void reload(), 50);
    });
    watcher.unref();
  }

  const close = async (): Promise<void> => {
    watcher?.close();
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
      setTimeout(() => {
        for (const s of sockets) s.destroy();
      }, 2_000).unref();
    });
    await admin?.close();
    await runtime.pools.close();
    runtime.secrets.close();
    closing = true;
    await sink.close();
  };

  return {
    proxy,
    admin: admin?.address ?? null,
    current: () => runtime,
    reload,
    halted: () => haltedDetail,
    flushAudit: () => sink.flush(),
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
