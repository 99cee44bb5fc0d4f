// The mcp: rule field (issue 18) as the loader, the compiler, decide and explain see it: its schema,
// the semantic checks (bad_mcp), interception forced for its host, and explain's words for it.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { PolicyError } from '../../src/config/errors.js';
import { parsePolicy } from '../../src/config/load.js';
import { compilePolicy } from '../../src/policy/compile.js';
import { decide } from '../../src/policy/decide.js';
import { cleanEnv } from '../helpers/clients.js';

const HASH = createHash('sha256').update('t').digest('hex');
const withRule = (rule: string): string => `version: 1
tools:
  agent:
    token_sha256: "${HASH}"
    allow:
      - host: mcp.example.com
${rule}`;

function problems(text: string): { codes: string[]; sentences: string[] } {
  try {
    parsePolicy(text, 'policy.yaml');
  } catch (error) {
    if (error instanceof PolicyError) return { codes: error.codes, sentences: error.problems };
    throw error;
  }
  return { codes: [], sentences: [] };
}

t.test('a valid mcp: rule compiles, inspects, and forces interception of its host', async (t) => {
  const doc = parsePolicy(
    withRule('        mcp:\n          tools: [search, "repo.*"]\n          methods: [completion/complete]\n'),
    'policy.yaml',
  );
  const compiled = compilePolicy(doc, 'x');
  const rule = compiled.tools.get('agent')!.rules[0]!;
  t.ok(rule.inspects);
  t.same(rule.mcp?.tools.patterns, ['search', 'repo.*']);
  t.equal(rule.mcp?.resources, null, 'no resources list: not checked by name');
  t.equal(compiled.tools.get('agent')!.byId.get('agent.allow[0]'), rule);
  const connect = decide(compiled, 'agent', { phase: 'connect', host: 'mcp.example.com', port: 443, method: 'CONNECT' });
  t.equal(connect.verdict, 'allow');
  t.equal(connect.intercept, true, 'an mcp: rule makes sluice intercept the host');
  t.same(problems(withRule('        mcp:\n          tools: []\n')).codes, [], 'tools: [] (no tool at all) is valid');
});

t.test('schema and semantic problems of mcp:', async (t) => {
  const cases: Array<[string, string, string, RegExp]> = [
    ['tools is required', '        mcp:\n          prompts: [x]\n', 'missing_field', /missing required field "tools"/],
    ['an unknown field', '        mcp:\n          tools: [x]\n          tool: [y]\n', 'unknown_field', /unknown field "tool"/],
    ['a control character in a name', '        mcp:\n          tools: ["a\\u0001b"]\n', 'bad_format', /without control characters/],
    ['an empty name', '        mcp:\n          tools: [""]\n', 'empty_value', /must not be empty/],
    ['a repeated name', '        mcp:\n          tools: [a, a]\n', 'repeated_entry', /repeats entry/],
    ['POST left out of methods', '        methods: [GET]\n        mcp:\n          tools: [x]\n', 'bad_mcp', /add POST to methods/],
    ['a sha256 pin', `        sha256: "${'a'.repeat(64)}"\n        mcp:\n          tools: [x]\n`, 'bad_mcp', /cannot be pinned/],
    [
      'tools/call under mcp.methods',
      '        mcp:\n          tools: [x]\n          methods: [tools/call]\n',
      'bad_mcp',
      /list the names under mcp.tools/,
    ],
    ['prompts/get under mcp.methods', '        mcp:\n          tools: [x]\n          methods: [prompts/get]\n', 'bad_mcp', /under mcp.prompts/],
  ];
  for (const [name, rule, code, sentence] of cases) {
    const found = problems(withRule(rule));
    t.same(found.codes, [code], `${name}: ${found.sentences.join(' | ')}`);
    t.match(found.sentences[0], sentence, name);
  }
});

t.test('explain says an mcp: rule intercepts and lists what it lets through', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sluice-mcp-explain-'));
  const file = path.join(dir, 'policy.yaml');
  writeFileSync(file, withRule('        mcp:\n          tools: [search]\n          prompts: [summarize]\n'));
  const r = spawnSync(
    process.execPath,
    [path.resolve('dist/cli.js'), 'explain', '--policy', file, '--tool', 'agent', 'POST', 'https://mcp.example.com/mcp'],
    {
      encoding: 'utf8',
      env: cleanEnv(),
      timeout: 20_000,
    },
  );
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /tls: intercepted \(an mcp: rule reads the JSON-RPC calls\)/);
  t.match(r.stdout, /mcp: tools\/call search; resources\/read any; prompts\/get summarize; other methods none/);
});
