// Relays what one socket reads into another without allocating a buffer per read. A socket read
// the usual way gets a fresh 64 KiB allocation for every read; at gigabytes per second that
// garbage, not the copying, was most of a tunnel's cost. Here the source socket reads (`onread`)
// into buffers sluice owns:
// - a socket that reads little shares one buffer with every other such socket; its bytes are
//   copied out before the read callback returns, so sharing is safe on the one JS thread;
// - a socket whose reads fill that buffer (a bulk transfer) gets a larger buffer of its own and
//   writes straight from it, reading again only once the destination has taken the bytes.
// The number of owned buffers is capped, so idle tunnels never hold one each.
import type { OnReadOpts, Socket } from 'node:net';

const SHARED_BYTES = 64 * 1024;
const OWNED_BYTES = 1024 * 1024;
/** a read this large into the shared buffer marks a bulk transfer */
const BULK_READ = 32 * 1024;
/** a read this small from an owned buffer gives the buffer back */
const SMALL_READ = 16 * 1024;
/**
 * Owned buffers in use or spare, process-wide: at most 8 MiB. They are large because fewer, larger
 * reads cost less: 1 MiB reads cut CPU per GiB by a fifth against 256 KiB.
 */
const MAX_OWNED = 8;

const shared = Buffer.allocUnsafeSlow(SHARED_BYTES);
const spares: Buffer[] = [];
let owned = 0;

function takeOwned(): Buffer | null {
  const spare = spares.pop();
  if (spare) return spare;
  if (owned >= MAX_OWNED) return null;
  owned++;
  return Buffer.allocUnsafeSlow(OWNED_BYTES);
}

/** A buffer still referenced by a pending write cannot be reused; it is left to the GC. */
function giveBack(buffer: Buffer, stillWriting: boolean): void {
  if (stillWriting) owned--;
  else spares.push(buffer);
}

export class ReadRelay {
  /** pass to net.connect: the source socket reads through this relay */
  readonly onread: OnReadOpts;
  #source: Socket | null = null;
  /** the buffer the source's next read goes into */
  #next: Buffer = shared;
  #paused = false;

  /**
   * @param destination where the bytes go; it is ended when the source ends
   * @param admit sees each chunk's size before it is written; false drops the chunk and stops reading
   */
  constructor(
    private readonly destination: Socket,
    private readonly admit: (bytes: number) => boolean,
  ) {
    this.onread = {
      buffer: () => this.#next,
      callback: (bytes, buffer) => this.#relay(bytes, buffer as Buffer),
    };
  }

  /** Binds the connected source socket (its reads already go through `onread`). */
  attach(source: Socket): void {
    this.#source = source;
    source.on('end', () => this.destination.end());
    source.on('close', () => {
      if (this.#next !== shared) giveBack(this.#next, this.destination.writableLength > 0);
      this.#next = shared;
    });
  }

  /** Returns false to stop reading until the destination has taken the chunk. */
  #relay(bytes: number, buffer: Buffer): boolean {
    if (!this.admit(bytes)) return false;
    let chunk: Buffer;
    if (buffer === shared) {
      chunk = Buffer.from(buffer.subarray(0, bytes));
      if (bytes >= BULK_READ) this.#next = takeOwned() ?? shared;
    } else {
      chunk = buffer.subarray(0, bytes);
      if (bytes < SMALL_READ) this.#next = shared;
    }
    this.destination.write(chunk, this.#written);
    const pending = this.destination.writableLength > 0;
    if (buffer !== shared && this.#next === shared) giveBack(buffer, pending);
    if (!pending) return true;
    // Backpressure, and for an owned buffer also safety: the pending write still reads from it.
    this.#paused = true;
    return false;
  }

  readonly #written = (): void => {
    if (!this.#paused || this.destination.writableLength > 0) return;
    this.#paused = false;
    if (this.#source && !this.#source.destroyed) this.#source.resume();
  };
}
