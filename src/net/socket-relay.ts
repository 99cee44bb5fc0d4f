// Copies what one socket reads into another, with backpressure and half-close: what
// source.pipe(destination) does for a tunnel, with three listeners instead of pipe()'s nine
// closures and four once() wrappers. An idle tunnel holds these for as long as it is open, so at
// 10,000 tunnels the difference is megabytes. Every relay of sluice's runs here: tunnels, upgraded
// connections, and WebSocket frames passed through a frame step (scrubbed or read for leaks).
import type { Duplex } from 'node:stream';

export interface RelayOptions {
  /** bytes read before the relay started (a head the parser read past), relayed first */
  first?: Buffer;
  /**
   * A step between the sockets: bytes read in, bytes to write out (possibly none yet). When it
   * throws, nothing more is relayed in this direction and `fail` gets the error (the caller ends
   * the connection).
   */
  through?: { push(chunk: Buffer): Buffer; fail(error: unknown): void };
}

/**
 * @param admit sees each chunk's size (as read) before it goes on; false drops the chunk (the
 *   caller is closing the connection, e.g. for a size cap)
 */
export function relaySocket(source: Duplex, destination: Duplex, admit: (bytes: number) => boolean, options: RelayOptions = {}): void {
  const through = options.through;
  let failed = false;
  /** false when the destination asks the source to wait */
  const pass = (chunk: Buffer): boolean => {
    if (failed || !admit(chunk.length)) return true;
    let out = chunk;
    if (through) {
      try {
        out = through.push(chunk);
      } catch (error) {
        failed = true;
        through.fail(error);
        return true;
      }
      if (out.length === 0) return true;
    }
    return destination.write(out);
  };
  if (options.first && options.first.length > 0) pass(options.first);
  source.on('data', (chunk: Buffer) => {
    if (!pass(chunk)) source.pause();
  });
  destination.on('drain', () => source.resume());
  // The destination's write side ends when the source's read side does; the other direction
  // goes on (half-close), as with pipe().
  source.on('end', () => destination.end());
}
