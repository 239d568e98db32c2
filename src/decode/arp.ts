/**
 * ARP (RFC 826; RARP, RFC 903, shares the format).
 *
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |         Hardware type         |         Protocol type         |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |   HW addr len | Prot addr len |            Opcode             |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |  Sender hardware address (HW addr len bytes)                  |
 *  |  Sender protocol address (Prot addr len bytes)                |
 *  |  Target hardware address (HW addr len bytes)                  |
 *  |  Target protocol address (Prot addr len bytes)                |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * The address lengths are in the packet, so the full length is too: reset()
 * checks both the fixed part and the four addresses.
 */
import { u16, View } from './view.js';
import { ERR_SHORT, OK } from './status.js';

export const OFF_HTYPE = 0;
export const OFF_PTYPE = 2;
export const OFF_HLEN = 4;
export const OFF_PLEN = 5;
export const OFF_OPER = 6;
export const OFF_ADDRS = 8;
export const ARP_FIXED_LEN = OFF_ADDRS;

export const ARP_REQUEST = 1;
export const ARP_REPLY = 2;

export class Arp extends View {
  headerLen = 0;

  reset(buf: Buffer, off: number, len: number): number {
    this.buf = buf;
    this.off = off;
    this.headerLen = 0;
    if (len < ARP_FIXED_LEN) return this.fail(ERR_SHORT, ARP_FIXED_LEN, len);
    const total = ARP_FIXED_LEN + 2 * (buf[off + OFF_HLEN] + buf[off + OFF_PLEN]);
    if (len < total) return this.fail(ERR_SHORT, total, len);
    this.headerLen = total;
    return OK;
  }

  get hardwareType(): number {
    return u16(this.buf, this.off + OFF_HTYPE);
  }

  get protocolType(): number {
    return u16(this.buf, this.off + OFF_PTYPE);
  }

  get hardwareLen(): number {
    return this.buf[this.off + OFF_HLEN];
  }

  get protocolLen(): number {
    return this.buf[this.off + OFF_PLEN];
  }

  get opcode(): number {
    return u16(this.buf, this.off + OFF_OPER);
  }

  get senderHardwareOff(): number {
    return this.off + OFF_ADDRS;
  }

  get senderProtocolOff(): number {
    return this.off + OFF_ADDRS + this.hardwareLen;
  }

  get targetHardwareOff(): number {
    return this.off + OFF_ADDRS + this.hardwareLen + this.protocolLen;
  }

  get targetProtocolOff(): number {
    return this.off + OFF_ADDRS + 2 * this.hardwareLen + this.protocolLen;
  }
}
