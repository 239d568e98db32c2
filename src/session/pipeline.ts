/**
 * The hot path: one call per batch, one loop over its datagrams.
 *
 *   datagram ──▶ allowed source? ──┬─ VXLAN ─▶ VXLAN check ─────────────────────────────┬─▶ session ──▶ decode ──▶ writer.append
 *                                  └─ GENEVE ─▶ header + options ─┬─ Ethernet ──────────┤  (key: VNI [+ source],
 *                                                                 ├─ IP/UDP to a VXLAN ─┤   GENEVE VNI, or GWLB endpoint)
 *                                                                 │  port: VXLAN check ─┤
 *                                                                 └─ other IP (GWLB) ───┘
 *   decode ──▶ dedup ──▶ filter ──▶ flow table (--flows), writer.append and tap.packet (live streams); tap.flush() once per batch
 *   (--dedup: a copy of a packet seen within the window is counted by its session, not written;
 *    --filter: what does not match is counted as the session's filtered packets, not written)
 *        └─ source_denied / short / bad_vxlan / bad_geneve / geneve_oam / geneve_critical_option /
 *           unsupported_protocol / unknown_vni / session_limit: counted here
 *
 * The inner frame is decoded once, for the session's protocol counts and talkers and for
 * its true original length: AWS truncates mirrored frames (PacketLength, target MTU), but
 * the inner IP header still says how long the packet was, and orig_len says it too. A
 * frame the receiver could not hold whole (wireLengths > lengths) also keeps its real
 * length, and is counted apart (receiveTruncated): that cut is ours, not AWS's. With flows
 * on, the same decode feeds the session's flow table (session/flows.ts) for every packet the
 * session's filter keeps: flow records describe exactly what was captured.
 *
 * GENEVE (RFC 8926) from a Gateway Load Balancer endpoint carries the mirrored VXLAN datagram
 * as an IPv4 payload: it is decapsulated again and routed exactly like VXLAN received
 * directly, the mirrored ENI's address (the inner IP source) standing for the outer source.
 * GENEVE with Ethernet goes to a session of its VNI; other IP to one per GWLB endpoint (or per
 * VNI without one), written raw.
 *
 * No allocation, no events, no logging per datagram; counters are plain numbers.
 */
import {
  DROP_BAD_GENEVE,
  DROP_BAD_VXLAN,
  DROP_GENEVE_CRITICAL,
  DROP_GENEVE_OAM,
  DROP_SESSION_LIMIT,
  DROP_SHORT,
  DROP_SOURCE_DENIED,
  DROP_UNSUPPORTED_PROTOCOL,
  newDropCounters,
} from '../drops.js';
import { Decoder } from '../decode/packet.js';
import { Geneve, GENEVE_PROTO_ETHERNET } from '../decode/geneve.js';
import { L4_UDP, OK } from '../decode/status.js';
import { EMPTY } from '../decode/view.js';
import { ETHER_IPV4, ETHER_IPV6, ETHER_KIND } from '../decode/tables.js';
import { VXLAN_HEADER_LEN, VXLAN_MIN_DATAGRAM, VXLAN_PORT, vxlanHasVni, vxlanVni } from '../decode/vxlan.js';
import type { AllowList } from './allow.js';
import { KEY_GENEVE, KEY_GENEVE_IP } from './keys.js';
import type { Router } from './router.js';
import type { Session } from './session.js';
import { ADDR_BYTES, type Batch } from '../source/batch.js';

/**
 * Where the live streams take their copy (control/streams.ts): packet() per kept packet while
 * `active`, flush() once at the end of the batch. Both must copy what they keep and return:
 * the batch's slab is reused.
 */
export interface PacketTap {
  /** True while anyone listens; read once per batch. */
  readonly active: boolean;
  /** `capLen` bytes at buf[off] exactly as the session's file gets them, `origLen` on the wire. */
  packet(session: Session, buf: Buffer, off: number, capLen: number, origLen: number, sec: number, nsec: number): void;
  flush(): void;
}

/** The smallest Ethernet frame header. */
const ETHERNET_MIN = 14;

