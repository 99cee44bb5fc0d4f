// sluice started in-process for e2e tests: a policy written to a temp dir, listen and admin on
// 127.0.0.1 port 0, the audit in a file the test can read back.
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startSluice, type RunningSluice } from '../../src/app/serve.js';
import type { AuditRecord } from '../../src/observe/audit.js';
import { createLogger } from '../../src/observe/log.js';

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
  env?: NodeJS.ProcessEnv;
  caDir?: string;
  policySha256?: string | null;
  watchPolicy?: boolean;
  onHalt?: (detail: string) => void;
  /** audit destination instead of DIR/audit.log (e.g. /dev/full to make every write fail) */
  audit?: string;
  /** --max-connections: client connections open at once, all tools together */
  maxConnections?: number;
}

export async function startTestSluice(opts: TestSluiceOptions): Promise<TestSluice> {
  const dir = mkdtempSync(path.join(tmpdir(), 'sluice-e2e-'));
  const policyFile = path.join(dir, 'policy.yaml');
  writeFileSync(policyFile, opts.policy.replaceAll('${TOKEN_SHA}', sha256(TOKEN)));
  const auditFile = opts.audit ?? path.join(dir, 'audit.log');
  const caDir = opts.caDir ?? path.join(dir, 'certs');
  const running = await startSluice({
    policyFile,
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    caDir,
    audit: auditFile,
    auditFsync: 'never',
    auditMaxBytes: 0,
    policySha256: opts.policySha256 ?? null,
    watchPolicy: opts.watchPolicy ?? false,
    haltDrainMs: 200,
    logger: createLogger({ level: 'silent' }),
    env: { ...process.env, ...opts.env },
    ...(opts.onHalt ? { onHalt: opts.onHalt } : {}),
    ...(opts.maxConnections !== undefined ? { maxConnections: opts.maxConnections } : {}),
  });
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
