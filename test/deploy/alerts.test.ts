// The monitoring files against the sluice that serves them:
//   - every metric name in deploy/prometheus/alerts.yml and deploy/grafana/sluice.json (panels and
//     template variables) is in the /metrics output of a real sluice started here;
//   - promtool (Debian's prometheus package; .ci/run installs it) checks the rules and runs their
//     unit tests in alerts.test.yml, which use the labels the Prometheus Operator sets (no
//     job="sluice"). Without promtool, and outside CI, that part is skipped with a note;
//   - sluice_halted, which SluiceHalted keys on, is 0 while serving and 1 once a pinned policy drifts;
//   - the dashboard has job/instance variables that scope every query, and RSS and CPU panels.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { ProxyAgent, fetch as proxiedFetch } from 'undici';
import { parse } from 'yaml';
import { scrapeMetrics, total } from '../helpers/metrics.js';
import { sha256, startTestSluice, TOKEN } from '../helpers/sluice.js';
import { startUpstream } from '../helpers/upstream.js';
import { waitFor } from '../helpers/wait.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const ALERTS = path.join(ROOT, 'deploy/prometheus/alerts.yml');
const DASHBOARD = path.join(ROOT, 'deploy/grafana/sluice.json');

interface RuleFile {
  groups: Array<{ name: string; rules: Array<{ alert?: string; record?: string; expr: string }> }>;
}
interface Dashboard {
  templating: { list: Array<{ name: string; type: string; query?: string | { query: string } }> };
  panels: Array<{ title: string; targets?: Array<{ expr: string }> }>;
}

const rules = () => parse(readFileSync(ALERTS, 'utf8')) as RuleFile;
const dashboard = () => JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;

const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan', 'Inf', 'NaN']);

/** The metric names a PromQL expression (or a Grafana label_values() query) selects. */
export function metricNames(expr: string): string[] {
  const labelValues = /^\s*label_values\(\s*([a-zA-Z_:][\w:]*)/.exec(expr);
  if (labelValues) return [labelValues[1]!];
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '');
  const names = new Set<string>();
  for (const m of bare.matchAll(/(?<![\w.$])[a-zA-Z_:][\w:]*(?![\w:]|\s*\()/g)) if (!KEYWORDS.has(m[0])) names.add(m[0]);
  return [...names];
}

t.test('metricNames reads PromQL the way the checks below need', async (t) => {
  const cases: Array<[string, string[]]> = [
    ['max by (instance) (sluice_halted) == 1', ['sluice_halted']],
    ['up == 0 and on (job, instance) max by (job, instance) (max_over_time(sluice_policy_info[1h]))', ['up', 'sluice_policy_info']],
    ['sum(rate(a_total{reason=~"upstream_.*"}[5m])) / clamp_min(sum(rate(b_total[5m])), 1e-9) > 0.2', ['a_total', 'b_total']],
    ['histogram_quantile(0.99, sum by (le) (rate(x_bucket{job=~"$job"}[$__rate_interval])))', ['x_bucket']],
    ['label_values(sluice_policy_info{job=~"$job"}, instance)', ['sluice_policy_info']],
  ];
  for (const [expr, names] of cases) t.same(metricNames(expr), names, expr);
});

/** Every metric name the alert rules and the dashboard use. */
function usedNames(): Map<string, string> {
  const used = new Map<string, string>();
  for (const group of rules().groups)
    for (const rule of group.rules) for (const name of metricNames(rule.expr)) used.set(name, `alert ${rule.alert}`);
  const board = dashboard();
  for (const panel of board.panels)
    for (const target of panel.targets ?? []) for (const name of metricNames(target.expr)) used.set(name, `panel "${panel.title}"`);
  for (const variable of board.templating.list.filter((v) => v.type === 'query')) {
    const query = typeof variable.query === 'string' ? variable.query : (variable.query?.query ?? '');
    for (const name of metricNames(query)) used.set(name, `variable ${variable.name}`);
  }
  return used;
}

/** Names a /metrics exposition offers: each # TYPE line, with a histogram's series suffixes. */
function exposedNames(exposition: string): Set<string> {
  const names = new Set<string>();
  for (const m of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    names.add(m[1]!);
    if (m[2] === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${m[1]}${suffix}`);
    if (m[2] === 'summary') for (const suffix of ['_sum', '_count']) names.add(`${m[1]}${suffix}`);
  }
  return names;
}

/** Prometheus' own series for each target, not sluice's. */
const PROMETHEUS_SERIES = new Set(['up']);

t.test('every metric in the alerts and the dashboard is served by a real sluice', async (t) => {
  const upstream = await startUpstream({ host: '127.0.0.2' });
  const sluice = await startTestSluice({
    policy: `
version: 1
network:
  allow_private_cidrs: ["127.0.0.2/32"]
  allow_ports: [${upstream.port}]
tools:
  web-fetch:
    token_sha256: "\${TOKEN_SHA}"
    allow:
      - host: 127.0.0.2
`,
  });
  t.teardown(async () => {
    await sluice.close();
    await upstream.close();
  });
  // One request, so the labelled series have samples as well as their # TYPE lines.
  const res = await proxiedFetch(`http://127.0.0.2:${upstream.port}/anything/x`, {
    dispatcher: new ProxyAgent({ uri: sluice.proxyUrl(), proxyTunnel: false }),
  });
  t.equal(res.status, 200);
  await res.arrayBuffer();
  const exposition = await (await fetch(`http://127.0.0.1:${sluice.adminPort}/metrics`)).text();
  const exposed = exposedNames(exposition);

  const used = usedNames();
  t.ok(used.size >= 12, `${used.size} metric names used`);
  for (const [name, where] of used) {
    if (PROMETHEUS_SERIES.has(name)) continue;
    t.ok(exposed.has(name), `${name} (${where}) is in sluice's /metrics`);
  }
  for (const name of ['process_resident_memory_bytes', 'process_cpu_seconds_total', 'sluice_halted']) {
    t.ok(used.has(name), `${name} is used`);
    t.ok(exposed.has(name), `${name} is exported`);
  }
  t.ok(total(await scrapeMetrics(sluice.adminPort), 'process_resident_memory_bytes') > 0, 'RSS has a value');
  t.notOk(exposed.has('sluice_no_such_metric'), 'the check can fail');
});

