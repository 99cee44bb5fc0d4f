// JSON-RPC 2.0 as MCP's HTTP transports carry it in POST bodies (Streamable HTTP and the older
// HTTP+SSE transport's message endpoint): one message or a batch (an array). A body that is not
// exactly that is malformed, and sluice refuses it whole (bad_request) rather than guess what the
// server would read: nothing of it reaches the server. Pure: bytes in, messages or a reason out.
import { createRequire } from 'node:module';
import type * as Momoa from '@humanwhocodes/momoa';

/** momoa, loaded at the first MCP body (not at start: a start reads no MCP). */
let momoa: typeof Momoa | null = null;
const loadMomoa = (): typeof Momoa => (momoa ??= createRequire(import.meta.url)('@humanwhocodes/momoa') as typeof Momoa);

export type JsonRpcId = string | number;

/** A request (has an id: the server answers it) or a notification (no id: no answer). */
export interface JsonRpcCall {
  kind: 'request' | 'notification';
  method: string;
  id: JsonRpcId | null;
  params: Record<string, unknown> | unknown[] | undefined;
}

/** A client's answer to a request the server made (sampling, elicitation, roots). */
export interface JsonRpcReply {
  kind: 'response';
  id: JsonRpcId | null;
}

export type JsonRpcMessage = JsonRpcCall | JsonRpcReply;

export type ParsedBody = { ok: true; batch: boolean; messages: JsonRpcMessage[] } | { ok: false; why: string };

/** Bound on the members of one batch: each is checked and audited on its own. */
export const MAX_BATCH = 100;

export function parseJsonRpcBody(body: Buffer | string): ParsedBody {
  let value: unknown;
  let text: string;
  try {
    text = typeof body === 'string' ? body : new TextDecoder('utf-8', { fatal: true }).decode(body);
    value = JSON.parse(text);
  } catch {
    return { ok: false, why: 'the MCP request body is not JSON (UTF-8)' };
  }
  const twice = duplicateMember(text);
  if (twice !== null) return { ok: false, why: twice };
  if (Array.isArray(value)) {
    if (value.length === 0) return { ok: false, why: 'the MCP request body is an empty JSON-RPC batch' };
    if (value.length > MAX_BATCH) return { ok: false, why: `the JSON-RPC batch has ${value.length} members; sluice reads at most ${MAX_BATCH}` };
    const messages: JsonRpcMessage[] = [];
    for (let i = 0; i < value.length; i++) {
      const parsed = parseMessage(value[i]);
      if (typeof parsed === 'string') return { ok: false, why: `member [${i}] of the JSON-RPC batch ${parsed}` };
      messages.push(parsed);
    }
    return { ok: true, batch: true, messages };
  }
  const parsed = parseMessage(value);
  if (typeof parsed === 'string') return { ok: false, why: `the JSON-RPC message ${parsed}` };
  return { ok: true, batch: false, messages: [parsed] };
}

/** The members JSON-RPC 2.0 defines on a message. */
export const MESSAGE_MEMBERS: readonly string[] = ['jsonrpc', 'id', 'method', 'params', 'result', 'error'];
/** The members of params the methods sluice decides on read (names, uris, cursors, arguments). */
export const PARAMS_MEMBERS: readonly string[] = ['name', 'uri', 'arguments', 'cursor', '_meta'];

/**
 * Whether a reader that matches member names loosely could take `key` for `name` though it is not
 * `name`. Go's encoding/json matches case-insensitively and folds Unicode (ſ to s, the Kelvin sign
 * to k, İ to i), so an MCP server built on it read {"method": "tools/list", "Method": "tools/call"}
 * as a tools/call (CVE-2026-27896 in the Go MCP SDK; mcp-go and others decode the same way).
 * JSON-RPC names are case-sensitive: sluice refuses what two readers would read two ways. Taken
 * wide on purpose: any character past ASCII may stand for any letter.
 */
export function readsAs(key: string, name: string): boolean {
  if (key === name) return false;
  const chars = Array.from(key);
  if (chars.length !== name.length) return false;
  return chars.every((c, i) => c.charCodeAt(0) >= 0x80 || c.toLowerCase() === name[i]);
}

