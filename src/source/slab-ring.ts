/**
 * ZERO-COPY receive memory: the native source's slab as a ring of regions, each one
 * recvmmsg's worth of slots. Records stay where they were received until their write is
 * done: the writer puts the record header in the slot's headroom in front of the frame and
 * the addon writes the record from there (capture/writer.ts, native writePieces), so a
 * frame is copied once, by the kernel, from the socket to the slab, and once more, by the
 * kernel, from the slab to the page cache.
 *
 *   slot:   [8 B headroom][VXLAN 8 B][frame ...............]      (datagram at slot + 8)
 *           └─ record header (16 B) ─┘ written in place once the pipeline has decided
 *
 *   region:   free ──pick──▶ receiving ──batch done──▶ held (refs: records not yet written)
 *              ▲                                              │
 *              └──────────────── last write done ─────────────┘
 *
 * The receiver reads into the region slotBase[0] names; with none free it rests (-1) and the
 * kernel holds, or drops and counts, what arrives, exactly as when the writers are saturated.
 * A quiet session's record waits for the flush interval: so that such records never pin the
 * ring, when few regions are free `onLow` runs (the recorder copies the records its writers
 * still gather into chunks, which releases their regions).
 *
 * Single-threaded: the receiver's callback and the writers' completions run on the loop.
 */
import { HOLD_HEADROOM, type RecordHold } from './batch.js';

/** Where a datagram lands in its slot: VXLAN's 8-byte header plus this make a record header's room. */
export const DATAGRAM_HEADROOM = HOLD_HEADROOM - 8;

export class SlabRing implements RecordHold {
  readonly slab: Buffer;
  readonly regionBytes: number;
  /** Per region: the receiver (while it fills it or the pipeline reads it) plus each record held. */
  readonly refs: Int32Array;
  /** The slot the next recvmmsg lands at (region * cap), -1 when no region is free; read by the addon. */
  readonly slotBase = new Int32Array(1);
  /** The region being received into, -1 while none is free. */
  current = -1;
  /** Regions with no reference. */
  free: number;
  /** Times the receiver found no free region (it rested). */
  waits = 0;
  /** Runs when few regions are free: should release what only waits for a flush. */
  onLow: (() => void) | null = null;
  private readonly lowWater: number;
  private last = -1;

  constructor(
    readonly regions: number,
    /** Slots per region: datagrams per recvmmsg. */
    readonly cap: number,
    readonly slotBytes: number,
  ) {
    this.regionBytes = cap * slotBytes;
    this.slab = Buffer.allocUnsafeSlow(regions * this.regionBytes);
    this.refs = new Int32Array(regions);
    this.free = regions;
    this.lowWater = Math.max(1, regions >> 2);
    this.pick();
  }

  get bytes(): number {
    return this.slab.length;
  }

  /** The region holding slab[off] is kept from the receiver; its number is the token. */
  retain(off: number): number {
    const r = (off / this.regionBytes) | 0;
    this.refs[r]!++;
    return r;
  }

  release(r: number): void {
    if (--this.refs[r]! === 0) {
      this.free++;
      if (this.current === -1) this.pick();
    }
  }

  /** The pipeline is done with the batch of the current region: receive into the next free one. */
  batchDone(): void {
    const r = this.current;
    this.current = -1;
    if (--this.refs[r]! === 0) this.free++;
    if (this.free <= this.lowWater && this.onLow !== null) this.onLow();
    if (this.current === -1) this.pick();
  }

  /**
   * A free region, the last one first: when nothing was held (small frames are copied) the
   * receiver keeps reading into the same memory, warm in the cache, as without the ring.
   * None: slotBase -1 (the receiver rests).
   */
  private pick(): void {
    const start = this.last < 0 ? 0 : this.last;
    for (let k = 0; k < this.regions; k++) {
      const r = (start + k) % this.regions;
      if (this.refs[r] !== 0) continue;
      this.refs[r] = 1;
      this.free--;
      this.current = r;
      this.last = r;
      this.slotBase[0] = r * this.cap;
      return;
    }
    this.slotBase[0] = -1;
    this.waits++;
  }
}
