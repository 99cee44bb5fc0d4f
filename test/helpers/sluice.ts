// sluice started in-process for e2e tests: a policy written to a temp dir, listen and admin on
// 127.0.0.1 port 0, the audit in a file the test can read back. Fragments and symlinks can be laid
// out around it (files, setup, serve) for the tests of what the policy was read from.
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startSluice, type RunningSluice } from '../../src/app/serve.js';
import type { AuditRecord } from '../../src/observe/audit.js';
import { scrubSecrets } from '../../src/app/runtime.js';
import { createLogger, type Logger } from '../../src/observe/log.js';

/** One audit line as the sink writes it. */
export type { AuditRecord };

export interface TestSluice {
  running: RunningSluice;
  port: number;
  adminPort: number;
  dir: string;
  policyFile: string;
  auditFile: string;
  caDir: string;
  /** http://tool:token@127.0.0.1:PORT */
  proxyUrl(tool?: string, token?: string): string;
  audit(): Promise<AuditRecord[]>;
  close(): Promise<void>;
}

export const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

/** The default test tool and its token. */
export const TOOL = 'web-fetch';
export const TOKEN = 'test-token-web-fetch';

export interface TestSluiceOptions {
  /** policy YAML; `${TOKEN_SHA}` is replaced by the sha256 of TOKEN */
  policy: string;
  /** where the policy is written, relative to DIR (default policy.yaml) */
  policyFile?: string;
  /** more files written under DIR before start (include fragments, symlink targets), `${TOKEN_SHA}` replaced too */
  files?: Record<string, string>;
  /** runs after the files are written and before start, e.g. to make symlinks */
  setup?: (dir: string) => void;
  /** the path sluice is started with, relative to DIR (default the policy file; e.g. a symlink made by setup) */
  serve?: string;
  env?: NodeJS.ProcessEnv;
  caDir?: string;
  policySha256?: string | null;
  watchPolicy?: boolean;
  onHalt?: (detail: string) => void;
  /** audit destination instead of DIR/audit.log (e.g. /dev/full to make every write fail) */
  audit?: string;
  /** the proxy's listen host (default 127.0.0.1), e.g. 'localhost' or the wildcard '0.0.0.0' */
  listenHost?: string;
  /** the admin port's host (default 127.0.0.1) */
  adminHost?: string;
  /** --max-connections: client connections open at once, all tools together */
  maxConnections?: number;
  /** --grants: the grants file (default beside the policy, in DIR) */
  grantsFile?: string;
  /** the admin token POST /approvals/{id} needs (default none: changes are refused) */
  adminToken?: string;
  /** --drain-timeout in ms (default: serve's 30 s) */
  drainMs?: number;
  /** --listen-tool: ports bound to one tool (port 0 = a free one) */
  toolListeners?: Array<{ tool: string; port?: number }>;
  /** --deny-message */
  denyMessage?: string;
  /** the app logger (default silent) */
  logger?: Logger;
  /**
   * Collects the application log here (level debug), scrubbed as `sluice serve` scrubs it, so a
   * test can read what the log would have said. Absent: the log is silent.
   */
  log?: string[];
}

