// Well-known credential shapes. A tool never needs to send a real credential (it writes a
// placeholder), so one of these in a request means a credential is leaving through the proxy.
//
// Every pattern is bounded (maxLength) so a stream scanner can hold back a finite window, and is
// anchored on both sides by look-arounds on its own alphabet so it does not fire inside longer words.

export interface LeakPattern {
  /** stable name, used as the detail of a secret_leak refusal */
  name: string;
  /** no flags that carry state (no g / y): callers may use it directly */
  regex: RegExp;
  description: string;
  /** the longest text the regex can match (look-arounds excluded) */
  maxLength: number;
  /** extra check on the matched text, for shapes a regex alone cannot pin down */
  verify?: (match: string) => boolean;
}

/** A JWT header is base64url JSON naming its algorithm. */
function isJwtHeader(match: string): boolean {
  const header = match.slice(0, match.indexOf('.'));
  try {
    const parsed: unknown = JSON.parse(Buffer.from(header, 'base64url').toString('utf8'));
    return typeof parsed === 'object' && parsed !== null && typeof (parsed as { alg?: unknown }).alg === 'string';
  } catch {
    return false;
  }
}

export const LEAK_PATTERNS: readonly LeakPattern[] = [
  {
    name: 'aws_access_key_id',
    regex: /(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])/,
    description: 'AWS access key id (long-term AKIA or temporary ASIA)',
    maxLength: 20,
  },
  {
    name: 'github_token',
    regex: /(?<![A-Za-z0-9_])gh[pousr]_[A-Za-z0-9]{36,251}(?![A-Za-z0-9_])/,
    description: 'GitHub token: personal (ghp_), OAuth (gho_), user-to-server (ghu_), server-to-server (ghs_), refresh (ghr_)',
    maxLength: 255,
  },
  {
    name: 'github_fine_grained_pat',
    regex: /(?<![A-Za-z0-9_])github_pat_[A-Za-z0-9]{20,40}_[A-Za-z0-9]{50,100}(?![A-Za-z0-9_])/,
    description: 'GitHub fine-grained personal access token (github_pat_)',
    maxLength: 11 + 40 + 1 + 100,
  },
  {
    // before openai_api_key: both start with sk-
    name: 'anthropic_api_key',
    regex: /(?<![A-Za-z0-9_-])sk-ant-(?:api|admin|oat|ort)\d{2}-[A-Za-z0-9_-]{40,200}(?![A-Za-z0-9_-])/,
    description: 'Anthropic API, admin or OAuth key (sk-ant-api03-...)',
    maxLength: 7 + 5 + 2 + 1 + 200,
  },
  {
    // T3BlbkFJ is base64 of "OpenAI", embedded in legacy and project keys alike
    name: 'openai_api_key',
    regex: /(?<![A-Za-z0-9_-])sk-(?:(?:proj|svcacct|admin)-)?[A-Za-z0-9_-]{16,120}T3BlbkFJ[A-Za-z0-9_-]{16,120}(?![A-Za-z0-9_-])/,
    description: 'OpenAI API key (sk-..., sk-proj-..., sk-svcacct-..., sk-admin-...)',
    maxLength: 3 + 8 + 120 + 8 + 120,
  },
  {
    // Test-mode keys (sk_test_) only reach Stripe's sandbox data and are routinely used in CI,
    // so they are not flagged; publishable keys (pk_) are public by design.
    name: 'stripe_live_key',
    regex: /(?<![A-Za-z0-9_])(?:sk|rk)_live_[A-Za-z0-9]{20,247}(?![A-Za-z0-9_])/,
    description: 'Stripe live secret or restricted key (sk_live_, rk_live_)',
    maxLength: 8 + 247,
  },
  {
    name: 'slack_token',
    regex: /(?<![A-Za-z0-9-])xox[abposr]-[0-9]{6,15}-[A-Za-z0-9-]{8,250}(?![A-Za-z0-9-])/,
    description: 'Slack bot, user, workspace or refresh token (xoxb-, xoxp-, xoxa-, ...)',
    maxLength: 5 + 15 + 1 + 250,
  },
  {
    name: 'slack_app_token',
    regex: /(?<![A-Za-z0-9-])xapp-\d-[A-Z0-9]{8,15}-\d{6,15}-[A-Za-z0-9]{32,128}(?![A-Za-z0-9])/,
    description: 'Slack app-level token (xapp-)',
    maxLength: 5 + 1 + 1 + 15 + 1 + 15 + 1 + 128,
  },
  {
    name: 'slack_webhook',
    regex: /hooks\.slack\.com\/services\/T[A-Z0-9]{6,12}\/B[A-Z0-9]{6,12}\/[A-Za-z0-9]{20,48}(?![A-Za-z0-9])/,
    description: 'Slack incoming webhook URL (the path is the credential)',
    maxLength: 16 + 9 + 13 + 1 + 13 + 1 + 48,
  },
  {
    name: 'google_api_key',
    regex: /(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])/,
    description: 'Google API key (AIza...)',
    maxLength: 39,
  },
  {
    name: 'private_key_pem',
    regex: /-----BEGIN (?:[A-Z0-9]{1,20} ){0,3}PRIVATE KEY(?: BLOCK)?-----/,
    description: 'PEM or PGP private key block',
    maxLength: 11 + 3 * 21 + 11 + 6 + 5,
  },
  {
    // Only the header and the start of the payload are matched: enough to be sure, and bounded.
    name: 'jwt',
    regex: /(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,600}\.[A-Za-z0-9_-]{8}/,
    description: 'JSON Web Token (base64url JSON header with "alg", then a payload)',
    maxLength: 3 + 600 + 1 + 8,
    verify: isJwtHeader,
  },
];

/** Longest match any pattern of the table can produce: the window a stream scanner holds back. */
export const LEAK_PATTERN_MAX_LENGTH = Math.max(...LEAK_PATTERNS.map((p) => p.maxLength));

const globalRegexes = new WeakMap<LeakPattern, RegExp>();
function globalRegex(pattern: LeakPattern): RegExp {
  let regex = globalRegexes.get(pattern);
  if (!regex) {
    regex = new RegExp(pattern.regex.source, pattern.regex.flags + 'g');
    globalRegexes.set(pattern, regex);
  }
  return regex;
}

/**
 * The first pattern (in table order) with a match in `text` starting at or after `from`.
 * With `complete` false the text may continue: a match that touches the end of the text is not
 * decided yet (the next bytes may extend or cancel it) and is left for the next call.
 */
export function findLeakIn(text: string, from: number, complete: boolean, patterns: readonly LeakPattern[] = LEAK_PATTERNS): LeakPattern | null {
  for (const pattern of patterns) {
    const regex = globalRegex(pattern);
    regex.lastIndex = from;
    for (let match = regex.exec(text); match; match = regex.exec(text)) {
      const end = match.index + match[0].length;
      const decided = complete || end < text.length;
      if (decided && (!pattern.verify || pattern.verify(match[0]))) return pattern;
      regex.lastIndex = match.index + 1;
    }
  }
  return null;
}

/** The first well-known credential shape in `text`, by name. */
export function findLeak(text: string, patterns: readonly LeakPattern[] = LEAK_PATTERNS): { name: string } | null {
  const found = findLeakIn(text, 0, true, patterns);
  return found ? { name: found.name } : null;
}
