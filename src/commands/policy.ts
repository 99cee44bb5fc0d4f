// `sluice policy suggest` (issue 16): from the audit of a tool (typically one in review mode) to the
// rules that allow what it did, for an operator to review and lock. The work is pure and lives in
// src/suggest/; this reads the files, filters out what the current policy already allows, checks
// that the output is a policy strict mode accepts, and prints it.
import { readFileSync } from 'node:fs';
import { loadPolicy, parsePolicy } from '../config/load.js';
import { PolicyError } from '../config/errors.js';
import { loadExfilList } from '../exfil/surface.js';
import { compilePolicy } from '../policy/compile.js';
import { decide } from '../policy/decide.js';
import { observe, type Observation, type SecretUse } from '../suggest/observations.js';
import { renderAdditions, renderFragment, renderPolicy, ruleDoc, tokenEnv, type ToolSuggestion } from '../suggest/render.js';
import { exfilWarnings } from '../warnings/policy-warnings.js';
import { suggestRules } from '../suggest/rules.js';
import { parseFlags, UsageError } from './usage.js';

const HELP = `Usage: sluice policy suggest --audit FILE... [--tool NAME] [--policy CURRENT]

Prints, on stdout, rules that allow every request and tunnel the audit shows for the tool (every
tool without --tool): exact hosts (a "*.domain" only for several subdomains of one domain), ports
and methods as seen, paths generalised (ids become "*", a prefix with many children "/prefix/**"),
each rule under a comment with its count and first and last time seen. Without --policy the output
is a whole strict policy (each tool authenticates with token_env); with --policy (and --tool) it is
what to add to CURRENT: the requests CURRENT already allows are left out. The same audit prints the
same bytes. Rules that can write to an exfiltration surface carry a warning. Exit 0 printed, 1 the
audit holds nothing for the tool, 2 usage.
`;

export async function runPolicy(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === '--help' || sub === '-h' || sub === undefined) {
    process.stdout.write(HELP);
    return sub === undefined ? 2 : 0;
  }
  if (sub !== 'suggest') throw new UsageError(`unknown subcommand "${sub}"\n\n${HELP}`);
  return runSuggest(rest);
}

async function runSuggest(args: string[]): Promise<number> {
  const parsed = parseFlags(args, { audit: { type: 'string', multiple: true }, tool: { type: 'string' }, policy: { type: 'string' } }, HELP);
  if (!parsed) return 0;
  const values = parsed.values as { audit?: string[]; tool?: string; policy?: string };
  // "--audit a.log b.log": the files after the flag are audit files too.
  const files = [...(values.audit ?? []), ...parsed.positionals];
  if (files.length === 0) throw new UsageError(`--audit FILE is required\n\n${HELP}`);
  if (values.policy !== undefined && values.tool === undefined) throw new UsageError(`--policy needs --tool\n\n${HELP}`);
  const tool = values.tool ?? null;

  const lines: string[] = [];
  for (const file of files) {
    try {
      lines.push(...readFileSync(file, 'utf8').split('\n'));
    } catch (err) {
      throw new UsageError(`cannot read the audit file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  const observed = observe(lines, tool);
  let observations = observed.observations;
  const exfil = loadExfilList();

  let current: ReturnType<typeof loadPolicy> | null = null;
  if (values.policy !== undefined) {
    try {
      current = loadPolicy(values.policy);
    } catch (err) {
      if (err instanceof PolicyError) {
        process.stderr.write(err.report() + '\n');
        return 1;
      }
      throw err;
    }
    const compiled = compilePolicy(current.doc, current.digest);
    observations = observations.filter((o) => !allowedBy(compiled, o));
  }

  const names = [...new Set(observations.map((o) => o.tool))].sort();
  if (names.length === 0) {
    if (current && observed.observations.length > 0) {
      process.stdout.write(`# nothing to add: ${values.policy} already allows every request of tool ${tool} in the audit\n`);
      return 0;
    }
    process.stderr.write(`sluice policy suggest: the audit holds no requests${tool === null ? '' : ` of tool ${tool}`}\n`);
    return 1;
  }
  const tools: ToolSuggestion[] = names.map((name) => ({
    name,
    rules: suggestRules(observations.filter((o) => o.tool === name)),
    secrets: [...new Set(observed.secretUses.filter((u) => u.tool === name).map((u) => u.alias))].sort(),
  }));
  const secrets = secretHosts(observed.secretUses, names);
  const header = headerLines(observations, observed.skipped);

  // Whatever is printed must be a policy strict mode accepts: check the rules as a whole policy.
  const whole = renderPolicy(header, tools, secrets, exfil);
  try {
    parsePolicy(whole, 'suggested.yaml');
  } catch (err) {
    if (err instanceof PolicyError) {
      process.stderr.write(`sluice policy suggest: the suggestion does not pass sluice check (a bug; please report it):\n${err.report()}\n`);
      return 1;
    }
    throw err;
  }

  let out = whole;
  if (current) {
    const only = tools[0]!;
    if (current.doc.tools[only.name]) {
      out = renderAdditions(
        [...header, `Rules to add under tools.${only.name}.allow in ${values.policy}; requests it already allows are left out.`],
        only.rules,
        exfil,
      );
    } else {
      out = renderFragment(
        [...header, `Tool ${only.name} is not in ${values.policy}: a fragment to include (set ${tokenEnv(only.name)} to its proxy token).`],
        only,
        exfil,
      );
    }
  }
  process.stdout.write(out);
  for (const t of tools) {
    for (const rule of t.rules) {
      for (const w of exfilWarnings(exfil, ruleDoc(rule)))
        process.stderr.write(`warning: tools.${t.name} rule for ${rule.host}: ${w} [exfil_surface]\n`);
    }
  }
  return 0;
}

/** Whether the current policy already allows what the record shows (at the record's own time). */
function allowedBy(compiled: ReturnType<typeof compilePolicy>, o: Observation): boolean {
  const connect = o.method === 'CONNECT';
  const d = decide(compiled, o.tool, {
    phase: connect ? 'connect' : 'request',
    host: o.host,
    port: o.port,
    method: o.method,
    ...(connect ? {} : { path: o.path ?? '/' }),
    now: Date.parse(o.ts),
  });
  return d.verdict === 'allow';
}

function secretHosts(uses: SecretUse[], tools: string[]): { alias: string; hosts: string[] }[] {
  const byAlias = new Map<string, Set<string>>();
  for (const use of uses) {
    if (!tools.includes(use.tool)) continue;
    const hosts = byAlias.get(use.alias) ?? new Set();
    hosts.add(use.host.includes(':') ? `[${use.host}]` : use.host);
    byAlias.set(use.alias, hosts);
  }
  return [...byAlias.keys()].sort().map((alias) => ({ alias, hosts: [...byAlias.get(alias)!].sort() }));
}

function headerLines(observations: Observation[], skipped: Map<string, number>): string[] {
  const times = observations.map((o) => o.ts).sort();
  const lines = [
    `Suggested by sluice policy suggest from ${observations.length} audit ${observations.length === 1 ? 'record' : 'records'}, ${times[0]} to ${times[times.length - 1]}.`,
    'Review every rule (and the diff against the policy in force) before serving it; each rule says what it was written from.',
  ];
  for (const [why, count] of [...skipped].sort()) lines.push(`Left out: ${count} ${count === 1 ? 'record' : 'records'} with ${why}.`);
  return lines;
}
