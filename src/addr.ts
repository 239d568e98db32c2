/**
 * Outer source addresses travel as 16 bytes (IPv4 as ::ffff:a.b.c.d) in the batch.
 * These helpers convert at the edges: config, names, JSON. Never per packet. Prefixes
 * (--allow) are kept in the same 16-byte form (IPv4 as ::ffff:0:0/96 + n), so one
 * comparison loop serves both families.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { formatIpv4 } from './decode/ipv4.js';
import { formatIpv6 } from './decode/ipv6.js';

export function isV4Mapped(b: Uint8Array, off: number): boolean {
  for (let i = 0; i < 10; i++) if (b[off + i] !== 0) return false;
  return b[off + 10] === 0xff && b[off + 11] === 0xff;
}

/** 16 bytes → "10.0.0.5" for mapped IPv4, else the RFC 5952 compressed IPv6 text. */
export function formatAddr(b: Uint8Array, off: number): string {
  return isV4Mapped(b, off) ? formatIpv4(b, off + 12) : formatIpv6(b, off);
}

/** Text → 16 bytes at out[off]; false when the text is not an IP address. */
export function parseAddr(text: string, out: Uint8Array, off: number): boolean {
  if (isIPv4(text)) {
    out.fill(0, off, off + 10);
    out[off + 10] = 0xff;
    out[off + 11] = 0xff;
    const parts = text.split('.');
    for (let i = 0; i < 4; i++) out[off + 12 + i] = Number(parts[i]);
    return true;
  }
  if (!isIPv6(text)) return false;
  let s = text;
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  let tail: number[] = [];
  if (v4) {
    const p = v4[1]!.split('.').map(Number);
    tail = [(p[0]! << 8) | p[1]!, (p[2]! << 8) | p[3]!];
    s = s.slice(0, -v4[1]!.length);
    if (s.endsWith(':') && !s.endsWith('::')) s = s.slice(0, -1);
  }
  const [head, rest] = s.includes('::') ? s.split('::') : [s, null];
  const words = (x: string | undefined): number[] => (x ? x.split(':').filter((w) => w !== '').map((w) => parseInt(w, 16)) : []);
  const left = words(head);
  const right = [...words(rest ?? undefined), ...tail];
  const all = rest === null ? [...left, ...tail] : [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
  for (let i = 0; i < 8; i++) {
    out[off + 2 * i] = all[i]! >> 8;
    out[off + 2 * i + 1] = all[i]! & 0xff;
  }
  return true;
}

/** An address as the router writes the sources it sees (RFC 5952), so a configured one compares equal. */
export function canonicalAddr(text: string): string {
  const bytes = new Uint8Array(16);
  parseAddr(text, bytes, 0);
  return formatAddr(bytes, 0);
}

/** A form of an address that is safe inside a file name: dots stay, colons become dashes. */
export function addrForName(text: string): string {
  return text.replace(/:/g, '-');
}

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
