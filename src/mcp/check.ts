// The method and name policy of an MCP rule (issue 18), applied to the JSON-RPC messages of one
// POST body. initialize, ping, client notifications and the */list methods pass; tools/call,
// resources/read and prompts/get are checked by name; any other method is refused unless the rule
// lists it under mcp.methods. Answers the client sends to the server's own requests pass.
//
// A batch is decided as a whole: if any member is refused, none of it reaches the server (each
// request member is answered by sluice: the refused ones with their reason, the others saying they
// were held back). Forwarding the allowed members alone would mean merging sluice's answers into
// the server's JSON or SSE answer, and a batch whose members depend on each other would run half.
// Pure: messages in, verdicts out.
import type { CompiledMcp, NameSet } from './names.js';
import { boundedName, type JsonRpcCall, type JsonRpcMessage } from './jsonrpc.js';

export type McpRefusal = 'mcp_tool_not_allowed' | 'mcp_resource_not_allowed' | 'mcp_prompt_not_allowed' | 'mcp_method_not_allowed';

/** The list methods whose answers are filtered, and the field and key each filters on. */
export const LIST_FILTERS = {
  'tools/list': { field: 'tools', key: 'name', names: 'tools' },
  'resources/list': { field: 'resources', key: 'uri', names: 'resources' },
  'prompts/list': { field: 'prompts', key: 'name', names: 'prompts' },
} as const;
export type ListMethod = keyof typeof LIST_FILTERS;

/** What was decided for one call (a request, or a notification that is not a notifications/ one). */
export interface CallVerdict {
  method: string;
  /** the tool, resource URI or prompt named, bounded; null for methods that name none */
  name: string | null;
  /** the id of a request (the answer sluice makes for a refused one carries it) */
  message: JsonRpcCall;
  allowed: boolean;
  /** set when refused */
  reason: McpRefusal | null;
  detail: string;
}

export interface BodyVerdict {
  /** one per request or checked notification, in body order (what is audited as mcp.call) */
  calls: CallVerdict[];
  /** the first refusal, which settles the exchange; null = the body may go to the server */
  refused: CallVerdict | null;
  /** ids of the list requests whose answers must be filtered */
  lists: Map<string, ListMethod>;
  /** malformed params of a checked method (no name): the whole body is a bad_request */
  malformed: string | null;
}

export function checkMessages(mcp: CompiledMcp, messages: readonly JsonRpcMessage[], ruleId: string): BodyVerdict {
  const verdict: BodyVerdict = { calls: [], refused: null, lists: new Map(), malformed: null };
  for (const message of messages) {
    if (message.kind === 'response') continue;
    // Notifications the client sends (initialized, cancelled, progress, roots changed) carry no call.
    if (message.kind === 'notification' && message.method.startsWith('notifications/')) continue;
    const call = checkCall(mcp, message, ruleId);
    if (typeof call === 'string') {
      verdict.malformed ??= call;
      continue;
    }
    verdict.calls.push(call);
    if (!call.allowed) verdict.refused ??= call;
    if (message.kind === 'request' && Object.hasOwn(LIST_FILTERS, message.method)) {
      verdict.lists.set(JSON.stringify(message.id), message.method as ListMethod);
    }
  }
  return verdict;
}

const ALWAYS: ReadonlySet<string> = new Set(['initialize', 'ping']);

function checkCall(mcp: CompiledMcp, message: JsonRpcCall, ruleId: string): CallVerdict | string {
  const { method } = message;
  const pass = (name: string | null = null, why = `${method} passes`): CallVerdict => ({
    method,
    name,
    message,
    allowed: true,
    reason: null,
    detail: `${why} (rule ${ruleId})`,
  });
  if (ALWAYS.has(method) || method.endsWith('/list')) return pass();
  const named = (field: 'name' | 'uri', names: NameSet | null, reason: McpRefusal, what: string): CallVerdict | string => {
    const params = message.params;
    const raw = params && !Array.isArray(params) ? params[field] : undefined;
    if (typeof raw !== 'string' || raw.length === 0) return `${method} has no params.${field} (a non-empty string)`;
    const shown = boundedName(raw);
    if (names === null) return pass(shown, `${what} ${JSON.stringify(shown)} is not checked by name`);
    if (names.matches(raw)) return pass(shown, `${what} ${JSON.stringify(shown)} is allowed`);
    const allowed = names.patterns.length === 0 ? 'none' : names.patterns.map((p) => JSON.stringify(boundedName(p, 64))).join(', ');
    return {
      method,
      name: shown,
      message,
      allowed: false,
      reason,
      detail: `${what} ${JSON.stringify(shown)} is not allowed by rule ${ruleId} (allowed: ${allowed})`,
    };
  };
  if (method === 'tools/call') return named('name', mcp.tools, 'mcp_tool_not_allowed', 'tool');
  if (method === 'resources/read') return named('uri', mcp.resources, 'mcp_resource_not_allowed', 'resource');
  if (method === 'prompts/get') return named('name', mcp.prompts, 'mcp_prompt_not_allowed', 'prompt');
  if (mcp.methods.matches(method)) return pass(null, `${boundedName(method)} is listed under mcp.methods`);
  return {
    method,
    name: null,
    message,
    allowed: false,
    reason: 'mcp_method_not_allowed',
    detail: `the MCP method ${JSON.stringify(boundedName(method))} is not allowed by rule ${ruleId} (list it under mcp.methods)`,
  };
}
