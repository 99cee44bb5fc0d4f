import { initCa } from '../tls/ca.js';
import { parseFlags, UsageError } from './usage.js';

const HELP = `Usage: sluice ca init [--dir certs]

Creates the interception CA (ca.pem, and ca-key.pem with mode 0600) in DIR [SLUICE_CA_DIR].
An existing CA is kept, never overwritten. Clients trust ca.pem (also served at /ca.pem).
`;

export async function runCa(args: string[]): Promise<number> {
  const parsed = parseFlags(args, { dir: { type: 'string' } }, HELP);
  if (!parsed) return 0;
  if (parsed.positionals[0] !== 'init' || parsed.positionals.length !== 1) throw new UsageError(`expected "init"\n\n${HELP}`);
  const dir = (parsed.values.dir as string | undefined) ?? process.env.SLUICE_CA_DIR ?? 'certs';
  const result = await initCa(dir);
  process.stdout.write(
    result.created ? `created the sluice CA: ${result.certPath}\n` : `a CA already exists in ${dir}; kept it: ${result.certPath}\n`,
  );
  return 0;
}
