// The MCP inspector of the content seam (src/proxy/inspect.ts), for rules that carry `mcp:`.
// MCP's HTTP transports, as sluice reads them:
//   POST  JSON-RPC message(s): read whole (the seam caps it at max_request_bytes), parsed, checked
//         call by call; refused whole when any call is refused, else passed unchanged, with a
//         filter for the answers to its list requests (application/json or text/event-stream).
//   GET   the server's event stream (Streamable HTTP's standalone stream; the older HTTP+SSE
//         transport, which answers every POST there): list answers filtered by their shape.
//   DELETE (ends a session), HEAD, OPTIONS: passed.
//   any other method (PUT, PATCH, …): read like a POST, so a server that takes JSON-RPC there too is
//         checked the same.
// A refusal is answered in JSON-RPC when the body holds a request and the client speaks Streamable
// HTTP (it accepts text/event-stream): 200 with an error per request, which the official SDK turns
// into an McpError naming the reason and the tool. Otherwise (only notifications, or the older
// transport, which reads its answers from the GET stream) sluice's usual 403 JSON answer, whose
// text the SDK puts in its error. Pure: no I/O.
import { Duplex, pipeline, Transform } from 'node:stream';
import { createDecodingScrubber } from '../secrets/scrub.js';
import { refusalAnswer } from './answer.js';
import { checkMessages, type CallVerdict } from './check.js';
import { jsonListFilter, sseListFilter, type ListTargets } from './filter.js';
import { parseJsonRpcBody } from './jsonrpc.js';
import type { CompiledMcp } from './names.js';
import type { HeadStep, Inspector, InspectedCall, ResponseTransform, Verdict } from '../proxy/inspector.js';

/** What the inspector needs of a rule: its mcp: lists and the size an answer may reach. */
export interface McpRuleConfig {
  mcp: CompiledMcp;
  maxResponseBytes: number;
}

const PASS: Verdict = Object.freeze({ pass: true });

/** Methods that carry no JSON-RPC: DELETE ends a session; HEAD and OPTIONS (CORS) ask about it. */
const BODILESS: ReadonlySet<string> = new Set(['DELETE', 'HEAD', 'OPTIONS']);

export const mcpInspector: Inspector<McpRuleConfig> = {
  head(config, head): HeadStep {
    if (head.method === 'GET') return { pass: true, transform: listTransform(config, { ids: new Map(), byShape: true }) };
    if (BODILESS.has(head.method)) return PASS;
    // POST, and any other method that may carry a body a lenient server reads as POST: read as one.
    return { read: true };
  },

  body(config, head, prefix): Verdict {
    const parsed = parseJsonRpcBody(prefix);
    if (!parsed.ok) return { pass: false, reason: 'bad_request', detail: parsed.why };
    const verdict = checkMessages(config.mcp, parsed.messages, head.ruleId);
    if (verdict.malformed) return { pass: false, reason: 'bad_request', detail: `the JSON-RPC message is malformed: ${verdict.malformed}` };
    const refused = verdict.refused;
    if (refused) {
      const streamable = String(head.headers.accept ?? '').includes('text/event-stream');
      const json = streamable ? refusalAnswer(verdict, parsed.messages, parsed.batch) : null;
      const calls = verdict.calls.map((call) => audited(call, refused));
      const detail = parsed.batch ? `${refused.detail}; the batch of ${parsed.messages.length} was refused whole` : refused.detail;
      return {
        pass: false,
        reason: refused.reason!,
        detail,
        calls,
        ...(json === null ? {} : { answer: { status: 200, headers: { 'Content-Type': 'application/json' }, body: Buffer.from(json) } }),
      };
    }
    const calls = verdict.calls.map((call) => audited(call, null));
    if (verdict.lists.size === 0) return { pass: true, calls };
    return { pass: true, calls, transform: listTransform(config, { ids: verdict.lists, byShape: false }) };
  },
};

/** A call as the seam audits it (mcp.call): its own refusal, or held back by another's. */
function audited(call: CallVerdict, refused: CallVerdict | null): InspectedCall {
  if (!call.allowed) return { method: call.method, name: call.name, allowed: false, reason: call.reason, detail: call.detail };
  if (refused) {
    return {
      method: call.method,
      name: call.name,
      allowed: false,
      reason: refused.reason,
      detail: `held back with its batch: ${refused.detail}`,
    };
  }
  return { method: call.method, name: call.name, allowed: true, reason: null, detail: call.detail };
}

/** The response transform filtering list answers, for JSON and event-stream answers; others pass. */
function listTransform(config: McpRuleConfig, targets: ListTargets): ResponseTransform {
  return ({ status, headers }) => {
    // Every success a client reads a body from (fetch's ok is 200-299), not 200 alone.
    if (status < 200 || status > 299) return null;
    const type = (headers.find(([n]) => n.toLowerCase() === 'content-type')?.[1] ?? '').split(';')[0]!.trim().toLowerCase();
    let filter: Duplex;
    if (type === 'application/json') filter = jsonListFilter(config.mcp, targets, config.maxResponseBytes);
    else if (type === 'text/event-stream') filter = sseListFilter(config.mcp, targets, config.maxResponseBytes);
    // The answer to list requests in a form sluice does not filter is not passed unfiltered; a GET
    // the rule matches may be anything else the server serves.
    else if (!targets.byShape) return { headers: [...headers], body: failing(`a ${JSON.stringify(type.slice(0, 60))} answer to list requests`) };
    else return null;
    const encoding = headers.find(([n]) => n.toLowerCase() === 'content-encoding')?.[1] ?? null;
    // A compressed answer is decoded first (no secret values to scrub here: the decoder alone).
    const decoder = encoding === null ? null : createDecodingScrubber(encoding, []);
    if (encoding !== null && decoder === null) return { headers: [...headers], body: failing(`a Content-Encoding ${encoding} answer`) };
    const kept = headers.filter(([n]) => !['content-length', 'content-encoding'].includes(n.toLowerCase()));
    return { headers: kept, body: decoder ? chain(decoder, filter) : filter };
  };
}

/** An answer sluice cannot read to filter is not passed unfiltered: its stream fails at the first byte. */
function failing(what: string): Duplex {
  return new Transform({
    transform(_chunk, _encoding, done) {
      done(new Error(`sluice cannot read ${what} to filter it`));
    },
  });
}

/** One Duplex: written into `first`, read from `second` (an error in either fails both). */
function chain(first: Duplex, second: Duplex): Duplex {
  pipeline(first, second, () => undefined);
  return Duplex.from({ writable: first, readable: second });
}
