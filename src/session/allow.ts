/**
 * --allow: the outer source addresses mirror traffic may come from (AWS targets should take
 * it only from the VPC). Prefixes are kept as 16-byte addresses (IPv4 as ::ffff:0:0/96 + n)
 * so one comparison loop serves both families, on the batch's address bytes directly.
 */
import type { Cidr } from '../addr.js';

export class AllowList {
  constructor(readonly cidrs: readonly Cidr[]) {}

  /** True when the 16-byte address at b[off] is inside one of the prefixes. */
  allows(b: Uint8Array, off: number): boolean {
    const list = this.cidrs;
    for (let r = 0; r < list.length; r++) {
      const { addr, bits } = list[r]!;
      const whole = bits >> 3;
      let i = 0;
      while (i < whole && addr[i] === b[off + i]) i++;
      if (i < whole) continue;
      const rest = bits & 7;
      if (rest === 0 || ((addr[whole]! ^ b[off + whole]!) & (0xff << (8 - rest)) & 0xff) === 0) return true;
    }
    return false;
  }
}
