/**
 * --allow: the outer source addresses mirror traffic may come from (AWS targets should take
 * it only from the VPC). Prefixes are kept as 16-byte addresses (IPv4 as ::ffff:0:0/96 + n)
 * so one comparison loop serves both families, on the batch's address bytes directly.
 */
import { parseAddr } from '../addr.js';

export interface Cidr {
  readonly text: string;
  readonly addr: Uint8Array;
  /** Prefix length over the 16-byte form. */
  readonly bits: number;
}

/** "10.0.0.0/16" → Cidr; null when malformed. A bare address is a /32 or /128. */
export function parseCidr(text: string): Cidr | null {
  const m = /^([^/]+)(?:\/(\d{1,3}))?$/.exec(text.trim());
  if (!m) return null;
  const addr = new Uint8Array(16);
  if (!parseAddr(m[1]!, addr, 0)) return null;
  const v4 = !m[1]!.includes(':');
  const max = v4 ? 32 : 128;
  const len = m[2] === undefined ? max : Number(m[2]);
  if (len > max) return null;
  const bits = v4 ? 96 + len : len;
  for (let i = bits; i < 128; i++) addr[i >> 3]! &= ~(0x80 >> (i & 7));
  return { text: text.trim(), addr, bits };
}

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
