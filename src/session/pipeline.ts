/**
 * The hot path: one call per batch, one loop over its datagrams.
 *
 *   datagram ──▶ allowed source? ──▶ VXLAN check ──▶ session (VNI [+ source]) ──▶ decode ──▶ writer.append
 *        └─ source_denied / short / bad_vxlan / unknown_vni / session_limit: counted here
 *
 * The inner frame is decoded once, for the session's protocol counts and talkers and for
 * its true original length: AWS truncates mirrored frames (PacketLength, target MTU), but
 * the inner IP header still says how long the packet was, and orig_len says it too. A
 * frame the receiver could not hold whole (wireLengths > lengths) also keeps its real
 * length, and is counted apart (receiveTruncated): that cut is ours, not AWS's.
 *
 * No allocation, no events, no logging per datagram; counters are plain numbers.
 */
import { DROP_BAD_VXLAN, DROP_SHORT, DROP_SOURCE_DENIED, newDropCounters } from '../drops.js';
import { Decoder } from '../decode/packet.js';
import { VXLAN_HEADER_LEN, VXLAN_MIN_DATAGRAM, vxlanHasVni, vxlanVni } from '../decode/vxlan.js';
import type { AllowList } from './allow.js';
import type { Router } from './router.js';
import { ADDR_BYTES, type Batch } from '../source/batch.js';

export class Pipeline {
  /** Datagrams seen, and those dropped before they belonged to a session, by reason. */
  datagrams = 0;
  readonly drops = newDropCounters();
  private readonly decoder = new Decoder();

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
      const out = session.output;
      if (!out.append(slab, frameOff, frameLen, origLen, tsSec[i]!, tsNsec[i]!) && out.saturated) refused++;
    }
    this.decoder.release();
    // Saturated when most of what was just read had to be dropped for want of queue memory:
    // reading on would only burn the CPU the writers need. One hot session among quiet ones
    // does not stop the reading of theirs.
    return refused * 2 > n;
  };
}
