/**
 * A batch of received datagrams: one slab of bytes plus parallel typed arrays
 * describing each datagram. Every source (dgram, native recvmmsg, libpcap,
 * capture file) fills one of these and hands it to the pipeline synchronously;
 * the pipeline copies what it keeps before returning, because the source
 * reuses the slab and the arrays for the next batch. Nothing here is
 * allocated per datagram. (A batch with a `hold` lets a writer keep frames where they lie
 * instead: the zero-copy path of the native source, see slab-ring.ts.)
 *
 * Slot i of a batch:
 *   slab[offsets[i] .. offsets[i] + lengths[i])  the UDP payload (VXLAN header + inner frame)
 *   wireLengths[i]    the datagram's real length; larger than lengths[i] only when the
 *                     source could not hold it all (a capture file's snaplen, MSG_TRUNC)
 *   tsSec[i], tsNsec[i]  receive time, UTC seconds + nanoseconds
 *   srcAddr[16*i .. 16*i+16)  outer source address, IPv6 form; IPv4 as ::ffff:a.b.c.d
 *   srcPort[i]        outer UDP source port
 *   geneve[i]         1 when the datagram is GENEVE, not VXLAN (a capture holding both;
 *                     a socket source delivers one kind, and the pipeline is told which)
 */
export const ADDR_BYTES = 16;

/**
 * Receive memory a record may stay in until it is written (slab-ring.ts): a writer that keeps
 * a frame where it lies retains its memory, and releases it once the frame is in the file. A
 * batch that carries one promises that each of its datagrams has at least HOLD_HEADROOM
 * bytes in front of its frame that belong to that datagram (its VXLAN or GENEVE header and
 * the slot's headroom), free for a record header once the pipeline has decided.
 */
export interface RecordHold {
  readonly slab: Buffer;
  /** Keeps the memory around slab[off] from the receiver; the token releases it. */
  retain(off: number): number;
  release(token: number): void;
}

/** Bytes in front of a held frame that a writer may overwrite: a classic pcap record header. */
export const HOLD_HEADROOM = 16;

/**
 * Bytes of a SharedArrayBuffer holding the arrays of `slots` slots (offsets, lengths,
 * wireLengths, tsSec, tsNsec: u32; srcPort: u16; srcAddr: 16 bytes; geneve: u8), one array
 * after the other, so a worker thread writes them and the main thread reads any run of slots.
 */
export function sharedArraysBytes(slots: number): number {
  return slots * (5 * 4 + 2 + ADDR_BYTES + 1);
}

/** Where a Batch's arrays live when they are a window of shared arrays. */
export interface SharedSlots {
  readonly buffer: SharedArrayBuffer;
  /** Slots the buffer holds (sharedArraysBytes(total) bytes). */
  readonly total: number;
  /** The window's first slot. */
  readonly first: number;
}

export class Batch {
  count = 0;
  readonly offsets: Uint32Array;
  readonly lengths: Uint32Array;
  readonly wireLengths: Uint32Array;
  readonly tsSec: Uint32Array;
  readonly tsNsec: Uint32Array;
  readonly srcAddr: Uint8Array;
  readonly srcPort: Uint16Array;
  readonly geneve: Uint8Array;
  /** Set when the frames may stay in the slab until written (see RecordHold); null: copy them. */
  hold: RecordHold | null = null;
  /** The slab `slabView` views (a source may swap the slab between batches). */
  private viewed: Buffer | null = null;
  private slabView: DataView | null = null;

  constructor(
    readonly capacity: number,
    public slab: Buffer,
    /** Arrays in shared memory (worker threads) instead of their own; see sharedArraysBytes. */
    shared?: SharedSlots,
  ) {
    if (shared === undefined) {
      this.offsets = new Uint32Array(capacity);
      this.lengths = new Uint32Array(capacity);
      this.wireLengths = new Uint32Array(capacity);
      this.tsSec = new Uint32Array(capacity);
      this.tsNsec = new Uint32Array(capacity);
      this.srcAddr = new Uint8Array(capacity * ADDR_BYTES);
      this.srcPort = new Uint16Array(capacity);
      this.geneve = new Uint8Array(capacity);
      return;
    }
    const { buffer: b, total: t, first: f } = shared;
    this.offsets = new Uint32Array(b, 4 * f, capacity);
    this.lengths = new Uint32Array(b, 4 * (t + f), capacity);
    this.wireLengths = new Uint32Array(b, 4 * (2 * t + f), capacity);
    this.tsSec = new Uint32Array(b, 4 * (3 * t + f), capacity);
    this.tsNsec = new Uint32Array(b, 4 * (4 * t + f), capacity);
    this.srcPort = new Uint16Array(b, 20 * t + 2 * f, capacity);
    this.srcAddr = new Uint8Array(b, 22 * t + ADDR_BYTES * f, capacity * ADDR_BYTES);
    this.geneve = new Uint8Array(b, 38 * t + f, capacity);
  }

  /** A DataView of the slab, made anew only when the slab is another one: writers copy small records through it. */
  get view(): DataView {
    if (this.viewed !== this.slab || this.slabView === null) {
      this.viewed = this.slab;
      this.slabView = new DataView(this.slab.buffer, this.slab.byteOffset, this.slab.byteLength);
    }
    return this.slabView;
  }
}

/** Writes an IPv4 address (four octets) into slot i as ::ffff:a.b.c.d. */
export function setSrcV4(batch: Batch, i: number, a: number, b: number, c: number, d: number): void {
  const o = i * ADDR_BYTES;
  const s = batch.srcAddr;
  // Stores, not fill(): this runs per packet, and fill() is a builtin call each time.
  for (let k = 0; k < 10; k++) s[o + k] = 0;
  s[o + 10] = 0xff;
  s[o + 11] = 0xff;
  s[o + 12] = a;
  s[o + 13] = b;
  s[o + 14] = c;
  s[o + 15] = d;
}
