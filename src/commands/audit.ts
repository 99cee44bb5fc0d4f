import { formatVerifyResult, verifyAuditFiles } from '../observe/audit.js';
import { parseFlags, UsageError } from './usage.js';

const HELP = `Usage: sluice audit verify FILE...

Checks the hash chain of audit files (oldest first, e.g. audit.log.2 audit.log.1 audit.log).
Prints the first broken line as file:line and exits 1; exits 0 when every record verifies.
`;

export async function runAudit(args: string[]): Promise<number> {
  const parsed = parseFlags(args, {}, HELP);
  if (!parsed) return 0;
  const [sub, ...files] = parsed.positionals;
  if (sub !== 'verify' || files.length === 0) throw new UsageError(`expected "verify FILE..."\n\n${HELP}`);
  const result = verifyAuditFiles(files);
  const text = formatVerifyResult(result);
  (result.ok ? process.stdout : process.stderr).write(text.endsWith('\n') ? text : text + '\n');
  return result.ok ? 0 : 1;
}
