/**
 * What every layer view in src/decode/ shares, and big-endian reads by hand.
 *
 * The contract of a view: reset(buf, off, len, ...) checks every length its
 * getters rely on and returns a status (status.ts); getters then read the
 * Buffer without checking again and mean something only after OK. A failed
 * reset leaves `required` and `available` saying why (see status.ts). Nothing
 * is allocated, nothing is thrown, nothing at or past off + len is read.
 * A view keeps a reference to the last Buffer it was reset on until the next
 * reset.
 */

import { LIMIT_IP_LENGTH, LIMIT_SLICE } from './status.js';

/** Views start on this so their shape never changes and a stale read is harmless. */
export const EMPTY: Buffer = Buffer.alloc(0);

export class View {
  buf: Buffer = EMPTY;
  off = 0;
  required = 0;
  available = 0;

  protected fail(status: number, required: number, available: number): number {
    this.required = required;
    this.available = available;
    return status;
  }
}

/** No bounds check: callers read only what reset() has checked. */
export function u16(buf: Buffer, o: number): number {
  return (buf[o] << 8) | buf[o + 1];
}

export function u32(buf: Buffer, o: number): number {
  return buf[o] * 0x1000000 + ((buf[o + 1] << 16) | (buf[o + 2] << 8) | buf[o + 3]);
}

/**
 * What IPv4 and IPv6 share: the length the header claims for the packet, and
 * the bytes after the header that are really there to decode.
 */
export class IpView extends View {
  headerLen = 0;
  /** The packet length the header claims, or the bytes available when the field is 0 (see bound()). */
  ipLength = 0;
  /** True when the length field was 0 and ipLength was taken from the slice. */
  lengthInferred = false;
  payloadOff = 0;
  /** Bytes after this header up to whichever comes first: the claimed end or the slice end. */
  payloadLen = 0;
  /** LIMIT_*: which of the two set payloadLen. */
  limit = 0;

  /**
   * A zero length field is how segmentation offload (GSO/TSO, Linux BIG TCP)
   * captures look and how a jumbogram looks before its option is read: the
   * packet runs to the end of the slice, as tcpdump assumes (and tshark, for IPv4).
   * The caller guarantees headerLen <= len and headerLen <= claimed (if non-zero).
   */
  protected bound(len: number, claimed: number): void {
    this.lengthInferred = claimed === 0;
    this.ipLength = claimed === 0 ? len : claimed;
    this.limit = claimed !== 0 && claimed <= len ? LIMIT_IP_LENGTH : LIMIT_SLICE;
    this.payloadOff = this.off + this.headerLen;
    this.payloadLen = (this.ipLength < len ? this.ipLength : len) - this.headerLen;
  }
}
