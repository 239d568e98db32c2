/**
 * Ethernet II (IEEE 802.3 with an EtherType) and IEEE 802.1Q / 802.1ad tags.
 *
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                    Destination address                        |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |   Destination (cont.)         |       Source address          |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                    Source address (cont.)                     |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |   EtherType or TPID           |  (tags, then the payload)
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * A VLAN tag sits where the EtherType would be; the TPID says "tag", and the
 * tag ends with the EtherType that follows it. QinQ stacks them (802.1ad
 * outer 0x88a8, or the old 0x9100, then 0x8100):
 *
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |  TPID 0x8100 / 0x88a8 / 0x9100| PCP |D|       VLAN ID         |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |  next EtherType or TPID       |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * Views follow the contract in view.ts.
 */
import { u16, View } from './view.js';
import { ERR_SHORT, ERR_VLAN_LIMIT, MAX_VLAN_TAGS, OK } from './status.js';
import { ETHER_KIND, ETHER_VLAN } from './tables.js';

export const OFF_DST = 0;
export const OFF_SRC = 6;
export const OFF_ETHERTYPE = 12;
export const ETHERNET_HEADER_LEN = OFF_ETHERTYPE + 2;

/** Offsets inside one tag, counted from its TCI (the TPID is the EtherType before it). */
export const OFF_TAG_TCI = 0;
export const OFF_TAG_ETHERTYPE = 2;
export const VLAN_TAG_LEN = OFF_TAG_ETHERTYPE + 2;

/** EtherType values below this are an 802.3 length field, not a type. */
export const ETHERTYPE_MIN = 0x0600;

export class Ethernet extends View {
  reset(buf: Buffer, off: number, len: number): number {
    this.buf = buf;
    this.off = off;
    return len < ETHERNET_HEADER_LEN ? this.fail(ERR_SHORT, ETHERNET_HEADER_LEN, len) : OK;
  }

  get dstOff(): number {
    return this.off + OFF_DST;
  }

  get srcOff(): number {
    return this.off + OFF_SRC;
  }

  /** The first EtherType: a TPID when the frame is tagged. */
  get etherType(): number {
    return u16(this.buf, this.off + OFF_ETHERTYPE);
  }
}

/**
 * The run of VLAN tags after a TPID. `off` is the first TCI; after OK,
 * `etherType` is the type after the last tag and `headerLen` the bytes the
 * tags took (4 each). At most MAX_VLAN_TAGS tags are walked.
 */
export class Vlan extends View {
  count = 0;
  etherType = 0;
  headerLen = 0;
  private firstTpid = 0;

  reset(buf: Buffer, off: number, len: number, etherType: number): number {
    this.buf = buf;
    this.off = off;
    this.firstTpid = etherType;
    let p = 0;
    let type = etherType;
    this.count = 0;
    while (ETHER_KIND[type] === ETHER_VLAN) {
      if (this.count === MAX_VLAN_TAGS) return this.fail(ERR_VLAN_LIMIT, MAX_VLAN_TAGS, MAX_VLAN_TAGS + 1);
      if (p + VLAN_TAG_LEN > len) return this.fail(ERR_SHORT, p + VLAN_TAG_LEN, len);
      type = u16(buf, off + p + OFF_TAG_ETHERTYPE);
      p += VLAN_TAG_LEN;
      this.count++;
    }
    this.etherType = type;
    this.headerLen = p;
    return OK;
  }

  /** The TPID that announced tag i (0x8100, 0x88a8 or 0x9100). */
  tpid(i: number): number {
    // The first TPID may lie outside the slice (a cooked header's protocol field), so it was kept.
    return i === 0 ? this.firstTpid : u16(this.buf, this.off + (i - 1) * VLAN_TAG_LEN + OFF_TAG_ETHERTYPE);
  }

  id(i: number): number {
    return u16(this.buf, this.off + i * VLAN_TAG_LEN + OFF_TAG_TCI) & 0x0fff;
  }

  pcp(i: number): number {
    return this.buf[this.off + i * VLAN_TAG_LEN + OFF_TAG_TCI] >> 5;
  }

  dei(i: number): number {
    return (this.buf[this.off + i * VLAN_TAG_LEN + OFF_TAG_TCI] >> 4) & 1;
  }
}

/** aa:bb:cc:dd:ee:ff, for API responses and tests; allocates. */
export function formatMac(buf: Buffer, off: number): string {
  let s = '';
  for (let i = 0; i < 6; i++) s += (i ? ':' : '') + buf[off + i].toString(16).padStart(2, '0');
  return s;
}
