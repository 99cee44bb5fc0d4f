// WebSocket frames from the upstream, scrubbed before the client reads them (RFC 6455, RFC 7692).
// Text and binary messages are scrubbed as one stream per message, across fragments; a compressed
// message (permessage-deflate) is inflated, scrubbed and sent on uncompressed, which a client that
// negotiated the extension accepts; control frames (close reason, ping and pong payloads) are
// scrubbed too. Frames are re-framed because a placeholder is not as long as the value it replaces.
// The frames are read by the one frame reader (src/ws/frames.ts), which ends the connection on
// anything it cannot read.
import { encodeFrame, WsFrameReader, WsInflater, type FrameHandler, type FrameHead, type WsDeflate } from '../ws/frames.js';
import { Scrubber, type ScrubPlan } from './scanner.js';

export interface WsScrubOptions {
  /** permessage-deflate as the 101 accepted it, or null when no extension was agreed */
  deflate: WsDeflate | null;
  /** the largest message, inflated, that is accepted (max_response_bytes) */
  maxMessageBytes: number;
}

interface Message {
  opcode: 0x1 | 0x2;
  compressed: boolean;
  /** uncompressed messages are scrubbed as they stream */
  scrubber: Scrubber;
  /** compressed messages are held until their last frame */
  parts: Buffer[];
  /** an output frame was already sent for this message (later ones are continuations) */
  started: boolean;
}

/** Server-to-client frames in, scrubbed frames out. push() throws WsProtocolError. */
export class WsFrameScrubber {
  readonly #plan: ScrubPlan;
  readonly #reader: WsFrameReader;
  readonly #inflater: WsInflater | null;
  #message: Message | null = null;
  #out: Buffer[] = [];
  readonly #handler: FrameHandler = {
    messageStart: (head) => {
      this.#message = { opcode: head.opcode as 0x1 | 0x2, compressed: head.rsv1, scrubber: new Scrubber(this.#plan), parts: [], started: false };
    },
    messageData: (payload) => {
      const message = this.#message!;
      if (message.compressed) {
        message.parts.push(Buffer.from(payload));
        return;
      }
      const scrubbed = message.scrubber.push(payload);
      if (scrubbed.length > 0) this.#emit(message, scrubbed, false);
    },
    frameEnd: (head) => this.#frameEnd(head),
    control: (opcode, payload) => this.#out.push(encodeFrame(true, opcode, this.#controlPayload(opcode, payload))),
  };

  constructor(plan: ScrubPlan, options: WsScrubOptions) {
    this.#plan = plan;
    this.#reader = new WsFrameReader('upstream', { canInflate: options.deflate !== null, maxMessageBytes: options.maxMessageBytes });
    this.#inflater = options.deflate ? new WsInflater(options.deflate.noContextTakeover, options.maxMessageBytes) : null;
  }

  push(chunk: Buffer): Buffer {
    this.#out = [];
    this.#reader.push(chunk, this.#handler);
    const out = this.#out;
    this.#out = [];
    return out.length === 1 ? out[0]! : Buffer.concat(out);
  }

  #frameEnd(head: FrameHead): void {
    if (!head.fin) return;
    const message = this.#message!;
    this.#message = null;
    let rest: Buffer;
    if (message.compressed) {
      const scrubber = message.scrubber;
      const inflated = this.#inflater!.inflate(Buffer.concat(message.parts), 'upstream');
      rest = Buffer.concat([scrubber.push(inflated), scrubber.end()]);
    } else {
      rest = message.scrubber.end();
    }
    this.#emit(message, rest, true);
  }

  #emit(message: Message, payload: Buffer, fin: boolean): void {
    this.#out.push(encodeFrame(fin, message.started ? 0x0 : message.opcode, payload));
    message.started = true;
  }

  /** A control frame's payload scrubbed, and cut back to what fits in a control frame. */
  #controlPayload(opcode: number, payload: Buffer): Buffer {
    if (payload.length === 0) return payload;
    const scrubber = new Scrubber(this.#plan);
    if (opcode === 0x8) {
      if (payload.length < 2) return payload;
      const reason = Buffer.concat([scrubber.push(payload.subarray(2)), scrubber.end()]);
      return Buffer.concat([payload.subarray(0, 2), utf8Prefix(reason, 123)]);
    }
    return utf8Prefix(Buffer.concat([scrubber.push(payload), scrubber.end()]), 125);
  }
}

/** At most `max` bytes, cut before a UTF-8 continuation byte so text stays whole characters. */
function utf8Prefix(bytes: Buffer, max: number): Buffer {
  if (bytes.length <= max) return bytes;
  let end = max;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}
