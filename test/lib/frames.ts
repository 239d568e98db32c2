/**
 * Frame builders for fixtures, tests, fuzzing and the benchmark, written from the
 * RFCs rather than from src/, so they check the code under test. Every field a test
 * may want to break can be overridden; otherwise lengths and the IPv4 and ICMP
 * checksums come out right, so tshark sees well-formed frames unless told otherwise.
 * TCP/UDP/ICMPv6 checksums stay 0: tshark does not verify them by default and no
 * decoder reads them. Test code: allocation is fine.
 *
 * The fixture captures in pcaps/ are built from these (test/fixtures/catalog.ts):
 * a builder that changes the bytes it makes changes the committed files too.
 */
import { Random } from './random.js';

export const TPID_8021Q = 0x8100;
export const TPID_8021AD = 0x88a8;
export const TPID_QINQ_OLD = 0x9100;

export function mac(text: string): Buffer {
  return Buffer.from(text.replaceAll(':', ''), 'hex');
}

export function addr4(text: string): Buffer {
  return Buffer.from(text.split('.').map(Number));
}

export function addr6(text: string): Buffer {
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const groups = (s: string | undefined): number[] => (s ? s.split(':').map((g) => parseInt(g, 16)) : []);
  const h = groups(head);
  const t = groups(tail);
  const all = tail === undefined ? h : [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  const out = Buffer.alloc(16);
  all.forEach((g, i) => out.writeUInt16BE(g, 2 * i));
  return out;
}

/** Internet checksum (RFC 1071) over the given parts, as if concatenated. */
export function checksum(...parts: Buffer[]): number {
  let sum = 0;
  const all = Buffer.concat(parts);
  for (let i = 0; i + 1 < all.length; i += 2) sum += all.readUInt16BE(i);
  if (all.length & 1) sum += all[all.length - 1] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

export interface EtherOpts {
  dst?: string;
  src?: string;
  /** Tags outermost first: [TPID, VLAN id] (PCP/DEI via the id's upper bits). */
  tags?: [number, number][];
}

export function ether(etherType: number, payload: Buffer, o: EtherOpts = {}): Buffer {
  const parts = [mac(o.dst ?? '02:00:00:00:00:02'), mac(o.src ?? '02:00:00:00:00:01')];
  for (const [tpid, tci] of o.tags ?? []) {
    const t = Buffer.alloc(4);
    t.writeUInt16BE(tpid, 0);
    t.writeUInt16BE(tci, 2);
    parts.push(t);
  }
  const type = Buffer.alloc(2);
  type.writeUInt16BE(etherType, 0);
  return Buffer.concat([...parts, type, payload]);
}

/** Pads to the 60-byte Ethernet minimum (without FCS), as a NIC does. */
export function pad60(frame: Buffer, fill = 0): Buffer {
  return frame.length >= 60 ? frame : Buffer.concat([frame, Buffer.alloc(60 - frame.length, fill)]);
}

export interface Ipv4Opts {
  src?: string;
  dst?: string;
  ttl?: number;
  id?: number;
  tos?: number;
  df?: boolean;
  mf?: boolean;
  /** Bytes; must be a multiple of 8. */
  fragOffset?: number;
  /** Raw option bytes, padded here to a multiple of 4. */
  options?: Buffer;
  /** Overrides, for malformed frames. */
  version?: number;
  ihl?: number;
  totalLength?: number;
}

export function ipv4(proto: number, payload: Buffer, o: Ipv4Opts = {}): Buffer {
  const opts = o.options ?? Buffer.alloc(0);
  const optLen = (opts.length + 3) & ~3;
  const hl = 20 + optLen;
  const h = Buffer.alloc(hl);
  h[0] = ((o.version ?? 4) << 4) | (o.ihl ?? hl / 4);
  h[1] = o.tos ?? 0;
  h.writeUInt16BE(o.totalLength ?? hl + payload.length, 2);
  h.writeUInt16BE(o.id ?? 0x1234, 4);
  h.writeUInt16BE((o.df ? 0x4000 : 0) | (o.mf ? 0x2000 : 0) | ((o.fragOffset ?? 0) / 8), 6);
  h[8] = o.ttl ?? 64;
  h[9] = proto;
  addr4(o.src ?? '10.0.0.1').copy(h, 12);
  addr4(o.dst ?? '10.0.0.2').copy(h, 16);
  opts.copy(h, 20);
  h.writeUInt16BE(checksum(h), 10);
  return Buffer.concat([h, payload]);
}

export interface Ipv6Opts {
  src?: string;
  dst?: string;
  hopLimit?: number;
  flowLabel?: number;
  trafficClass?: number;
  version?: number;
  payloadLength?: number;
}

export function ipv6(nextHeader: number, payload: Buffer, o: Ipv6Opts = {}): Buffer {
  const h = Buffer.alloc(40);
  h.writeUInt32BE((((o.version ?? 6) << 28) | ((o.trafficClass ?? 0) << 20) | (o.flowLabel ?? 0)) >>> 0, 0);
  h.writeUInt16BE(o.payloadLength ?? payload.length, 4);
  h[6] = nextHeader;
  h[7] = o.hopLimit ?? 64;
  addr6(o.src ?? '2001:db8::1').copy(h, 8);
  addr6(o.dst ?? '2001:db8::2').copy(h, 24);
  return Buffer.concat([h, payload]);
}

/** A generic extension header (hop-by-hop, routing, destination options) padded to 8n with PadN. */
export function extOpts(next: number, body: Buffer): Buffer {
  const len = (2 + body.length + 7) & ~7;
  const h = Buffer.alloc(len);
  h[0] = next;
  h[1] = len / 8 - 1;
  body.copy(h, 2);
  const padLen = len - 2 - body.length;
  if (padLen === 1) h[2 + body.length] = 0; // Pad1
  else if (padLen > 1) {
    h[2 + body.length] = 1; // PadN
    h[3 + body.length] = padLen - 2;
  }
  return h;
}

/** Routing header: type, segments left, then the addresses (type 0 / segment routing style). */
export function routing(next: number, type: number, segmentsLeft: number, addrs: string[]): Buffer {
  const h = Buffer.concat([Buffer.from([next, 0, type, segmentsLeft, 0, 0, 0, 0]), ...addrs.map(addr6)]);
  h[1] = h.length / 8 - 1;
  return h;
}

export function fragment(next: number, offset: number, more: boolean, id: number): Buffer {
  const h = Buffer.alloc(8);
  h[0] = next;
  h.writeUInt16BE(offset | (more ? 1 : 0), 2);
  h.writeUInt32BE(id, 4);
  return h;
}

/** Authentication header with an ICV of icvLen bytes (12 for HMAC-SHA1-96). */
export function ah(next: number, spi: number, seq: number, icvLen = 12): Buffer {
  const h = Buffer.alloc(12 + icvLen);
  h[0] = next;
  h[1] = h.length / 4 - 2;
  h.writeUInt32BE(spi, 4);
  h.writeUInt32BE(seq, 8);
  h.fill(0xab, 12);
  return h;
}

export function esp(spi: number, seq: number, cipherLen: number): Buffer {
  const h = Buffer.alloc(8 + cipherLen, 0x5c);
  h.writeUInt32BE(spi, 0);
  h.writeUInt32BE(seq, 4);
  return h;
}

export interface TcpOpts {
  sport?: number;
  dport?: number;
  seq?: number;
  ack?: number;
  flags?: number;
  window?: number;
  /** Raw option bytes, padded with NOPs to a multiple of 4. */
  options?: Buffer;
  /** Override in 32-bit words, for malformed frames. */
  dataOffset?: number;
}

export function tcp(o: TcpOpts = {}, payload: Buffer = Buffer.alloc(0)): Buffer {
  const opts = o.options ?? Buffer.alloc(0);
  const optLen = (opts.length + 3) & ~3;
  const h = Buffer.alloc(20 + optLen, 1); // 1 = NOP for the option padding
  h.writeUInt16BE(o.sport ?? 40000, 0);
  h.writeUInt16BE(o.dport ?? 80, 2);
  h.writeUInt32BE(o.seq ?? 1000, 4);
  h.writeUInt32BE(o.ack ?? 0, 8);
  h.writeUInt16BE((((o.dataOffset ?? h.length / 4) & 15) << 12) | ((o.flags ?? 0x002) & 0x0fff), 12);
  h.writeUInt16BE(o.window ?? 65535, 14);
  h.writeUInt16BE(0, 16);
  h.writeUInt16BE(0, 18);
  opts.copy(h, 20);
  return Buffer.concat([h, payload]);
}

/** MSS 1460, SACK permitted, timestamps, window scale 7: a Linux SYN's options. */
export const SYN_OPTIONS = Buffer.from('020405b40402080a0001e2400000000001030307', 'hex');

export function udp(sport: number, dport: number, payload: Buffer, length?: number): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(sport, 0);
  h.writeUInt16BE(dport, 2);
  h.writeUInt16BE(length ?? 8 + payload.length, 4);
  return Buffer.concat([h, payload]);
}

/** ICMP (v4): type, code, checksum, 4 bytes of rest-of-header, payload. */
export function icmp(type: number, code: number, rest: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h[0] = type;
  h[1] = code;
  h.writeUInt32BE(rest >>> 0, 4);
  const m = Buffer.concat([h, payload]);
  m.writeUInt16BE(checksum(m), 2);
  return m;
}

export function icmpv6(type: number, code: number, body: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h[0] = type;
  h[1] = code;
  return Buffer.concat([h, body]);
}

export function arp(op: number, sha: string, spa: string, tha: string, tpa: string): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(1, 0);
  h.writeUInt16BE(0x0800, 2);
  h[4] = 6;
  h[5] = 4;
  h.writeUInt16BE(op, 6);
  return Buffer.concat([h, mac(sha), addr4(spa), mac(tha), addr4(tpa)]);
}

