/**
 * IP extension headers: the IPv6 chain (RFC 8200 section 4) and the
 * authentication header, which IPv4 carries too (RFC 4302).
 *
 * Generic form (hop-by-hop 0, routing 43, destination options 60, and as
 * RFC 7045 asks, mobility 135, HIP 139, shim6 140):
 *
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |  Next Header  |  Hdr Ext Len  |  options / routing data ...   |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
 *  |           ... (Hdr Ext Len + 1) * 8 bytes in all              |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * Fragment (44), always 8 bytes:
 *
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |  Next Header  |   Reserved    |      Fragment Offset    |Res|M|
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                         Identification                        |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * Authentication header (51):
 *
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |  Next Header  |  Payload Len  |          RESERVED             |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                 Security Parameters Index (SPI)               |
 *  |                    Sequence Number Field                      |
 *  |                ICV: (Payload Len + 2) * 4 bytes in all        |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * Options inside a header are not parsed: a header is skipped by its own
 * length, which is all a node that does not process them needs (RFC 8200 4.2).
 * ESP (50) ends the walk: what follows is encrypted.
 */
import { ERR_EXT_LIMIT, ERR_SHORT, MAX_EXT_HEADERS, OK } from './status.js';
import { EXT_AH, EXT_FRAGMENT, EXT_NOT } from './tables.js';
import { u16, u32, View } from './view.js';

export const OFF_EXT_NEXT = 0;
export const OFF_EXT_LEN = 1;
export const OFF_FRAG_OFFSET = 2;
export const OFF_FRAG_ID = 4;
/** Every extension header is at least 8 bytes: the generic at Hdr Ext Len 0, AH at 0 + 2 words, fragment always. */
export const EXT_MIN_LEN = 8;

const FRAG_OFFSET_MASK = 0xfff8;
const FRAG_MORE = 1;

/**
 * The chain from the IP header's protocol / next header to the first protocol
 * that `kinds` (IPV6_EXT_KIND or IPV4_EXT_KIND) does not call an extension
 * header, at most MAX_EXT_HEADERS deep. `off`/`len` span the IP payload. A
 * fragment at a non-zero offset ends the walk too: the bytes after it are the
 * middle of someone else's packet, and `nextHeader` is then the fragment
 * header's.
 */
export class IpExt extends View {
  count = 0;
  /** The protocol after the last extension header (ESP, TCP, no-next-header, ...). */
  nextHeader = 0;
  /** Bytes of extension headers walked; the transport header starts at off + headerLen. */
  headerLen = 0;
  hasFragmentHeader = false;
  /** From the fragment header, if any: offset in bytes, M flag, identification. */
  fragOffset = 0;
  moreFragments = false;
  fragId = 0;
  private readonly types = new Uint8Array(MAX_EXT_HEADERS);
  private readonly offsets = new Uint16Array(MAX_EXT_HEADERS);

  reset(buf: Buffer, off: number, len: number, nextHeader: number, kinds: Uint8Array): number {
    this.buf = buf;
    this.off = off;
    this.count = 0;
    this.hasFragmentHeader = false;
    this.fragOffset = 0;
    this.moreFragments = false;
    this.fragId = 0;
    let nh = nextHeader;
    let q = 0;
    let kind = kinds[nh];
    while (kind !== EXT_NOT) {
      if (this.count === MAX_EXT_HEADERS) return this.stop(nh, q, ERR_EXT_LIMIT, MAX_EXT_HEADERS, MAX_EXT_HEADERS + 1);
      if (q + EXT_MIN_LEN > len) return this.stop(nh, q, ERR_SHORT, q + EXT_MIN_LEN, len);
      const o = off + q;
      const hlen =
        kind === EXT_FRAGMENT
          ? EXT_MIN_LEN
          : kind === EXT_AH
            ? (buf[o + OFF_EXT_LEN] + 2) * 4
            : (buf[o + OFF_EXT_LEN] + 1) * 8;
      if (q + hlen > len) return this.stop(nh, q, ERR_SHORT, q + hlen, len);
      this.types[this.count] = nh;
      this.offsets[this.count] = q;
      this.count++;
      nh = buf[o + OFF_EXT_NEXT];
      q += hlen;
      if (kind === EXT_FRAGMENT) {
        const fo = u16(buf, o + OFF_FRAG_OFFSET);
        this.hasFragmentHeader = true;
        this.fragOffset = fo & FRAG_OFFSET_MASK;
        this.moreFragments = (fo & FRAG_MORE) !== 0;
        this.fragId = u32(buf, o + OFF_FRAG_ID);
        if (this.fragOffset !== 0) break;
      }
      kind = kinds[nh];
    }
    this.nextHeader = nh;
    this.headerLen = q;
    return OK;
  }

  /** Keeps what was walked so far for a failed chain. */
  private stop(nh: number, q: number, status: number, required: number, available: number): number {
    this.nextHeader = nh;
    this.headerLen = q;
    return this.fail(status, required, available);
  }

  get isFragment(): boolean {
    return this.fragOffset !== 0 || this.moreFragments;
  }

  /** Type (next-header value) of extension header i, i < count. */
  type(i: number): number {
    return this.types[i];
  }

  /** Offset of extension header i in the buffer, i < count. */
  offset(i: number): number {
    return this.off + this.offsets[i];
  }
}

