// Checks the schema cannot express: host, CIDR and resolver syntax, path globs as the matcher
// compiles them, and strict mode's refusal of allow-all. Pure: values in, problems out; env vars
// and secret files are read by serve, never here.
import { isIP } from 'node:net';
import { createRequire } from 'node:module';
import type IpAddr from 'ipaddr.js';

// required, not imported: Node's import of a CommonJS module scans its source for exports first (a start pays it)
const ipaddr = createRequire(import.meta.url)('ipaddr.js') as typeof IpAddr;
import { splitHostPort } from '../net/host.js';
import { compileHostPattern, type HostPattern } from '../match/host-match.js';
import { compilePathGlob } from '../match/path.js';
import { compileRefGlob } from '../git/rules.js';
import type { FieldPath, Problem, ProblemCode } from './errors.js';
import { MAX_REVIEW_DAYS, parseReviewUntil } from './review.js';
import { publicSuffixReached } from './public-suffix.js';
import { lineOf, type PolicySource } from './source.js';
import { swapInOf, type PolicyDoc, type RuleDoc, type SecretDoc, type ToolDoc } from './types.js';
import { CHECKED_METHODS } from '../mcp/names.js';

type Report = (code: ProblemCode, path: FieldPath, message: string) => void;

function reporter(source: PolicySource, problems: Problem[]): Report {
  return (code, path, message) => problems.push({ code, file: source.name, line: lineOf(source, path), path, message });
}

/** Problems with the top-level settings of a base policy (its tools and secrets are checked separately). */
export function checkSettings(source: PolicySource, doc: PolicyDoc): Problem[] {
  const problems: Problem[] = [];
  const report = reporter(source, problems);
  if (doc.strict && doc.on_violation === 'review') {
    report(
      'strict_review',
      ['on_violation'],
      '"review" lets denied requests through; strict mode forbids it (set strict: false while rolling out)',
    );
  }
  if (doc.strict && doc.network.private_ip === 'allow') {
    report(
      'strict_private_ip',
      ['network', 'private_ip'],
      '"allow" lets tools reach private addresses; strict mode forbids it (list narrow allow_private_cidrs instead)',
    );
  }
  doc.network.allow_private_cidrs.forEach((cidr, i) => {
    const problem = cidrProblem(cidr, doc.strict);
    if (problem) report(problem.code, ['network', 'allow_private_cidrs', i], problem.message);
  });
  doc.network.dns_servers.forEach((server, i) => {
    if (!isResolverAddress(server)) {
      report(
        'bad_dns_server',
        ['network', 'dns_servers', i],
        `"${server}" is not "ip" or "ip:port" (an IPv6 server with a port goes in brackets: "[2001:db8::53]:53")`,
      );
    }
  });
  return problems;
}

/** now: when the policy is loaded (ms since the epoch); strict mode measures review_until from it. */
export function checkTools(source: PolicySource, tools: Record<string, ToolDoc>, strict: boolean, now: number): Problem[] {
  const problems: Problem[] = [];
  const report = reporter(source, problems);
  for (const [name, tool] of Object.entries(tools)) {
    checkToolReview(report, name, tool, strict, now);
    tool.allow.forEach((rule, i) => {
      const at = ['tools', name, 'allow', i];
      const hostProblem = ruleHostProblem(rule.host, strict);
      if (hostProblem) report(hostProblem.code, [...at, 'host'], hostProblem.message);
      const namedPort = splitHostPort(rule.host)?.port ?? null;
      if (namedPort !== null && rule.ports) {
        report('port_twice', [...at, 'ports'], `host "${rule.host}" already names port ${namedPort}; drop ports or the port in host`);
      }
      // issue 17: the schema checks the form of expires_at; this checks that the date exists.
      if (rule.expires_at !== undefined && Number.isNaN(Date.parse(rule.expires_at))) {
        report('bad_format', [...at, 'expires_at'], `"${rule.expires_at}" is not a real date and time`);
      }
      rule.paths?.forEach((pattern, j) => {
        try {
          compilePathGlob(pattern);
        } catch (error) {
          report('bad_path', [...at, 'paths', j], (error as Error).message);
        }
      });
      if (rule.mcp) checkMcpRule(rule, at, report);
      if (rule.git) checkGitRule(report, [...at, 'git'], rule.git, strict);
    });
  }
  return problems;
}

