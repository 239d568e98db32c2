/**
 * ICMP (RFC 792) and ICMPv6 (RFC 4443): one view, two minimum lengths.
 *
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |     Type      |     Code      |          Checksum             |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |   Rest of header (ICMP: always; ICMPv6: the message body)     |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |   Error messages: as much of the offending IP packet as fits  |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * Every ICMP message has the 8-byte header; ICMPv6 only promises the first 4.
 * The IP header quoted inside an error message is payload here: it is not
 * decoded, so it can never be mistaken for the packet's own.
 */
import { ERR_SHORT, OK } from './status.js';
import { u16, View } from './view.js';

export const OFF_TYPE = 0;
export const OFF_CODE = 1;
export const OFF_CHECKSUM = 2;
export const OFF_REST = 4;
export const ICMP_HEADER_LEN = OFF_REST + 4;
export const ICMPV6_HEADER_LEN = OFF_REST;

export class Icmp extends View {
  constructor(readonly headerLen: number) {
    super();
  }

  reset(buf: Buffer, off: number, len: number): number {
    this.buf = buf;
    this.off = off;
    return len < this.headerLen ? this.fail(ERR_SHORT, this.headerLen, len) : OK;
  }

  get type(): number {
    return this.buf[this.off + OFF_TYPE];
  }

  get code(): number {
    return this.buf[this.off + OFF_CODE];
  }

  get checksum(): number {
    return u16(this.buf, this.off + OFF_CHECKSUM);
  }
}