/** VXLAN (RFC 7348): flags 0x08 (I), 24-bit VNI, then the inner frame. */
export function vxlan(vni: number, inner: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h[0] = 0x08;
  h.writeUIntBE(vni, 4, 3);
  return Buffer.concat([h, inner]);
}

/** Deterministic filler: byte i is (seed + i * 31) & 0xff. */
export function filler(len: number, seed = 0): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = (seed + i * 31) & 0xff;
  return b;
}

/**
 * An Ethernet II / IPv4 / UDP frame of exactly `size` bytes (>= 50): 10.0.<tag>:40000+tag%1000
 * to 10.1.0.1:5001, IP id `seq`, a payload that starts with `tag` and `seq` (32 bits each)
 * and is otherwise random from `seed`, so every frame of a test is distinct and checkable.
 */
export function udpFrame(size: number, tag: number, seq: number, seed = seq): Buffer {
  const payload = Buffer.alloc(size - 42);
  payload.writeUInt32BE(tag >>> 0, 0);
  payload.writeUInt32BE(seq >>> 0, 4);
  // Knuth's multiplicative hash spreads small seeds (0, 1, 2 ...) over 32 bits.
  new Random((seed * 2654435761) >>> 0).fill(payload, 8);
  const src = `10.0.${(tag >> 8) & 0xff}.${tag & 0xff}`;
  return ether(0x0800, ipv4(17, udp(40000 + (tag % 1000), 5001, payload), { src, dst: '10.1.0.1', id: seq & 0xffff }));
}
