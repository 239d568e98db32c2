/**
 * The native source: recvmmsg into a Batch, kernel receive timestamps (SO_TIMESTAMPNS)
 * and the kernel's drop counter (SO_RXQ_OVFL), from native/mirrorcap_native.cc.
 *
 *   kernel socket ──recvmmsg(batchSize)──▶ Batch slab/arrays (owned here, written natively)
 *        │ readable (uv_poll, level-triggered)        │ one JS call per batch
 *        └── at most maxBatchesPerTurn per wake-up ───▶ sink(batch)
 *
 * The addon holds only syscalls; sizes, turn limits and what a failure means are decided
 * here; the addon's surface and its loader are in native/addon.ts.
 */
import { COUNTER_COUNT, COUNTER_RECV_ERRORS, COUNTER_RXQ_OVFL, COUNTER_TRUNCATED, loadNative, numericHost, type NativeBinding, type NativeReceiver, type SocketAddress } from '../native/addon.js';
import { VXLAN_HEADER_LEN } from '../decode/vxlan.js';
import { Batch, sharedArraysBytes } from './batch.js';
import { DATAGRAM_HEADROOM, SlabRing } from './slab-ring.js';
import { countBatch, newBatchSizeCounts, type BatchSink, type Source, type SourceStats } from './source.js';
import { codedError, ErrorCode } from '../errors.js';

/**
 * Slot size: each datagram lands in a slot of its own, and the kernel cuts what does not fit
 * (MSG_TRUNC still reports the real size, in wireLengths). The slots are sized from the
 * largest snaplen of any session, so every source writes the same records: a VXLAN header,
 * `snaplen` bytes of frame, and headroom for the outer headers of a GENEVE wrapper (GENEVE
 * with 252 bytes of options + IPv4 with options + UDP: 328 bytes), rounded up to 1 KiB; at
 * most 64 KiB, which holds any UDP datagram. A datagram larger than its slot is counted by
 * the pipeline (receive_truncated) only when the cut loses bytes the snaplen would keep: a
 * snaplen raised by a reload past the slots sized at start.
 */
export const SLOT_HEADROOM = 512;
/** Holds any UDP payload (at most 65,527 bytes over IPv6, 65,507 over IPv4). */
export const MAX_SLOT_BYTES = 65536;
/** Slots for the default snaplen (65535): every datagram whole. */
export const DEFAULT_SNAPLEN = 65535;

/** Bytes a receive slot needs for a VXLAN datagram with `snaplen` bytes of frame kept whole. */
export function slotBytesFor(snaplen: number): number {
  return Math.min(MAX_SLOT_BYTES, Math.ceil((VXLAN_HEADER_LEN + snaplen + SLOT_HEADROOM) / 1024) * 1024);
}

export const DEFAULT_SLOT_BYTES = slotBytesFor(DEFAULT_SNAPLEN);
/**
 * The slab (batch size x slot) stays within this: the batch shrinks for larger slots. Pages
 * are touched only where datagrams land, so a slab of 64 KiB slots costs RSS only when large
 * datagrams fill them.
 */
export const MAX_SLAB_BYTES = 16 * 1024 * 1024;
export const DEFAULT_BATCH_SIZE = 256;
/** 8 x 256 datagrams per wake-up keeps a turn to a few milliseconds of pipeline work. */
export const DEFAULT_MAX_BATCHES_PER_TURN = 8;
/**
 * How long the receiver rests once the socket is empty. 1 ms (libuv's timer resolution)
 * is invisible in the files, whose timestamps come from the kernel, and turns hundreds of
 * thousands of wake-ups a second into at most a thousand, each taking a full batch. The
 * socket buffer must hold a millisecond of traffic: 32 MiB holds far more.
 */
export const DEFAULT_COALESCE_MS = 1;
/** How far the rest may grow at low rates (see maxCoalesceMs). */
export const MAX_COALESCE_FACTOR = 4;
/** The usable socket buffer from which it may. */
export const COALESCE_GROWTH_MIN_BUFFER = 4 << 20;
/**
 * How long the receiver rests when the pipeline says it is saturated (most of a batch
 * dropped for want of write-queue memory). Under disk overload, reading 9 KB datagrams
 * only to drop them takes the CPU the file writes need: resting 10 ms lets the kernel
 * drop (counted in mirrorcap_socket_drops_total) and raised what reached the disk from
 * 675 to about 950 MB/s of 8950-byte frames here.
 */
