/**
 * One mirror session: where its packets go and what it has counted. The pipeline calls
 * account() and its output's append() per packet (plain numbers and typed arrays, nothing
 * allocated); everyone else (metrics, the API, the shutdown summary, decap) reads one
 * snapshot() built when asked.
 *
 *   pipeline ──account(decoder)──▶ Session counters ──snapshot()──▶ metrics, API, summaries
 *            ──output.append()───▶ SessionOutput (the capture writer) ─┘ (its stats)
 *
 * The session does not know what its output is: capture/ implements SessionOutput.
 */
import type { SessionConfig, SessionSettings } from '../config.js';
import type { Decoder } from '../decode/packet.js';
import { L3_NAMES, L4_NAMES, LAYER_NAMES } from '../decode/packet.js';
import { OK } from '../decode/status.js';
import { DROP_REASONS, SESSION_DROPS } from '../drops.js';
import type { FlowTable } from './flows.js';
import type { RecordHold } from '../source/batch.js';
import type { CompiledFilter } from '../filter/index.js';
import { Dedup } from './dedup.js';
import { TopTalkers, type Talker } from './talkers.js';

/** Slots of the top-talkers table: an address with more than 1/64 of the bytes is sure to be listed. */
const TALKER_SLOTS = 64;

/** Seconds of history behind the pps / bits-per-second gauges. */
export const RATE_WINDOW_SECONDS = 10;

/** The file an output is writing, as it is on disk now. */
export interface OpenFileStats {
  /** Where the file is while open (its .part name). */
  readonly path: string;
  /** Bytes appended (file header included), buffered ones too. */
  readonly bytes: number;
  readonly packets: number;
  readonly firstSec: number;
  readonly firstNsec: number;
}

export interface OutputStats {
  /** Packets and bytes (file headers included) that reached the disk. */
  readonly writtenPackets: number;
  readonly writtenBytes: number;
  readonly filesClosed: number;
  /** Finished files that could not be renamed (or removed) at close: left .part for the next start's recovery. */
  readonly filesLeftPart: number;
  /** Bytes held in memory waiting for the disk. */
  readonly heldBytes: number;
  readonly current: OpenFileStats | null;
}

/** Where a session's packets go (the capture writer). append() is the hot path. */
export interface SessionOutput {
  /**
   * Appends one frame: `len` bytes at src[off]; `origLen` is its length on the wire.
   * Returns false when the packet was dropped (the output counts why in the session's drops).
   * With a `hold` (the batch's), the frame may stay in src until written (see RecordHold).
   * `srcView`, a DataView of all of src (Batch.view), spares the output finding one per packet.
   */
  append(src: Buffer, off: number, len: number, origLen: number, sec: number, nsec: number, hold?: RecordHold | null, srcView?: DataView | null): boolean;
  /** A packet was refused for want of memory, and nothing has been written since. */
  readonly saturated: boolean;
  stats(): OutputStats;
  /** The session's settings changed (a reload): apply what concerns the output. */
  configure(settings: SessionSettings): void;
}

export interface FlowOutputStats {
  readonly filesWritten: number;
  /** Lines written after the header: flows, NODATA and SKIPDATA records. */
  readonly recordsWritten: number;
  /** Intervals that could not be written. */
  readonly writeErrors: number;
}

/** Where a session's flow records go (capture's SessionFlowLog): its table is fed per packet while flows are on. */
export interface FlowOutput {
  readonly table: FlowTable;
  stats(): FlowOutputStats;
  /** The session's settings changed (a reload): flows on or off, new flow fields. */
  configure(settings: SessionSettings): void;
}

export interface FlowSnapshot extends FlowOutputStats {
  /** Flows in the open interval. */
  readonly active: number;
  /** Packets of new flows not counted: the flow budget (--max-flows) was spent. */
  readonly tableFullPackets: number;
  /** Frames without an IP header: no flow. */
  readonly notIpPackets: number;
  /** Packets from before the open interval, counted in it. */
  readonly latePackets: number;
  readonly clockSteps: number;
  readonly intervals: number;
}

