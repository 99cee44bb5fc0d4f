// The one sentence each decision carries: what happened, to which tool, host, port, method or
// path, and what would make it pass. Paths are normalized and never carry a query string.
import { hostForUrl } from '../net/host.js';
import type { LabelFinding } from './labels.js';

const MAX_QUOTED = 100;

/** host:port as a person writes it ("[::1]:443" for IPv6). */
export function target(host: string, port: number): string {
  return `${hostForUrl(host)}:${port}`;
}

function list(items: readonly (string | number)[]): string {
  return items.join(', ');
}

function quote(untrusted: string): string {
  const cut = untrusted.length > MAX_QUOTED ? `${untrusted.slice(0, MAX_QUOTED)}…` : untrusted;
  return JSON.stringify(cut);
}

/** Methods come from the client: plain tokens as they are, anything else quoted. */
function method(raw: string): string {
  return /^[A-Z][A-Z-]{0,19}$/.test(raw) ? raw : quote(raw);
}

export const detail = {
  unknownTool: (tool: string) => `No tool named ${quote(tool)} is defined in the policy, so it may not reach anything.`,
  badPort: (port: number) => `Port ${quote(String(port))} is not a valid TCP port (1-65535).`,
  badHost: (host: string) => `The request host ${quote(host)} is not a valid host name or IP address.`,
  noRule: (tool: string, host: string) =>
    `${hostForUrl(host)} is not in the allowlist of tool ${tool}; add a rule for it under tools.${tool}.allow to allow it.`,
  portNotAllowed: (tool: string, host: string, port: number, allowed: readonly number[]) =>
    `Tool ${tool} may reach ${hostForUrl(host)} only on ${allowed.length === 1 ? 'port' : 'ports'} ${list(allowed)}; port ${port} is not allowed.`,
  methodNotAllowed: (tool: string, host: string, port: number, verb: string, allowed: readonly string[]) =>
    `Tool ${tool} may use only ${list(allowed)} on ${target(host, port)}; method ${method(verb)} is not allowed.`,
  pathNotAllowed: (tool: string, host: string, port: number, verb: string, path: string, allowed: readonly string[]) =>
    `Tool ${tool} may ${method(verb)} on ${target(host, port)} only paths ${list(allowed)}; path ${quote(path)} is not allowed.`,
  pathUncheckable: (tool: string, host: string, port: number, why: string) =>
    `The path of this request to ${target(host, port)} cannot be checked against the path rules of tool ${tool}: ${why}.`,
  review: (wouldDeny: string) => `Would be denied, allowed because on_violation is review: ${wouldDeny}`,
  // issue 16: per-tool review
  toolReview: (tool: string, until: string | null, wouldDeny: string) =>
    `Would be denied, allowed because tool ${tool} is in review${until === null ? '' : ` until ${until}`}: ${wouldDeny}`,
  reviewEnded: (tool: string, until: string, denied: string) =>
    `Tool ${tool}'s review ended at ${until} (review_until), so requests no rule allows are denied again: ${denied}`,
  tunnelAllowed: (tool: string, host: string, port: number, rule: string, intercept: boolean) =>
    `Tool ${tool} may connect to ${target(host, port)} (rule ${rule})${intercept ? '; sluice intercepts TLS to check each request' : ''}.`,
  /** path is null when it could not be normalized and the rule does not restrict paths */
  requestAllowed: (tool: string, host: string, port: number, verb: string, path: string | null, rule: string) =>
    path === null
      ? `Tool ${tool} may ${method(verb)} any path on ${target(host, port)} (rule ${rule}).`
      : `Tool ${tool} may ${method(verb)} ${quote(path)} on ${target(host, port)} (rule ${rule}).`,
  // issue 22: names where and how much, never the label: the host is already in the record.
  labelWhy: (found: LabelFinding) =>
    `${found.joined ? `the hyphen-free labels from label ${found.position}` : `label ${found.position}`} of the ${found.of} the wildcard matched ${found.joined ? 'read together as' : 'reads as'} encoded data (${found.length} characters, ${found.entropy.toFixed(1)} bits/char entropy, ${Math.round(found.vowelShare * 100)}% vowels)`,
  encodedHostname: (tool: string, host: string, rule: string, pattern: string, found: LabelFinding) =>
    `Tool ${tool} may not reach ${hostForUrl(host)} under "${pattern}" (rule ${rule}): ${detail.labelWhy(found)}; name the host exactly in a rule, or tune the rule's hostname_labels (min_length, min_entropy, max_vowel_share, check).`,
} as const;
