/**
 * The Decoder: one reusable object that walks a frame layer by layer through
 * the views in this directory and leaves numeric offsets and a status behind.
 *
 *   decode(buf, off, len)              from Ethernet (802.1Q/802.1ad tags, ARP, IPv4, IPv6, extension
 *                                      headers and AH, TCP, UDP, ICMP, ICMPv6)
 *   decodeL3(buf, off, len, etherType) the same from the network layer (raw IP, Linux cooked captures)
 *
 * Zero-allocation contract: a decode allocates nothing, throws nothing, reads
 * nothing at or past off + len and carries nothing over from the previous
 * frame. Fields are plain numbers reset at the start of every decode; getters
 * read the Buffer on demand and keep a reference to it until the next decode.
 *
 * Lax: a layer that does not parse stops the walk, sets status/errorLayer/...
 * (see status.ts) and leaves every field of the layers before it valid. A
 * field or getter of a layer that did not parse (or is not in the frame) is
 * meaningless, except where its comment promises a neutral value. Use l3 and
 * l4 to know what parsed.
 *
 * Lengths: `ipLength` is what the IP header claims. When the slice is shorter
 * (a capture truncated by AWS PacketLength or a snaplen), layers are decoded
 * as far as the bytes go and `claimedFrameLength` says how long the frame
 * really was; bytes beyond the IP length (Ethernet padding of short frames)
 * are ignored and never look like truncation.
 */
import { Arp } from './arp.js';
import { Ethernet, ETHERNET_HEADER_LEN, Vlan } from './ethernet.js';
import { Icmp, ICMP_HEADER_LEN, ICMPV6_HEADER_LEN } from './icmp.js';
import { IPV4_ADDR_LEN, Ipv4 } from './ipv4.js';
import { IpExt } from './ipext.js';
import { IPV6_ADDR_LEN, Ipv6 } from './ipv6.js';
import {
  ERR_SHORT,
  L3_ARP,
  L3_IPV4,
  L3_IPV6,
  L3_OTHER,
  L4_ICMP,
  L4_ICMPV6,
  L4_NONE,
  L4_OTHER,
  L4_TCP,
  L4_UDP,
  LAYER_ARP,
  LAYER_ETHERNET,
  LAYER_ICMP,
  LAYER_ICMPV6,
  LAYER_IPV4,
  LAYER_IPV6,
  LAYER_IP_EXT,
  LAYER_NONE,
  LAYER_TCP,
  LAYER_UDP,
  LAYER_VLAN,
  LIMIT_NONE,
  LIMIT_SLICE,
  OK,
} from './status.js';
import { ETHER_ARP, ETHER_IPV4, ETHER_IPV6, ETHER_KIND, IPV4_EXT_KIND, IPV6_EXT_KIND, PROTO_L4 } from './tables.js';
import { Tcp } from './tcp.js';
import { Udp, UDP_HEADER_LEN } from './udp.js';
import { EMPTY } from './view.js';

export { L3_NAMES, L4_NAMES, LAYER_NAMES, LIMIT_NAMES, STATUS_NAMES } from './status.js';

export class Decoder {
  /** Per-layer views, for fields the flat API below does not carry. Valid when their layer parsed. */
  readonly ethernet = new Ethernet();
  readonly vlan = new Vlan();
  readonly arp = new Arp();
  readonly ipv4 = new Ipv4();
  readonly ipv6 = new Ipv6();
  readonly ipExt = new IpExt();
  readonly tcp = new Tcp();
  readonly udp = new Udp();
  readonly icmp = new Icmp(ICMP_HEADER_LEN);
  readonly icmpv6 = new Icmp(ICMPV6_HEADER_LEN);

  /** What the last decode was given. */
  buf: Buffer = EMPTY;
  frameOff = 0;
  frameLen = 0;

  /** OK, or the ERR_* that stopped the walk; errorLayer/Required/Available/Limit say where and why. */
  status = OK;
  errorLayer = LAYER_NONE;
  errorRequired = 0;
  errorAvailable = 0;
  errorLimit = LIMIT_NONE;

