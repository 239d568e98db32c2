/**
 * VXLAN (or GENEVE) as it appears in a packet capture (a file, or an interface through libpcap
 * or the AF_PACKET ring): a link header, the outer IPv4/IPv6 header, UDP to a VXLAN port (or
 * the GENEVE port), then the datagram the socket sources would have received. OuterParser
 * finds that datagram with the decoder and puts it in a Batch slot, outer source address and
 * all, marked GENEVE or not by its port, or counts why the packet is not one.
 *
 * Most packets are plain Ethernet, IPv4 without options or fragmentation, UDP, lengths that
 * agree with the capture: those are read at their fixed offsets (plainUdp4), which is what the
 * decoder finds for them (test/source/outer.test.ts compares the two on mutated headers), at a
 * fraction of its cost (the full decode was ~12 % of the afpacket appliance's CPU at 64 B).
 * Anything else takes the decoder.
 */
import { ADDR_BYTES, setSrcV4, type Batch } from './batch.js';
import { LINK_ETHERNET, LINK_NETWORK, LINK_UNSUPPORTED, LinkLayer, locateNetworkLayer } from '../pcap/linktype.js';
import { LINKTYPE_ETHERNET } from '../pcap/pcap.js';
import { Decoder } from '../decode/packet.js';
import { L4_UDP, OK } from '../decode/status.js';
import { u16 } from '../decode/view.js';

export const SKIP_REASONS = ['unsupported_link_type', 'malformed', 'not_udp', 'other_port', 'fragment'] as const;
export type SkipReason = (typeof SKIP_REASONS)[number];
const SKIP_LINK = 0;
const SKIP_MALFORMED = 1;
const SKIP_NOT_UDP = 2;
const SKIP_PORT = 3;
const SKIP_FRAGMENT = 4;
const UDP_HEADER_LEN = 8;
/** What a UDP destination port means here (PORT_KIND). */
const PORT_OTHER = 0;
const PORT_VXLAN = 1;
const PORT_GENEVE = 2;
/** Ethernet (14) + IPv4 without options (20): where a plain UDP header starts. */
const PLAIN_UDP4 = 34;

/**
 * Whether buf[off, off + capLen) is an Ethernet frame of IPv4 without options, neither a
 * fragment nor cut before its IP total length, carrying UDP (with room for its header): the
 * frame the decoder would read as Ethernet → IPv4 → UDP with no error, IP payload total - 20.
 */
function plainUdp4(buf: Buffer, off: number, capLen: number): boolean {
  if (capLen < PLAIN_UDP4 + UDP_HEADER_LEN || buf[off + 12] !== 0x08 || buf[off + 13] !== 0x00 || buf[off + 14] !== 0x45 || buf[off + 23] !== 17) return false;
  const total = u16(buf, off + 16);
  return total >= 20 + UDP_HEADER_LEN && total <= capLen - 14 && (u16(buf, off + 20) & 0x3fff) === 0;
}

/** The ports an interface or capture source takes: VXLAN's (one per --listen address) and GENEVE's (0 = none). */
export interface TunnelPorts {
  readonly vxlan: readonly number[];
  readonly geneve: number;
}

/** The kernel filter that keeps exactly those ports' datagrams: `udp dst port 4789 or udp dst port 6081`. */
export function tunnelPortsFilter(ports: TunnelPorts): string {
  const all = [...new Set([...ports.vxlan, ...(ports.geneve === 0 ? [] : [ports.geneve])])];
  return all.map((p) => `udp dst port ${p}`).join(' or ');
}

/** Skip counts by reason name, non-zero only; `count(i)` is SKIP_REASONS[i]'s (one parser's, or several summed). */
export function skipsByReason(count: (i: number) => number): Record<string, number> {
  const out: Record<string, number> = {};
  SKIP_REASONS.forEach((r, i) => {
    const n = count(i);
    if (n > 0) out[r] = n;
  });
  return out;
}

export class OuterParser {
  /** Packets that were not VXLAN or GENEVE datagrams to our ports, by SKIP_REASONS index. */
  readonly skipped = new Float64Array(SKIP_REASONS.length);
  /** Link types met that we cannot read, and how often (rare: a Map is fine). */
  readonly unsupportedLinkTypes = new Map<number, number>();
  private readonly decoder = new Decoder();
  private readonly link = new LinkLayer();
  /** UDP destination port → PORT_VXLAN, PORT_GENEVE or PORT_OTHER: one table read per packet. */
  private readonly portKind = new Uint8Array(65536);

