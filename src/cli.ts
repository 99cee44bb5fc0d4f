#!/usr/bin/env node
// sluice's command line: a thin dispatcher; each command lives in src/commands/.
import module from 'node:module';
import { UsageError } from './commands/usage.js';

// Node 22.1+ keeps V8's compiled code of the modules a start loads on disk (in NODE_COMPILE_CACHE, or
// the OS temp dir), so the next start skips most of the compiling; Node 20 has no such API. A cache
// that cannot be written (a read-only root) leaves the start as it was: the call reports, never throws.
(module as { enableCompileCache?: () => unknown }).enableCompileCache?.();

const USAGE = `sluice: an HTTP(S) forward egress proxy for sandboxed tools

Usage:
  sluice serve --policy FILE [--listen 127.0.0.1:3128] [--admin 127.0.0.1:9090] [--ca-dir certs]
               [--audit FILE|-] [--audit-key FILE] [--policy-sha256 HEX]
  sluice check FILE
  sluice explain --policy FILE --tool NAME [--resolve] [--at TIME] METHOD URL
  sluice policy suggest --audit FILE... [--tool NAME] [--policy CURRENT]
  sluice ca init [--dir certs]
  sluice audit keygen --dir DIR
  sluice audit verify [--key PUB] [--expect-seq N] FILE...

Run "sluice COMMAND --help" for the options of one command.
`;

// Loaded on demand so `sluice check` or `--help` does not pay for the proxy's imports.
const COMMANDS: Record<string, () => Promise<(args: string[]) => Promise<number>>> = {
  serve: async () => (await import('./commands/serve.js')).runServe,
  check: async () => (await import('./commands/check.js')).runCheck,
  explain: async () => (await import('./commands/explain.js')).runExplain,
  ca: async () => (await import('./commands/ca.js')).runCa,
  audit: async () => (await import('./commands/audit.js')).runAudit,
  policy: async () => (await import('./commands/policy.js')).runPolicy,
};

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(USAGE);
    return command === undefined ? 2 : 0;
  }
  if (command === '--version') {
    process.stdout.write('sluice 0.1.0\n');
    return 0;
  }
  const load = COMMANDS[command];
  if (!load) {
    process.stderr.write(`sluice: unknown command "${command}"\n\n${USAGE}`);
    return 2;
  }
  try {
    return await (
      await load()
    )(rest);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`sluice ${command}: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    // serve keeps running until a signal; every other command ends here.
    if (code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`sluice: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 70;
  },
);