/** An mcp: rule (issue 18) that could never work as written, or that would let checked calls through. */
function checkMcpRule(rule: RuleDoc, at: FieldPath, report: Report): void {
  const mcp = rule.mcp!;
  if (rule.methods && !rule.methods.includes('POST')) {
    report('bad_mcp', [...at, 'methods'], 'an mcp: rule carries its JSON-RPC calls in POST requests; add POST to methods or drop methods');
  }
  if (rule.sha256 !== undefined) {
    report('bad_mcp', [...at, 'sha256'], 'an mcp: rule answers change with every call; it cannot be pinned to one sha256');
  }
  mcp.methods?.forEach((method, j) => {
    if (CHECKED_METHODS.has(method)) {
      const list = method === 'tools/call' ? 'tools' : method === 'resources/read' ? 'resources' : 'prompts';
      report('bad_mcp', [...at, 'mcp', 'methods', j], `${method} is checked by name; list the names under mcp.${list} instead`);
    }
  });
}

/** Ref names a glob covering "every branch" would match; none of them is a name a policy would single out. */
const ANY_BRANCH_PROBES = ['refs/heads/main', 'refs/heads/master', 'refs/heads/x7f3q9-sluice-probe'];

/** A rule's git: ref globs compile; a tag glob needs tags: true; strict mode refuses a glob over every branch. */
function checkGitRule(report: Report, at: FieldPath, git: NonNullable<ToolDoc['allow'][number]['git']>, strict: boolean): void {
  const tags = git.push?.tags ?? false;
  git.push?.refs?.forEach((pattern, j) => {
    const where = [...at, 'push', 'refs', j];
    let regex: RegExp;
    try {
      regex = compileRefGlob(pattern).regex;
    } catch (error) {
      report('bad_ref_glob', where, (error as Error).message);
      return;
    }
    if (!tags && pattern.startsWith('refs/tags/')) {
      report('bad_ref_glob', where, `ref pattern "${pattern}" names tags, but git.push.tags is false, which refuses every tag`);
    }
    if (strict && ANY_BRANCH_PROBES.every((ref) => regex.test(`/${ref}`))) {
      report(
        'git_refs_too_wide',
        where,
        `ref pattern "${pattern}" matches every branch, main included; strict mode forbids it (name the branches the tool owns, e.g. "refs/heads/agent/**")`,
      );
    }
  });
}

// --- issue 16: per-tool review ---------------------------------------------------------------

const DAY_MS = 24 * 60 * 60 * 1000;

function checkToolReview(report: Report, name: string, tool: ToolDoc, strict: boolean, now: number): void {
  const at = ['tools', name];
  const until = tool.review_until === undefined ? undefined : parseReviewUntil(tool.review_until);
  if (until === null) {
    report('bad_time', [...at, 'review_until'], `"${tool.review_until}" is not a real date and time (RFC 3339, e.g. "2026-12-16T00:00:00Z")`);
    return;
  }
  if (tool.on_violation !== 'review') {
    if (tool.review_until !== undefined) {
      report('review_until_unused', [...at, 'review_until'], 'review_until applies only with on_violation: review on the same tool; remove it');
    }
    return;
  }
  if (!strict) return;
  if (until === undefined) {
    report(
      'review_until_needed',
      [...at, 'on_violation'],
      `strict mode lets a tool review only until a set time; add review_until (RFC 3339), at most ${MAX_REVIEW_DAYS} days ahead`,
    );
  } else if (until - now > MAX_REVIEW_DAYS * DAY_MS) {
    report(
      'review_too_long',
      [...at, 'review_until'],
      `review_until is more than ${MAX_REVIEW_DAYS} days ahead; strict mode allows a review of at most ${MAX_REVIEW_DAYS} days`,
    );
  }
}

