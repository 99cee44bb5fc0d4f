// The YAML `sluice policy suggest` prints (issue 16): a whole policy, or the additions to a current
// one, each rule under comments saying what it was written from (count, first and last seen, how
// sluice saw it) and any exfiltration-surface warning. Deterministic: nothing here reads a clock or
// the environment, so the same audit prints the same bytes. No secret or token value can appear:
// tools authenticate with token_env, secrets are read from env, and both are named, never given.
import { Document, type YAMLMap, type YAMLSeq } from 'yaml';
import type { RuleDoc } from '../config/types.js';
import type { ExfilList } from '../exfil/surface.js';
import { exfilWarnings } from '../warnings/policy-warnings.js';
import type { SuggestedRule } from './rules.js';

export interface ToolSuggestion {
  name: string;
  rules: SuggestedRule[];
  /** aliases the tool's requests used (secret.use), sorted */
  secrets: string[];
}

export interface SecretSuggestion {
  alias: string;
  hosts: string[];
}

const TO_STRING = { lineWidth: 0, flowCollectionPadding: false } as const;

/** The environment variable a suggested tool's proxy token is read from. */
export function tokenEnv(tool: string): string {
  return `SLUICE_TOKEN_${envPart(tool)}`;
}

export function secretEnv(alias: string): string {
  return `SLUICE_SECRET_${envPart(alias)}`;
}

function envPart(name: string): string {
  return name.toUpperCase().replace(/[^A-Z0-9]/g, '_');
}

export function ruleDoc(rule: SuggestedRule): RuleDoc {
  return {
    host: rule.host,
    ports: rule.ports,
    ...(rule.methods ? { methods: rule.methods } : {}),
    ...(rule.paths ? { paths: rule.paths } : {}),
  };
}

/** The comment lines above one rule. */
export function ruleComment(rule: SuggestedRule, exfil: ExfilList): string[] {
  const lines = [`${rule.count} ${rule.count === 1 ? 'request' : 'requests'}, first seen ${rule.first}, last seen ${rule.last}`];
  if (rule.seen === 'passthrough') lines.push('tunnelled untouched: sluice saw no methods or paths (listing them would make it intercept TLS)');
  else if (rule.seen === 'intercept') lines.push("methods restricted, so sluice intercepts TLS for this host (the tool must trust sluice's CA)");
  else lines.push('plain HTTP');
  if (rule.from.length > 0) lines.push(`wildcard over ${rule.from.length} subdomains seen: ${rule.from.join(', ')}`);
  for (const warning of exfilWarnings(exfil, ruleDoc(rule))) lines.push(`warning: ${warning} [exfil_surface]`);
  return lines;
}

/** A whole policy, strict, blocking, for the tools seen. */
export function renderPolicy(header: string[], tools: ToolSuggestion[], secrets: SecretSuggestion[], exfil: ExfilList): string {
  const value: Record<string, unknown> = { version: 1, strict: true, on_violation: 'block' };
  if (secrets.length > 0) {
    value.secrets = Object.fromEntries(secrets.map((s) => [s.alias, { from: { env: secretEnv(s.alias) }, hosts: s.hosts }]));
  }
  value.tools = Object.fromEntries(
    tools.map((t) => [
      t.name,
      { token_env: tokenEnv(t.name), ...(t.secrets.length > 0 ? { secrets: t.secrets } : {}), allow: t.rules.map(ruleDoc) },
    ]),
  );
  const doc = new Document(value);
  doc.commentBefore = comment(header);
  for (const t of tools) annotate(doc.getIn(['tools', t.name, 'allow'], true) as YAMLSeq, t.rules, exfil);
  return doc.toString(TO_STRING);
}

/** Rules to append to a tool the current policy already has: a YAML list to paste under its allow. */
export function renderAdditions(header: string[], rules: SuggestedRule[], exfil: ExfilList): string {
  const doc = new Document(rules.map(ruleDoc));
  doc.commentBefore = comment(header);
  annotate(doc.contents as unknown as YAMLSeq, rules, exfil);
  return doc.toString(TO_STRING);
}

/** A policy fragment (include) defining a tool the current policy does not have. */
export function renderFragment(header: string[], tool: ToolSuggestion, exfil: ExfilList): string {
  const value = {
    tools: {
      [tool.name]: {
        token_env: tokenEnv(tool.name),
        ...(tool.secrets.length > 0 ? { secrets: tool.secrets } : {}),
        allow: tool.rules.map(ruleDoc),
      },
    },
  };
  const doc = new Document(value);
  doc.commentBefore = comment(header);
  annotate(doc.getIn(['tools', tool.name, 'allow'], true) as YAMLSeq, tool.rules, exfil);
  return doc.toString(TO_STRING);
}

function annotate(seq: YAMLSeq | undefined, rules: SuggestedRule[], exfil: ExfilList): void {
  if (!seq) return;
  seq.items.forEach((item, i) => {
    const map = item as YAMLMap;
    map.commentBefore = comment(ruleComment(rules[i]!, exfil));
    for (const key of ['ports', 'methods']) {
      const node = map.get(key, true) as YAMLSeq | undefined;
      if (node) node.flow = true;
    }
  });
}

function comment(lines: string[]): string {
  return lines.map((l) => ` ${l}`).join('\n');
}
