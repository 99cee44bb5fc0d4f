// Copies what one socket reads into another, with backpressure and half-close: what
// source.pipe(destination) does for a tunnel, with three listeners instead of pipe()'s nine
// closures and four once() wrappers. An idle tunnel holds these for as long as it is open, so at
// 10,000 tunnels the difference is megabytes.
import type { Duplex } from 'node:stream';

/**
 * @param admit sees each chunk's size before it is written; false drops the chunk (the caller
 *   is closing the tunnel, e.g. for a size cap)
 */
export function relaySocket(source: Duplex, destination: Duplex, admit: (bytes: number) => boolean): void {
  source.on('data', (chunk: Buffer) => {
    if (!admit(chunk.length)) return;
    if (!destination.write(chunk)) source.pause();
  });
  destination.on('drain', () => source.resume());
  // The destination's write side ends when the source's read side does; the other direction
  // goes on (half-close), as with pipe().
  source.on('end', () => destination.end());
}