export interface SessionSnapshot {
  readonly name: string;
  readonly vni: number;
  /** Outer source address the session is bound to (session-key vni+src), or null. */
  readonly source: string | null;
  /** How its packets arrive: vxlan (directly or inside GENEVE), geneve (Ethernet), gwlbe (raw IP). */
  readonly encap: string;
  /** The AWS Gateway Load Balancer ids of the GENEVE packet that made the session, if one did. */
  readonly gwlb: GwlbIds | null;
  /** Frames dropped as the copy of one seen within the dedup window (both ends mirrored). */
  readonly deduplicated: number;
  /** Packets and inner-frame bytes (original lengths) routed to this session. */
  readonly packets: number;
  readonly bytes: number;
  readonly packetsPerSecond: number;
  readonly bitsPerSecond: number;
  /** Frames shorter than the inner IP header says (AWS PacketLength / MTU truncation). */
  readonly truncated: number;
  /** Frames the receiver held only in part (see Session.receiveTruncated). */
  readonly receiveTruncated: number;
  /** Packets of this session not written, by reason (drops.ts SESSION_DROPS). */
  readonly dropped: Readonly<Record<string, number>>;
  /** Inner packets by l3 and l4 name, non-zero entries only. */
  readonly protocols: Readonly<Record<string, Readonly<Record<string, number>>>>;
  /** Frames the decoder could not walk to the end, by the layer that stopped it; non-zero only. */
  readonly decodeErrors: Readonly<Record<string, number>>;
  /** Failed file operations by errno code. */
  readonly writeErrors: Readonly<Record<string, number>>;
  readonly output: OutputStats;
  /** Its flow table and flow-log files; null when flows were never on for it. */
  readonly flows: FlowSnapshot | null;
  /** The capture filter (--filter or the session's filter:), null for none. */
  readonly filter: string | null;
  /** Packets the filter kept out of the files (not drops). */
  readonly filteredPackets: number;
}

/** AWS GWLB GENEVE option values, 16 hex digits each. */
export interface GwlbIds {
  readonly endpointId: string;
  readonly attachmentId: string | null;
}

export class Session {
  private packets = 0;
  private bytes = 0;
  /** Frames shorter than the inner IP header says: AWS PacketLength / MTU truncation. */
  private truncated = 0;
  /**
   * Frames the receiver held only in part, so fewer bytes than the snaplen reached the file:
   * a datagram larger than the native receive slot (a snaplen reloaded past it), or one cut
   * by libpcap's or a capture file's snaplen. Their orig_len is still the real length.
   */
  private receiveTruncated = 0;
  /** Inner packets by class: index l3 * L4_NAMES.length + l4 (decode/status.ts). */
  private readonly protocols = new Float64Array(L3_NAMES.length * L4_NAMES.length);
  private readonly decodeErrors = new Float64Array(LAYER_NAMES.length);
  private readonly talkers = new TopTalkers(TALKER_SLOTS);
  /** Errors are rare: a Map is fine. */
  private readonly writeErrors = new Map<string, number>();
  private packetsPerSecond = 0;
  private bitsPerSecond = 0;
  /** Per-second samples of (packets, bytes), a ring of RATE_WINDOW_SECONDS + 1 entries. */
  private readonly samples = new Float64Array((RATE_WINDOW_SECONDS + 1) * 2);
  private sampleCount = 0;
  /** Packets the filter did not match: not written, not a drop. */
  private filtered = 0;
  private match: CompiledFilter['match'] | null;

  /** The flow table the pipeline feeds, while the session's flows are on; null when off. */
  flows: FlowTable | null;

  constructor(
    private cfg: SessionConfig,
    /** Per-reason drop counters (drops.ts), shared with the output, which counts its own reasons. */
    private readonly drops: Float64Array,
    readonly output: SessionOutput,
    /** The AWS GWLB ids of the GENEVE packet that made the session, if one did. */
    readonly gwlb: GwlbIds | null = null,
    /** The compiled filter of a config's filter text (SessionFilters.get). */
    private readonly filterOf: (text: string | null) => CompiledFilter | null = () => null,
    /** Where its flow records go; null when there are none (no --flows anywhere). */
    readonly flowOutput: FlowOutput | null = null,
  ) {
    this.dedup = cfg.dedup > 0 ? new Dedup(cfg.dedup) : null;
    this.match = filterOf(cfg.filter)?.match ?? null;
    this.flows = cfg.flows && flowOutput !== null ? flowOutput.table : null;
  }

  /** --dedup: the pipeline asks it before account(); null when off. */
  dedup: Dedup | null;
  /** Copies dropped by dedups this session had before a reload turned it off or on again. */
  private dedupedBefore = 0;

  get config(): SessionConfig {
    return this.cfg;
  }

  get name(): string {
    return this.cfg.name;
  }

  get vni(): number {
    return this.cfg.vni;
  }

  /** Packets routed to this session so far (before its capture filter): read per file, never per packet. */
  get receivedPackets(): number {
    return this.packets;
  }

  /** Packets its capture filter kept out so far. */
  get filteredPackets(): number {
    return this.filtered;
  }

