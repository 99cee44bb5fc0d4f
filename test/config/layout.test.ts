// config/ reads and checks policy files and nothing else: it must not reach into the proxy, the
// app wiring, the commands or observability (which all depend on it, so that would be a cycle).
// policy/host-match.ts and policy/path.ts are on their way to src/match/ (issue 13), the last
// imports from policy/; once they have moved, no import from policy/ is allowed either.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';

const CONFIG = path.resolve('src/config');
const FORBIDDEN = ['app', 'commands', 'observe', 'proxy', 'policy'];
const MOVING = new Set(['policy/host-match.js', 'policy/path.js']);

t.test('src/config imports nothing from app/, commands/, observe/, proxy/ (nor policy/, but for the two moving files)', async (t) => {
  for (const name of readdirSync(CONFIG).filter((n) => n.endsWith('.ts'))) {
    const text = readFileSync(path.join(CONFIG, name), 'utf8');
    for (const [, specifier] of text.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+'([^']+)'/gm)) {
      if (!specifier!.startsWith('.')) continue;
      const target = path.relative(path.resolve('src'), path.resolve(CONFIG, specifier!));
      const top = target.split(path.sep)[0]!;
      t.notOk(FORBIDDEN.includes(top) && !MOVING.has(target), `config/${name} imports ${specifier}`);
    }
  }
});
