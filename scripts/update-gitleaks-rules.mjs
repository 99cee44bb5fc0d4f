// Turns gitleaks' rule set (vendor/gitleaks/gitleaks.toml, MIT, see vendor/gitleaks/LICENSE) into
// the data sluice loads: src/leak/gitleaks-rules.json. The regexes are kept exactly as gitleaks
// writes them (Go RE2 syntax); src/leak/re2.ts converts them when sluice starts, and
// test/leak/gitleaks-rules.test.ts checks that every one compiles.
//
// To update: copy config/gitleaks.toml from https://github.com/gitleaks/gitleaks (a release tag or
// master) over vendor/gitleaks/gitleaks.toml, write its commit into vendor/gitleaks/VERSION, run
// `node scripts/update-gitleaks-rules.mjs`, then the leak tests. Rules that misfire on ordinary
// traffic are dropped by id in src/leak/shapes.ts (EXCLUDED), never edited here.
//
// The reader handles the subset of TOML the file uses: [table], [[array.of.tables]], and
// key = value with '''literal''', "basic" strings, numbers and (multi-line) arrays of strings.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SOURCE = path.join(ROOT, 'vendor/gitleaks/gitleaks.toml');
const OUT = path.join(ROOT, 'src/leak/gitleaks-rules.json');

function parseToml(text) {
  const doc = {};
  let table = doc;
  let i = 0;
  const skipSpace = () => {
    for (;;) {
      while (i < text.length && /[ \t\r\n,]/.test(text[i])) i++;
      if (text[i] === '#') while (i < text.length && text[i] !== '\n') i++;
      else return;
    }
  };
  const value = () => {
    skipSpace();
    if (text.startsWith("'''", i)) {
      const end = text.indexOf("'''", i + 3);
      const v = text.slice(i + 3, end);
      i = end + 3;
      return v.startsWith('\n') ? v.slice(1) : v;
    }
    if (text[i] === "'") {
      const end = text.indexOf("'", i + 1);
      const v = text.slice(i + 1, end);
      i = end + 1;
      return v;
    }
    if (text[i] === '"') {
      let v = '';
      i++;
      while (text[i] !== '"') {
        if (text[i] === '\\') {
          const c = text[i + 1];
          const map = { n: '\n', t: '\t', r: '\r', '"': '"', '\\': '\\' };
          if (c === 'u') {
            v += String.fromCharCode(parseInt(text.slice(i + 2, i + 6), 16));
            i += 6;
            continue;
          }
          if (!(c in map)) throw new Error(`unknown escape \\${c} at ${i}`);
          v += map[c];
          i += 2;
        } else v += text[i++];
      }
      i++;
      return v;
    }
    if (text[i] === '[') {
      i++;
      const items = [];
      for (;;) {
        skipSpace();
        if (text[i] === ']') {
          i++;
          return items;
        }
        items.push(value());
      }
    }
    const m = /^(true|false|-?[0-9.]+)/.exec(text.slice(i, i + 40));
    if (!m) throw new Error(`cannot read a value at offset ${i}: ${text.slice(i, i + 30)}`);
    i += m[0].length;
    return m[1] === 'true' ? true : m[1] === 'false' ? false : Number(m[1]);
  };
  for (;;) {
    skipSpace();
    if (i >= text.length) return doc;
    if (text.startsWith('[[', i)) {
      const end = text.indexOf(']]', i);
      const names = text
        .slice(i + 2, end)
        .trim()
        .split('.');
      i = end + 2;
      let parent = doc;
      for (const name of names.slice(0, -1)) {
        const list = parent[name];
        parent = Array.isArray(list) ? list[list.length - 1] : list;
      }
      const last = names[names.length - 1];
      (parent[last] ??= []).push((table = {}));
    } else if (text[i] === '[') {
      const end = text.indexOf(']', i);
      const name = text.slice(i + 1, end).trim();
      i = end + 1;
      doc[name] = table = {};
    } else {
      const eq = text.indexOf('=', i);
      const key = text.slice(i, eq).trim();
      i = eq + 1;
      table[key] = value();
    }
  }
}

const doc = parseToml(fs.readFileSync(SOURCE, 'utf8'));
const version = fs.existsSync(path.join(ROOT, 'vendor/gitleaks/VERSION'))
  ? fs.readFileSync(path.join(ROOT, 'vendor/gitleaks/VERSION'), 'utf8').trim()
  : 'unknown';
const allow = (list) =>
  (list ?? []).map((a) => ({
    ...(a.regexes ? { regexes: a.regexes } : {}),
    ...(a.regexTarget ? { regexTarget: a.regexTarget } : {}),
    ...(a.stopwords ? { stopwords: a.stopwords } : {}),
    ...(a.condition ? { condition: a.condition } : {}),
    ...(a.paths ? { paths: true } : {}),
  }));
const rules = doc.rules.map((r) => ({
  id: r.id,
  ...(r.regex !== undefined ? { regex: r.regex } : {}),
  ...(r.path !== undefined ? { path: r.path } : {}),
  ...(r.secretGroup !== undefined ? { secretGroup: r.secretGroup } : {}),
  ...(r.entropy !== undefined ? { entropy: r.entropy } : {}),
  keywords: (r.keywords ?? []).map((k) => k.toLowerCase()),
  allowlists: allow(r.allowlists),
}));
const out = {
  source: 'https://github.com/gitleaks/gitleaks/blob/master/config/gitleaks.toml',
  license: 'MIT (vendor/gitleaks/LICENSE)',
  version,
  global: { regexes: doc.allowlist?.regexes ?? [], stopwords: doc.allowlist?.stopwords ?? [] },
  rules,
};
fs.writeFileSync(OUT, JSON.stringify(out, null, 1) + '\n');
console.log(`${rules.length} rules from gitleaks ${version} -> ${path.relative(ROOT, OUT)}`);
