import { loadPolicy, pinnedDigest } from '../config/load.js';
import { PolicyError } from '../config/errors.js';
import { compilePolicy } from '../policy/compile.js';
import { parseFlags, UsageError } from './usage.js';

const HELP = `Usage: sluice check FILE

Validates a policy file against the schema and sluice's rules (strict mode refuses allow-all).
Prints its sha256 and a summary; exits 1 with file:line errors when it is invalid.
`;

export async function runCheck(args: string[]): Promise<number> {
  const parsed = parseFlags(args, {}, HELP);
  if (!parsed) return 0;
  const [file, extra] = parsed.positionals;
  if (file === undefined || extra !== undefined) throw new UsageError(`give exactly one policy file\n\n${HELP}`);
  try {
    const loaded = loadPolicy(file);
    const compiled = compilePolicy(loaded.doc, loaded.sha256);
    const fragments = loaded.files.length - 1;
    const pin =
      fragments > 0
        ? [`pin with --policy-sha256 ${pinnedDigest(loaded)} (this file and its ${fragments} fragment${fragments === 1 ? '' : 's'})`]
        : [];
    const out = [`${file}: ok`, `sha256 ${loaded.sha256}`, ...pin, `strict ${loaded.doc.strict}, on_violation ${loaded.doc.on_violation}`];
    for (const tool of compiled.tools.values()) {
      const secrets = tool.secrets.length > 0 ? `, secrets: ${tool.secrets.join(', ')}` : '';
      out.push(`tool ${tool.name}: ${tool.rules.length} rule${tool.rules.length === 1 ? '' : 's'}${secrets}`);
    }
    out.push(`secrets defined: ${compiled.secrets.size}`);
    process.stdout.write(out.join('\n') + '\n');
    return 0;
  } catch (err) {
    if (err instanceof PolicyError) {
      process.stderr.write(err.message + '\n');
      return 1;
    }
    throw err;
  }
}
