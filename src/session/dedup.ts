/**
 * Both ends mirrored: when the sender's and the receiver's ENIs are mirrored into the same
 * session, each packet arrives twice, the two copies differing only in what a hop changes.
 * A frame whose IP packet matches one seen within the window is a duplicate.
 *
 *   frame ──▶ key: the IP packet's first KEY_SPAN bytes without TTL / hop limit and the IPv4
 *             │     checksum (the Ethernet header is not in it), and its length
 *             ▼
 *   bucket = key1 & mask (WAYS slots) ──▶ a slot with key1 + key2 seen within the window? ── yes ──▶ duplicate
 *                                              └── no ──▶ the oldest slot remembers this packet
 *
 * Two 32-bit hashes make the key (a false match needs both to collide, within the window).
 * Memory is the fixed table; a packet whose bucket filled with WAYS newer packets before its
 * copy came is written twice, never lost. Nothing is allocated per packet. Not IP: never a
 * duplicate.
 */
import type { Decoder } from '../decode/packet.js';

/** Bytes of the IP packet in the key: the headers (IP, TCP/UDP) and the start of the data. */
const KEY_SPAN = 128;
/** Remembered packets, in buckets of WAYS: at 2 ms, room for about 4 M distinct packets/s. */
export const DEDUP_SLOTS = 8192;
const WAYS = 4;
const BUCKETS = DEDUP_SLOTS / WAYS;

export class Dedup {
  /** Frames found to be copies of one seen within the window. */
  deduplicated = 0;
  private readonly key1 = new Uint32Array(DEDUP_SLOTS);
  private readonly key2 = new Uint32Array(DEDUP_SLOTS);
  /** When each slot's packet was seen, in seconds; -Infinity = empty. */
  private readonly seen = new Float64Array(DEDUP_SLOTS).fill(-Infinity);

  constructor(
    /** Seconds. */
    public window: number,
  ) {}

  /** True when the frame the decoder just walked is a copy of one seen within the window. */
  duplicate(d: Decoder, sec: number, nsec: number): boolean {
    const v = d.ipVersion;
    if (v === 0) return false;
    const buf = d.buf;
    const start = d.l3Off;
    const end = start + Math.min(KEY_SPAN, d.ipLength, d.frameLen - (start - d.frameOff));
    // Offsets (from the IP header) left out: TTL and the checksum (IPv4), hop limit (IPv6).
    const skipA = v === 4 ? 8 : 7;
    const skipB = v === 4 ? 10 : -1;
    const skipC = v === 4 ? 11 : -1;
    let h1 = 0x811c9dc5 ^ d.ipLength;
    let h2 = 0x9747b28c ^ d.ipLength;
    for (let p = start; p < end; p++) {
      const i = p - start;
      if (i === skipA || i === skipB || i === skipC) continue;
      const b = buf[p]!;
      h1 = Math.imul(h1 ^ b, 0x01000193);
      h2 = Math.imul(h2 ^ b, 0x5bd1e995);
      h2 ^= h2 >>> 15;
    }
    h1 >>>= 0;
    h2 >>>= 0;
    const now = sec + nsec / 1e9;
    const first = (h1 & (BUCKETS - 1)) * WAYS;
    let oldest = first;
    for (let slot = first; slot < first + WAYS; slot++) {
      const seen = this.seen[slot]!;
      if (this.key1[slot] === h1 && this.key2[slot] === h2 && Math.abs(now - seen) <= this.window) {
        // The copy is consumed: a third identical packet is new traffic (a retransmission).
        this.seen[slot] = -Infinity;
        this.deduplicated++;
        return true;
      }
      if (seen < this.seen[oldest]!) oldest = slot;
    }
    this.key1[oldest] = h1;
    this.key2[oldest] = h2;
    this.seen[oldest] = now;
    return false;
  }
}
