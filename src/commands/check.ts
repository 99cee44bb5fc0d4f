import path from 'node:path';
import { loadPolicy } from '../config/load.js';
import { PolicyError } from '../config/errors.js';
import { compilePolicy } from '../policy/compile.js';
import { parseFlags, UsageError } from './usage.js';

const HELP = `Usage: sluice check FILE

Validates a policy file against the schema and sluice's rules (strict mode refuses allow-all).
Prints its sha256 (over the file and the fragments it includes: what --policy-sha256 pins) and a
summary; exits 1 when it is invalid, with one file:line sentence and [code] per problem (README.md,
"Policy errors", says what each code means and what to do).
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
      out.push(`tool ${tool.name}: ${tool.rules.length} rule${tool.rules.length === 1 ? '' : 's'}${secrets}`);
    }
    out.push(`secrets defined: ${compiled.secrets.size}`);
    process.stdout.write(out.join('\n') + '\n');
    return 0;
  } catch (err) {
    if (err instanceof PolicyError) {
      process.stderr.write(err.report() + '\n');
      return 1;
    }
    throw err;
  }
}
