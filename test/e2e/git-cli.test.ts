// `sluice check` and `sluice explain` on a policy with a git: rule (issue 21), through the built CLI.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { cleanEnv } from '../helpers/clients.js';

const CLI = path.resolve('dist/cli.js');
const dir = mkdtempSync(path.join(tmpdir(), 'sluice-git-cli-'));

function sluiceCli(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: cleanEnv(), timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function policy(name: string, refs: string): string {
  const file = path.join(dir, name);
  writeFileSync(
    file,
    `version: 1
tools:
  agent:
    token_env: AGENT_TOKEN
    allow:
      - host: github.com
        git:
          push: { refs: [${refs}], delete: true }
          fetch: false
`,
  );
  return file;
}

t.test('check: strict mode refuses a ref glob over every branch, with its code', async (t) => {
  const file = policy('wide.yaml', '"refs/heads/**"');
  const r = sluiceCli(['check', file]);
  t.equal(r.code, 1);
  t.match(r.stderr + r.stdout, `${file}:8: tools.agent.allow[0].git.push.refs[0]: ref pattern "refs/heads/**" matches every branch`);
  t.match(r.stderr + r.stdout, /\[git_refs_too_wide\]$/m);
});

t.test('explain: a git: rule intercepts its host and says what it allows', async (t) => {
  const file = policy('good.yaml', '"refs/heads/agent/**"');
  t.equal(sluiceCli(['check', file]).code, 0, 'the policy is valid');
  const r = sluiceCli(['explain', '--policy', file, '--tool', 'agent', 'POST', 'https://github.com/org/repo.git/git-receive-pack']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, 'rule: agent.allow[0]');
  t.match(r.stdout, 'tls: intercepted (rule agent.allow[0] has git:, so pushes are read inside)');
  t.match(
    r.stdout,
    'git: push to refs/heads/agent/** (create true, delete true, tags false, no push options); fetch refused; pushes are read after TLS interception',
  );
});
