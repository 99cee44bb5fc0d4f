// The built CLI (dist/cli.js, built by `npm test`) spawned as `sluice serve`, optionally under a
// wrapper such as `prlimit --nofile=1024:1024`, for the "one gate" tests (issue 13) that need a
// process of its own: its fd table (/proc/PID/fd) and its rlimits. Ports are picked free by the test
// and the process counts as up once its admin port answers /readyz.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, existsSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { cleanEnv } from './clients.js';
import type { AuditRecord } from './sluice.js';

const CLI = path.resolve('dist/cli.js');

export async function freeLoopbackPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

export interface ServedCli {
  child: ChildProcess;
  /** the node process itself (the wrapper execs it) */
  pid: number;
  port: number;
  adminPort: number;
  dir: string;
  /** the policy file it serves (a test edits it to reload or drift) */
  policyFile: string;
  auditFile: string;
  /** settles with the exit code when the process exits */
  exited: Promise<number | null>;
  stderr(): string;
  /** entries in /proc/PID/fd now */
  fdCount(): number;
  audit(): AuditRecord[];
  /** SIGTERM (the audit is flushed), then the exit code; SIGKILL if it does not exit in time */
  stop(): Promise<number | null>;
}

/** The exit code, or 'timeout' when the process has not exited within `ms`. */
export function exitWithin(exited: Promise<number | null>, ms: number): Promise<number | null | 'timeout'> {
  return Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), ms))]);
}

/**
 * Spawns `[...wrapper] node dist/cli.js serve` on free loopback ports with the policy given as
 * text. `--audit-fsync never --no-watch --log-level warn` unless `extra` says otherwise; `watch`
 * leaves `--no-watch` out, so the policy file is watched (a reload or a drift on edit), and
 * `auditFsync` picks the fsync mode (`interval` is the CLI's own default).
 */
export async function serveCliProcess(
  policy: string,
  options: {
    wrapper?: string[];
    extra?: string[];
    env?: Record<string, string>;
    dir?: string;
    watch?: boolean;
    auditFsync?: 'never' | 'interval' | 'always';
  } = {},
): Promise<ServedCli> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run the tests through \`npm test\`, which builds it`);
  // A `dir` of an earlier run restarts sluice on the same audit file and CA.
  const dir = options.dir ?? mkdtempSync(path.join(tmpdir(), 'sluice-gate-cli-'));
  const policyFile = path.join(dir, 'policy.yaml');
  writeFileSync(policyFile, policy);
  const auditFile = path.join(dir, 'audit.log');
  const [port, adminPort] = [await freeLoopbackPort(), await freeLoopbackPort()];
  const args = [
    CLI,
    'serve',
    '--policy',
    policyFile,
    '--listen',
    `127.0.0.1:${port}`,
    '--admin',
    `127.0.0.1:${adminPort}`,
    '--ca-dir',
    path.join(dir, 'certs'),
    '--audit',
    auditFile,
    '--audit-fsync',
    options.auditFsync ?? 'never',
    '--log-level',
    'warn',
    ...(options.watch ? [] : ['--no-watch']),
    ...(options.extra ?? []),
  ];
  const wrapper = options.wrapper ?? [];
  const command = wrapper[0] ?? process.execPath;
  const fullArgs = wrapper.length > 0 ? [...wrapper.slice(1), process.execPath, ...args] : args;
  const child = spawn(command, fullArgs, { env: cleanEnv(options.env), stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const deadline = Date.now() + 15_000;
  for (;;) {
    const up = await fetch(`http://127.0.0.1:${adminPort}/readyz`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (up) break;
    if (Date.now() > deadline || child.exitCode !== null) {
      child.kill('SIGKILL');
      throw new Error(`sluice serve did not come up: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const pid = child.pid!;
  return {
    child,
    pid,
    port,
    adminPort,
    dir,
    policyFile,
    auditFile,
    exited,
    stderr: () => stderr,
    fdCount: () => readdirSync(`/proc/${pid}/fd`).length,
    audit: () =>
      existsSync(auditFile)
        ? readFileSync(auditFile, 'utf8')
            .split('\n')
            .filter(Boolean)
            .map((l) => JSON.parse(l) as AuditRecord)
        : [],
    stop: async () => {
      if (child.exitCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const code = await exitWithin(exited, 10_000);
      if (code !== 'timeout') return code;
      child.kill('SIGKILL');
      return exited;
    },
  };
}
