/**
 * The small integers a decode reports instead of throwing, and the name tables
 * that turn them into metric labels. Index = value; the tables are the only
 * place a code becomes a string, and that happens at scrape time, never per
 * packet.
 *
 * A failed decode says five things (after etherparse's length errors):
 *   status    what went wrong (ERR_*)
 *   layer     where (LAYER_*); every layer before it parsed and stays valid
 *   required  what the layer needed: a byte count for ERR_SHORT, else the value
 *             the wrong field should have had (the smallest, for a length;
 *             the limit, for VLAN_LIMIT/EXT_LIMIT)
 *   available what it found: bytes left, or the field's actual value (for the
 *             limits: one more than allowed)
 *   limit     for ERR_SHORT, who set the bound on available (LIMIT_*): the end of the slice
 *             the caller handed in, or the IP header's own length field.
 *             SLICE + an intact IP header is how a truncated capture looks;
 *             IP_LENGTH is a header that contradicts itself.
 */

export const OK = 0;
/** The header does not fit in the bytes available. */
export const ERR_SHORT = 1;
/** The IP version nibble is not the one the EtherType announced. */
export const ERR_VERSION = 2;
/** A header length field (IPv4 IHL, TCP data offset) is below the fixed header. */
export const ERR_HEADER_LEN = 3;
/** IPv4 total length is smaller than the IPv4 header itself. */
export const ERR_IP_LENGTH = 4;
/** More VLAN tags than MAX_VLAN_TAGS. */
export const ERR_VLAN_LIMIT = 5;
/** More extension headers than MAX_EXT_HEADERS. */
export const ERR_EXT_LIMIT = 6;
export const STATUS_NAMES: readonly string[] = Object.freeze([
  'ok',
  'short',
  'version',
  'header_length',
  'ip_length',
  'vlan_limit',
  'ext_limit',
]);

export const LAYER_NONE = 0;
export const LAYER_ETHERNET = 1;
export const LAYER_VLAN = 2;
export const LAYER_ARP = 3;
export const LAYER_IPV4 = 4;
export const LAYER_IPV6 = 5;
/** IPv6 extension headers, or an AH after IPv4 (ipext.ts). */
export const LAYER_IP_EXT = 6;
export const LAYER_TCP = 7;
export const LAYER_UDP = 8;
export const LAYER_ICMP = 9;
export const LAYER_ICMPV6 = 10;
export const LAYER_NAMES: readonly string[] = Object.freeze([
  'none',
  'ethernet',
  'vlan',
  'arp',
  'ipv4',
  'ipv6',
  'ip_ext',
  'tcp',
  'udp',
  'icmp',
  'icmpv6',
]);

export const LIMIT_NONE = 0;
export const LIMIT_SLICE = 1;
export const LIMIT_IP_LENGTH = 2;
export const LIMIT_NAMES: readonly string[] = Object.freeze(['none', 'slice', 'ip_length']);

/**
 * Frame classes for per-protocol counters. A frame counts under a protocol
 * only if that protocol's header parsed; a header that failed counts as
 * 'other' (and as a decode error naming its layer). L4 'none' means there is
 * no transport header to look for: not IP, a non-first fragment, IPv6 "no
 * next header", or an L3 that did not parse.
 */
export const L3_IPV4 = 0;
export const L3_IPV6 = 1;
export const L3_ARP = 2;
export const L3_OTHER = 3;
export const L3_NAMES: readonly string[] = Object.freeze(['ipv4', 'ipv6', 'arp', 'other']);

export const L4_TCP = 0;
export const L4_UDP = 1;
export const L4_ICMP = 2;
export const L4_ICMPV6 = 3;
export const L4_OTHER = 4;
export const L4_NONE = 5;
export const L4_NAMES: readonly string[] = Object.freeze(['tcp', 'udp', 'icmp', 'icmpv6', 'other', 'none']);

/** Loop bounds: a frame needing more is reported, never walked further. */
export const MAX_VLAN_TAGS = 3;
export const MAX_EXT_HEADERS = 8;
