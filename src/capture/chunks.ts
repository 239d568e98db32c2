/**
 * The memory that records wait in before they reach the disk: chunks handed out by one
 * pool with a hard byte limit shared by every session. A writer that cannot get a chunk
 * drops the packet and counts it; memory never grows past the limit.
 *
 * Two sizes: a busy session fills LARGE chunks (written 16 at a time, so the disk sees
 * multi-MiB writes); a quiet one, whose chunk is flushed by the timer long before it
 * fills, holds a SMALL one, so a thousand quiet sessions cost 32 MiB, not 256.
 * Free chunks are kept for reuse rather than left to the GC: churning hundreds of MiB of
 * buffers through the collector under load showed up as RSS far above the limit, while a
 * pool that only grows to its peak holds RSS at the limit.
 */
export const LARGE_CHUNK = 256 * 1024;
export const SMALL_CHUNK = 32 * 1024;

export class ChunkPool {
  /** Bytes of chunks that exist (in use or free). */
  allocatedBytes = 0;
  private readonly freeLarge: Buffer[] = [];
  private readonly freeSmall: Buffer[] = [];

  constructor(readonly maxBytes: number) {}

  /** A chunk of `size` (LARGE_CHUNK or SMALL_CHUNK) bytes, or null when the limit is reached. */
  take(size: number): Buffer | null {
    const reused = (size === LARGE_CHUNK ? this.freeLarge : this.freeSmall).pop();
    if (reused) return reused;
    if (this.allocatedBytes + size > this.maxBytes) {
      // Free chunks of the other size are memory too: give them up before refusing.
      const other = size === LARGE_CHUNK ? this.freeSmall : this.freeLarge;
      while (other.length > 0 && this.allocatedBytes + size > this.maxBytes) this.allocatedBytes -= other.pop()!.length;
      if (this.allocatedBytes + size > this.maxBytes) return null;
    }
    this.allocatedBytes += size;
    return Buffer.allocUnsafeSlow(size);
  }

  /** Memory that holds records outside the pool (a receive ring, see SlabRing) counts against the same limit. */
  reserve(bytes: number): void {
    this.allocatedBytes += bytes;
  }

  give(chunk: Buffer): void {
    (chunk.length === LARGE_CHUNK ? this.freeLarge : this.freeSmall).push(chunk);
  }
}