export async function startTestSluice(opts: TestSluiceOptions): Promise<TestSluice> {
  const dir = mkdtempSync(path.join(tmpdir(), 'sluice-e2e-'));
  const write = (file: string, text: string): void => {
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, text.replaceAll('${TOKEN_SHA}', sha256(TOKEN)));
  };
  const policyFile = path.join(dir, opts.policyFile ?? 'policy.yaml');
  write(policyFile, opts.policy);
  for (const [name, text] of Object.entries(opts.files ?? {})) write(path.join(dir, name), text);
  opts.setup?.(dir);
  const auditFile = opts.audit ?? path.join(dir, 'audit.log');
  const caDir = opts.caDir ?? path.join(dir, 'certs');
  // As `sluice serve` does: nothing to scrub until the policy (and so the secrets) is loaded.
  let scrub = (text: string): string => text;
  const lines = opts.log;
  const logger = lines
    ? createLogger({ level: 'debug', scrub: (text) => scrub(text), destination: { write: (line: string) => void lines.push(line) } })
    : createLogger({ level: 'silent' });
  const running = await startSluice({
    policyFile: opts.serve ? path.join(dir, opts.serve) : policyFile,
    listen: { host: opts.listenHost ?? '127.0.0.1', port: 0 },
    admin: { host: opts.adminHost ?? '127.0.0.1', port: 0 },
    caDir,
    audit: auditFile,
    auditFsync: 'never',
    auditMaxBytes: 0,
    policySha256: opts.policySha256 ?? null,
    watchPolicy: opts.watchPolicy ?? false,
    haltDrainMs: 200,
    logger: opts.logger ?? logger,
    env: { ...process.env, ...opts.env },
    ...(opts.onHalt ? { onHalt: opts.onHalt } : {}),
    ...(opts.maxConnections !== undefined ? { maxConnections: opts.maxConnections } : {}),
    ...(opts.grantsFile !== undefined ? { grantsFile: opts.grantsFile } : {}),
    ...(opts.adminToken !== undefined ? { adminToken: opts.adminToken } : {}),
    ...(opts.drainMs !== undefined ? { drainMs: opts.drainMs } : {}),
    ...(opts.denyMessage !== undefined ? { denyMessage: opts.denyMessage } : {}),
    ...(opts.toolListeners
      ? { toolListeners: opts.toolListeners.map((l) => ({ tool: l.tool, listen: { host: '127.0.0.1', port: l.port ?? 0 } })) }
      : {}),
  });
  scrub = (text) => scrubSecrets(running.current(), text);
  return {
    running,
    port: running.proxy.port,
    adminPort: running.admin!.port,
    dir,
    policyFile,
    auditFile,
    caDir,
    proxyUrl: (tool = TOOL, token = TOKEN) => `http://${tool}:${token}@127.0.0.1:${running.proxy.port}`,
    audit: async () => {
      await running.flushAudit();
      if (!existsSync(auditFile)) return [];
      return readFileSync(auditFile, 'utf8')
        .split('\n')
        .filter((l) => l.length > 0)
        .map((l) => JSON.parse(l) as AuditRecord);
    },
    close: () => running.close(),
  };
}

/** Polls the audit until a record matches (events are written when an exchange closes). */
export async function waitForAudit(s: TestSluice, match: (r: AuditRecord) => boolean, timeoutMs = 3000): Promise<AuditRecord> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const found = (await s.audit()).find(match);
    if (found) return found;
    if (Date.now() > until) throw new Error('no matching audit record');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Like waitForAudit, but resolves undefined when no record matched in time, so a test can assert on it. */
export async function auditWithin(s: TestSluice, match: (r: AuditRecord) => boolean, timeoutMs = 3000): Promise<AuditRecord | undefined> {
  return waitForAudit(s, match, timeoutMs).catch(() => undefined);
}

/** The event types that are the one record of an exchange (each moves sluice_requests_total once). */
export const CANONICAL_TYPES: ReadonlySet<string> = new Set(['net.req', 'net.tunnel', 'policy.violation', 'limit.exceeded', 'auth.challenge']);

/** The highest seq written so far: take it before an exchange, then read what came after. */
export async function auditMark(s: TestSluice): Promise<number> {
  return (await s.audit()).reduce((max, r) => Math.max(max, r.seq), 0);
}

/**
 * The canonical records written after `mark`, once there are at least `count` of them (or the bounded
 * wait ran out: then whatever there is, so the test's count assertion fails rather than hangs).
 */
export async function canonicalSince(s: TestSluice, mark: number, count: number, timeoutMs = 3000): Promise<AuditRecord[]> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const found = (await s.audit()).filter((r) => r.seq > mark && CANONICAL_TYPES.has(r.type));
    if (found.length >= count || Date.now() > until) return found;
    await new Promise((r) => setTimeout(r, 20));
  }
}
