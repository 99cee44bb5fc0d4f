// WebSocket frames from the client, read for leaks before they go upstream (RFC 6455, RFC 7692),
// to any host: every text and binary message is unmasked, put together across its fragments,
// inflated when compressed (permessage-deflate, under the request limit) and scanned like a body;
// control frames' payloads (a close reason, a ping) too. The frames themselves go on unchanged, but
// only once the whole message they belong to was scanned: a message is held until its last frame.
// The frame parser and inflater are the response side's (src/secrets/ws-scrub.ts).
import {
  encodeFrame,
  parseFrameHead,
  startsMessage,
  unmask,
  WsInflater,
  WsProtocolError,
  type FrameHead,
  type WsDeflate,
} from '../secrets/ws-scrub.js';
import { SecretViolation } from '../secrets/violation.js';
import { DecodeBudget } from './detect.js';
import { LeakScan } from './stream.js';

const EMPTY: Buffer = Buffer.alloc(0);
export const WHERE = 'a WebSocket message';

export interface WsLeakOptions {
  /** permessage-deflate as the 101 agreed it, or null */
  deflate: WsDeflate | null;
  /** the largest message (inflated) and decoded bytes per message: max_request_bytes */
  maxMessageBytes: number;
}

interface Message {
  compressed: boolean;
  scan: LeakScan;
  parts: Buffer[];
  bytes: number;
}

/**
 * Client-to-upstream frames in, the same frames out once their message is scanned. push() throws
 * SecretViolation (secret_leak, request_too_large) or WsProtocolError.
 */
export class WsLeakGate {
  readonly #max: number;
  readonly #inflater: WsInflater | null;
  #buffer: Buffer = EMPTY;
  #frame: (FrameHead & { mask: Buffer; offset: number }) | null = null;
  #message: Message | null = null;
  /** raw bytes held back: those of the message being read, and frames after its start */
  #held: Buffer[] = [];

  constructor(options: WsLeakOptions) {
    this.#max = options.maxMessageBytes;
    this.#inflater = options.deflate ? new WsInflater(options.deflate.clientNoContextTakeover ?? false, options.maxMessageBytes) : null;
  }

  push(chunk: Buffer): Buffer {
    const out: Buffer[] = [];
    let input = this.#buffer.length > 0 ? Buffer.concat([this.#buffer, chunk]) : chunk;
    this.#buffer = EMPTY;
    for (;;) {
      if (!this.#frame) {
        const parsed = parseFrameHead(input, 'client');
        if (!parsed) {
          this.#buffer = Buffer.from(input);
          break;
        }
        this.#hold(input.subarray(0, parsed.size));
        input = input.subarray(parsed.size);
        this.#frame = { ...parsed.head, mask: parsed.mask!, offset: 0 };
        this.#startFrame(parsed.head);
      }
      const frame = this.#frame;
      const take = Math.min(frame.left, input.length);
      const raw = input.subarray(0, take);
      input = input.subarray(take);
      this.#hold(raw);
      const payload = Buffer.from(raw);
      unmask(payload, frame.mask, frame.offset);
      frame.offset += take;
      frame.left -= take;
      if (frame.control) frame.control.push(payload);
      else if (take > 0) this.#payload(payload);
      if (frame.left > 0) break;
      this.#frame = null;
      if (this.#endFrame(frame)) out.push(...this.#held.splice(0));
      if (input.length === 0) break;
    }
    return out.length === 1 ? out[0]! : Buffer.concat(out);
  }

  #hold(raw: Buffer): void {
    if (raw.length > 0) this.#held.push(Buffer.from(raw));
  }

  #startFrame(head: FrameHead): void {
    if (head.control) return;
    if (!startsMessage(head, this.#message !== null, this.#inflater !== null, 'client')) return;
    this.#message = {
      compressed: head.rsv1,
      scan: new LeakScan({ budget: new DecodeBudget(this.#max), where: WHERE }),
      parts: [],
      bytes: 0,
    };
  }

  #payload(payload: Buffer): void {
    const message = this.#message!;
    message.bytes += payload.length;
    if (message.bytes > this.#max)
      throw new SecretViolation('request_too_large', null, `a WebSocket message crossed the limit of ${this.#max} bytes`);
    if (message.compressed) message.parts.push(payload);
    else message.scan.push(payload);
  }

  /** Whether what is held may go now: no message is open after this frame. */
  #endFrame(frame: FrameHead): boolean {
    if (frame.control) {
      const payload = Buffer.concat(frame.control);
      // a close frame's reason follows its 2-byte code
      const text = frame.opcode === 0x8 ? payload.subarray(Math.min(2, payload.length)) : payload;
      const scan = new LeakScan({ budget: new DecodeBudget(this.#max), where: 'a WebSocket control frame' });
      scan.push(text);
      scan.end();
      return this.#message === null;
    }
    if (!frame.fin) return false;
    const message = this.#message!;
    this.#message = null;
    if (message.compressed) {
      let inflated: Buffer;
      try {
        inflated = this.#inflater!.inflate(Buffer.concat(message.parts), 'client');
      } catch (error) {
        if (error instanceof WsProtocolError && error.code === 'request_too_large')
          throw new SecretViolation('request_too_large', null, error.message);
        throw error;
      }
      message.scan.push(inflated);
    }
    message.scan.end();
    return true;
  }
}

/** The close frame sluice sends the client when a message carried a leak: 1008 (policy violation), reason naming secret_leak. */
export function leakCloseFrame(detail: string): Buffer {
  const shape = /\(([^)]{1,80})\)/.exec(detail)?.[1];
  const reason = Buffer.from(`secret_leak${shape ? `: ${shape}` : ''}`, 'utf8').subarray(0, 123);
  const payload = Buffer.alloc(2 + reason.length);
  payload.writeUInt16BE(1008, 0);
  reason.copy(payload, 2);
  return encodeFrame(true, 0x8, payload);
}
