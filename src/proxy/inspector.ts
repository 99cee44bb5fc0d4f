// The types of the content seam (src/proxy/inspect.ts runs inspectors): what a pure inspector of a
// rule field sees, what it may answer, and the response transform it may hand back. Apart from
// inspect.ts so an inspector (src/git/, src/mcp/) can name them without an import cycle.
import type { IncomingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Outcome } from '../policy/reasons.js';

/** The request head an inspector sees. */
export interface InspectHead {
  /** upper case */
  readonly method: string;
  /** the normalized path the decision was made on, without the query */
  readonly path: string;
  /** the raw query after "?", or null */
  readonly query: string | null;
  readonly headers: IncomingHttpHeaders;
  /** the rule the request matched, e.g. "agent.allow[0]" */
  readonly ruleId: string;
}

/** An answer in the client's own protocol (git report-status, a JSON-RPC error). */
export interface ProtocolAnswer {
  status: number;
  /** protocol headers (Content-Type, …); sluice adds its reason header, X-Request-Id and Via */
  headers: Record<string, string>;
  body: Buffer;
}

/**
 * A pure transform of an allowed request's response: given the upstream head, a stream its body
 * goes through (and the headers to send instead), or null to leave the response alone.
 */
export type ResponseTransform = (head: {
  status: number;
  headers: ReadonlyArray<[string, string]>;
}) => { headers: Array<[string, string]>; body: Duplex } | null;

export type Verdict =
  | { pass: true; transform?: ResponseTransform; calls?: readonly InspectedCall[] }
  /** refused: `answer` in the client's protocol, or (absent) sluice's usual JSON answer for `reason` */
  | { pass: false; reason: Outcome; detail: string; answer?: ProtocolAnswer; calls?: readonly InspectedCall[] };

/**
 * One call a body held (an MCP JSON-RPC request): the seam audits each as `mcp.call`, besides the
 * one canonical record of the HTTP exchange.
 */
export interface InspectedCall {
  /** the protocol method (tools/call, …), as the client wrote it */
  method: string;
  /** the tool, resource or prompt it names, bounded; null when it names none */
  name: string | null;
  allowed: boolean;
  reason: Outcome | null;
  detail: string;
}

export type HeadStep =
  | Verdict
  /** read the body: until `enough(prefix)` is true, or to its end when `enough` is absent */
  | { read: true; enough?: (prefix: Buffer) => boolean };

/** A pure inspector for rules whose `field` carries config C. */
export interface Inspector<C> {
  head(config: C, head: InspectHead): HeadStep;
  /** decides on the prefix read (`ended`: it is the whole body) */
  body(config: C, head: InspectHead, prefix: Buffer, ended: boolean): Verdict;
}
