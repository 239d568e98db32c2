/**
 * The one seeded generator of the tests and benchmarks: xorshift32 (Marsaglia 2003, shifts
 * 13/17/5). Small and fast enough for the fuzzers' hundreds of millions of draws, and the same
 * seed gives the same sequence, so a failure replays. Not for anything that must be unguessable.
 */
export class Random {
  private x: number;

  /** Zero is xorshift's one fixed point, so a zero seed becomes 1. */
  constructor(seed: number) {
    this.x = seed >>> 0 || 1;
  }

  /** The next unsigned 32-bit integer. */
  next(): number {
    let x = this.x;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.x = x >>> 0;
    return this.x;
  }

  /** An integer in [0, n). */
  below(n: number): number {
    return this.next() % n;
  }

  /** Fills buf[start, end) with the low byte of one draw each; returns buf. */
  fill<B extends Uint8Array>(buf: B, start = 0, end = buf.length): B {
    for (let i = start; i < end; i++) buf[i] = this.next() & 0xff;
    return buf;
  }

  /** `len` fresh random bytes. */
  bytes(len: number): Buffer {
    return this.fill(Buffer.alloc(len));
  }
}
