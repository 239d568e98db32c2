/**
 * Free space on the output filesystem, polled once a second. Below the threshold the
 * writers stop taking packets (they drop them as disk_full, counted) until space returns,
 * so the disk never fills to the point where a write fails halfway.
 */
import { statfs } from 'node:fs/promises';

/** Default threshold: 1 GiB or 5 % of the filesystem, whichever is smaller. */
export function defaultMinFree(totalBytes: number): number {
  return Math.min(1024 ** 3, Math.floor(totalBytes * 0.05));
}

export interface DiskEvents {
  /** Free space fell below the threshold: called once per episode, not per packet. */
  paused(freeBytes: number, minFreeBytes: number): void;
  resumed(freeBytes: number, minFreeBytes: number): void;
  failed(err: NodeJS.ErrnoException): void;
}

export class DiskGuard {
  /** Read by every writer on the hot path. */
  full = false;
  freeBytes = 0;
  totalBytes = 0;
  minFreeBytes = 0;
  private failing = false;

  constructor(
    private readonly dir: string,
    private readonly configuredMinFree: number | null,
    private readonly events: DiskEvents,
  ) {}

  async check(): Promise<void> {
    let st;
    try {
      st = await statfs(this.dir);
    } catch (err) {
      // The folder may be gone for a moment; keep the last state, say so once.
      if (!this.failing) this.events.failed(err as NodeJS.ErrnoException);
      this.failing = true;
      return;
    }
    this.failing = false;
    this.freeBytes = st.bavail * st.bsize;
    this.totalBytes = st.blocks * st.bsize;
    this.minFreeBytes = this.configuredMinFree ?? defaultMinFree(this.totalBytes);
    const full = this.freeBytes < this.minFreeBytes;
    if (full !== this.full) {
      this.full = full;
      if (full) this.events.paused(this.freeBytes, this.minFreeBytes);
      else this.events.resumed(this.freeBytes, this.minFreeBytes);
    }
  }
}
