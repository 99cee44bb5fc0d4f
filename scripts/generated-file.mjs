// What the build's generators share: write the generated file, or with --check fail (exit 1) when
// the committed one is not what the generator gives today (its test runs the check).
import { readFileSync, writeFileSync } from 'node:fs';

/** Writes `fresh` to `outFile`, or with --check on the command line compares them and exits 1 with `stale` when they differ. */
export function writeOrCheck(outFile, fresh, stale) {
  if (!process.argv.includes('--check')) {
    writeFileSync(outFile, fresh);
    return;
  }
  let committed = '';
  try {
    committed = readFileSync(outFile, 'utf8');
  } catch {
    // missing: reported below
  }
  if (committed !== fresh) {
    process.stderr.write(`${stale}\n`);
    process.exit(1);
  }
}
