import path from 'node:path';
import { loadPolicy } from '../config/load.js';
import type { LoadedPolicy } from '../config/types.js';
import { PolicyError } from '../config/errors.js';
import { compilePolicy } from '../policy/compile.js';
import { formatFieldPath } from '../config/errors.js';
import { policyLocator } from '../config/locate.js';
import { loadExfilList } from '../exfil/surface.js';
import { policyWarnings } from '../warnings/policy-warnings.js';
import { parseFlags, UsageError } from './usage.js';

const HELP = `Usage: sluice check FILE

Validates a policy file against the schema and sluice's rules (strict mode refuses allow-all).
Prints its sha256 (over the file and the fragments it includes: what --policy-sha256 pins) and a
summary; exits 1 when it is invalid, with one file:line sentence and [code] per problem (README.md,
"Policy errors", says what each code means and what to do). Warnings (a rule that can write to an
exfiltration surface, a rule a broader one before it makes moot, a review that ended) are printed
on stderr as "warning: file:line: field: sentence [code]" and do not change the exit code.
`;

export async function runCheck(args: string[]): Promise<number> {
  const parsed = parseFlags(args, {}, HELP);
  if (!parsed) return 0;
  const [file, extra] = parsed.positionals;
  if (file === undefined || extra !== undefined) throw new UsageError(`give exactly one policy file\n\n${HELP}`);
  try {
    const loaded = loadPolicy(file);
    const compiled = compilePolicy(loaded.doc, loaded.digest);
    const fragments = loaded.files.slice(1).map((f) => path.relative(path.dirname(loaded.file), f));
    const covers = fragments.length > 0 ? [`fragments (the sha256 covers them too): ${fragments.join(', ')}`] : [];
    const out = [`${file}: ok`, `sha256 ${loaded.digest}`, ...covers, `strict ${loaded.doc.strict}, on_violation ${loaded.doc.on_violation}`];
    for (const tool of compiled.tools.values()) {
      const secrets = tool.secrets.length > 0 ? `, secrets: ${tool.secrets.join(', ')}` : '';
      const review =
        tool.onViolation === 'review'
          ? `, on_violation review${tool.reviewUntil === null ? '' : ` until ${new Date(tool.reviewUntil).toISOString()}`}`
          : '';
      out.push(`tool ${tool.name}: ${tool.rules.length} rule${tool.rules.length === 1 ? '' : 's'}${secrets}${review}`);
    }
    out.push(`secrets defined: ${compiled.secrets.size}`);
    process.stdout.write(out.join('\n') + '\n');
    printWarnings(loaded, file);
    return 0;
  } catch (err) {
    if (err instanceof PolicyError) {
      process.stderr.write(err.report() + '\n');
      return 1;
    }
    throw err;
  }
}

/** The warning tier: printed, never a failure (issues 15 and 16). */
function printWarnings(loaded: LoadedPolicy, name: string): void {
  const warnings = policyWarnings(loaded.doc, loadExfilList(), Date.now());
  if (warnings.length === 0) return;
  const locate = policyLocator(loaded, name);
  const lines = warnings.map((w) => {
    const at = locate(w.path);
    return `warning: ${at.file}${at.line === undefined ? '' : `:${at.line}`}: ${formatFieldPath(w.path)}: ${w.message} [${w.code}]`;
  });
  process.stderr.write(lines.join('\n') + '\n');
}
