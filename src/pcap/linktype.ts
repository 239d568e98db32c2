/**
 * Link types a capture file may carry (https://www.tcpdump.org/linktypes.html), and where the
 * network layer starts under each. Unknown link types are values for the caller to count,
 * not errors.
 *
 *  LINUX_SLL (v1), 16 bytes:            LINUX_SLL2, 20 bytes:
 *   0 packet type   2 ARPHRD type         0 protocol (EtherType)   2 reserved
 *   4 address length 6 address (8)        4 interface index        8 ARPHRD type
 *  14 protocol (EtherType)               10 packet type 11 address length 12 address (8)
 *
 *  NULL / LOOP, 4 bytes: the BSD address family, host byte order (NULL) or big-endian (LOOP).
 */
import { ETHERTYPE_IPV4, ETHERTYPE_IPV6 } from '../decode/tables.js';
import { LINKTYPE_ETHERNET } from './pcap.js';

export { ETHERTYPE_IPV4, ETHERTYPE_IPV6, LINKTYPE_ETHERNET };
export const LINKTYPE_NULL = 0;
export const LINKTYPE_RAW = 101;
export const LINKTYPE_LOOP = 108;
export const LINKTYPE_LINUX_SLL = 113;
export const LINKTYPE_IPV4 = 228;
export const LINKTYPE_IPV6 = 229;
export const LINKTYPE_LINUX_SLL2 = 276;


const SLL_HEADER_LEN = 16;
const SLL_PROTOCOL = 14;
const SLL2_HEADER_LEN = 20;
const SLL2_PROTOCOL = 0;
const NULL_HEADER_LEN = 4;

// Address families that mean IPv6 on the systems that write NULL/LOOP captures:
// Linux, NetBSD/OpenBSD, FreeBSD, macOS.
const AF_INET = 2;
const AF_INET6_LINUX = 10;
const AF_INET6_BSD = 24;
const AF_INET6_FREEBSD = 28;
const AF_INET6_DARWIN = 30;

/** What locateNetworkLayer() found. */
export const LINK_ETHERNET = 1;
/** The network layer starts at `offset`; its EtherType is `etherType` (0 when unknown). */
export const LINK_NETWORK = 2;
/** The record is shorter than its link-layer header. */
export const LINK_TRUNCATED = 3;
/** A link type this helper does not know. */
export const LINK_UNSUPPORTED = 4;

/** Reused result of locateNetworkLayer(): valid until the next call. */
export class LinkLayer {
  /** Offset from the record's first byte. */
  offset = 0;
  /** EtherType of the network layer, 0 when the link header names none we know. */
  etherType = 0;
}

/**
 * Says where the network layer of a record starts. Ethernet is left to the decoder
 * (LINK_ETHERNET, offset 0) because VLAN tags make its length vary. Allocates nothing.
 */
export function locateNetworkLayer(linkType: number, buf: Buffer, off: number, capLen: number, out: LinkLayer): number {
  out.offset = 0;
  out.etherType = 0;
  switch (linkType) {
    case LINKTYPE_ETHERNET:
      return LINK_ETHERNET;
    case LINKTYPE_LINUX_SLL:
      if (capLen < SLL_HEADER_LEN) return LINK_TRUNCATED;
      out.offset = SLL_HEADER_LEN;
      out.etherType = buf.readUInt16BE(off + SLL_PROTOCOL);
      return LINK_NETWORK;
    case LINKTYPE_LINUX_SLL2:
      if (capLen < SLL2_HEADER_LEN) return LINK_TRUNCATED;
      out.offset = SLL2_HEADER_LEN;
      out.etherType = buf.readUInt16BE(off + SLL2_PROTOCOL);
      return LINK_NETWORK;
    case LINKTYPE_RAW: {
      if (capLen < 1) return LINK_TRUNCATED;
      const version = buf[off]! >> 4;
      out.etherType = version === 4 ? ETHERTYPE_IPV4 : version === 6 ? ETHERTYPE_IPV6 : 0;
      return LINK_NETWORK;
    }
    case LINKTYPE_IPV4:
    case LINKTYPE_IPV6:
      if (capLen < 1) return LINK_TRUNCATED;
      out.etherType = linkType === LINKTYPE_IPV4 ? ETHERTYPE_IPV4 : ETHERTYPE_IPV6;
      return LINK_NETWORK;
    case LINKTYPE_NULL:
    case LINKTYPE_LOOP: {
      if (capLen < NULL_HEADER_LEN) return LINK_TRUNCATED;
      // NULL is in the byte order of the host that wrote it; families are small numbers, so a
      // value with high bits set read little-endian was written big-endian.
      const bigEndian = linkType === LINKTYPE_LOOP || buf.readUInt32LE(off) > 0xffff;
      const family = bigEndian ? buf.readUInt32BE(off) : buf.readUInt32LE(off);
      out.offset = NULL_HEADER_LEN;
      out.etherType = familyEtherType(family);
      return LINK_NETWORK;
    }
    default:
      return LINK_UNSUPPORTED;
  }
}

function familyEtherType(family: number): number {
  switch (family) {
    case AF_INET:
      return ETHERTYPE_IPV4;
    case AF_INET6_LINUX:
    case AF_INET6_BSD:
    case AF_INET6_FREEBSD:
    case AF_INET6_DARWIN:
      return ETHERTYPE_IPV6;
    default:
      return 0;
  }
}
