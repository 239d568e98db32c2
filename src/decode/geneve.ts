/**
 * GENEVE header, RFC 8926 section 3.4:
 *
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |Ver|  Opt Len  |O|C|    Rsvd.  |          Protocol Type        |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |        Virtual Network Identifier (VNI)       |    Reserved   |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                    Variable-Length Options                    |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * Each option (section 3.5), Opt Len and Length counting 4-byte words:
 *  |          Option Class         |C|    Type     |R|R|R| Length  |
 *  |                 Variable-Length Option Data                   |
 *
 * reset() checks the version (0 only), that the options fit in the datagram, and walks them
 * by their own lengths, never past the header's option length: at most 63 steps, nothing
 * carried from the last packet. What it learns is plain fields on the view; getters read
 * without checking and mean something only after OK. The AWS Gateway Load Balancer's options
 * (class 0x0108: 1 = VPC endpoint id, 2 = attachment id, both 64-bit; 3 = 32-bit flow cookie)
 * are read on the way; a critical option we do not read is counted, and the caller drops the
 * packet, as section 3.5.1 requires.
 */
import { ERR_SHORT, ERR_VERSION, OK } from './status.js';
import { u16, u32, View } from './view.js';

/**
 * GENEVE's own status beside status.ts's: an option runs past the header's option length
 * (required = the option's bytes, available = what the option area has left). Kept here
 * because status.ts lists what the frame decoder reports.
 */
export const ERR_OPTION_LENGTH = 7;

export const GENEVE_PORT = 6081;
export const GENEVE_HEADER_LEN = 8;
const OFF_VER_OPTLEN = 0;
const OFF_FLAGS = 1;
const OFF_PROTOCOL = 2;
const OFF_VNI = 4;
const FLAG_O = 0x80;
const FLAG_C = 0x40;
const OPTION_HEADER_LEN = 4;
/** The option type's high bit: a receiver that does not know the option must drop the packet. */
const OPTION_CRITICAL = 0x80;

/** Protocol types of the payload (EtherType values; 0x6558 is Transparent Ethernet Bridging). */
export const GENEVE_PROTO_ETHERNET = 0x6558;
export const GENEVE_PROTO_IPV4 = 0x0800;
export const GENEVE_PROTO_IPV6 = 0x86dd;

/** The AWS Gateway Load Balancer's option class and types. */
export const GWLB_CLASS = 0x0108;
export const GWLB_ENDPOINT_ID = 1;
export const GWLB_ATTACHMENT_ID = 2;
export const GWLB_FLOW_COOKIE = 3;

export class Geneve extends View {
  /** Header plus options: where the payload starts, from off. */
  headerLen = 0;
  /** Options walked (valid after OK). */
  options = 0;
  /** Options with the critical bit that we do not read; the packet must be dropped if any. */
  criticalUnknown = 0;
  /** Whether the GWLB options were there; their values are read by the getters below. */
  hasEndpoint = false;
  hasAttachment = false;
  hasFlowCookie = false;
  /**
   * GWLB values as 32-bit words: endpoint id hi, lo, attachment id hi, lo, flow cookie. A typed
   * array, because a number field holding 2^31 or more would box a new heap number per packet.
   */
  private readonly words = new Uint32Array(5);

  reset(buf: Buffer, off: number, len: number): number {
    this.buf = buf;
    this.off = off;
    this.options = 0;
    this.criticalUnknown = 0;
    this.hasEndpoint = false;
    this.hasAttachment = false;
    this.hasFlowCookie = false;
    if (len < GENEVE_HEADER_LEN) return this.fail(ERR_SHORT, GENEVE_HEADER_LEN, len);
    const first = buf[off + OFF_VER_OPTLEN]!;
    if (first >> 6 !== 0) return this.fail(ERR_VERSION, 0, first >> 6);
    const headerLen = GENEVE_HEADER_LEN + (first & 0x3f) * 4;
    if (headerLen > len) return this.fail(ERR_SHORT, headerLen, len);
    this.headerLen = headerLen;
    const end = off + headerLen;
    let pos = off + GENEVE_HEADER_LEN;
    while (pos < end) {
      if (end - pos < OPTION_HEADER_LEN) return this.fail(ERR_OPTION_LENGTH, OPTION_HEADER_LEN, end - pos);
      const dataLen = (buf[pos + 3]! & 0x1f) * 4;
      const next = pos + OPTION_HEADER_LEN + dataLen;
      if (next > end) return this.fail(ERR_OPTION_LENGTH, OPTION_HEADER_LEN + dataLen, end - pos);
      const type = buf[pos + 2]!;
      const data = pos + OPTION_HEADER_LEN;
      const understood = u16(buf, pos) === GWLB_CLASS && this.gwlbOption(type, data, dataLen);
      if (!understood && (type & OPTION_CRITICAL) !== 0) this.criticalUnknown++;
      this.options++;
      pos = next;
    }
    return OK;
  }