export function checkSecrets(source: PolicySource, secrets: Record<string, SecretDoc>, strict: boolean): Problem[] {
  const problems: Problem[] = [];
  const report = reporter(source, problems);
  for (const [alias, secret] of Object.entries(secrets)) {
    secret.hosts.forEach((host, i) => {
      const problem = secretHostProblem(host, strict);
      if (problem) report(problem.code, ['secrets', alias, 'hosts', i], problem.message);
    });
    if (secret.inject && RESERVED_HEADERS.has(secret.inject.header.toLowerCase())) {
      report(
        'reserved_header',
        ['secrets', alias, 'inject', 'header'],
        `sluice manages the "${secret.inject.header}" header itself; inject the secret into another header`,
      );
    }
    // Checked before the loader fills in defaults: swap_in is as written, or absent.
    const written = (secret as { swap_in?: string[] }).swap_in;
    const places = swapInOf({ ...secret, swap_in: written });
    (written ?? []).forEach((place, i) => {
      const header = place.startsWith('header:') ? place.slice('header:'.length) : null;
      if (header !== null && RESERVED_HEADERS.has(header.toLowerCase())) {
        report(
          'reserved_header',
          ['secrets', alias, 'swap_in', i],
          `sluice manages the "${header}" header itself; a placeholder there is never swapped (name the header the credential goes in)`,
        );
      }
    });
    if (secret.require && !secret.inject && !places.some((place) => place.startsWith('header:'))) {
      report(
        'require_needs_header',
        ['secrets', alias, 'require'],
        `require: true is checked on a header, and swap_in [${places.join(', ')}] names none; add "header:Authorization" (or the header the credential goes in) to swap_in, or set inject`,
      );
    }
    if (strict && secret.allow_plaintext) {
      report(
        'strict_plaintext',
        ['secrets', alias, 'allow_plaintext'],
        `allow_plaintext: true lets the real value of secret "${alias}" cross the network in clear over http://; strict mode forbids it (reach ${secret.hosts[0] ?? 'its hosts'} over https, or set strict: false for loopback development only)`,
      );
    }
  }
  return problems;
}

/** Headers that frame the message or address the proxy: injecting into them breaks HTTP or sluice. */
const RESERVED_HEADERS = new Set([
  'host',
  'connection',
  'content-length',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'keep-alive',
  'proxy-authorization',
  'proxy-connection',
]);

const HOST_FORMS =
  'expected a name ("api.github.com"), a wildcard "*.example.com", an IPv4 literal or a bracketed IPv6 literal ("[2001:db8::1]"), optionally with ":port"';

/** A problem found by one of the value checks below, before it is placed at a field. */
interface Finding {
  code: ProblemCode;
  message: string;
}

function ruleHostProblem(host: string, strict: boolean): Finding | null {
  if (splitHostPort(host)?.host === '*') {
    if (strict) return { code: 'allow_all', message: `"${host}" matches every host; strict mode forbids allow-all` };
    if (host !== '*') return { code: 'bad_host', message: `"${host}" is not supported; write host "*" with ports: [${host.slice(2)}]` };
    return null;
  }
  const pattern = compileHostPattern(host);
  if (!pattern) return { code: 'bad_host', message: `"${host}" is not a valid host: ${HOST_FORMS}` };
  const wide = strict ? publicSuffixWildcard(pattern, true) : null;
  if (wide?.at) {
    return {
      code: 'allow_all',
      message: `"${host}" matches every name under the public suffix "${wide.suffix}"; strict mode forbids allow-all`,
    };
  }
  if (wide) {
    return {
      code: 'allow_all',
      message: `"${host}" covers the public suffix "${wide.suffix}"${wide.others}, under which anyone can create names; strict mode forbids allow-all`,
    };
  }
  return null;
}

/**
 * Secret hosts are never allow-all, strict or not: that would hand the credential to anyone. Strict
 * mode also refuses a wildcard with a public suffix under it, as it does for rules.
 */