t.test('no alert keys on a job name', async (t) => {
  for (const group of rules().groups) {
    for (const rule of group.rules) t.notMatch(rule.expr, /job\s*=~?\s*"/, `${rule.alert}: no job matcher`);
  }
  const halted = rules()
    .groups.flatMap((g) => g.rules)
    .find((r) => r.alert === 'SluiceHalted');
  t.match(halted?.expr, /sluice_halted/);
  t.match(halted?.expr, /by \(instance\)/);
});

t.test('the dashboard: job and instance variables scope every query; RSS and CPU panels', async (t) => {
  const board = dashboard();
  t.same(
    board.templating.list.map((v) => v.name),
    ['datasource', 'job', 'instance'],
  );
  for (const panel of board.panels) {
    for (const target of panel.targets ?? []) {
      for (const selector of target.expr.matchAll(/\b((?:sluice|process)_\w+)(\{[^}]*\})?/g)) {
        t.match(selector[2], /job=~"\$job", instance=~"\$instance"/, `${panel.title}: ${selector[1]} is scoped`);
      }
    }
  }
  const titles = board.panels.map((p) => p.title);
  t.ok(titles.some((title) => /RSS/.test(title)));
  t.ok(titles.some((title) => /CPU/.test(title)));
});

t.test('sluice_halted: 0 while serving, 1 once a pinned policy drifts', async (t) => {
  const policy = `version: 1\ntools:\n  web-fetch:\n    token_sha256: "${sha256(TOKEN)}"\n    allow:\n      - host: example.org\n`;
  const sluice = await startTestSluice({ policy, policySha256: sha256(policy), watchPolicy: true, onHalt: () => {} });
  t.teardown(() => sluice.close());
  t.equal(total(await scrapeMetrics(sluice.adminPort), 'sluice_halted'), 0);
  writeFileSync(sluice.policyFile, `${policy}# edited\n`);
  await waitFor(() => sluice.running.halted() !== null, 'the halt');
  const after = await scrapeMetrics(sluice.adminPort);
  t.same(
    after.filter((s) => s.name === 'sluice_halted').map((s) => s.value),
    [1],
  );
  t.equal((await fetch(`http://127.0.0.1:${sluice.adminPort}/readyz`)).status, 503);
});

/** promtool from PROMTOOL, then PATH; null when there is none. */
function promtool(): string | null {
  const candidates = [process.env.PROMTOOL, ...(process.env.PATH ?? '').split(':').map((dir) => path.join(dir, 'promtool'))];
  return candidates.find((file): file is string => !!file && existsSync(file)) ?? null;
}

const tool = promtool();
const skip =
  tool || process.env.CI ? false : 'promtool not installed (apt-get download prometheus; dpkg-deb -x it; PROMTOOL=DIR/usr/bin/promtool)';

t.test('promtool: the rules check and their unit tests pass', { skip }, async (t) => {
  if (!tool) {
    t.fail('promtool is required in CI (.ci/run installs it from Debian\'s "prometheus" package)');
    return;
  }
  const check = spawnSync(tool, ['check', 'rules', ALERTS], { encoding: 'utf8' });
  t.equal(check.status, 0, check.stdout + check.stderr);
  t.match(check.stdout, new RegExp(`SUCCESS: ${rules().groups.flatMap((g) => g.rules).length} rules found`));
  const unit = spawnSync(tool, ['test', 'rules', 'alerts.test.yml'], { cwd: path.dirname(ALERTS), encoding: 'utf8' });
  t.equal(unit.status, 0, unit.stdout + unit.stderr);
  t.match(unit.stdout, /SUCCESS/);
});
