/**
 * IPv4 (RFC 791).
 *
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |Version|  IHL  |Type of Service|          Total Length         |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |         Identification        |Flags|      Fragment Offset    |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |  Time to Live |    Protocol   |         Header Checksum       |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                       Source Address                          |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                    Destination Address                        |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                    Options (IHL > 5)                          |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * Flags: bit 0 reserved, DF, MF. Fragment offset counts 8-octet units; only
 * the fragment at offset 0 carries the transport header.
 *
 * reset() needs the fixed header, version 4, IHL >= 5, the whole IHL in the
 * slice and a total length of 0 (see IpView.bound) or at least IHL * 4.
 * A total length beyond the slice is not an error: that is a truncated
 * capture, and the header still says how long the packet was.
 */
import { ERR_HEADER_LEN, ERR_IP_LENGTH, ERR_SHORT, ERR_VERSION, OK } from './status.js';
import { IpView, u16 } from './view.js';

export const OFF_VER_IHL = 0;
export const OFF_TOS = 1;
export const OFF_TOTAL_LEN = 2;
export const OFF_ID = 4;
export const OFF_FLAGS_FRAG = 6;
export const OFF_TTL = 8;
export const OFF_PROTOCOL = 9;
export const OFF_CHECKSUM = 10;
export const OFF_SRC = 12;
export const OFF_DST = 16;
export const IPV4_MIN_HEADER_LEN = OFF_DST + 4;
export const IPV4_ADDR_LEN = 4;

const FLAG_DF = 0x4000;
const FLAG_MF = 0x2000;
const FRAG_OFFSET_MASK = 0x1fff;

export class Ipv4 extends IpView {
  /** In bytes (the field counts 8-octet units); read by reset() because every decode needs it. */
  fragOffset = 0;
  moreFragments = false;

  reset(buf: Buffer, off: number, len: number): number {
    this.buf = buf;
    this.off = off;
    if (len < IPV4_MIN_HEADER_LEN) return this.fail(ERR_SHORT, IPV4_MIN_HEADER_LEN, len);
    const b0 = buf[off + OFF_VER_IHL];
    if (b0 >> 4 !== 4) return this.fail(ERR_VERSION, 4, b0 >> 4);
    const hl = (b0 & 0x0f) * 4;
    if (hl < IPV4_MIN_HEADER_LEN) return this.fail(ERR_HEADER_LEN, IPV4_MIN_HEADER_LEN, hl);
    if (hl > len) return this.fail(ERR_SHORT, hl, len);
    const total = u16(buf, off + OFF_TOTAL_LEN);
    if (total !== 0 && total < hl) return this.fail(ERR_IP_LENGTH, hl, total);
    this.headerLen = hl;
    this.bound(len, total);
    const ff = u16(buf, off + OFF_FLAGS_FRAG);
    this.fragOffset = (ff & FRAG_OFFSET_MASK) * 8;
    this.moreFragments = (ff & FLAG_MF) !== 0;
    return OK;
  }

  get version(): number {
    return this.buf[this.off + OFF_VER_IHL] >> 4;
  }

  get tos(): number {
    return this.buf[this.off + OFF_TOS];
  }

  get dscp(): number {
    return this.buf[this.off + OFF_TOS] >> 2;
  }

  get ecn(): number {
    return this.buf[this.off + OFF_TOS] & 3;
  }

  /** The field as sent; see ipLength for the length to use. */
  get totalLength(): number {
    return u16(this.buf, this.off + OFF_TOTAL_LEN);
  }

  get id(): number {
    return u16(this.buf, this.off + OFF_ID);
  }

  /** The three flag bits: reserved, DF, MF. */
  get flags(): number {
    return this.buf[this.off + OFF_FLAGS_FRAG] >> 5;
  }

  get dontFragment(): boolean {
    return (u16(this.buf, this.off + OFF_FLAGS_FRAG) & FLAG_DF) !== 0;
  }

  get isFragment(): boolean {
    return this.fragOffset !== 0 || this.moreFragments;
  }

  get ttl(): number {
    return this.buf[this.off + OFF_TTL];
  }

  get protocol(): number {
    return this.buf[this.off + OFF_PROTOCOL];
  }

  get checksum(): number {
    return u16(this.buf, this.off + OFF_CHECKSUM);
  }

  get srcOff(): number {
    return this.off + OFF_SRC;
  }

  get dstOff(): number {
    return this.off + OFF_DST;
  }

  get optionsLen(): number {
    return this.headerLen - IPV4_MIN_HEADER_LEN;
  }
}

/** Dotted quad, for API responses and tests; allocates. */
export function formatIpv4(buf: Uint8Array, off: number): string {
  return `${buf[off]}.${buf[off + 1]}.${buf[off + 2]}.${buf[off + 3]}`;
}
