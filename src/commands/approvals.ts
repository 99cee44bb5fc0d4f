// `sluice approvals list | allow ID | allow-once ID | deny ID` (issue 17): the supervisor's side of
// the approvals API from a shell, against a running sluice's admin port. The token comes from the
// environment only (never a flag: it would show in ps and shell history).
import { request } from 'undici';
import { parseFlags, UsageError } from './usage.js';

const HELP = `Usage: sluice approvals list [--admin URL]
       sluice approvals allow ID [--ttl 10m] [--max-uses N] [--scope host|path] [--admin URL]
       sluice approvals allow-once ID [--admin URL]
       sluice approvals deny ID [--admin URL]

Lists the requests held for a supervisor, or answers one. "allow" writes a grant (default lifetime
1h unless --ttl or --max-uses is given); "allow-once" lets the one held request through.

  --admin URL      the admin port (default http://127.0.0.1:9090)          [SLUICE_ADMIN_URL]
  --ttl DURATION   how long the grant lasts: 90s, 10m, 2h, 1d
  --max-uses N     the grant ends after N requests
  --scope SCOPE    host (the host and port; default) or path (that path only)
The admin token is read from SLUICE_ADMIN_TOKEN.
Exit codes: 0 done, 1 refused by sluice (the reason on stderr), 2 usage.
`;

export async function runApprovals(args: string[]): Promise<number> {
  try {
    return await approvals(args);
  } catch (err) {
    if (err instanceof UsageError) throw err;
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    process.stderr.write(`sluice approvals: cannot reach the admin port (${code}); is sluice running with --admin there?\n`);
    return 1;
  }
}

async function approvals(args: string[]): Promise<number> {
  const parsed = parseFlags(
    args,
    { admin: { type: 'string' }, ttl: { type: 'string' }, 'max-uses': { type: 'string' }, scope: { type: 'string' } },
    HELP,
  );
  if (!parsed) return 0;
  const v = parsed.values as Record<string, string | undefined>;
  const [action, id, ...extra] = parsed.positionals;
  if (extra.length > 0) throw new UsageError(`unexpected ${extra.join(' ')}\n\n${HELP}`);
  const admin = (v.admin ?? process.env.SLUICE_ADMIN_URL ?? 'http://127.0.0.1:9090').replace(/\/+$/, '');
  if (!/^https?:\/\//.test(admin)) throw new UsageError('--admin must be a URL such as http://127.0.0.1:9090');

  if (action === 'list') {
    if (id !== undefined) throw new UsageError('list takes no ID');
    const res = await request(`${admin}/approvals`, { reset: true });
    const text = await res.body.text();
    if (res.statusCode !== 200) return fail(res.statusCode, text);
    const pending = JSON.parse(text) as Array<{
      id: string;
      tool: string;
      method: string;
      scheme: string;
      host: string;
      port: number;
      path: string | null;
      expires_at: string;
    }>;
    if (pending.length === 0) process.stdout.write('nothing is waiting\n');
    for (const p of pending) {
      const host = p.host.includes(':') ? `[${p.host}]` : p.host;
      process.stdout.write(`${p.id}  ${p.tool}  ${p.method} ${p.scheme}://${host}:${p.port}${p.path ?? ''}  until ${p.expires_at}\n`);
    }
    return 0;
  }
  if (action !== 'allow' && action !== 'allow-once' && action !== 'deny') throw new UsageError(`unknown action "${action ?? ''}"\n\n${HELP}`);
  if (id === undefined) throw new UsageError(`${action} needs the ID of a held request (sluice approvals list)`);
  if (action !== 'allow' && (v.ttl !== undefined || v['max-uses'] !== undefined || v.scope !== undefined)) {
    throw new UsageError('--ttl, --max-uses and --scope go with allow only');
  }
  const body: Record<string, unknown> = { decision: action };
  if (v.ttl !== undefined) body.ttl_s = seconds(v.ttl);
  if (v['max-uses'] !== undefined) {
    const n = Number(v['max-uses']);
    if (!Number.isInteger(n) || n < 1) throw new UsageError('--max-uses must be a whole number from 1');
    body.max_uses = n;
  }
  if (v.scope !== undefined) {
    if (v.scope !== 'host' && v.scope !== 'path') throw new UsageError('--scope must be host or path');
    body.scope = v.scope;
  }
  const token = process.env.SLUICE_ADMIN_TOKEN;
  const res = await request(`${admin}/approvals/${encodeURIComponent(id)}`, {
    method: 'POST',
    // One request per run: no kept-alive socket holds the process open afterwards.
    reset: true,
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  const text = await res.body.text();
  if (res.statusCode !== 200) return fail(res.statusCode, text);
  process.stdout.write(text);
  return 0;
}

function fail(status: number, text: string): number {
  let why = text.trim();
  try {
    const answer = JSON.parse(text) as { error?: string; detail?: string };
    why = answer.detail ?? answer.error ?? why;
  } catch {
    // not JSON: the text as it came
  }
  process.stderr.write(`sluice approvals: ${status}: ${why}\n`);
  return 1;
}

/** "90s", "10m", "2h", "1d" or a bare number of seconds. */
export function seconds(text: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(text.trim());
  if (!m) throw new UsageError(`--ttl must be a duration such as 90s, 10m, 2h or 1d (got "${text}")`);
  const n = Number(m[1]) * { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
  if (n < 1) throw new UsageError('--ttl must be at least 1s');
  return n;
}