export const DEFAULT_SATURATED_REST_MS = 10;
/** drain() reads at most this many batches: a full 32 MiB socket buffer of small datagrams. */
const DRAIN_BATCHES = 1024;
export const MAX_BATCH_SIZE = 1024;
/** Zero-copy: a socket's ring of regions stays within this (virtual: pages are touched where datagrams land). */
export const MAX_RING_BYTES = 64 * 1024 * 1024;
/** Zero-copy: the ring has at least this many regions (one receiving, the others written from). */
export const MIN_RING_REGIONS = 16;

export interface NativeSourceOptions {
  /** Numeric address or name; `::` or `[::]` binds dual-stack. */
  host: string;
  port: number;
  /** Requested SO_RCVBUF(FORCE); 0 keeps the kernel default. */
  recvBufferBytes: number;
  /** Datagrams per recvmmsg, 1..1024; default 256. */
  batchSize?: number;
  /** recvmmsg calls per event-loop wake-up; default 8. */
  maxBatchesPerTurn?: number;
  /** Rest after the socket runs dry, in ms; default DEFAULT_COALESCE_MS, 0 = none; up to MAX_COALESCE_FACTOR times that at low rates. */
  coalesceMs?: number;
  /** Rest after the sink reports saturation, in ms; default DEFAULT_SATURATED_REST_MS. */
  saturatedRestMs?: number;
  /** Bytes per receive slot; default slotBytesFor(snaplen). */
  slotBytes?: number;
  /** The largest snaplen of any session: the slots hold that much frame whole. Default 65535. */
  snaplen?: number;
  /** SO_REUSEPORT, for several sockets on one port (one per worker thread). */
  reusePort?: boolean;
  /**
   * A worker thread's memory (receive-worker.ts): a batch over shared memory holding several
   * batches' worth of slots, and the slot each recvmmsg lands at (see ReceiverMemory.slotBase).
   * The sink then gets that batch with `count` datagrams from slot slotBase[0] on.
   */
  shared?: { readonly batch: Batch; readonly slotBase: Int32Array };
  /**
   * Zero-copy: the slab becomes a ring of regions of about this many bytes in all (see
   * slab-ring.ts), whose records the writers keep where they lie until written. Not with
   * `shared`.
   */
  ringBytes?: number;
  /** The addon to use; default loadNative(). */
  binding?: NativeBinding;
}

class NativeStats implements SourceStats {
  datagrams = 0;
  batches = 0;
  bytes = 0;
  readonly skipped = {};
  constructor(
    private readonly dropsNow: () => number,
    /** The addon's counters (COUNTER_*). */
    private readonly counters: Float64Array,
  ) {}
  /** The kernel's cumulative count of datagrams this socket lost to a full receive buffer. */
  get kernelDrops(): number {
    return this.dropsNow();
  }
  get receiveErrors(): number {
    return this.counters[COUNTER_RECV_ERRORS]!;
  }
  get receiveTruncated(): number {
    return this.counters[COUNTER_TRUNCATED]!;
  }
}

export class NativeSource implements Source {
  readonly kind = 'native';
  readonly stats: NativeStats;
  readonly batch: Batch;
  /** Per BATCH_SIZE_BUCKETS bucket, how many batches had that many datagrams (not cumulative). */
  readonly batchSizeCounts = newBatchSizeCounts();
  /** Written by the addon; see COUNTER_*. */
  readonly counters = new Float64Array(COUNTER_COUNT);
  /** SO_RCVBUF as the kernel reports it after start() (twice the usable bytes on Linux); 0 before. */
  grantedRecvBuffer = 0;
  recvBufferForced = false;

  private readonly binding: NativeBinding;
  private readonly slotBytes: number;
  private readonly maxBatchesPerTurn: number;
  /** Datagrams per recvmmsg (the batch holds more slots when shared). */
  private readonly recvCount: number;
  /** Zero-copy: the regions and a batch view of each; null otherwise. */
  readonly slabRing: SlabRing | null = null;
  private readonly views: Batch[] = [];
  private receiver: NativeReceiver | undefined;
  private lastDrops = 0;
  private state: 'idle' | 'starting' | 'receiving' | 'closed' = 'idle';

