/**
 * The hot path: one call per batch, one loop over its datagrams.
 *
 *   datagram ──▶ allowed source? ──▶ VXLAN check ──▶ session (VNI [+ source]) ──▶ decode ──▶ filter ──▶ writer.append
 *        └─ source_denied / short / bad_vxlan / unknown_vni / session_limit: counted here    │   └──▶ tap.packet (live streams)
 *                                                                       not matched: session.filtered ┘   tap.flush() once per batch
 *                                                                      matched ──▶ flow table (--flows)
 *
 * The inner frame is decoded once, for the session's protocol counts and talkers and for
 * its true original length: AWS truncates mirrored frames (PacketLength, target MTU), but
 * the inner IP header still says how long the packet was, and orig_len says it too. A
 * frame the receiver could not hold whole (wireLengths > lengths) also keeps its real
 * length, and is counted apart (receiveTruncated): that cut is ours, not AWS's. With flows
 * on, the same decode feeds the session's flow table (session/flows.ts) for every packet the
 * session's filter keeps: flow records describe exactly what was captured.
 *
 * No allocation, no events, no logging per datagram; counters are plain numbers.
 */
import { DROP_BAD_VXLAN, DROP_SHORT, DROP_SOURCE_DENIED, newDropCounters } from '../drops.js';
import { Decoder } from '../decode/packet.js';
import { VXLAN_HEADER_LEN, VXLAN_MIN_DATAGRAM, vxlanHasVni, vxlanVni } from '../decode/vxlan.js';
import type { AllowList } from './allow.js';
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

export class Pipeline {
  /** Datagrams seen, and those dropped before they belonged to a session, by reason. */
  datagrams = 0;
  readonly drops = newDropCounters();
  private readonly decoder = new Decoder();
  /** The live streams, set by the appliance; null offline. */
  tap: PacketTap | null = null;

  constructor(
    private readonly router: Router,
    /** Null when every source is allowed. */
    private readonly allow: AllowList | null,
  ) {}

  /** The BatchSink every source calls; true when the writers are saturated (see BatchSink). */
  readonly process = (batch: Batch): boolean => {
    const { slab, offsets, lengths, wireLengths, tsSec, tsNsec, srcAddr } = batch;
    const n = batch.count;
    const allow = this.allow;
    const tap = this.tap !== null && this.tap.active ? this.tap : null;
    let refused = 0;
    this.datagrams += n;
    for (let i = 0; i < n; i++) {
      if (allow !== null && !allow.allows(srcAddr, i * ADDR_BYTES)) {
        this.drops[DROP_SOURCE_DENIED]!++;
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
      const frameOff = off + VXLAN_HEADER_LEN;
      const frameLen = len - VXLAN_HEADER_LEN;
      // The frame as the datagram carried it; the receiver may hold less (MSG_TRUNC, a snaplen).
      const wireFrameLen = wireLengths[i]! - VXLAN_HEADER_LEN;
      const d = this.decoder;
      d.decode(slab, frameOff, frameLen);
      const origLen = session.account(d, frameLen, wireFrameLen);
      // The filter sees what the file would hold: the frame cut to the snaplen.
      const snaplen = session.config.snaplen;
      const capLen = frameLen < snaplen ? frameLen : snaplen;
      if (!session.passes(slab, frameOff, capLen, origLen)) continue;
      const flows = session.flows;
      if (flows !== null) flows.add(d, tsSec, i);
      const out = session.output;
      if (!out.append(slab, frameOff, frameLen, origLen, tsSec[i]!, tsNsec[i]!) && out.saturated) refused++;
      if (tap !== null) tap.packet(session, slab, frameOff, capLen, origLen, tsSec[i]!, tsNsec[i]!);
    }
    this.decoder.release();
    if (tap !== null) tap.flush();
    // Saturated when most of what was just read had to be dropped for want of queue memory:
    // reading on would only burn the CPU the writers need. One hot session among quiet ones
    // does not stop the reading of theirs.
    return refused * 2 > n;
  };
}
