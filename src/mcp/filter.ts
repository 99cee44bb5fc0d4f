// Filtering what an MCP server offers (issue 18): the answers to tools/list, resources/list and
// prompts/list lose every entry the rule would refuse to call, so the agent never sees a tool it
// may not use. Everything else in the answer (nextCursor for pagination, _meta, other messages)
// passes as it came; an event or body nothing was removed from passes byte for byte.
//
// Which messages are list answers: on a POST's answer, those whose id is the id of a list request
// in that POST; on a stream the client opened with GET (the older HTTP+SSE transport answers every
// POST there), any answer whose result has the shape of a list answer. Filtering only removes, so
// a shape match that was not a list answer loses entries the agent could not call anyway.
import { Transform, type TransformCallback } from 'node:stream';
import { LIST_FILTERS, type ListMethod } from './check.js';
import { MESSAGE_MEMBERS, readsAs } from './jsonrpc.js';
import type { CompiledMcp, NameSet } from './names.js';
import { SseSplitter, withData } from './sse.js';

/** What a filter looks for: list answers by request id, and (for GET streams) by shape. */
export interface ListTargets {
  /** idKey(id) → the list method asked */
  ids: ReadonlyMap<string, ListMethod>;
  byShape: boolean;
}

function namesFor(mcp: CompiledMcp, method: ListMethod): NameSet | null {
  return mcp[LIST_FILTERS[method].names];
}

/**
 * Takes out of `object` every member a loose reader could take for one of `names` (readsAs): a
 * client on Go's encoding/json would read {"tools": [...], "Tools": [...]} as the second list.
 * True when one was removed.
 */
function dropLoose(object: Record<string, unknown>, names: readonly string[]): boolean {
  let dropped = false;
  for (const k of Object.keys(object)) {
    if (names.some((name) => readsAs(k, name))) {
      delete object[k];
      dropped = true;
    }
  }
  return dropped;
}

/** Filters one parsed JSON-RPC message in place; true when something was removed. */
function filterMessage(mcp: CompiledMcp, targets: ListTargets, message: unknown): boolean {
  if (typeof message !== 'object' || message === null || Array.isArray(message)) return false;
  const m = message as Record<string, unknown>;
  const loose = dropLoose(m, MESSAGE_MEMBERS);
  const result = m.result;
  if (typeof result !== 'object' || result === null || Array.isArray(result)) return loose;
  const r = result as Record<string, unknown>;
  let method: ListMethod | undefined = Object.hasOwn(m, 'id') ? targets.ids.get(JSON.stringify(m.id)) : undefined;
  if (method === undefined && targets.byShape) method = shapeOf(r);
  if (method === undefined) return loose;
  const { field, key } = LIST_FILTERS[method];
  const names = namesFor(mcp, method);
  if (names === null) return loose;
  const looseList = dropLoose(r, [field]);
  const list = r[field];
  if (!Array.isArray(list)) return loose || looseList;
  const kept = list.filter((entry: unknown) => {
    if (typeof entry !== 'object' || entry === null) return false;
    const e = entry as Record<string, unknown>;
    const name = e[key];
    // An entry without a name cannot be called by name either: it goes; so does one whose name a
    // loose reader would read from another member.
    return typeof name === 'string' && names.matches(name) && !Object.keys(e).some((k) => readsAs(k, key));
  });
  if (kept.length === list.length) return loose || looseList;
  r[field] = kept;
  return true;
}

function shapeOf(result: Record<string, unknown>): ListMethod | undefined {
  for (const method of Object.keys(LIST_FILTERS) as ListMethod[]) {
    const { field, key } = LIST_FILTERS[method];
    const list = result[field];
    if (!Array.isArray(list) || !list.every((e: unknown) => typeof e === 'object' && e !== null)) continue;
    if (list.some((e: object) => typeof (e as Record<string, unknown>)[key] === 'string')) return method;
  }
  return undefined;
}

/** An answer the list filter must read and cannot: the response is cut, never passed unfiltered. */
export class UnreadableAnswer extends Error {
  override name = 'UnreadableAnswer';
}

/**
 * A JSON-RPC message or batch as text, filtered; the same string when nothing was removed. Text
 * that is not JSON is refused (UnreadableAnswer) where a list answer may be in it: in the answer to
 * a POST (every message there is JSON-RPC), and on a GET stream when it starts like JSON. A lenient
 * client (Python's json takes NaN, others take what JSON.parse does not) could read a list in it
 * that sluice did not filter. Other event data (the older transport's endpoint URL) passes.
 */
export function filterJsonText(mcp: CompiledMcp, targets: ListTargets, text: string): string {
  // An event with an empty data field primes a client's Last-Event-ID (MCP's resumable streams):
  // it holds no message.
  if (text.trim() === '') return text;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    if (!targets.byShape || /^[\s\ufeff]*[[{]/.test(text)) {
      throw new UnreadableAnswer('the MCP answer holds a message that is not JSON, so its lists could not be filtered');
    }
    return text;
  }
  const messages = Array.isArray(value) ? value : [value];
  let changed = false;
  for (const message of messages) changed = filterMessage(mcp, targets, message) || changed;
  return changed ? JSON.stringify(value) : text;
}

/** application/json answer: held whole (the response cap bounds it), filtered at the end. */
export function jsonListFilter(mcp: CompiledMcp, targets: ListTargets, maxBytes: number): Transform {
  const chunks: Buffer[] = [];
  let size = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done: TransformCallback) {
      size += chunk.length;
      // A compressed answer is decoded before it gets here: the bound holds for what is held.
      if (size > maxBytes) return done(new Error(`the MCP answer grew past ${maxBytes} bytes`));
      chunks.push(chunk);
      done();
    },
    flush(done: TransformCallback) {
      const body = Buffer.concat(chunks);
      // Bytes that are not UTF-8 read as U+FFFD, as lenient clients read them: a list is filtered
      // whatever the bytes around it; a body nothing was removed from goes on as it came.
      const text = new TextDecoder('utf-8').decode(body);
      let out: string;
      try {
        out = filterJsonText(mcp, targets, text);
      } catch (err) {
        done(err as Error);
        return;
      }
      done(null, out === text ? body : Buffer.from(out));
    },
  });
}

/** text/event-stream answer: each event as it completes; only filtered events are rewritten. */
export function sseListFilter(mcp: CompiledMcp, targets: ListTargets, maxEventChars: number): Transform {
  const splitter = new SseSplitter(maxEventChars);
  const render = (events: ReturnType<SseSplitter['push']>): string => {
    let out = '';
    for (const event of events) {
      if (event.data === null) {
        out += event.raw;
        continue;
      }
      const filtered = filterJsonText(mcp, targets, event.data);
      out += filtered === event.data ? event.raw : withData(event, filtered);
    }
    return out;
  };
  return new Transform({
    transform(chunk: Buffer, _enc, done: TransformCallback) {
      try {
        const out = render(splitter.push(chunk));
        done(null, out.length > 0 ? Buffer.from(out) : undefined);
      } catch (err) {
        done(err as Error);
      }
    },
    flush(done: TransformCallback) {
      let out: string;
      try {
        const { events, rest } = splitter.end();
        out = render(events) + rest;
      } catch (err) {
        done(err as Error);
        return;
      }
      done(null, out.length > 0 ? Buffer.from(out) : undefined);
    },
  });
}