  /** Bytes before the network header: Ethernet + tags (0 from decodeL3 without tags). */
  l2Len = 0;
  /** The EtherType after the last VLAN tag. */
  etherType = 0;
  vlanCount = 0;

  /** L3_* / L4_* class (see status.ts for what counts). */
  l3 = L3_OTHER;
  l4 = L4_NONE;
  l3Off = 0;
  /** First byte after the IP header and any extension headers; l4Len bytes of it are decodable. */
  l4Off = 0;
  l4Len = 0;
  /**
   * The protocol after the IP header and its extension headers (IPv6 chain,
   * AH): TCP, UDP, ESP, ... For a non-first fragment, what the fragment says.
   */
  ipProto = 0;
  /** 4 or 6; 0 when not IP. */
  ipVersion = 0;
  srcAddrOff = 0;
  dstAddrOff = 0;
  /** 4 or 16; 0 when not IP. */
  addrLen = 0;
  /** IPv4 total length, or 40 + IPv6 payload length; the slice's length when the field is 0; 0 if not IP. */
  ipLength = 0;
  /** (IP header offset - frame offset) + ipLength: the frame's length before any truncation; 0 if not IP. */
  claimedFrameLength = 0;
  /** IPv4: MF or a non-zero offset. IPv6: a fragment header with M or a non-zero offset (atomic fragments are not). */
  isFragment = false;
  /** In bytes. Non-zero means no transport header in this frame (l4 is 'none'). */
  fragOffset = 0;
  moreFragments = false;
  /** IPv4 identification, or the IPv6 fragment header's (0 when IPv6 has none). */
  fragId = 0;
  /**
   * The bytes after the deepest header that parsed, bounded by the IP length
   * and the slice: a UDP datagram's payload (by its length field when sane),
   * a TCP segment's data, the rest of an ICMP message, a fragment's data.
   * On the outer frame of a VXLAN capture this is the VXLAN header + inner frame.
   */
  payloadOff = 0;
  payloadLen = 0;

  decode(buf: Buffer, off: number, len: number): number {
    this.begin(buf, off, len);
    const eth = this.ethernet;
    const st = eth.reset(buf, off, len);
    if (st !== OK) return this.fail(LAYER_ETHERNET, st, eth.required, eth.available, LIMIT_SLICE);
    return this.network(off + ETHERNET_HEADER_LEN, len - ETHERNET_HEADER_LEN, eth.etherType);
  }

  /** Starts at the network layer; etherType may be a TPID (tags are then walked first). */
  decodeL3(buf: Buffer, off: number, len: number, etherType: number): number {
    this.begin(buf, off, len);
    return this.network(off, len, etherType);
  }

  /** Forgets the last Buffer (here and in every view), so a decoder kept idle does not pin it. */
  release(): void {
    this.begin(EMPTY, 0, 0);
    for (const v of [this.ethernet, this.vlan, this.arp, this.ipv4, this.ipv6, this.ipExt, this.tcp, this.udp, this.icmp, this.icmpv6]) {
      v.buf = EMPTY;
    }
  }

  /** The frame is shorter than its IP header says (AWS PacketLength, a snaplen): claimedFrameLength is the real length. */
  get truncated(): boolean {
    return this.claimedFrameLength > this.frameLen;
  }

  vlanId(i: number): number {
    return this.vlan.id(i);
  }

  /** TCP or UDP; 0 for anything else. */
  get srcPort(): number {
    return this.l4 === L4_TCP ? this.tcp.srcPort : this.l4 === L4_UDP ? this.udp.srcPort : 0;
  }

  /** TCP or UDP; 0 for anything else. */
  get dstPort(): number {
    return this.l4 === L4_TCP ? this.tcp.dstPort : this.l4 === L4_UDP ? this.udp.dstPort : 0;
  }

  get tcpSeq(): number {
    return this.tcp.seq;
  }

  get tcpAck(): number {
    return this.tcp.ack;
  }

  get tcpFlags(): number {
    return this.tcp.flags;
  }

  get tcpDataOffset(): number {
    return this.tcp.dataOffset;
  }

  get tcpWindow(): number {
    return this.tcp.window;
  }