  /** Reads one option of the GWLB class; false when it is not one we know (type or length). */
  private gwlbOption(type: number, data: number, dataLen: number): boolean {
    const buf = this.buf;
    const w = this.words;
    if (type === GWLB_ENDPOINT_ID && dataLen === 8) {
      this.hasEndpoint = true;
      w[0] = u32(buf, data);
      w[1] = u32(buf, data + 4);
      return true;
    }
    if (type === GWLB_ATTACHMENT_ID && dataLen === 8) {
      this.hasAttachment = true;
      w[2] = u32(buf, data);
      w[3] = u32(buf, data + 4);
      return true;
    }
    if (type === GWLB_FLOW_COOKIE && dataLen === 4) {
      this.hasFlowCookie = true;
      w[4] = u32(buf, data);
      return true;
    }
    return false;
  }

  /** The GWLB VPC endpoint id's high and low 32 bits (valid when hasEndpoint). */
  get endpointHi(): number {
    return this.words[0]!;
  }

  get endpointLo(): number {
    return this.words[1]!;
  }

  /** The GWLB attachment id's halves (valid when hasAttachment). */
  get attachmentHi(): number {
    return this.words[2]!;
  }

  get attachmentLo(): number {
    return this.words[3]!;
  }

  /** The GWLB flow cookie (valid when hasFlowCookie). */
  get flowCookie(): number {
    return this.words[4]!;
  }

  /** Options length in bytes (Opt Len × 4). */
  get optionsLen(): number {
    return this.headerLen - GENEVE_HEADER_LEN;
  }

  /** O bit: a control (OAM) packet, not data. */
  get oam(): boolean {
    return (this.buf[this.off + OFF_FLAGS]! & FLAG_O) !== 0;
  }

  /** C bit: the sender says some option is critical. */
  get critical(): boolean {
    return (this.buf[this.off + OFF_FLAGS]! & FLAG_C) !== 0;
  }

  get protocol(): number {
    return u16(this.buf, this.off + OFF_PROTOCOL);
  }

  get vni(): number {
    const b = this.buf;
    const o = this.off + OFF_VNI;
    return (b[o]! << 16) | (b[o + 1]! << 8) | b[o + 2]!;
  }
}

/** The GWLB options of a GENEVE packet, for writing them (replay) or testing. */
export interface GwlbOptions {
  /** 16 hex digits each. */
  readonly endpointId: string;
  readonly attachmentId: string;
  readonly flowCookie: number;
}

/** GENEVE header + the three GWLB options, as a Gateway Load Balancer sends them. */
export const GWLB_GENEVE_HEADER_LEN = GENEVE_HEADER_LEN + 3 * OPTION_HEADER_LEN + 8 + 8 + 4;

/**
 * Writes a GENEVE header (version 0, no flags, `protocol`, `vni`) with the GWLB options when
 * given; returns the bytes written.
 */
export function writeGeneveHeader(dst: Uint8Array, off: number, protocol: number, vni: number, gwlb: GwlbOptions | null): number {
  const len = gwlb === null ? GENEVE_HEADER_LEN : GWLB_GENEVE_HEADER_LEN;
  dst.fill(0, off, off + len);
  dst[off + OFF_VER_OPTLEN] = (len - GENEVE_HEADER_LEN) / 4;
  dst[off + OFF_PROTOCOL] = protocol >> 8;
  dst[off + OFF_PROTOCOL + 1] = protocol & 0xff;
  dst[off + OFF_VNI] = (vni >>> 16) & 0xff;
  dst[off + OFF_VNI + 1] = (vni >>> 8) & 0xff;
  dst[off + OFF_VNI + 2] = vni & 0xff;
  if (gwlb === null) return len;
  let pos = off + GENEVE_HEADER_LEN;
  const option = (type: number, data: Uint8Array): void => {
    dst[pos] = GWLB_CLASS >> 8;
    dst[pos + 1] = GWLB_CLASS & 0xff;
    dst[pos + 2] = type;
    dst[pos + 3] = data.length / 4;
    dst.set(data, pos + OPTION_HEADER_LEN);
    pos += OPTION_HEADER_LEN + data.length;
  };
  option(GWLB_ENDPOINT_ID, Buffer.from(gwlb.endpointId.padStart(16, '0'), 'hex'));
  option(GWLB_ATTACHMENT_ID, Buffer.from(gwlb.attachmentId.padStart(16, '0'), 'hex'));
  const cookie = Buffer.alloc(4);
  cookie.writeUInt32BE(gwlb.flowCookie >>> 0);
  option(GWLB_FLOW_COOKIE, cookie);
  return len;
}
