/**
 * Dispatch tables: one typed-array index per packet instead of a switch or a
 * Map lookup. Built once at module load; never written afterwards.
 */
import { L4_ICMP, L4_ICMPV6, L4_NONE, L4_OTHER, L4_TCP, L4_UDP } from './status.js';

export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_RARP = 0x8035;
export const ETHERTYPE_VLAN = 0x8100;
export const ETHERTYPE_QINQ = 0x88a8;
/** Pre-802.1ad QinQ outer tag still sent by older switches. */
export const ETHERTYPE_QINQ_OLD = 0x9100;
export const ETHERTYPE_IPV6 = 0x86dd;

export const ETHER_OTHER = 0;
export const ETHER_IPV4 = 1;
export const ETHER_IPV6 = 2;
export const ETHER_ARP = 3;
export const ETHER_VLAN = 4;

/** EtherType -> ETHER_*. RARP shares ARP's packet format. */
export const ETHER_KIND = new Uint8Array(65536);
ETHER_KIND[ETHERTYPE_IPV4] = ETHER_IPV4;
ETHER_KIND[ETHERTYPE_IPV6] = ETHER_IPV6;
ETHER_KIND[ETHERTYPE_ARP] = ETHER_ARP;
ETHER_KIND[ETHERTYPE_RARP] = ETHER_ARP;
ETHER_KIND[ETHERTYPE_VLAN] = ETHER_VLAN;
ETHER_KIND[ETHERTYPE_QINQ] = ETHER_VLAN;
ETHER_KIND[ETHERTYPE_QINQ_OLD] = ETHER_VLAN;

export const IPPROTO_HOPOPTS = 0;
export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_ROUTING = 43;
export const IPPROTO_FRAGMENT = 44;
export const IPPROTO_ESP = 50;
export const IPPROTO_AH = 51;
export const IPPROTO_ICMPV6 = 58;
export const IPPROTO_NONE = 59;
export const IPPROTO_DSTOPTS = 60;
export const IPPROTO_MOBILITY = 135;
export const IPPROTO_HIP = 139;
export const IPPROTO_SHIM6 = 140;

/** IP protocol / final IPv6 next header -> L4_* class (everything unlisted is 'other'). */
export const PROTO_L4 = new Uint8Array(256).fill(L4_OTHER);
PROTO_L4[IPPROTO_TCP] = L4_TCP;
PROTO_L4[IPPROTO_UDP] = L4_UDP;
PROTO_L4[IPPROTO_ICMP] = L4_ICMP;
PROTO_L4[IPPROTO_ICMPV6] = L4_ICMPV6;
PROTO_L4[IPPROTO_NONE] = L4_NONE;

export const EXT_NOT = 0;
/** Length byte counts 8-octet units after the first 8 (RFC 8200 4.3, 4.4, 4.6; RFC 7045). */
export const EXT_OPTS = 1;
/** Fixed 8 bytes (RFC 8200 4.5). */
export const EXT_FRAGMENT = 2;
/** Length byte counts 4-octet units minus 2 (RFC 4302 2.2). */
export const EXT_AH = 3;

/**
 * IPv6 next header -> EXT_* (ipext.ts). IPPROTO_ESP is deliberately absent: what
 * follows it is encrypted, so the walk stops there with ESP as the final protocol.
 */
export const IPV6_EXT_KIND = new Uint8Array(256);
IPV6_EXT_KIND[IPPROTO_HOPOPTS] = EXT_OPTS;
IPV6_EXT_KIND[IPPROTO_ROUTING] = EXT_OPTS;
IPV6_EXT_KIND[IPPROTO_DSTOPTS] = EXT_OPTS;
IPV6_EXT_KIND[IPPROTO_MOBILITY] = EXT_OPTS;
IPV6_EXT_KIND[IPPROTO_HIP] = EXT_OPTS;
IPV6_EXT_KIND[IPPROTO_SHIM6] = EXT_OPTS;
IPV6_EXT_KIND[IPPROTO_FRAGMENT] = EXT_FRAGMENT;
IPV6_EXT_KIND[IPPROTO_AH] = EXT_AH;

/** IPv4 protocol -> EXT_*: only AH sits between an IPv4 header and the transport. */
export const IPV4_EXT_KIND = new Uint8Array(256);
IPV4_EXT_KIND[IPPROTO_AH] = EXT_AH;