  get udpLength(): number {
    return this.udp.length;
  }

  /** ICMP or ICMPv6, whichever l4 says. */
  get icmpType(): number {
    return this.l4 === L4_ICMPV6 ? this.icmpv6.type : this.icmp.type;
  }

  get icmpCode(): number {
    return this.l4 === L4_ICMPV6 ? this.icmpv6.code : this.icmp.code;
  }

  /** IPv4 TTL or IPv6 hop limit. */
  get ttl(): number {
    return this.ipVersion === 4 ? this.ipv4.ttl : this.ipv6.hopLimit;
  }

  private begin(buf: Buffer, off: number, len: number): void {
    this.buf = buf;
    this.frameOff = off;
    this.frameLen = len;
    this.status = OK;
    this.errorLayer = LAYER_NONE;
    this.errorRequired = 0;
    this.errorAvailable = 0;
    this.errorLimit = LIMIT_NONE;
    this.l2Len = 0;
    this.etherType = 0;
    this.vlanCount = 0;
    this.l3 = L3_OTHER;
    this.l4 = L4_NONE;
    this.l3Off = off;
    this.l4Off = off;
    this.l4Len = 0;
    this.ipProto = 0;
    this.ipVersion = 0;
    this.srcAddrOff = 0;
    this.dstAddrOff = 0;
    this.addrLen = 0;
    this.ipLength = 0;
    this.claimedFrameLength = 0;
    this.isFragment = false;
    this.fragOffset = 0;
    this.moreFragments = false;
    this.fragId = 0;
    this.payloadOff = off;
    this.payloadLen = len;
  }

  private fail(layer: number, status: number, required: number, available: number, limit: number): number {
    this.status = status;
    this.errorLayer = layer;
    this.errorRequired = required;
    this.errorAvailable = available;
    this.errorLimit = status === ERR_SHORT ? limit : LIMIT_NONE;
    return status;
  }

  private network(p: number, len: number, etherType: number): number {
    const vlan = this.vlan;
    this.etherType = etherType;
    const st = vlan.reset(this.buf, p, len, etherType);
    this.vlanCount = vlan.count;
    if (st !== OK) return this.fail(LAYER_VLAN, st, vlan.required, vlan.available, LIMIT_SLICE);
    p += vlan.headerLen;
    len -= vlan.headerLen;
    this.etherType = vlan.etherType;
    this.l2Len = p - this.frameOff;
    this.l3Off = p;
    this.l4Off = p;
    this.payloadOff = p;
    this.payloadLen = len;
    switch (ETHER_KIND[vlan.etherType]) {
      case ETHER_IPV4:
        return this.fromIpv4(p, len);
      case ETHER_IPV6:
        return this.fromIpv6(p, len);
      case ETHER_ARP:
        return this.fromArp(p, len);
      default:
        return OK;
    }
  }

  private fromArp(p: number, len: number): number {
    const arp = this.arp;
    const st = arp.reset(this.buf, p, len);
    if (st !== OK) return this.fail(LAYER_ARP, st, arp.required, arp.available, LIMIT_SLICE);
    this.l3 = L3_ARP;
    this.payloadOff = p + arp.headerLen;
    this.payloadLen = len - arp.headerLen;
    return OK;
  }

  private fromIpv4(p: number, len: number): number {
    const ip = this.ipv4;
    const st = ip.reset(this.buf, p, len);
    if (st !== OK) return this.fail(LAYER_IPV4, st, ip.required, ip.available, LIMIT_SLICE);
    this.l3 = L3_IPV4;
    this.ipVersion = 4;
    this.srcAddrOff = ip.srcOff;
    this.dstAddrOff = ip.dstOff;
    this.addrLen = IPV4_ADDR_LEN;
    this.ipLength = ip.ipLength;
    this.claimedFrameLength = p - this.frameOff + ip.ipLength;
    this.isFragment = ip.isFragment;
    this.fragOffset = ip.fragOffset;
    this.moreFragments = ip.moreFragments;
    this.fragId = ip.id;
    if (this.fragOffset !== 0) {
      // An AH would be inside the fragmented payload, at offset 0.
      this.ipProto = ip.protocol;
      return this.transport(ip.payloadOff, ip.payloadLen, ip.limit);
    }
    return this.extensions(ip.payloadOff, ip.payloadLen, ip.protocol, IPV4_EXT_KIND, ip.limit);
  }