  constructor(private readonly opts: NativeSourceOptions) {
    this.slotBytes = opts.slotBytes ?? slotBytesFor(opts.snaplen ?? DEFAULT_SNAPLEN);
    const batchSize = opts.batchSize ?? Math.max(1, Math.min(DEFAULT_BATCH_SIZE, Math.floor(MAX_SLAB_BYTES / this.slotBytes)));
    this.maxBatchesPerTurn = opts.maxBatchesPerTurn ?? DEFAULT_MAX_BATCHES_PER_TURN;
    if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > MAX_BATCH_SIZE) {
      throw codedError(ErrorCode.INVALID_ARGUMENT, `batchSize must be an integer in 1..${MAX_BATCH_SIZE}, got ${batchSize}`, RangeError);
    }
    if (!Number.isInteger(this.maxBatchesPerTurn) || this.maxBatchesPerTurn < 1) {
      throw codedError(ErrorCode.INVALID_ARGUMENT, `maxBatchesPerTurn must be a positive integer, got ${this.maxBatchesPerTurn}`, RangeError);
    }
    if (!Number.isInteger(this.slotBytes) || this.slotBytes < 64 || this.slotBytes > 65536) {
      throw codedError(ErrorCode.INVALID_ARGUMENT, `slotBytes must be an integer in 64..65536, got ${this.slotBytes}`, RangeError);
    }
    let recvCount = batchSize;
    if (opts.ringBytes !== undefined && opts.shared === undefined) {
      // Enough regions that records waiting for the disk leave the receiver room: at least
      // MIN_RING_REGIONS, each one recvmmsg of at most the usual batch. A slot holds its
      // headroom on top of what it holds without the ring, so both hold the same datagrams.
      const stride = this.slotBytes + DATAGRAM_HEADROOM;
      recvCount = Math.max(1, Math.min(batchSize, Math.floor(opts.ringBytes / MIN_RING_REGIONS / stride)));
      const regions = Math.max(MIN_RING_REGIONS, Math.floor(opts.ringBytes / (recvCount * stride)));
      this.slabRing = new SlabRing(regions, recvCount, stride);
    }
    let binding = opts.binding;
    if (binding === undefined) {
      const load = loadNative();
      if (!load.ok) throw codedError(ErrorCode.NATIVE_UNAVAILABLE, load.reason);
      binding = load.binding;
    }
    this.binding = binding;
    this.recvCount = recvCount;
    const ring = this.slabRing;
    if (opts.shared !== undefined) {
      this.batch = opts.shared.batch;
    } else if (ring !== null) {
      // One batch over every slot for the addon, and a view of each region for the pipeline.
      const total = ring.regions * recvCount;
      const meta = new SharedArrayBuffer(sharedArraysBytes(total));
      this.batch = new Batch(total, ring.slab, { buffer: meta, total, first: 0 });
      for (let i = 0; i < total; i++) this.batch.offsets[i] = i * ring.slotBytes + DATAGRAM_HEADROOM;
      for (let r = 0; r < ring.regions; r++) {
        const view = new Batch(recvCount, ring.slab, { buffer: meta, total, first: r * recvCount });
        view.hold = ring;
        this.views.push(view);
      }
    } else {
      this.batch = new Batch(batchSize, Buffer.allocUnsafeSlow(batchSize * this.slotBytes));
      for (let i = 0; i < batchSize; i++) this.batch.offsets[i] = i * this.slotBytes;
    }
    this.stats = new NativeStats(() => this.readDrops(), this.counters);
  }

  get ready(): boolean {
    return this.state === 'receiving';
  }

  /** The largest datagram a slot holds whole (longer ones are cut); undefined when a slot holds any. */
  get maxDatagram(): number | undefined {
    return this.slotBytes < MAX_SLOT_BYTES ? this.slotBytes : undefined;
  }

  get recvBuffer(): number {
    return Math.floor(this.grantedRecvBuffer / 2);
  }

  get port(): number {
    return this.address()?.port ?? 0;
  }

  /** The bound address (port 0 resolved); undefined unless receiving. */
  address(): SocketAddress | undefined {
    return this.state === 'receiving' ? this.receiver?.address() : undefined;
  }

  /**
   * At low rates the receiver rests up to MAX_COALESCE_FACTOR times longer (fewer wake-ups),
   * but only with a socket buffer that holds far more than a few batches: a small one (an
   * rmem_max the kernel capped us to) keeps the rest fixed.
   */
  private maxCoalesceMs(rest: number): number {
    return this.grantedRecvBuffer / 2 >= COALESCE_GROWTH_MIN_BUFFER ? rest * MAX_COALESCE_FACTOR : rest;
  }

  async start(sink: BatchSink): Promise<void> {
    if (this.state !== 'idle') throw codedError(ErrorCode.INVALID_STATE, `NativeSource.start(): source is ${this.state}`);
    this.state = 'starting';
    let receiver: NativeReceiver | undefined;
    try {
      const host = await numericHost(this.opts.host);
      if (this.state !== 'starting') return; // closed while resolving
      receiver = new this.binding.Receiver(host, this.opts.port, this.opts.reusePort ?? false);
      const grant = receiver.setRecvBuffer(this.opts.recvBufferBytes);
      this.grantedRecvBuffer = grant.granted;
      this.recvBufferForced = grant.forced;
      const b = this.batch;
      const stats = this.stats;
      const sizes = this.batchSizeCounts;
      const ring = this.slabRing;
      const views = this.views;
      const rest = this.opts.coalesceMs ?? DEFAULT_COALESCE_MS;
      receiver.start(
        {
          slab: b.slab,
          slotBytes: ring === null ? this.slotBytes : ring.slotBytes,
          capacity: this.recvCount,
          lengths: b.lengths,
          wireLengths: b.wireLengths,
          tsSec: b.tsSec,
          tsNsec: b.tsNsec,
          srcAddr: b.srcAddr,
          srcPort: b.srcPort,
          counters: this.counters,
          maxBatchesPerTurn: this.maxBatchesPerTurn,
          coalesceMs: rest,
          maxCoalesceMs: this.maxCoalesceMs(rest),
          saturatedRestMs: this.opts.saturatedRestMs ?? DEFAULT_SATURATED_REST_MS,
          ...(this.opts.shared === undefined ? {} : { slotBase: this.opts.shared.slotBase }),
          // A full ring frees up as writes complete, within a millisecond or so at disk speed.
          ...(ring === null ? {} : { slotBase: ring.slotBase, headroom: DATAGRAM_HEADROOM, slotWaitMs: 1 }),
        },
        ring === null
          ? (count) => {
              b.count = count;
              countBatch(stats, sizes, b);
              return sink(b);
            }
          : (count) => {
              const view = views[ring.current]!;
              view.count = count;
              countBatch(stats, sizes, view);
              try {
                return sink(view);
              } finally {
                ring.batchDone();
              }
            },
      );
    } catch (err) {
      receiver?.close();
      if (this.state === 'starting') this.state = 'idle';
      throw err;
    }
    this.receiver = receiver;
    this.state = 'receiving';
  }

  /**
   * Delivers what the kernel has already queued for us, now, without waiting for the next
   * wake-up: before a shutdown, datagrams that reached the box belong in the files.
   */
  drain(): number {
    if (this.state !== 'receiving') return 0;
    // A ring with no region free reads nothing: the writers first copy out what they hold.
    const ring = this.slabRing;
    if (ring !== null && ring.current === -1) ring.onLow?.();
    return this.receiver?.drainQueued(DRAIN_BATCHES) ?? 0;
  }

  /** Stops at once: the socket is closed (port free) when this resolves; idempotent. */
  async stop(): Promise<void> {
    if (this.state === 'closed') return;
    if (this.receiver !== undefined) {
      this.lastDrops = this.readDrops();
      this.receiver.close();
      this.receiver = undefined;
    }
    this.state = 'closed';
  }

  /**
   * SO_RXQ_OVFL rides on the next datagram that gets through, so right after a burst of
   * drops it lags; SO_MEMINFO reads the same counter now. Both only grow (mod 2^32).
   */
  private readDrops(): number {
    const now = this.receiver?.socketDrops() ?? -1;
    this.lastDrops = Math.max(this.lastDrops, this.counters[COUNTER_RXQ_OVFL], now);
    return this.lastDrops;
  }
}
