/**
 * The parse tree of a filter: what compileFilter() returns as `tree`, what the code generator
 * compiles and what the index planner (issue 13) reads. It is normalized: libpcap's
 * abbreviations are expanded and every qualifier is explicit, so a reader never has to know
 * the grammar's inheritance rules:
 *
 *   host 10.0.0.1 or 10.0.0.2      or(host 10.0.0.1, host 10.0.0.2)
 *   tcp port 80 or 443             or(port tcp 80, port tcp 443)
 *   not src host a and b           and(not(host src a), host src b)
 *   tcp                            proto {layer: null, protocol: 6}   (libpcap compiles both the same)
 *
 * Every node carries `pos`, the 0-based offset in the text of the word it came from (for
 * messages). Primitives that look at headers carry `vlan`: how many `vlan` primitives come
 * before them in the text. libpcap's `vlan` moves the offsets of everything after it, so
 * `vlan and host 10.0.0.1` looks for the address 4 bytes later; a planner that cannot
 * reproduce that should treat any primitive with vlan > 0 as "needs a scan". (The link
 * header itself does not move: `ether host`, ether broadcast/multicast and `ether[n]` read
 * the first bytes of the frame whatever their vlan count.)
 *
 * Addresses are byte arrays in network order (4 bytes for IPv4, 16 for IPv6, 6 for
 * Ethernet), with a mask of the same length: the mask is what is compared, and a 'host' whose
 * mask is not all ones is a network (`host 10.1` is 10.1.0.0/16 in libpcap).
 */

/** Which address a primitive compares: src, dst, either, or both. */
export type Direction = 'src' | 'dst' | 'src or dst' | 'src and dst';

/** The transport a port primitive looks at; null = TCP, UDP and SCTP. */
export type Transport = 'tcp' | 'udp' | 'sctp' | null;

/** The header a packet-data access is relative to (ether = the start of the frame). */
export type Layer = 'ether' | 'ip' | 'ip6' | 'arp' | 'rarp' | 'tcp' | 'udp' | 'sctp' | 'icmp' | 'icmp6' | 'igmp' | 'igrp' | 'pim' | 'vrrp' | 'carp';

export type FilterNode =
  | AllNode
  | AndNode
  | OrNode
  | NotNode
  | HostNode
  | EtherHostNode
  | PortNode
  | ProtoNode
  | VlanNode
  | LengthNode
  | BroadcastNode
  | MulticastNode
  | CompareNode;

/** The empty expression: every packet matches. */
export interface AllNode {
  readonly kind: 'all';
  readonly pos: number;
}

/** Both sides match. libpcap evaluates left before right and stops at the first false. */
export interface AndNode {
  readonly kind: 'and';
  readonly pos: number;
  readonly left: FilterNode;
  readonly right: FilterNode;
}

/** Either side matches; left first. */
export interface OrNode {
  readonly kind: 'or';
  readonly pos: number;
  readonly left: FilterNode;
  readonly right: FilterNode;
}

export interface NotNode {
  readonly kind: 'not';
  readonly pos: number;
  readonly expr: FilterNode;
}

/**
 * An IPv4 or IPv6 address or network: `host`, `net`, and bare addresses after a qualifier.
 * family 4: `proto` 'ip', 'arp', 'rarp', or null for all three (libpcap's default: an IPv4
 * host also matches ARP and RARP sender/target addresses). family 6: `proto` is 'ip6'.
 */
export interface HostNode {
  readonly kind: 'host';
  readonly pos: number;
  readonly vlan: number;
  /** The keyword it was written with; only messages differ. */
  readonly keyword: 'host' | 'net';
  readonly family: 4 | 6;
  readonly proto: 'ip' | 'arp' | 'rarp' | 'ip6' | null;
  readonly dir: Direction;
  readonly addr: readonly number[];
  readonly mask: readonly number[];
}

/** `ether host|src|dst MAC` (also `ether src or dst`, `ether src and dst`). */
export interface EtherHostNode {
  readonly kind: 'ether-host';
  readonly pos: number;
  readonly vlan: number;
  readonly dir: Direction;
  readonly addr: readonly number[];
}

/**
 * `port` and `portrange` on IPv4 (unfragmented or first fragment) and IPv6 (the header right
 * after the fixed one: no extension headers, no fragments looked through). `from === to` for
 * a single port. `transport` is what libpcap resolved: a service name known only for TCP
 * makes a TCP-only primitive even without a `tcp` qualifier.
 */
