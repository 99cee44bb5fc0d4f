// What sluice answers in place of the server when it refuses an MCP body: JSON-RPC errors, one per
// request of the body, so the official client SDK rejects the pending call with an McpError whose
// message names the reason and the tool ("MCP error -32001: sluice: mcp_tool_not_allowed: tool
// "delete_repository" is not allowed by rule ..."). Members of a refused batch that were allowed
// get an error too (held back: nothing of the batch reached the server). The answer's
// X-Request-Id header names the exchange in the audit. Pure.
import { idKey, type JsonRpcMessage } from './jsonrpc.js';
import type { BodyVerdict } from './check.js';

/** JSON-RPC's implementation-defined server error range (-32000..-32099): a refusal by policy. */
export const MCP_REFUSED_CODE = -32001;

export interface McpErrorData {
  reason: string;
  /** the tool, resource or prompt named, bounded */
  name: string | null;
  detail: string;
}

/**
 * The JSON-RPC answer to a refused body, or null when the body holds no request to answer (only
 * checked notifications): then the client gets an HTTP refusal instead.
 */
export function refusalAnswer(verdict: BodyVerdict, messages: readonly JsonRpcMessage[], batch: boolean): string | null {
  const refused = verdict.refused;
  if (!refused) return null;
  const byId = new Map(verdict.calls.filter((c) => c.message.kind === 'request').map((c) => [idKey(c.message.id), c]));
  const answers: object[] = [];
  for (const message of messages) {
    if (message.kind !== 'request') continue;
    const call = byId.get(idKey(message.id));
    const own = call && !call.allowed ? call : null;
    const reason = own?.reason ?? refused.reason!;
    const detail = own
      ? own.detail
      : `held back: the batch also held a refused call (${refused.reason}: ${refused.detail}); nothing of it reached the server`;
    const data: McpErrorData = { reason, name: own?.name ?? call?.name ?? null, detail };
    answers.push({ jsonrpc: '2.0', id: message.id, error: { code: MCP_REFUSED_CODE, message: `sluice: ${reason}: ${detail}`, data } });
  }
  if (answers.length === 0) return null;
  return JSON.stringify(batch ? answers : answers[0]);
}
