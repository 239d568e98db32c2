/**
 * What the index remembers of an inner frame: the values a filter primitive at the frame's
 * first headers compares, read exactly where libpcap's code reads them for a primitive with
 * no `vlan` before it (docs/filters.md), so that a key found for a primitive is a superset of
 * the frames the primitive matches:
 *
 *   ETHER  the EtherType at offset 12 (a tagged frame has its TPID there, as `ip` sees it)
 *   VLAN   the first tag's id, when offset 12 holds 0x8100, 0x88a8 or 0x9100
 *   PROTO4 IPv4's protocol field (any fragment)
 *   PROTO6 IPv6's next header, and the one after a fragment header right behind it
 *   V4     IPv4 source and destination; ARP/RARP sender and target protocol addresses
 *   V6     IPv6 source and destination, folded to 32 bits (a collision only reads more)
 *   PORT   source and destination port of TCP, UDP, SCTP: IPv4 unfragmented or first
 *          fragment at its header length, IPv6 right after the fixed header
 *
 * A value a frame is too short to hold is not a key: libpcap's load past the captured end
 * rejects the frame, so no primitive on it can match.
 *
 * A key is one number: kind * 2^32 + value (value < 2^32), so keys sort by kind then value.
 */
import { u16, u32 } from '../decode/view.js';

export const KEY_ETHER = 1;
export const KEY_VLAN = 2;
export const KEY_PROTO4 = 3;
export const KEY_PROTO6 = 4;
export const KEY_V4 = 5;
export const KEY_V6 = 6;
export const KEY_PORT = 7;

const KIND = 2 ** 32;
/** Kinds are 1..KINDS - 1. */
export const KINDS = 8;

export function key(kind: number, value: number): number {
  return kind * KIND + value;
}

export function keyKind(k: number): number {
  return Math.floor(k / KIND);
}

export function keyValue(k: number): number {
  return k % KIND;
}

/** 16 bytes of an IPv6 address → 32 bits (FNV-1a). */
export function foldV6(buf: ArrayLike<number>, off: number): number {
  let a = 0x811c9dc5;
  for (let i = 0; i < 16; i++) a = Math.imul(a ^ buf[off + i]!, 0x01000193) >>> 0;
  return a;
}

const ETHER_IPV4 = 0x0800;
const ETHER_IPV6 = 0x86dd;
const ETHER_ARP = 0x0806;
const ETHER_RARP = 0x8035;

function isPortProto(p: number): boolean {
  return p === 6 || p === 17 || p === 132;
}

/** Where frameKeys puts the keys it finds (the builder's KeyTable). */
export interface KeySink {
  add(kind: number, value: number): void;
}

/** Flags of an IPv4 flow's protocol word (ipv4Keys): a later fragment, which has no ports. */
export const LATER_FRAGMENT = 0x100;

/**
 * Where KeyFeed puts what it sees: a frame's keys one by one (KeySink), or an IPv4 flow whole,
 * its keys to be made by ipv4Keys later (on the index thread): one append on the hot path
 * instead of six lookups into the key table's memory, which the traffic between two groups
 * has pushed out of the CPU's cache.
 */
export interface FlowSink extends KeySink {
  /** `proto`: the protocol, | LATER_FRAGMENT for a later fragment; `ports`: both as one word (0 for a later fragment). */
  addIpv4(group: number, proto: number, src: number, dst: number, ports: number): void;
}

/** The keys frameKeys finds in an IPv4 frame with a 20-byte header whose first 38 bytes are captured (see FlowSink). */
export function ipv4Keys(proto: number, src: number, dst: number, ports: number, sink: KeySink): void {
  const p = proto & 0xff;
  sink.add(KEY_ETHER, ETHER_IPV4);
  sink.add(KEY_PROTO4, p);
  sink.add(KEY_V4, src >>> 0);
  sink.add(KEY_V4, dst >>> 0);
  if (!isPortProto(p) || (proto & LATER_FRAGMENT) !== 0) return;
  sink.add(KEY_PORT, ports >>> 16);
  sink.add(KEY_PORT, ports & 0xffff);
}

