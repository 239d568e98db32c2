/**
 * Receive timestamps for sources that get none from the kernel: wall-clock time with
 * sub-microsecond resolution, read from the monotonic clock (performance.now) plus an
 * anchor taken from the wall clock. resync() moves the anchor when the wall clock was
 * stepped (NTP, an operator); writers clamp any step back within a file.
 */
const STEP_MS = 20;

export class WallClock {
  sec = 0;
  nsec = 0;
  private anchorMs = Date.now() - performance.now();

  /** Sets sec / nsec to now. */
  sample(): void {
    const t = this.anchorMs + performance.now();
    const sec = Math.floor(t / 1000);
    this.sec = sec;
    this.nsec = Math.floor((t - sec * 1000) * 1e6);
  }

  resync(): void {
    const drift = Date.now() - (this.anchorMs + performance.now());
    if (drift > STEP_MS || drift < -STEP_MS) this.anchorMs += drift;
  }
}
