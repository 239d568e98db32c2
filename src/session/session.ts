/**
 * One mirror session: where its packets go and what it has counted. Counters are plain
 * numbers bumped on the hot path; metrics and the API read them when asked.
 */
import type { SessionConfig } from '../config.js';
import type { SessionWriter } from '../capture/writer.js';
import { L3_NAMES, L4_NAMES, LAYER_NAMES } from '../decode/packet.js';
import { TopTalkers } from './talkers.js';

/** Slots of the top-talkers table: an address with more than 1/64 of the bytes is sure to be listed. */
const TALKER_SLOTS = 64;

/** Seconds of history behind the pps / bits-per-second gauges. */
export const RATE_WINDOW_SECONDS = 10;

export class Session {
  /** Packets and inner-frame bytes (original lengths) routed to this session. */
  packets = 0;
  bytes = 0;
  /** Inner packets by class: index l3 * L4_NAMES.length + l4 (decode/status.ts). */
  readonly protocols = new Float64Array(L3_NAMES.length * L4_NAMES.length);
  /** Inner frames the decoder could not walk to the end, by the layer that stopped it. */
  readonly decodeErrors = new Float64Array(LAYER_NAMES.length);
  /** Frames shorter than the inner IP header says: AWS PacketLength / MTU truncation. */
  truncated = 0;
  /**
   * Frames the receiver held only in part, so fewer bytes than the snaplen reached the file:
   * a datagram larger than the native receive slot (a snaplen reloaded past it), or one cut
   * by libpcap's or a capture file's snaplen. Their orig_len is still the real length.
   */
  receiveTruncated = 0;
  /** Inner IPv4/IPv6 addresses by bytes sent and received, in fixed memory. */
  readonly talkers = new TopTalkers(TALKER_SLOTS);
  /** Failed file operations by errno code (ENOSPC, EIO, ...); errors are rare, a Map is fine. */
  readonly writeErrors = new Map<string, number>();
  packetsPerSecond = 0;
  bitsPerSecond = 0;
  /** Per-second samples of (packets, bytes), a ring of RATE_WINDOW_SECONDS + 1 entries. */
  private readonly samples = new Float64Array((RATE_WINDOW_SECONDS + 1) * 2);
  private sampleCount = 0;

  constructor(
    public config: SessionConfig,
    /** Per-reason drop counters (drops.ts), shared with the writer, which counts its own reasons. */
    readonly drops: Float64Array,
    readonly writer: SessionWriter,
  ) {}

  get name(): string {
    return this.config.name;
  }

  get vni(): number {
    return this.config.vni;
  }

  /** New settings from a reloaded config; the writer applies them (snaplen from a new file). */
  reconfigure(config: SessionConfig): void {
    this.config = config;
    this.writer.setRotation(config);
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
}
