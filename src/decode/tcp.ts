/**
 * TCP (RFC 9293).
 *
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |          Source Port          |       Destination Port        |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                        Sequence Number                        |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                    Acknowledgment Number                      |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |  Data |Res|A|C|E|U|A|P|R|S|F|                               |
 *  | Offset|   |E|W|C|R|C|S|S|Y|I|            Window             |
 *  |       |   | |R|E|G|K|H|T|N|N|                               |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |           Checksum            |         Urgent Pointer        |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                    Options (Data Offset > 5)                  |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * reset() needs the fixed header, a data offset of at least 5 and the whole
 * data offset (options included) in the bytes available.
 */
import { ERR_HEADER_LEN, ERR_SHORT, OK } from './status.js';
import { u16, u32, View } from './view.js';

export const OFF_SRC_PORT = 0;
export const OFF_DST_PORT = 2;
export const OFF_SEQ = 4;
export const OFF_ACK = 8;
export const OFF_DATA_OFFSET = 12;
export const OFF_FLAGS = 12;
export const OFF_WINDOW = 14;
export const OFF_CHECKSUM = 16;
export const OFF_URGENT = 18;
export const TCP_MIN_HEADER_LEN = OFF_URGENT + 2;

export const TCP_FIN = 0x001;
export const TCP_SYN = 0x002;
export const TCP_RST = 0x004;
export const TCP_PSH = 0x008;
export const TCP_ACK = 0x010;
export const TCP_URG = 0x020;
export const TCP_ECE = 0x040;
export const TCP_CWR = 0x080;
/** AccECN (RFC 9768), formerly NS. */
export const TCP_AE = 0x100;
/** The 12 bits after the data offset: three reserved bits and the nine flags. */
const FLAGS_MASK = 0x0fff;

export class Tcp extends View {
  headerLen = 0;

  reset(buf: Buffer, off: number, len: number): number {
    this.buf = buf;
    this.off = off;
    if (len < TCP_MIN_HEADER_LEN) return this.fail(ERR_SHORT, TCP_MIN_HEADER_LEN, len);
    const hl = (buf[off + OFF_DATA_OFFSET] >> 4) * 4;
    if (hl < TCP_MIN_HEADER_LEN) return this.fail(ERR_HEADER_LEN, TCP_MIN_HEADER_LEN, hl);
    if (hl > len) return this.fail(ERR_SHORT, hl, len);
    this.headerLen = hl;
    return OK;
  }

  get srcPort(): number {
    return u16(this.buf, this.off + OFF_SRC_PORT);
  }

  get dstPort(): number {
    return u16(this.buf, this.off + OFF_DST_PORT);
  }

  get seq(): number {
    return u32(this.buf, this.off + OFF_SEQ);
  }

  get ack(): number {
    return u32(this.buf, this.off + OFF_ACK);
  }

  /** In 32-bit words, as on the wire; headerLen is the same in bytes. */
  get dataOffset(): number {
    return this.buf[this.off + OFF_DATA_OFFSET] >> 4;
  }

  /** TCP_* bits, plus the three reserved bits above TCP_AE (as tshark's tcp.flags). */
  get flags(): number {
    return u16(this.buf, this.off + OFF_FLAGS) & FLAGS_MASK;
  }

  get window(): number {
    return u16(this.buf, this.off + OFF_WINDOW);
  }

  get checksum(): number {
    return u16(this.buf, this.off + OFF_CHECKSUM);
  }

  get urgentPointer(): number {
    return u16(this.buf, this.off + OFF_URGENT);
  }

  get optionsLen(): number {
    return this.headerLen - TCP_MIN_HEADER_LEN;
  }
}