  /**
   * Counts one packet the decoder just walked: `frameLen` bytes are here, the datagram
   * carried `wireFrameLen`. Returns its length on the wire: the inner IP header's claim when
   * AWS cut the frame (PacketLength, target MTU), else what the datagram carried. The hot
   * path: nothing allocated.
   */
  account(d: Decoder, frameLen: number, wireFrameLen: number): number {
    this.protocols[d.l3 * L4_NAMES.length + d.l4]!++;
    if (d.status !== OK) this.decodeErrors[d.errorLayer]!++;
    let origLen = wireFrameLen;
    // AWS truncation: the datagram itself is shorter than the inner IP header says.
    if (d.claimedFrameLength > wireFrameLen) {
      origLen = d.claimedFrameLength;
      this.truncated++;
    }
    // Cut on our side, and the cut shows in the file: fewer bytes than the snaplen keeps.
    if (wireFrameLen > frameLen && frameLen < this.cfg.snaplen) this.receiveTruncated++;
    if (d.addrLen !== 0) {
      this.talkers.add(d.buf, d.srcAddrOff, d.addrLen, origLen);
      this.talkers.add(d.buf, d.dstAddrOff, d.addrLen, origLen);
    }
    this.packets++;
    this.bytes += origLen;
    return origLen;
  }

  /**
   * Whether the capture filter keeps this frame (counted when not): `capLen` bytes at buf[off]
   * as the file would hold them (cut to the snaplen), `wireLen` its length on the wire. The
   * hot path: one generated function, nothing allocated.
   */
  passes(buf: Buffer, off: number, capLen: number, wireLen: number): boolean {
    const match = this.match;
    if (match === null || match(buf, off, capLen, wireLen)) return true;
    this.filtered++;
    return false;
  }

  /** A file operation of the output failed with this errno code. */
  writeError(code: string): void {
    this.writeErrors.set(code, (this.writeErrors.get(code) ?? 0) + 1);
  }

  /** New settings from a reloaded config; the output applies what concerns it (snaplen from a new file). */
  reconfigure(config: SessionConfig): void {
    this.cfg = config;
    this.match = this.filterOf(config.filter)?.match ?? null;
    if (config.dedup === 0 && this.dedup !== null) {
      this.dedupedBefore += this.dedup.deduplicated;
      this.dedup = null;
    } else if (config.dedup > 0) {
      if (this.dedup === null) this.dedup = new Dedup(config.dedup);
      else this.dedup.window = config.dedup;
    }
    this.output.configure(config);
    this.flowOutput?.configure(config);
    this.flows = config.flows && this.flowOutput !== null ? this.flowOutput.table : null;
  }

  /** Called once a second: updates the rates over the last RATE_WINDOW_SECONDS. */
  sampleRates(): void {
    const slots = RATE_WINDOW_SECONDS + 1;
    const at = (this.sampleCount % slots) * 2;
    this.samples[at] = this.packets;
    this.samples[at + 1] = this.bytes;
    this.sampleCount++;
    const span = Math.min(this.sampleCount - 1, RATE_WINDOW_SECONDS);
    if (span === 0) return;
    const old = ((this.sampleCount - 1 - span) % slots) * 2;
    this.packetsPerSecond = (this.packets - this.samples[old]!) / span;
    this.bitsPerSecond = ((this.bytes - this.samples[old + 1]!) * 8) / span;
  }

  /** The inner addresses with the most bytes sent and received. */
  topTalkers(n: number): Talker[] {
    return this.talkers.top(n);
  }

  snapshot(): SessionSnapshot {
    const dropped: Record<string, number> = {};
    for (const r of SESSION_DROPS) dropped[DROP_REASONS[r]!] = this.drops[r]!;
    const protocols: Record<string, Record<string, number>> = {};
    this.protocols.forEach((n, i) => {
      if (n > 0) (protocols[L3_NAMES[Math.floor(i / L4_NAMES.length)]!] ??= {})[L4_NAMES[i % L4_NAMES.length]!] = n;
    });
    const decodeErrors: Record<string, number> = {};
    this.decodeErrors.forEach((n, layer) => {
      if (n > 0) decodeErrors[LAYER_NAMES[layer]!] = n;
    });
    return {
      name: this.cfg.name,
      vni: this.cfg.vni,
      source: this.cfg.source,
      encap: this.cfg.encap ?? 'vxlan',
      gwlb: this.gwlb,
      deduplicated: this.dedupedBefore + (this.dedup?.deduplicated ?? 0),
      packets: this.packets,
      bytes: this.bytes,
      packetsPerSecond: this.packetsPerSecond,
      bitsPerSecond: this.bitsPerSecond,
      truncated: this.truncated,
      receiveTruncated: this.receiveTruncated,
      dropped,
      protocols,
      decodeErrors,
      writeErrors: Object.fromEntries(this.writeErrors),
      output: this.output.stats(),
      filter: this.cfg.filter,
      filteredPackets: this.filtered,
      flows: this.flowSnapshot(),
    };
  }

  private flowSnapshot(): FlowSnapshot | null {
    const out = this.flowOutput;
    if (out === null) return null;
    const t = out.table;
    if (!this.cfg.flows && t.intervals === 0 && t.openInterval === null) return null;
    return {
      ...out.stats(),
      active: t.flows,
      tableFullPackets: t.fullPackets,
      notIpPackets: t.notIp,
      latePackets: t.latePackets,
      clockSteps: t.clockSteps,
      intervals: t.intervals,
    };
  }
}