  constructor(ports: TunnelPorts) {
    for (const p of ports.vxlan) this.portKind[p] = PORT_VXLAN;
    // A port given as both stays VXLAN: the VXLAN address was asked for first.
    if (ports.geneve !== 0 && this.portKind[ports.geneve] === PORT_OTHER) this.portKind[ports.geneve] = PORT_GENEVE;
  }

  /**
   * Looks at one captured packet (buf[off .. off + capLen), origLen on the wire) and, if it is
   * a datagram to a VXLAN port or the GENEVE port, fills slot batch.count with it and increments the count.
   * `buf` must be batch.slab: the slot points into it, nothing is copied.
   */
  add(batch: Batch, buf: Buffer, off: number, capLen: number, origLen: number, linkType: number, sec: number, nsec: number): boolean {
    if (linkType === LINKTYPE_ETHERNET && plainUdp4(buf, off, capLen)) {
      const udp = off + PLAIN_UDP4;
      const portKind = this.portKind[u16(buf, udp + 2)]!;
      if (portKind === PORT_OTHER) return this.skip(SKIP_PORT);
      // The UDP length when it fits the IP payload (udp.ts), else the IP payload.
      const ipPayload = u16(buf, off + 16) - 20;
      const udpLength = u16(buf, udp + 4);
      const payloadLen = (udpLength >= UDP_HEADER_LEN && udpLength <= ipPayload ? udpLength : ipPayload) - UDP_HEADER_LEN;
      const i = this.slot(batch, portKind, udp + UDP_HEADER_LEN, payloadLen, udpLength, origLen - capLen, sec, nsec);
      setSrcV4(batch, i, buf[off + 26]!, buf[off + 27]!, buf[off + 28]!, buf[off + 29]!);
      batch.srcPort[i] = u16(buf, udp);
      return true;
    }
    const d = this.decoder;
    const kind = locateNetworkLayer(linkType, buf, off, capLen, this.link);
    let status: number;
    if (kind === LINK_ETHERNET) status = d.decode(buf, off, capLen);
    else if (kind === LINK_NETWORK) status = d.decodeL3(buf, off + this.link.offset, capLen - this.link.offset, this.link.etherType);
    else if (kind === LINK_UNSUPPORTED) {
      this.unsupportedLinkTypes.set(linkType, (this.unsupportedLinkTypes.get(linkType) ?? 0) + 1);
      return this.skip(SKIP_LINK);
    } else return this.skip(SKIP_MALFORMED); // shorter than its link header
    if (d.isFragment) return this.skip(SKIP_FRAGMENT);
    if (d.l4 !== L4_UDP) return this.skip(status === OK || d.addrLen === 0 ? SKIP_NOT_UDP : SKIP_MALFORMED);
    const portKind = this.portKind[d.dstPort]!;
    if (portKind === PORT_OTHER) return this.skip(SKIP_PORT);
    const i = this.slot(batch, portKind, d.payloadOff, d.payloadLen, d.udpLength, origLen - capLen, sec, nsec);
    const s = d.srcAddrOff;
    if (d.addrLen === 4) setSrcV4(batch, i, buf[s]!, buf[s + 1]!, buf[s + 2]!, buf[s + 3]!);
    else for (let k = 0; k < ADDR_BYTES; k++) batch.srcAddr[i * ADDR_BYTES + k] = buf[s + k]!;
    batch.srcPort[i] = d.srcPort;
    return true;
  }

  /** Fills the batch's next slot with a datagram (`cut`: bytes the capture did not keep); its source is the caller's to set. */
  private slot(batch: Batch, portKind: number, payloadOff: number, payloadLen: number, udpLength: number, cut: number, sec: number, nsec: number): number {
    const i = batch.count++;
    batch.geneve[i] = portKind === PORT_GENEVE ? 1 : 0;
    batch.offsets[i] = payloadOff;
    batch.lengths[i] = payloadLen;
    // What the socket would have received: the UDP length says, or what the capture cut off.
    const claimed = udpLength - UDP_HEADER_LEN;
    batch.wireLengths[i] = Math.max(payloadLen, payloadLen + cut, claimed > 0 ? claimed : 0);
    batch.tsSec[i] = sec;
    batch.tsNsec[i] = nsec;
    return i;
  }

  /** The skip counters by reason name, non-zero only. */
  skippedByReason(): Record<string, number> {
    return skipsByReason((i) => this.skipped[i]!);
  }

  /** Drops the decoder's reference to the last buffer. */
  release(): void {
    this.decoder.release();
  }

  private skip(reason: number): false {
    this.skipped[reason]!++;
    return false;
  }
}
