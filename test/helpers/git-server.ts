// A real smart-HTTP git server for e2e tests: Debian's `git http-backend` behind a small CGI host
// (Node https, loopback), serving bare repositories under one root. It records every request it
// ran (method, path, query, whether it carried an Authorization header and whether that was the
// expected one), never the header's value. Pushes are enabled per repository (http.receivepack).
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { cleanEnv } from './clients.js';

export const GIT_HTTP_BACKEND = '/usr/lib/git-core/git-http-backend';

export interface GitRequest {
  method: string;
  /** the path below the root, e.g. /repo.git/git-receive-pack */
  path: string;
  query: string;
  /** an Authorization header was present */
  auth: boolean;
  /** it was exactly the expected one (the test's injected credential) */
  authExpected: boolean;
}

export interface GitServer {
  port: number;
  requests: GitRequest[];
  close(): Promise<void>;
}

export interface GitRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** git without the user's or the system's configuration, never prompting. */
export function gitEnv(home: string, extra: Record<string, string> = {}): Record<string, string> {
  return { HOME: home, GIT_CONFIG_NOSYSTEM: '1', GIT_TERMINAL_PROMPT: '0', LANG: 'C', LC_ALL: 'C', ...extra };
}

/** Runs git in a proxy-free environment (plus `env`); resolves with its exit code and output. */
export function runGit(args: string[], options: { cwd: string; env: Record<string, string>; timeoutMs?: number }): Promise<GitRun> {
  const env = cleanEnv(options.env);
  // A CA bundle from the environment would override the test's http.sslCAInfo.
  if (options.env.GIT_SSL_CAINFO === undefined) delete env.GIT_SSL_CAINFO;
  return new Promise((resolve) => {
    execFile('git', args, { cwd: options.cwd, env, timeout: options.timeoutMs ?? 30_000, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? null) : 0, stdout, stderr });
    });
  });
}

/** A bare repository `name` under root with one commit on main; pushes over HTTP allowed. */
export async function makeBareRepository(root: string, name: string, home: string): Promise<string> {
  const work = path.join(root, `${name}-seed`);
  mkdirSync(work, { recursive: true });
  writeFileSync(path.join(work, 'README.md'), 'served by git http-backend\n');
  const env = gitEnv(home);
  const bare = path.join(root, name);
  for (const [args, cwd] of [
    [['init', '-q', '-b', 'main'], work],
    [['add', 'README.md'], work],
    [['-c', 'user.name=t', '-c', 'user.email=t@example.test', 'commit', '-qm', 'first'], work],
    [['clone', '-q', '--bare', work, bare], root],
    [['-C', bare, 'config', 'http.receivepack', 'true'], root],
  ] as const) {
    const r = await runGit([...args], { cwd, env });
    if (r.code !== 0) throw new Error(`git ${args[0]} failed: ${r.stderr}`);
  }
  return bare;
}

/**
 * Serves `root` with git http-backend over TLS on 127.0.0.2 (plain HTTP when `tlsPair` is null).
 * `expectedAuth` is the Authorization value the test injects through sluice: recorded as a
 * boolean match, never stored.
 */
export async function startGitServer(
  root: string,
  tlsPair: { certPem: string; keyPem: string } | null,
  expectedAuth: string | null,
): Promise<GitServer> {
  const requests: GitRequest[] = [];
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'https://git.invalid');
    const auth = req.headers.authorization;
    requests.push({
      method: req.method ?? 'GET',
      path: url.pathname,
      query: url.search.slice(1),
      auth: auth !== undefined,
      authExpected: expectedAuth !== null && auth === expectedAuth,
    });
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      GIT_PROJECT_ROOT: root,
      GIT_HTTP_EXPORT_ALL: '1',
      GIT_CONFIG_NOSYSTEM: '1',
      HOME: root,
      REQUEST_METHOD: req.method ?? 'GET',
      PATH_INFO: decodeURIComponent(url.pathname),
      QUERY_STRING: url.search.slice(1),
      REMOTE_ADDR: req.socket.remoteAddress ?? '127.0.0.1',
      REMOTE_USER: 'agent',
    };
    if (req.headers['content-type']) env.CONTENT_TYPE = req.headers['content-type'];
    if (req.headers['content-length']) env.CONTENT_LENGTH = req.headers['content-length'];
    if (req.headers['content-encoding']) env.HTTP_CONTENT_ENCODING = req.headers['content-encoding'];
    const protocol = req.headers['git-protocol'];
    if (typeof protocol === 'string') env.GIT_PROTOCOL = protocol;
    const cgi = spawn(GIT_HTTP_BACKEND, [], { env, stdio: ['pipe', 'pipe', 'ignore'] });
    req.pipe(cgi.stdin);
    cgi.stdin.on('error', () => undefined);
    const out: Buffer[] = [];
    cgi.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    cgi.on('close', () => {
      const all = Buffer.concat(out);
      const split = all.indexOf('\r\n\r\n') >= 0 ? all.indexOf('\r\n\r\n') : all.indexOf('\n\n');
      const sepLength = all.indexOf('\r\n\r\n') >= 0 ? 4 : 2;
      if (split < 0) {
        res.writeHead(502).end();
        return;
      }
      let status = 200;
      const headers: Record<string, string> = {};
      for (const line of all.subarray(0, split).toString('latin1').split(/\r?\n/)) {
        const colon = line.indexOf(':');
        if (colon < 0) continue;
        const name = line.slice(0, colon).trim();
        const value = line.slice(colon + 1).trim();
        if (name.toLowerCase() === 'status') status = Number.parseInt(value, 10);
        else headers[name] = value;
      }
      const body = all.subarray(split + sepLength);
      res.writeHead(status, { ...headers, 'Content-Length': String(body.length) });
      res.end(body);
    });
  };
  const server = tlsPair ? https.createServer({ cert: tlsPair.certPem, key: tlsPair.keyPem }, handler) : http.createServer(handler);
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.2', port: 0 }, resolve));
  return {
    port: (server.address() as AddressInfo).port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