/** The first member of `object` a loose reader could take for one of `names`, as a sentence fragment; or null. */
export function ambiguousMember(object: object, names: readonly string[], where: string): string | null {
  for (const key of Object.keys(object)) {
    const name = names.find((n) => readsAs(key, n));
    if (name !== undefined) {
      return `has ${where} ${JSON.stringify(boundedName(key, 40))}, which a case-insensitive reader (Go's encoding/json) takes for "${name}"`;
    }
  }
  return null;
}

/**
 * What is wrong when an object anywhere in `text` (JSON that JSON.parse read) names a member twice,
 * else null. Readers disagree on which one counts: JSON.parse, Go's encoding/json and Python take
 * the last, gjson, jsonparser and simdjson's on-demand API the first, serde refuses. sluice reads
 * one body the way its server will only when there is one way to read it. The syntax tree comes
 * from momoa (JSON.parse keeps no duplicates to look at); a body it cannot read is refused too.
 */
function duplicateMember(text: string): string | null {
  const { iterator, parse } = loadMomoa();
  let doc: Momoa.DocumentNode;
  try {
    doc = parse(text, { mode: 'json' });
  } catch {
    return 'the MCP request body is JSON sluice cannot read member by member (nested too deeply?)';
  }
  for (const { node } of iterator(doc, ({ node, phase }) => phase === 'enter' && node.type === 'Object')) {
    const seen = new Set<string>();
    for (const member of (node as Momoa.ObjectNode).members) {
      const name = member.name.type === 'String' ? member.name.value : member.name.name;
      if (seen.has(name)) {
        return `the MCP request body names the member ${JSON.stringify(boundedName(name, 40))} twice in one object; servers disagree on which one counts`;
      }
      seen.add(name);
    }
  }
  return null;
}

/** The message, or what is wrong with it (a sentence fragment). */
function parseMessage(value: unknown): JsonRpcMessage | string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'is not a JSON object';
  const m = value as Record<string, unknown>;
  const loose = ambiguousMember(m, MESSAGE_MEMBERS, 'a member');
  if (loose) return loose;
  if (typeof m.params === 'object' && m.params !== null && !Array.isArray(m.params)) {
    const looseParam = ambiguousMember(m.params, PARAMS_MEMBERS, 'a params member');
    if (looseParam) return looseParam;
  }
  if (m.jsonrpc !== '2.0') return 'does not carry "jsonrpc": "2.0"';
  const hasId = Object.hasOwn(m, 'id');
  if (hasId && !validId(m.id)) return 'has an id that is not a string or a whole number';
  if (Object.hasOwn(m, 'method')) {
    if (typeof m.method !== 'string' || m.method.length === 0) return 'has a method that is not a non-empty string';
    if (Object.hasOwn(m, 'result') || Object.hasOwn(m, 'error')) return 'is both a request and a response';
    const params = m.params;
    if (params !== undefined && (typeof params !== 'object' || params === null)) return 'has params that are neither an object nor an array';
    return {
      kind: hasId ? 'request' : 'notification',
      method: m.method,
      id: hasId ? (m.id as JsonRpcId) : null,
      params: params as JsonRpcCall['params'],
    };
  }
  const hasResult = Object.hasOwn(m, 'result');
  const hasError = Object.hasOwn(m, 'error');
  if (hasResult === hasError) return 'is neither a request (method) nor a response (result or error)';
  // A response to a request sluice could not read (a parse error) may carry a null id.
  if (!hasId && !hasError) return 'is a response without an id';
  return { kind: 'response', id: hasId ? (m.id as JsonRpcId | null) : null };
}

function validId(id: unknown): boolean {
  return typeof id === 'string' || (typeof id === 'number' && Number.isSafeInteger(id)) || id === null;
}

/** A key for an id that tells 1 from "1". */
export function idKey(id: JsonRpcId | null): string {
  return JSON.stringify(id);
}

/** A name as it may appear in audit records, answers and details: bounded, no control characters. */
export function boundedName(name: string, max = 128): string {
  // eslint-disable-next-line no-control-regex
  const clean = name.replace(/[\u0000-\u001f\u007f]/g, '?');
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}
