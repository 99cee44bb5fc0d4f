// `sluice audit keygen` (the Ed25519 pair that signs checkpoints) and `sluice audit verify` (the
// chain, the signatures, cut heads and tails, missing rotated files, an external anchor).
import { AuditKeyError, generateAuditKeys, loadAuditVerifyKey, type AuditVerifyKey } from '../observe/audit-key.js';
import { formatVerifyReport, verifyAuditFiles } from '../observe/audit-verify.js';
import { parseFlags, UsageError, wholeNumber } from './usage.js';

const HELP = `Usage: sluice audit keygen --dir DIR
       sluice audit verify [--key PUB]... [--expect-seq N] FILE...

keygen writes DIR/audit-key.pem (the private key, mode 0600: give it to "serve --audit-key") and
DIR/audit-key.pub.pem (the public key: give it to "verify --key"). It never overwrites a key.

verify checks audit files, rotated ones included, in any order, several workers' trails together:
the hash chain, that each trail begins at its genesis or with a checkpoint opening a file, that no
rotated file is missing, and with --key that every checkpoint is signed by that key (repeat --key
for trails written under several keys). --expect-seq N (e.g. the last sluice_audit_last_seq that
Prometheus scraped) requires the trail to reach seq N.

Exit codes: 0 intact (and sealed by a shutdown checkpoint when signed); 1 broken (the first bad
line of each file as file:line); 3 intact but the tail is unsealed (records after the last
checkpoint and no shutdown checkpoint: a running or crashed instance, or a cut tail); 2 usage.
`;

export async function runAudit(args: string[]): Promise<number> {
  const parsed = parseFlags(args, { dir: { type: 'string' }, key: { type: 'string', multiple: true }, 'expect-seq': { type: 'string' } }, HELP);
  if (!parsed) return 0;
  const [sub, ...rest] = parsed.positionals;
  const values = parsed.values as { dir?: string; key?: string[]; 'expect-seq'?: string };
  if (sub === 'keygen') {
    if (!values.dir || rest.length > 0) throw new UsageError(`expected "keygen --dir DIR"\n\n${HELP}`);
    try {
      const { privateFile, publicFile, keyId } = generateAuditKeys(values.dir);
      process.stdout.write(`wrote ${privateFile} (private, mode 0600) and ${publicFile}; key id ${keyId}\n`);
      return 0;
    } catch (err) {
      if (!(err instanceof AuditKeyError)) throw err;
      process.stderr.write(`sluice audit keygen: ${err.message}\n`);
      return 1;
    }
  }
  if (sub !== 'verify' || rest.length === 0) throw new UsageError(`expected "keygen --dir DIR" or "verify FILE..."\n\n${HELP}`);
  let keys: AuditVerifyKey[];
  try {
    keys = (values.key ?? []).map((file) => loadAuditVerifyKey(file));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const expectSeq = values['expect-seq'] === undefined ? null : wholeNumber(values['expect-seq'], '--expect-seq');
  const report = verifyAuditFiles(rest, { keys, expectSeq });
  if (report.usage) throw new UsageError(report.usage);
  const { stdout, stderr } = formatVerifyReport(report, { keysGiven: keys.length > 0 });
  process.stdout.write(stdout);
  process.stderr.write(stderr);
  return report.status === 'failed' ? 1 : report.status === 'unsealed' ? 3 : 0;
}
