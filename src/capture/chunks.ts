/**
 * The memory that records wait in before they reach the disk: fixed-size chunks handed
 * out by one pool with a hard byte limit shared by every session. A writer that cannot
 * get a chunk drops the packet and counts it; memory never grows past the limit.
 * A few free chunks are kept for reuse; the rest go back to the GC after a burst.
 */
export const DEFAULT_CHUNK_SIZE = 256 * 1024;

export class ChunkPool {
  /** Bytes of chunks that exist (in use or free). */
  allocatedBytes = 0;
  private readonly free: Buffer[] = [];

  constructor(
    readonly chunkSize: number,
    readonly maxBytes: number,
    private readonly keepFree = 8,
  ) {}

  take(): Buffer | null {
    const reused = this.free.pop();
    if (reused) return reused;
    if (this.allocatedBytes + this.chunkSize > this.maxBytes) return null;
    this.allocatedBytes += this.chunkSize;
    return Buffer.allocUnsafeSlow(this.chunkSize);
  }

  give(chunk: Buffer): void {
    if (this.free.length < this.keepFree) this.free.push(chunk);
    else this.allocatedBytes -= this.chunkSize;
  }
}