function secretHostProblem(host: string, strict: boolean): Finding | null {
  if (splitHostPort(host)?.host === '*') return { code: 'secret_host_too_wide', message: `"${host}" would send the secret to every host` };
  const pattern = compileHostPattern(host);
  if (!pattern) return { code: 'bad_host', message: `"${host}" is not a valid host: ${HOST_FORMS}` };
  const wide = publicSuffixWildcard(pattern, strict);
  if (wide?.at) {
    return { code: 'secret_host_too_wide', message: `"${host}" would send the secret to every name under the public suffix "${wide.suffix}"` };
  }
  if (wide) {
    return {
      code: 'secret_host_too_wide',
      message: `"${host}" would send the secret to names under the public suffix "${wide.suffix}"${wide.others}, which anyone can create; name the hosts`,
    };
  }
  return null;
}

/**
 * The one wildcard rule: "*.T" is as wide as allow-all when T is a public suffix ("*.com",
 * "*.github.io": `at`), or, with `under` (strict mode), when a public suffix of the ICANN or the
 * private section sits under T: "*.amazonaws.com" covers "x.s3.amazonaws.com", which anyone can create.
 */
function publicSuffixWildcard(pattern: HostPattern, under: boolean): { suffix: string; at: boolean; others: string } | null {
  if (pattern.kind !== 'subdomains') return null;
  const reached = publicSuffixReached(pattern.suffix, under);
  if (!reached) return null;
  return { suffix: reached.suffix, at: reached.suffix === pattern.suffix, others: reached.more > 0 ? ` (and ${reached.more} more)` : '' };
}

/**
 * Under strict mode a private exception is at most a /16 (IPv4) or a /48 (IPv6, one site): wider
 * ones open whole address plans (a /8, a cloud VPC's supernet) to every tool (issue 15).
 */
const WIDEST_STRICT_PREFIX = { ipv4: 16, ipv6: 48 } as const;

/** Cloud metadata services (AWS/GCP/Azure link-local, AWS IPv6, Alibaba, Azure's wire server): credentials live there. */
export const METADATA_ADDRESSES = ['169.254.169.254', 'fd00:ec2::254', '100.100.100.200', '168.63.129.16'] as const;

function cidrProblem(cidr: string, strict: boolean): Finding | null {
  const invalid: Finding = { code: 'bad_cidr', message: `"${cidr}" is not a CIDR such as "10.1.2.3/32" or "fd00:1::/64"` };
  const [address = '', prefix, ...rest] = cidr.split('/');
  if (rest.length > 0 || prefix === undefined || !/^\d{1,3}$/.test(prefix) || isIP(address) === 0 || address.includes('%')) {
    return invalid;
  }
  let parsed: [IpAddr.IPv4 | IpAddr.IPv6, number];
  try {
    parsed = ipaddr.parseCIDR(cidr);
  } catch {
    return invalid;
  }
  const [ip, length] = parsed;
  const network = ip.kind() === 'ipv4' ? ipaddr.IPv4.networkAddressFromCIDR(cidr) : ipaddr.IPv6.networkAddressFromCIDR(cidr);
  if (network.toString() !== ip.toString()) {
    return { code: 'bad_cidr', message: `"${cidr}" has host bits set; did you mean "${network.toString()}/${length}"?` };
  }
  if (strict) {
    const metadata = METADATA_ADDRESSES.find((a) => {
      const addr = ipaddr.parse(a);
      return addr.kind() === ip.kind() && addr.match(ip, length);
    });
    if (metadata) {
      return {
        code: 'cidr_metadata',
        message: `"${cidr}" contains the cloud metadata address ${metadata}; strict mode forbids it (instance credentials are served there)`,
      };
    }
    const widest = WIDEST_STRICT_PREFIX[ip.kind()];
    if (length < widest) {
      return {
        code: 'cidr_too_wide',
        message: `"${cidr}" is wider than /${widest}; strict mode allows private exceptions of /${widest} or narrower (list the ranges actually needed)`,
      };
    }
  }
  return null;
}

function isResolverAddress(server: string): boolean {
  if (server.includes('%')) return false;
  if (isIP(server) !== 0) return true;
  const split = splitHostPort(server);
  if (!split || split.port === null) return false;
  return isIP(split.host) === (server.startsWith('[') ? 6 : 4);
}
