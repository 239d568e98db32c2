/**
 * IPv6 (RFC 8200), the fixed header.
 *
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |Version| Traffic Class |           Flow Label                  |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |         Payload Length        |  Next Header  |   Hop Limit   |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                   Source Address (16 bytes)                   |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                 Destination Address (16 bytes)                |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * The extension headers that may follow are walked by IpExt (ipext.ts).
 */
import { ERR_SHORT, ERR_VERSION, OK } from './status.js';
import { IpView, u16, u32 } from './view.js';

export const OFF_VER_TC_FLOW = 0;
export const OFF_PAYLOAD_LEN = 4;
export const OFF_NEXT_HEADER = 6;
export const OFF_HOP_LIMIT = 7;
export const OFF_SRC = 8;
export const OFF_DST = 24;
export const IPV6_HEADER_LEN = OFF_DST + 16;
export const IPV6_ADDR_LEN = 16;

/**
 * The fixed header. Payload length 0 (a jumbogram, or a segmentation-offload
 * capture) means "to the end of the slice", see IpView.bound.
 */
export class Ipv6 extends IpView {
  reset(buf: Buffer, off: number, len: number): number {
    this.buf = buf;
    this.off = off;
    if (len < IPV6_HEADER_LEN) return this.fail(ERR_SHORT, IPV6_HEADER_LEN, len);
    const version = buf[off + OFF_VER_TC_FLOW] >> 4;
    if (version !== 6) return this.fail(ERR_VERSION, 6, version);
    this.headerLen = IPV6_HEADER_LEN;
    const plen = u16(buf, off + OFF_PAYLOAD_LEN);
    this.bound(len, plen === 0 ? 0 : IPV6_HEADER_LEN + plen);
    return OK;
  }

  get version(): number {
    return this.buf[this.off + OFF_VER_TC_FLOW] >> 4;
  }

  get trafficClass(): number {
    return (u16(this.buf, this.off + OFF_VER_TC_FLOW) >> 4) & 0xff;
  }

  get flowLabel(): number {
    return u32(this.buf, this.off + OFF_VER_TC_FLOW) & 0xfffff;
  }

  /** The field as sent; see ipLength for the length to use. */
  get payloadLength(): number {
    return u16(this.buf, this.off + OFF_PAYLOAD_LEN);
  }

  get nextHeader(): number {
    return this.buf[this.off + OFF_NEXT_HEADER];
  }

  get hopLimit(): number {
    return this.buf[this.off + OFF_HOP_LIMIT];
  }

  get srcOff(): number {
    return this.off + OFF_SRC;
  }

  get dstOff(): number {
    return this.off + OFF_DST;
  }
}

/** RFC 5952 text (longest zero run of two or more groups as ::, lowercase), as tshark prints it; allocates. */
export function formatIpv6(buf: Uint8Array, off: number): string {
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (buf[off + 2 * i] === 0 && buf[off + 2 * i + 1] === 0) {
      let j = i;
      while (j < 8 && buf[off + 2 * j] === 0 && buf[off + 2 * j + 1] === 0) j++;
      if (j - i > bestLen) {
        bestStart = i;
        bestLen = j - i;
      }
      i = j;
    } else {
      i++;
    }
  }
  // IPv4-mapped addresses keep the dotted tail (RFC 5952 section 5).
  if (bestStart === 0 && bestLen === 5 && buf[off + 10] === 0xff && buf[off + 11] === 0xff) {
    return `::ffff:${buf[off + 12]}.${buf[off + 13]}.${buf[off + 14]}.${buf[off + 15]}`;
  }
  let s = '';
  for (let i = 0; i < 8; i++) {
    if (i === bestStart) {
      s += '::';
      i += bestLen - 1;
      continue;
    }
    if (s !== '' && !s.endsWith(':')) s += ':';
    s += ((buf[off + 2 * i] << 8) | buf[off + 2 * i + 1]).toString(16);
  }
  return s;
}
