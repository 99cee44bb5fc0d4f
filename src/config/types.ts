// The policy document as validated by config/network-egress.schema.json, with defaults applied.
// Field names follow the policy file (snake_case) so errors and docs speak the same words.

export interface Limits {
  max_response_bytes: number;
  /** both directions of one passthrough tunnel; 0 = no limit */
  max_tunnel_bytes: number;
  max_request_bytes: number;
  connect_timeout_ms: number;
  idle_timeout_ms: number;
  dns_timeout_ms: number;
  header_timeout_ms: number;
  /** 0 = no total deadline per request */
  request_timeout_ms: number;
  max_connections_per_tool: number;
  /** 0 = unlimited */
  requests_per_minute: number;
  // issue 17 (ask a supervisor): how long a held request waits, how many wait per tool, how long a deny is remembered
  ask_timeout_ms: number;
  max_pending_per_tool: number;
  ask_deny_remember_ms: number;
}

export type SecretSource = { env: string } | { file: string };

export interface SecretDoc {
  from: SecretSource;
  hosts: string[];
  require: boolean;
  inject?: { header: string; format: string };
  placeholder: string;
  /**
   * Where a tool may write the placeholder: "header:<Name>", "query", "path", "body". The loader
   * fills in the default (swapInOf) when the policy names none.
   */
  swap_in: string[];
  /** swap and inject over plain http:// too (loopback development; strict mode refuses it) */
  allow_plaintext: boolean;
}

/**
 * A secret's swap_in, or its default: request headers only, namely the injected header when the
 * secret is injected (the tool's own copy of it is dropped anyway), else Authorization. Query, path
 * and body must be asked for per secret: those are the places an upstream stores and echoes.
 */
export function swapInOf(secret: { swap_in?: string[] | undefined; inject?: { header: string } | undefined }): string[] {
  return secret.swap_in ?? [`header:${secret.inject?.header ?? 'Authorization'}`];
}

export interface RuleDoc {
  host: string;
  ports?: number[];
  methods?: string[];
  paths?: string[];
  sha256?: string;
  limits?: Partial<Limits>;
  mcp?: McpRuleDoc;
  /** issue 21: git push rules (makes sluice intercept the host and read smart-HTTP pushes) */
  git?: GitRuleDoc;
  /** issue 17: the rule stops matching at this RFC 3339 time */
  expires_at?: string;
  /** issue 17: the rule stops matching after this many allowed requests (counts kept in the grants store) */
  max_uses?: number;
  // issue 16: acknowledges that the rule writes to an exfiltration surface (silences the warning)
  exfil_ok?: string;
  /** issue 22: a wildcard rule's check of the labels it matched for encoded data; check absent = the policy's strict */
  hostname_labels?: { check?: boolean; min_length?: number; min_entropy?: number; max_vowel_share?: number };
}

/** MCP-aware rule (issue 18): names or globs ("*" = any run of characters) the JSON-RPC calls may name. */
export interface McpRuleDoc {
  /** what tools/call may name; [] = none */
  tools: string[];
  /** what resources/read may name (URIs); absent = any */
  resources?: string[];
  /** what prompts/get may name; absent = any */
  prompts?: string[];
  /** further JSON-RPC methods let through unchecked */
  methods?: string[];
}

/** A rule's `git:` field (issue 21); the schema fills in the defaults. */
export interface GitRuleDoc {
  push?: { refs?: string[]; create?: boolean; delete?: boolean; tags?: boolean; options?: string[] };
  /** false refuses git-upload-pack (clone, fetch) on this rule */
  fetch?: boolean;
}

export interface ToolDoc {
  token_sha256?: string;
  token_env?: string;
  secrets: string[];
  allow: RuleDoc[];
  limits?: Partial<Limits>;
  protected?: boolean;
  // issue 16: per-tool learning; issue 17: "ask" holds a request no rule allows until a supervisor decides; absent = the policy's on_violation
  on_violation?: 'block' | 'review' | 'ask';
  /** RFC 3339; with on_violation: review, when the review ends and the tool blocks again */
  review_until?: string;
}

export interface PolicyDoc {
  version: 1;
  strict: boolean;
  on_violation: 'block' | 'review';
  network: {
    private_ip: 'deny' | 'allow';
    allow_private_cidrs: string[];
    dns_servers: string[];
    allow_ports: number[];
  };
  tls: { upstream_ca: string | null };
  limits: Limits;
  secrets: Record<string, SecretDoc>;
  tools: Record<string, ToolDoc>;
  include?: string[];
}

/** A loaded policy: the document plus where it came from. */
export interface LoadedPolicy {
  doc: PolicyDoc;
  /** absolute path of the base policy file */
  file: string;
  /**
   * The policy's one identity (sha256 hex): over the base file alone when it includes nothing,
   * else over it and every fragment. --policy-sha256 pins it, `sluice check` prints it, and audit
   * events (policy_sha256), sluice_policy_info{sha256} and admin /policy carry it.
   */
  digest: string;
  /** absolute paths of every file read: the base, then its include fragments in load order */
  files: string[];
  loadedAt: Date;
}

export const DEFAULT_LIMITS: Limits = {
  max_response_bytes: 10 * 1024 * 1024,
  max_tunnel_bytes: 0,
  max_request_bytes: 1024 * 1024,
  connect_timeout_ms: 5000,
  idle_timeout_ms: 60000,
  dns_timeout_ms: 5000,
  header_timeout_ms: 10000,
  request_timeout_ms: 0,
  max_connections_per_tool: 256,
  requests_per_minute: 0,
  ask_timeout_ms: 30000,
  max_pending_per_tool: 16,
  ask_deny_remember_ms: 10000,
};