/**
 * Hands `sink` every key (kind, value) of the Ethernet frame buf[off, off + capLen). Allocates
 * nothing; every length is checked before the read (decode/view.ts's unchecked u16, u32).
 */
export function frameKeys(buf: Buffer, off: number, capLen: number, sink: KeySink): void {
  if (capLen < 14) return;
  const et = u16(buf, off + 12);
  sink.add(KEY_ETHER, et);
  if (et === 0x8100 || et === 0x88a8 || et === 0x9100) {
    if (capLen >= 16) sink.add(KEY_VLAN, u16(buf, off + 14) & 0x0fff);
    return;
  }
  if (et === ETHER_IPV4) {
    if (capLen < 24) return;
    const proto = buf[off + 23]!;
    sink.add(KEY_PROTO4, proto);
    if (capLen >= 30) sink.add(KEY_V4, u32(buf, off + 26));
    if (capLen >= 34) sink.add(KEY_V4, u32(buf, off + 30));
    if (!isPortProto(proto) || (u16(buf, off + 20) & 0x1fff) !== 0) return;
    const l4 = off + 14 + (buf[off + 14]! & 0x0f) * 4;
    if (l4 + 2 <= off + capLen) sink.add(KEY_PORT, u16(buf, l4));
    if (l4 + 4 <= off + capLen) sink.add(KEY_PORT, u16(buf, l4 + 2));
  } else if (et === ETHER_IPV6) {
    if (capLen < 21) return;
    const nh = buf[off + 20]!;
    sink.add(KEY_PROTO6, nh);
    if (capLen >= 38) sink.add(KEY_V6, foldV6(buf, off + 22));
    if (capLen >= 54) sink.add(KEY_V6, foldV6(buf, off + 38));
    if (nh === 44 && capLen >= 55) sink.add(KEY_PROTO6, buf[off + 54]!);
    if (isPortProto(nh)) {
      if (capLen >= 56) sink.add(KEY_PORT, u16(buf, off + 54));
      if (capLen >= 58) sink.add(KEY_PORT, u16(buf, off + 56));
    }
  } else if (et === ETHER_ARP || et === ETHER_RARP) {
    if (capLen >= 32) sink.add(KEY_V4, u32(buf, off + 28));
    if (capLen >= 42) sink.add(KEY_V4, u32(buf, off + 38));
  }
}

/**
 * Hands a builder's records to its key table. An IPv4 record with a 20-byte header and both
 * ports captured has for keys its protocol, addresses and ports (ipv4Keys): its flow goes to
 * the table whole (FlowSink), and not at all when it is the flow just handed over for the same
 * group, whose keys would add nothing. Most records follow one of their flow in a session's
 * file (a burst, a transfer). Any other record goes through frameKeys.
 */
export class KeyFeed {
  /** The group the last IPv4 flow went to (-1: none), and that flow as FlowSink.addIpv4 takes it. */
  private group = -1;
  private proto = 0;
  private src = 0;
  private dst = 0;
  private ports = 0;

  constructor(private readonly sink: FlowSink) {}

  add(buf: Buffer, off: number, capLen: number, group: number): void {
    // IPv4 with a 20-byte header and both ports captured: every key frameKeys reads lies in [12, 38).
    if (capLen >= 38 && buf[off + 12] === 0x08 && buf[off + 13] === 0x00 && buf[off + 14] === 0x45) {
      // A later fragment has no ports (frameKeys adds none): flagged in the protocol word, its port word 0.
      const first = (u16(buf, off + 20) & 0x1fff) === 0;
      const proto = first ? buf[off + 23]! : buf[off + 23]! | LATER_FRAGMENT;
      const src = u32(buf, off + 26);
      const dst = u32(buf, off + 30);
      const ports = first ? u32(buf, off + 34) : 0;
      if (group === this.group && proto === this.proto && src === this.src && dst === this.dst && ports === this.ports) return;
      this.group = group;
      this.proto = proto;
      this.src = src;
      this.dst = dst;
      this.ports = ports;
      this.sink.addIpv4(group, proto, src, dst, ports);
      return;
    }
    frameKeys(buf, off, capLen, this.sink);
  }
}
