/**
 * pcapng timestamps: a 64-bit count of units since 1970, the unit set per interface by
 * if_tsresol (10^-n or 2^-n seconds, default 10^-6), shifted by if_tsoffset seconds.
 *
 * The count does not fit a double (nanoseconds since 1970 are ~2^61), and BigInt would allocate
 * per packet, so the arithmetic runs on 16-bit limbs where every intermediate stays below 2^53.
 * Results are exact: seconds = floor(count / unitsPerSecond) + offset and
 * nanoseconds = floor(remainder * 1e9 / unitsPerSecond), the same truncation Wireshark applies.
 */

import { codedError, ErrorCode } from '../errors.js';

const NS_PER_SEC = 1e9;
const TWO16 = 65536;
const TWO32 = 4294967296;

/** Finest resolutions a 64-bit count can express (10^19 and 2^63 units per second). */
export const MAX_TSRESOL_POW10 = 19;
export const MAX_TSRESOL_POW2 = 63;

// Scratch for the limb arithmetic below, in typed arrays: a module-level `let` holding a number
// above 2^31 would be boxed (allocated) on every store.
const quot = new Float64Array(2);
const prod = new Float64Array(6);

/**
 * Divides the 64-bit value hi:lo by d (1 <= d <= 1e9), leaves the quotient's halves in quot[0]
 * and quot[1] and returns the remainder. Each step divides r*2^16 + limb < 2^46 by d, exact in
 * doubles.
 */
function divmod64(hi: number, lo: number, d: number): number {
  let x = hi >>> 16;
  const q3 = Math.floor(x / d);
  let r = x - q3 * d;
  x = r * TWO16 + (hi & 0xffff);
  const q2 = Math.floor(x / d);
  r = x - q2 * d;
  x = r * TWO16 + (lo >>> 16);
  const q1 = Math.floor(x / d);
  r = x - q1 * d;
  x = r * TWO16 + (lo & 0xffff);
  const q0 = Math.floor(x / d);
  r = x - q0 * d;
  quot[0] = q3 * TWO16 + q2;
  quot[1] = q1 * TWO16 + q0;
  return r;
}

/** floor(frac * 1e9 / 2^p) for frac = hi:lo < 2^p, p <= 63: the product is built in 16-bit limbs. */
function pow2FracToNs(hi: number, lo: number, p: number): number {
  let c = (lo & 0xffff) * NS_PER_SEC;
  prod[0] = c % TWO16;
  c = Math.floor(c / TWO16) + (lo >>> 16) * NS_PER_SEC;
  prod[1] = c % TWO16;
  c = Math.floor(c / TWO16) + (hi & 0xffff) * NS_PER_SEC;
  prod[2] = c % TWO16;
  c = Math.floor(c / TWO16) + (hi >>> 16) * NS_PER_SEC;
  prod[3] = c % TWO16;
  c = Math.floor(c / TWO16);
  prod[4] = c % TWO16;
  prod[5] = Math.floor(c / TWO16);
  // The result is below 2^30, so three limbs from bit p on hold all of it.
  const i = p >> 4;
  const v = prod[i]! + prod[i + 1]! * TWO16 + (i + 2 < 6 ? prod[i + 2]! * TWO32 : 0);
  return Math.floor(v / 2 ** (p & 15));
}

/**
 * Converts one interface's timestamps. Built once per interface description; convert() writes
 * `sec` and `nsec` and allocates nothing.
 */
export class TimestampConverter {
  sec = 0;
  nsec = 0;
  /** 10^e for base 10 with e <= 9: the units per second. */
  private readonly unitsPerSec: number;
  /** 10^(9-e) for base 10 with e <= 9: nanoseconds per unit. */
  private readonly nsPerUnit: number;
  /** For base 10 with e > 9: divisors (each <= 1e9) whose product is 10^(e-9), bringing units down to ns. */
  private readonly toNs: readonly number[];

  constructor(
    readonly base: 10 | 2,
    readonly exponent: number,
    readonly offsetSec = 0,
  ) {
    const maxExp = base === 10 ? MAX_TSRESOL_POW10 : MAX_TSRESOL_POW2;
    if (!Number.isInteger(exponent) || exponent < 0 || exponent > maxExp) {
      throw codedError(ErrorCode.INVALID_ARGUMENT, `timestamp resolution ${base}^-${exponent} is outside 0..${maxExp}`, RangeError);
    }
    const fine = base === 10 && exponent > 9;
    this.unitsPerSec = fine || base === 2 ? 0 : 10 ** exponent;
    this.nsPerUnit = fine || base === 2 ? 0 : 10 ** (9 - exponent);
    const toNs: number[] = [];
    for (let e = fine ? exponent - 9 : 0; e > 0; e -= 9) toNs.push(10 ** Math.min(e, 9));
    this.toNs = toNs;
  }

  /**
   * Converts the count stored at buf[off, off + 8) the way pcapng stores it: the high 32 bits,
   * then the low 32 bits, each in the section's byte order. Reading the halves here keeps
   * values above 2^31 out of call arguments, where they would be boxed.
   */
  convert(buf: Buffer, off: number, le: boolean): void {
    let hi = le ? buf.readUInt32LE(off) : buf.readUInt32BE(off);
    let lo = le ? buf.readUInt32LE(off + 4) : buf.readUInt32BE(off + 4);
    if (this.base === 2) {
      const p = this.exponent;
      if (p >= 32) {
        const fracHiBits = p - 32;
        this.sec = fracHiBits === 0 ? hi : hi >>> fracHiBits;
        const fracHi = fracHiBits === 0 ? 0 : hi % 2 ** fracHiBits;
        this.nsec = pow2FracToNs(fracHi, lo, p);
      } else {
        const unit = 2 ** p;
        this.sec = hi * 2 ** (32 - p) + Math.floor(lo / unit);
        this.nsec = pow2FracToNs(0, lo % unit, p);
      }
    } else if (this.unitsPerSec !== 0) {
      this.nsec = divmod64(hi, lo, this.unitsPerSec) * this.nsPerUnit;
      this.sec = quot[0]! * TWO32 + quot[1]!;
    } else {
      // Finer than ns: drop the sub-ns digits first (floor of floors is the floor), then split.
      for (let i = 0; i < this.toNs.length; i++) {
        divmod64(hi, lo, this.toNs[i]!);
        hi = quot[0]!;
        lo = quot[1]!;
      }
      this.nsec = divmod64(hi, lo, NS_PER_SEC);
      this.sec = quot[0]! * TWO32 + quot[1]!;
    }
    this.sec += this.offsetSec;
  }
}
