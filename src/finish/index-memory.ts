/**
 * The memory the index builds and encodes its sidecars in, reused from one file to the next.
 * An IndexBuilder's arrays grow with its file, and encoding a sidecar needs scratch arrays as
 * large (the key logs sorted, the postings, the bytes), several files a second. Taken new
 * each time, every page of them is a page the kernel must hand over and zero at the first
 * touch: on the VM the benches run on that is ~20 µs a 4 KiB page, and it was most of what
 * the index cost the appliance (docs/performance.md, index-cost). Given back when their file
 * is done, the same pages serve the next file.
 *
 * One Recycler per thread (indexMemory: each thread loads its own copy of this module). It
 * hands out ArrayBuffers of a power of two bytes (at least 4 KiB), never zeroed: whoever takes
 * one writes before it reads. It takes back only buffers it made or claimed (a buffer that was
 * transferred here whole: nothing else can see it), so a Buffer of Node's shared pool can never
 * enter it, and keeps at most `maxKept` bytes: the rest is left to the garbage collector.
 *
 *   take(bytes) ──a kept buffer of that size class, else a new one──▶ the builder / encoder
 *   grow(array) ──twice the size, copied; the old one given back──▶ a builder's growing log
 *   give(buffer) ◀── its file encoded (IndexBuilder.release, the encode's Lease, the sidecar written)
 *   claim(buffer) ◀── a builder's memory back from the index thread, a sidecar's bytes from it
 */
const MIN_BYTES = 4096;

/** A thread's recycler keeps at most this much: a 64 MiB file of 50,000 flows needs about 40 MiB to encode. */
export const KEPT_BYTES = 64 << 20;

function sizeClass(bytes: number): number {
  return bytes <= MIN_BYTES ? MIN_BYTES : 2 ** Math.ceil(Math.log2(bytes));
}

/** Typed arrays over whole buffers taken (their length at least n): a Recycler's, or a Lease's. */
abstract class Taker {
  abstract take(bytes: number): ArrayBuffer;

  int32(n: number): Int32Array {
    return new Int32Array(this.take(n * 4));
  }

  uint32(n: number): Uint32Array {
    return new Uint32Array(this.take(n * 4));
  }

  float64(n: number): Float64Array {
    return new Float64Array(this.take(n * 8));
  }
}

export class Recycler extends Taker {
  /** Bytes in the free lists. */
  kept = 0;
  /** Per size class, the buffers free to take; and all of them, to know one given twice. */
  private readonly free = new Map<number, ArrayBuffer[]>();
  private readonly freed = new Set<ArrayBuffer>();
  /** Every buffer this recycler made or claimed: the only ones it takes back. */
  private readonly mine = new WeakSet<ArrayBuffer>();

  constructor(private readonly maxKept = KEPT_BYTES) {
    super();
  }

  /** A buffer of at least `bytes` (a power of two), its contents whatever the last user left. */
  take(bytes: number): ArrayBuffer {
    const size = sizeClass(bytes);
    const b = this.free.get(size)?.pop();
    if (b !== undefined) {
      this.freed.delete(b);
      this.kept -= size;
      return b;
    }
    const made = new ArrayBuffer(size);
    this.mine.add(made);
    return made;
  }

  /** Takes back a buffer nothing uses any more; one it did not make or claim, or beyond maxKept, is left to the collector. */
  give(b: ArrayBuffer): void {
    const size = b.byteLength;
    if (!this.mine.has(b) || this.freed.has(b) || size !== sizeClass(size) || this.kept + size > this.maxKept) return;
    let list = this.free.get(size);
    if (list === undefined) this.free.set(size, (list = []));
    list.push(b);
    this.freed.add(b);
    this.kept += size;
  }

  /** Makes a buffer that was transferred to this thread whole (so only its receiver sees it) one that give() takes back. */
  claim(b: ArrayBuffer): void {
    this.mine.add(b);
  }

  /** `a` in a buffer twice its size, its contents copied; its own buffer given back (the caller holds only the copy). */
  grow<T extends Int32Array | Uint32Array | Float64Array>(a: T): T {
    const grown = new (a.constructor as new (buffer: ArrayBuffer) => T)(this.take(a.byteLength * 2));
    grown.set(a);
    this.give(a.buffer as ArrayBuffer);
    return grown;
  }

  /** A scratch lease: what it takes goes back at once with end(). */
  lease(): Lease {
    return new Lease(this);
  }

  uint8(n: number): Uint8Array {
    return new Uint8Array(this.take(n));
  }
}

/**
 * Scratch memory of one computation (an encoding): each array spans its whole buffer (length
 * at least n); end() gives every one back, so nothing taken through it may outlive the call.
 */
export class Lease extends Taker {
  private readonly held: ArrayBuffer[] = [];

  constructor(private readonly from: Recycler) {
    super();
  }

  take(bytes: number): ArrayBuffer {
    const b = this.from.take(bytes);
    this.held.push(b);
    return b;
  }

  buffer(n: number): Buffer {
    const b = this.take(n);
    return Buffer.from(b, 0, b.byteLength);
  }

  end(): void {
    for (const b of this.held) this.from.give(b);
    this.held.length = 0;
  }
}

/** This thread's recycler. */
export const indexMemory = new Recycler();