  private fromIpv6(p: number, len: number): number {
    const ip = this.ipv6;
    const st = ip.reset(this.buf, p, len);
    if (st !== OK) return this.fail(LAYER_IPV6, st, ip.required, ip.available, LIMIT_SLICE);
    this.l3 = L3_IPV6;
    this.ipVersion = 6;
    this.srcAddrOff = ip.srcOff;
    this.dstAddrOff = ip.dstOff;
    this.addrLen = IPV6_ADDR_LEN;
    this.ipLength = ip.ipLength;
    this.claimedFrameLength = p - this.frameOff + ip.ipLength;
    return this.extensions(ip.payloadOff, ip.payloadLen, ip.nextHeader, IPV6_EXT_KIND, ip.limit);
  }

  private extensions(q: number, len: number, first: number, kinds: Uint8Array, limit: number): number {
    const ext = this.ipExt;
    const st = ext.reset(this.buf, q, len, first, kinds);
    this.ipProto = ext.nextHeader;
    if (ext.hasFragmentHeader) {
      this.isFragment = ext.isFragment;
      this.fragOffset = ext.fragOffset;
      this.moreFragments = ext.moreFragments;
      this.fragId = ext.fragId;
    }
    q += ext.headerLen;
    len -= ext.headerLen;
    if (st !== OK) {
      this.l4Off = q;
      this.l4Len = len;
      this.payloadOff = q;
      this.payloadLen = len;
      this.l4 = L4_OTHER;
      return this.fail(LAYER_IP_EXT, st, ext.required, ext.available, limit);
    }
    return this.transport(q, len, limit);
  }

  /** `limit` is who bounded `len` (the slice or the IP length), for a transport header that does not fit. */
  private transport(q: number, len: number, limit: number): number {
    this.l4Off = q;
    this.l4Len = len;
    this.payloadOff = q;
    this.payloadLen = len;
    // A non-first fragment starts in the middle of the transport payload.
    if (this.fragOffset !== 0) return OK;
    const buf = this.buf;
    switch (PROTO_L4[this.ipProto]) {
      case L4_TCP: {
        const tcp = this.tcp;
        const st = tcp.reset(buf, q, len);
        if (st !== OK) return this.failL4(LAYER_TCP, st, tcp.required, tcp.available, limit);
        this.l4 = L4_TCP;
        this.payloadOff = q + tcp.headerLen;
        this.payloadLen = len - tcp.headerLen;
        return OK;
      }
      case L4_UDP: {
        const udp = this.udp;
        const st = udp.reset(buf, q, len);
        if (st !== OK) return this.failL4(LAYER_UDP, st, udp.required, udp.available, limit);
        this.l4 = L4_UDP;
        this.payloadOff = q + UDP_HEADER_LEN;
        this.payloadLen = udp.payloadLen;
        return OK;
      }
      case L4_ICMP:
        return this.fromIcmp(this.icmp, LAYER_ICMP, L4_ICMP, q, len, limit);
      case L4_ICMPV6:
        return this.fromIcmp(this.icmpv6, LAYER_ICMPV6, L4_ICMPV6, q, len, limit);
      case L4_NONE:
        return OK;
      default:
        this.l4 = L4_OTHER;
        return OK;
    }
  }

  private fromIcmp(icmp: Icmp, layer: number, cls: number, q: number, len: number, limit: number): number {
    const st = icmp.reset(this.buf, q, len);
    if (st !== OK) return this.failL4(layer, st, icmp.required, icmp.available, limit);
    this.l4 = cls;
    this.payloadOff = q + icmp.headerLen;
    this.payloadLen = len - icmp.headerLen;
    return OK;
  }

  private failL4(layer: number, status: number, required: number, available: number, limit: number): number {
    this.l4 = L4_OTHER;
    return this.fail(layer, status, required, available, limit);
  }
}