export interface PortNode {
  readonly kind: 'port';
  readonly pos: number;
  readonly vlan: number;
  readonly keyword: 'port' | 'portrange';
  readonly transport: Transport;
  readonly dir: Direction;
  readonly from: number;
  readonly to: number;
}

/**
 * A protocol number at one layer:
 *   layer 'ether'  the EtherType (values <= 1500 are 802.2 LLC SAPs, as in libpcap);
 *                  `ip`, `ip6`, `arp`, `rarp` are this with 0x0800, 0x86dd, 0x0806, 0x8035
 *   layer 'ip'     IPv4's protocol field; `icmp`, `igmp`, `igrp`, `vrrp`, `carp` are this
 *   layer 'ip6'    IPv6's next header, or the one after a fragment header right behind the
 *                  fixed header (no other extension header is looked through); `icmp6`
 *   layer null     either of the two above; `tcp`, `udp`, `sctp`, `pim`, `ah`, `esp`
 */
export interface ProtoNode {
  readonly kind: 'proto';
  readonly pos: number;
  readonly vlan: number;
  readonly layer: 'ether' | 'ip' | 'ip6' | null;
  readonly protocol: number;
}

/** `vlan [id]`: an 802.1Q/802.1ad/0x9100 tag here (and an id, if given); moves later offsets by 4. */
export interface VlanNode {
  readonly kind: 'vlan';
  readonly pos: number;
  /** Tags already passed by earlier `vlan` primitives: this one looks at tag number vlan + 1. */
  readonly vlan: number;
  readonly id: number | null;
}

/** `less N` (op '<=') and `greater N` (op '>='): the frame's length on the wire. */
export interface LengthNode {
  readonly kind: 'length';
  readonly pos: number;
  readonly op: '<=' | '>=';
  readonly value: number;
}

/**
 * `ether broadcast` (destination ff:ff:ff:ff:ff:ff) or `ip broadcast`, which, as tcpdump -r
 * compiles it (netmask 0), means IPv4 destination 0.0.0.0 or 255.255.255.255.
 */
export interface BroadcastNode {
  readonly kind: 'broadcast';
  readonly pos: number;
  readonly vlan: number;
  readonly layer: 'ether' | 'ip';
}

/** `ether multicast` (group bit of the destination MAC), `ip multicast` (dst >= 224.0.0.0), `ip6 multicast` (ff00::/8). */
export interface MulticastNode {
  readonly kind: 'multicast';
  readonly pos: number;
  readonly vlan: number;
  readonly layer: 'ether' | 'ip' | 'ip6';
}

/** A relation on packet data: `ip[9] = 6`, `tcp[tcpflags] & tcp-syn != 0`, `len > 100`. */
export interface CompareNode {
  readonly kind: 'compare';
  readonly pos: number;
  readonly op: '=' | '!=' | '<' | '<=' | '>' | '>=';
  readonly left: ArithNode;
  readonly right: ArithNode;
}

export type ArithNode = NumberNode | WireLengthNode | LoadNode | BinaryNode | NegateNode;

export interface NumberNode {
  readonly kind: 'number';
  readonly pos: number;
  readonly value: number;
}

/** `len`: the frame's length on the wire. */
export interface WireLengthNode {
  readonly kind: 'wirelen';
  readonly pos: number;
}

/**
 * `layer[offset:size]`: `size` bytes (1, 2 or 4, big-endian) at `offset` from the start of
 * the layer's header. The load also requires the layer to be present, as libpcap does:
 * tcp/udp/icmp/... mean IPv4, unfragmented or first fragment (never IPv6); icmp6 means IPv6
 * with next header 58 and counts from the end of the fixed 40-byte header.
 */
export interface LoadNode {
  readonly kind: 'load';
  readonly pos: number;
  readonly vlan: number;
  readonly layer: Layer;
  readonly offset: ArithNode;
  readonly size: 1 | 2 | 4;
}

/** 32-bit unsigned arithmetic; division or modulo by a zero that is not a literal makes the packet not match. */
export interface BinaryNode {
  readonly kind: 'binary';
  readonly pos: number;
  readonly op: '+' | '-' | '*' | '/' | '%' | '&' | '|' | '^' | '<<' | '>>';
  readonly left: ArithNode;
  readonly right: ArithNode;
}

export interface NegateNode {
  readonly kind: 'negate';
  readonly pos: number;
  readonly expr: ArithNode;
}
