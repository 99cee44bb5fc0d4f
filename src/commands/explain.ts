import { loadPolicy } from '../config/load.js';
import { PolicyError } from '../config/errors.js';
import { classifyAddress, compileAddressPolicy } from '../net/address.js';
import { VettingResolver } from '../net/resolve.js';
import type { CompiledGitRule } from '../git/rules.js';
import { compilePolicy, type CompiledPolicy } from '../policy/compile.js';
import type { CompiledMcp } from '../mcp/names.js';
import { decide, explain } from '../policy/decide.js';
import { parseAbsoluteTarget, parseConnectTarget } from '../proxy/target.js';
import { parseFlags, UsageError } from './usage.js';
import { parseReviewUntil } from '../config/review.js';
import { loadExfilList } from '../exfil/surface.js';
import { exfilWarnings } from '../warnings/policy-warnings.js';

const HELP = `Usage: sluice explain --policy FILE --tool NAME [--resolve] [--at TIME] METHOD URL

Prints what sluice would decide for one request, without any network I/O: the decision, the
matching rule (or why each rule did not match), the address verdict for an IP-literal target,
and which secrets would be injected. --resolve also resolves the host and vets its addresses.
URL is http://host[:port]/path or https://host[:port]/path. --at decides as of an RFC 3339 time
(a tool's review_until is compared with it; default now). A warning line follows when the matching
rule can write to an exfiltration surface (data/exfil-hosts.json). Exit 0 allow (or review), 1 deny.
`;

