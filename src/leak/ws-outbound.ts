// WebSocket frames from the client, read for leaks before they go upstream (RFC 6455, RFC 7692),
// to any host: every text and binary message is unmasked, put together across its fragments,
// inflated when compressed (permessage-deflate, under the request limit) and scanned like a body;
// control frames' payloads (a close reason, a ping) too. The frames themselves go on unchanged, but
// only once the whole message they belong to was scanned: a message is held until its last frame.
// The frames are read by the one frame reader (src/ws/frames.ts) the response side's scrubber runs on.
import { encodeFrame, WsFrameReader, WsInflater, type FrameHandler, type WsDeflate } from '../ws/frames.js';
import { DecodeBudget } from './detect.js';
import { LeakScan } from './stream.js';

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
}

/**
 * Client-to-upstream frames in, the same frames out once their message is scanned. push() throws
 * SecretViolation (secret_leak, request_too_large) or WsProtocolError.
 */
export class WsLeakGate {
  readonly #max: number;
  readonly #reader: WsFrameReader;
  readonly #inflater: WsInflater | null;
  #message: Message | null = null;
  /** raw bytes held back: those of the message being read, and frames after its start */
  #held: Buffer[] = [];
  /** raw bytes that may go now (no message open after them) */
  #ready: Buffer[] = [];
  readonly #handler: FrameHandler = {
    raw: (bytes) => {
      if (bytes.length > 0) this.#held.push(Buffer.from(bytes));
    },
    messageStart: (head) => {
      this.#message = { compressed: head.rsv1, scan: new LeakScan({ budget: new DecodeBudget(this.#max), where: WHERE }), parts: [] };
    },
    messageData: (payload) => {
      // the reader unmasked a copy of the client's bytes: this payload is ours to keep
      const message = this.#message!;
      if (message.compressed) message.parts.push(payload);
      else message.scan.push(payload);
    },
    frameEnd: (head) => {
      if (!head.fin) return;
      const message = this.#message!;
      this.#message = null;
      if (message.compressed) message.scan.push(this.#inflater!.inflate(Buffer.concat(message.parts), 'client'));
      message.scan.end();
      this.#release();
    },
    control: (opcode, payload) => {
      // a close frame's reason follows its 2-byte code
      const text = opcode === 0x8 ? payload.subarray(Math.min(2, payload.length)) : payload;
      const scan = new LeakScan({ budget: new DecodeBudget(this.#max), where: 'a WebSocket control frame' });
      scan.push(text);
      scan.end();
      if (!this.#reader.inMessage) this.#release();
    },
  };

  constructor(options: WsLeakOptions) {
    this.#max = options.maxMessageBytes;
    this.#reader = new WsFrameReader('client', { canInflate: options.deflate !== null, maxMessageBytes: options.maxMessageBytes });
    this.#inflater = options.deflate ? new WsInflater(options.deflate.clientNoContextTakeover ?? false, options.maxMessageBytes) : null;
  }

  push(chunk: Buffer): Buffer {
    this.#reader.push(chunk, this.#handler);
    const out = this.#ready;
    this.#ready = [];
    return out.length === 1 ? out[0]! : Buffer.concat(out);
  }

  #release(): void {
    this.#ready.push(...this.#held.splice(0));
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