export class Pipeline {
  /** Datagrams seen, and those dropped before they belonged to a session, by reason. */
  datagrams = 0;
  readonly drops = newDropCounters();
  private readonly decoder = new Decoder();
  /** The live streams, set by the appliance; null offline. */
  tap: PacketTap | null = null;
  private readonly geneve = new Geneve();
  /** The IP packet a GENEVE datagram carries, up to its UDP header. */
  private readonly inner = new Decoder();
  /**
   * The inner IP source of VXLAN inside GENEVE, in the batch's 16-byte address form, written only
   * when the router keys by source: IPv4 into a ::ffff:0:0 prefix set once, IPv6 whole.
   */
  private readonly innerSrcV4 = Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0);
  private readonly innerSrcV6 = new Uint8Array(ADDR_BYTES);
  /** UDP destination port → 1 for the ports VXLAN inside GENEVE is recognised by. */
  private readonly vxlanPorts = new Uint8Array(65536);
  /** Packets that went to a session but did not fit the writer's memory, this batch. */
  private refused = 0;
  /** The tap while anyone listens, read once per batch. */
  private batchTap: PacketTap | null = null;
  /** The batch's Batch.view, read once per batch. */
  private slabView: DataView | null = null;

  constructor(
    private readonly router: Router,
    /** Null when every source is allowed. */
    private readonly allow: AllowList | null,
    /** UDP ports that mean VXLAN inside GENEVE: 4789 and the one we listen on. */
    vxlanPorts: readonly number[] = [VXLAN_PORT],
  ) {
    for (const p of vxlanPorts) this.vxlanPorts[p] = 1;
  }

  /** The BatchSink every source calls; true when the writers are saturated (see BatchSink). */
  readonly process = (batch: Batch): boolean => this.run(batch, false);

  /** The BatchSink of a GENEVE socket: every datagram is GENEVE. */
  readonly processGeneve = (batch: Batch): boolean => this.run(batch, true);

  private run(batch: Batch, allGeneve: boolean): boolean {
    const { slab, offsets, lengths, wireLengths, srcAddr, geneve } = batch;
    const n = batch.count;
    const allow = this.allow;
    this.batchTap = this.tap !== null && this.tap.active ? this.tap : null;
    this.slabView = batch.view;
    this.refused = 0;
    this.datagrams += n;
    for (let i = 0; i < n; i++) {
      if (allow !== null && !allow.allows(srcAddr, i * ADDR_BYTES)) {
        this.drops[DROP_SOURCE_DENIED]!++;
        continue;
      }
      if (allGeneve || geneve[i] === 1) {
        this.genevePacket(batch, i);
        continue;
      }
      const off = offsets[i]!;
      const len = lengths[i]!;
      if (len < VXLAN_MIN_DATAGRAM) {
        this.drops[DROP_SHORT]!++;
        continue;
      }
      if (!vxlanHasVni(slab, off)) {
        this.drops[DROP_BAD_VXLAN]!++;
        continue;
      }
      const session = this.router.lookup(vxlanVni(slab, off), srcAddr, i * ADDR_BYTES);
      if (session === null) {
        this.drops[this.router.missReason]!++;
        continue;
      }
      // The frame as the datagram carried it; the receiver may hold less (MSG_TRUNC, a snaplen).
      this.write(session, batch, i, off + VXLAN_HEADER_LEN, len - VXLAN_HEADER_LEN, wireLengths[i]! - VXLAN_HEADER_LEN, 0);
    }
    this.decoder.release();
    this.inner.release();
    this.geneve.buf = EMPTY;
    this.slabView = null;
    if (this.batchTap !== null) this.batchTap.flush();
    // Saturated when most of what was just read had to be dropped for want of queue memory:
    // reading on would only burn the CPU the writers need. One hot session among quiet ones
    // does not stop the reading of theirs.
    return this.refused * 2 > n;
  }

  /** One GENEVE datagram: header, options, then the payload by its protocol type. */
  private genevePacket(batch: Batch, i: number): void {
    const { slab, offsets, lengths, wireLengths, srcAddr } = batch;
    const off = offsets[i]!;
    const len = lengths[i]!;
    const g = this.geneve;
    if (g.reset(slab, off, len) !== OK) {
      this.drops[DROP_BAD_GENEVE]!++;
      return;
    }
    if (g.oam) {
      this.drops[DROP_GENEVE_OAM]!++;
      return;
    }
    if (g.criticalUnknown > 0) {
      this.drops[DROP_GENEVE_CRITICAL]!++;
      return;
    }
    const payOff = off + g.headerLen;
    const payLen = len - g.headerLen;
    // Bytes of the datagram the receiver could not hold (MSG_TRUNC, a capture's snaplen).
    const cut = wireLengths[i]! - len;
    const protocol = g.protocol;
    if (protocol === GENEVE_PROTO_ETHERNET) {
      if (payLen < ETHERNET_MIN) {
        this.drops[DROP_SHORT]!++;
        return;
      }
      const session = this.router.lookup(KEY_GENEVE + g.vni, srcAddr, i * ADDR_BYTES, g);
      if (session === null) this.drops[this.router.missReason]!++;
      else this.write(session, batch, i, payOff, payLen, payLen + cut, 0);
      return;
    }
    const kind = ETHER_KIND[protocol]!;
    if (kind !== ETHER_IPV4 && kind !== ETHER_IPV6) {
      this.drops[DROP_UNSUPPORTED_PROTOCOL]!++;
      return;
    }
    const d = this.inner;
    d.decodeL3(slab, payOff, payLen, protocol);
    if (d.l4 === L4_UDP && !d.isFragment && this.vxlanPorts[d.dstPort] === 1) {
      // VXLAN inside: routed as if received directly, from the mirrored ENI (the inner source).
      const vx = d.payloadOff;
      const vxLen = d.payloadLen;
      if (vxLen < VXLAN_MIN_DATAGRAM) {
        this.drops[DROP_SHORT]!++;
        return;
      }
      if (!vxlanHasVni(slab, vx)) {
        this.drops[DROP_BAD_VXLAN]!++;
        return;
      }
      // The address matters only to a router keyed by source: otherwise nothing is copied.
      const v4 = d.addrLen === 4;
      const a = v4 ? this.innerSrcV4 : this.innerSrcV6;
      if (this.router.withSource) {
        const s = d.srcAddrOff;
        if (v4) for (let k = 0; k < 4; k++) a[12 + k] = slab[s + k]!;
        else for (let k = 0; k < ADDR_BYTES; k++) a[k] = slab[s + k]!;
      }
      const session = this.router.lookup(vxlanVni(slab, vx), a, 0, g);
      if (session === null) {
        this.drops[this.router.missReason]!++;
        return;
      }
      // What the inner IP/UDP headers say the datagram held, beyond what is here.
      const udpClaim = d.udpLength - 8;
      const frameLen = vxLen - VXLAN_HEADER_LEN;
      const wire = Math.max(frameLen + cut, udpClaim - VXLAN_HEADER_LEN);
      this.write(session, batch, i, vx + VXLAN_HEADER_LEN, frameLen, wire, 0);
      return;
    }
    // Any other IP: the GWLB endpoint is the key (else the VNI); written as it is, no link header,
    // even when its header does not parse (the session counts the decode error).
    const key = g.hasEndpoint ? this.router.endpoints.key(g.endpointHi, g.endpointLo) : KEY_GENEVE_IP + g.vni;
    const session = key < 0 ? null : this.router.lookup(key, srcAddr, i * ADDR_BYTES, g);
    if (session === null) this.drops[key < 0 ? DROP_SESSION_LIMIT : this.router.missReason]!++;
    else this.write(session, batch, i, payOff, payLen, payLen + cut, protocol);
  }

  /** Decodes the frame for the session's counters and hands it to its writer; etherType 0 = Ethernet. */
  private write(session: Session, batch: Batch, i: number, frameOff: number, frameLen: number, wireFrameLen: number, etherType: number): void {
    const d = this.decoder;
    const slab = batch.slab;
    if (etherType === 0) d.decode(slab, frameOff, frameLen);
    else d.decodeL3(slab, frameOff, frameLen, etherType);
    const sec = batch.tsSec[i]!;
    const nsec = batch.tsNsec[i]!;
    // Both ends mirrored: the second copy of a packet is counted by the session's dedup, not written.
    const dedup = session.dedup;
    if (dedup !== null && dedup.duplicate(d, sec, nsec)) return;
    const origLen = session.account(d, frameLen, wireFrameLen);
    // The filter sees what the file would hold: the frame cut to the snaplen.
    const snaplen = session.config.snaplen;
    const capLen = frameLen < snaplen ? frameLen : snaplen;
    if (!session.passes(slab, frameOff, capLen, origLen)) return;
    const flows = session.flows;
    if (flows !== null) flows.add(d, batch.tsSec, i);
    const out = session.output;
    if (!out.append(slab, frameOff, frameLen, origLen, sec, nsec, batch.hold, this.slabView) && out.saturated) this.refused++;
    const tap = this.batchTap;
    if (tap !== null) tap.packet(session, slab, frameOff, capLen, origLen, sec, nsec);
  }
}