export async function runExplain(args: string[]): Promise<number> {
  const parsed = parseFlags(
    args,
    { policy: { type: 'string' }, tool: { type: 'string' }, resolve: { type: 'boolean' }, at: { type: 'string' } },
    HELP,
  );
  if (!parsed) return 0;
  const { policy: file, tool, resolve, at } = parsed.values as { policy?: string; tool?: string; resolve?: boolean; at?: string };
  const now = at === undefined ? Date.now() : parseReviewUntil(at);
  if (now === null) throw new UsageError(`--at must be an RFC 3339 time such as 2026-12-16T00:00:00Z (got "${at}")`);
  const [methodArg, url] = parsed.positionals;
  if (!file || !tool || !methodArg || !url) throw new UsageError(`--policy, --tool, METHOD and URL are required\n\n${HELP}`);
  const method = methodArg.toUpperCase();

  let loaded;
  try {
    loaded = loadPolicy(file);
  } catch (err) {
    if (err instanceof PolicyError) {
      process.stderr.write(err.report() + '\n');
      return 2;
    }
    throw err;
  }
  const compiled = compilePolicy(loaded.doc, loaded.digest);
  const https = /^https:\/\//i.test(url);
  const target = https ? httpsTarget(url) : parseAbsoluteTarget(url);
  if (!target.ok) throw new UsageError(target.why);
  const { host, port, path } = target.target;

  const result = explain(compiled, tool, {
    phase: method === 'CONNECT' ? 'connect' : 'request',
    host: host.host,
    port,
    method,
    ...(method === 'CONNECT' ? {} : { path }),
    now,
  });
  const d = result.decision;
  const out = [`decision: ${d.verdict}${d.reason ? ` (${d.reason})` : ''}`, `detail: ${d.detail}`, `rule: ${d.rule ?? 'none'}`];
  if (https) {
    // Whether the tunnel is opened up is the CONNECT's decision, whatever the method asked about.
    const connect = method === 'CONNECT' ? d : decide(compiled, tool, { phase: 'connect', host: host.host, port, method: 'CONNECT', now });
    // A git: or mcp: rule forces interception: what it reads is inside the TLS.
    const rules = compiled.tools.get(tool)?.rules ?? [];
    const byGit = rules.find((r) => r.git !== null && (r.id === d.rule || r.id === connect.rule));
    const byMcp = mcpOf(compiled, tool, connect.rule) ?? mcpOf(compiled, tool, d.rule);
    const why = byGit
      ? `rule ${byGit.id} has git:, so pushes are read inside`
      : byMcp
        ? 'an mcp: rule reads the JSON-RPC calls'
        : 'a rule or secret needs to see inside';
    out.push(`tls: ${connect.intercept ? `intercepted (${why})` : 'tunnelled untouched'}`);
  }
  const mcp = mcpOf(compiled, tool, d.rule);
  if (mcp) {
    const list = (names: { patterns: readonly string[] } | null, absent: string): string =>
      names === null ? absent : names.patterns.length === 0 ? 'none' : names.patterns.join(', ');
    out.push(
      `mcp: tools/call ${list(mcp.tools, 'any')}; resources/read ${list(mcp.resources, 'any')}; prompts/get ${list(mcp.prompts, 'any')}; ` +
        `other methods ${list(mcp.methods, 'none')} (initialize, ping, notifications and */list pass; list answers are filtered)`,
    );
  }
  const gitRule = compiled.tools.get(tool)?.rules.find((r) => r.id === d.rule)?.git ?? null;
  if (gitRule) out.push(`git: ${gitSummary(gitRule)}`);
  const l = d.limits;
  out.push(
    `limits: max_request_bytes ${l.max_request_bytes}, max_response_bytes ${l.max_response_bytes}, ` +
      `max_tunnel_bytes ${l.max_tunnel_bytes === 0 ? 'off' : l.max_tunnel_bytes}, connect_timeout_ms ${l.connect_timeout_ms}, ` +
      `header_timeout_ms ${l.header_timeout_ms}, idle_timeout_ms ${l.idle_timeout_ms}, max_connections_per_tool ${l.max_connections_per_tool}, ` +
      `requests_per_minute ${l.requests_per_minute === 0 ? 'off' : l.requests_per_minute}`,
  );
  if (d.rule === null && result.considered.length > 0) {
    out.push('rules considered:');
    for (const c of result.considered) out.push(`  ${c.rule}: ${c.matched ? 'matches' : c.why}`);
  }
  const addressPolicy = compileAddressPolicy(loaded.doc.network);
  if (host.kind === 'ip') {
    const v = classifyAddress(host.host, addressPolicy);
    out.push(`address: ${v.ip} ${v.allowed ? 'allowed' : 'denied'} (${v.range}${v.allowed && v.exception ? `, exception ${v.exception}` : ''})`);
  } else if (resolve) {
    const resolver = new VettingResolver({
      policy: addressPolicy,
      servers: loaded.doc.network.dns_servers,
      timeoutMs: loaded.doc.limits.dns_timeout_ms,
    });
    const r = await resolver.resolve(host.host);
    if (!r.ok && r.reason === 'dns_failure') out.push(`address: ${r.error}`);
    else for (const v of r.verdicts) out.push(`address: ${v.ip} ${v.allowed ? 'allowed' : 'denied'} (${v.range})`);
  }
  for (const alias of d.secrets) {
    const secret = compiled.secrets.get(alias);
    if (!secret) continue;
    const inject = secret.inject
      ? `injects ${secret.inject.header}: ${secret.inject.format.replace('{value}', `<${alias}>`)}`
      : 'swaps its placeholder';
    out.push(`secret ${alias}: ${inject}${secret.require ? ' (required)' : ''}`);
  }
  // issue 16: the rule that decided may open a way out for data.
  const ruleIndex = compiled.tools.get(tool)?.rules.find((r) => r.id === d.rule)?.index;
  const ruleDoc = ruleIndex === undefined ? undefined : loaded.doc.tools[tool]?.allow[ruleIndex];
  if (ruleDoc) for (const sentence of exfilWarnings(loadExfilList(), ruleDoc)) out.push(`warning: rule ${d.rule} ${sentence} [exfil_surface]`);
  process.stdout.write(out.join('\n') + '\n');
  return d.verdict === 'deny' ? 1 : 0;
}

/** The MCP part of the rule a decision names, if it is an mcp: rule. */
function mcpOf(compiled: CompiledPolicy, tool: string, rule: string | null): CompiledMcp | null {
  return rule === null ? null : (compiled.tools.get(tool)?.byId.get(rule)?.mcp ?? null);
}

function httpsTarget(url: string) {
  const m = /^https:\/\/([^/?#]*)([^#]*)$/i.exec(url);
  if (!m) return { ok: false as const, why: 'not a valid https:// URL' };
  const authority = /:\d+$/.test(m[1]!) ? m[1]! : `${m[1]}:443`;
  const parsed = parseConnectTarget(authority);
  if (!parsed.ok) return parsed;
  return { ok: true as const, target: { ...parsed.target, path: m[2] || '/' } };
}

/** A rule's git: as explain prints it; the intercept it forces is on the tls line. */
function gitSummary(git: CompiledGitRule): string {
  const refs = git.push.refs.length === 0 ? 'no refs' : git.push.refs.map((g) => g.pattern).join(', ');
  const options = git.push.options.length === 0 ? 'no push options' : `push options ${git.push.options.map((g) => g.pattern).join(', ')}`;
  const flags = `create ${git.push.create}, delete ${git.push.delete}, tags ${git.push.tags}, ${options}`;
  return `push to ${refs} (${flags}); fetch ${git.fetch ? 'allowed' : 'refused'}; pushes are read after TLS interception`;
}
