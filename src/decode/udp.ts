/**
 * UDP (RFC 768).
 *
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |          Source Port          |       Destination Port        |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |            Length             |           Checksum            |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * reset() needs the 8 bytes. The length field is a value, not a check: a
 * length that disagrees with the IP payload (or 0, as in IPv6 jumbograms) is
 * reported as it is, and payloadLen falls back on the bytes available.
 */
import { ERR_SHORT, OK } from './status.js';
import { u16, View } from './view.js';

export const OFF_SRC_PORT = 0;
export const OFF_DST_PORT = 2;
export const OFF_LENGTH = 4;
export const OFF_CHECKSUM = 6;
export const UDP_HEADER_LEN = OFF_CHECKSUM + 2;

export class Udp extends View {
  /** Datagram payload: the length field's, if it is sane and fits; else what the slice holds. */
  payloadLen = 0;

  reset(buf: Buffer, off: number, len: number): number {
    this.buf = buf;
    this.off = off;
    if (len < UDP_HEADER_LEN) return this.fail(ERR_SHORT, UDP_HEADER_LEN, len);
    const ulen = u16(buf, off + OFF_LENGTH);
    this.payloadLen = (ulen >= UDP_HEADER_LEN && ulen <= len ? ulen : len) - UDP_HEADER_LEN;
    return OK;
  }

  get srcPort(): number {
    return u16(this.buf, this.off + OFF_SRC_PORT);
  }

  get dstPort(): number {
    return u16(this.buf, this.off + OFF_DST_PORT);
  }

  get length(): number {
    return u16(this.buf, this.off + OFF_LENGTH);
  }

  get checksum(): number {
    return u16(this.buf, this.off + OFF_CHECKSUM);
  }
}
