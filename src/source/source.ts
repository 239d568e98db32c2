import type { SlabRing } from './slab-ring.js';
import type { Batch } from './batch.js';

/**
 * Called once per batch, synchronously; the batch is only valid during the call. Returns
 * true when the consumer is saturated (its write queues are full): a source that can
 * rest (native) stops reading for a moment, so the kernel holds or drops what comes
 * instead of us reading it only to drop it.
 */
export type BatchSink = (batch: Batch) => boolean | void;

/** Counters a source keeps; read at scrape time, never pushed. */
export interface SourceStats {
  /** Datagrams handed to the pipeline. */
  datagrams: number;
  /** Batches handed to the pipeline. */
  batches: number;
  /** Bytes of the datagrams handed to the pipeline, as sent (wire lengths, cut ones whole). */
  bytes: number;
  /** Datagrams the kernel dropped before we read them (socket buffer overflow), when known. */
  kernelDrops: number;
  /** Receive calls that failed for another reason than an empty socket or a signal. */
  receiveErrors: number;
  /** Datagrams larger than the receive slot: kept cut to the slot, their real size known. */
  receiveTruncated: number;
  /**
   * Packets a capture (an interface or a file) held that were not VXLAN datagrams to our
   * port, by reason (SKIP_REASONS of outer.ts); empty for socket sources.
   */
  readonly skipped: Readonly<Record<string, number>>;
}

/** One receive thread's counters (source/workers.ts), read at scrape time. */
export interface WorkerStats {
  readonly datagrams: number;
  readonly batches: number;
  readonly kernelDrops: number;
  /** Times every region of its slab waited at the main thread, so it rested (the kernel held what came). */
  readonly slabWaits: number;
  /** Frames a ring worker read but had no free region for. */
  readonly slabDrops: number;
  /** It exited or failed without being asked to stop. */
  readonly died: boolean;
}

/**
 * Upper bounds of the batch-size buckets (a Prometheus histogram's `le`); recvmmsg takes
 * at most 1024 datagrams per call, so the last bucket holds everything.
 */
export const BATCH_SIZE_BUCKETS: readonly number[] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/** Stats of a source that counts only what it delivers. */
export function newSourceStats(): SourceStats {
  return { datagrams: 0, batches: 0, bytes: 0, kernelDrops: 0, receiveErrors: 0, receiveTruncated: 0, skipped: {} };
}

export function newBatchSizeCounts(): Float64Array {
  return new Float64Array(BATCH_SIZE_BUCKETS.length);
}

/** Counts a batch about to be handed to the pipeline: its datagrams, their bytes, its size bucket. */
export function countBatch(stats: SourceStats, counts: Float64Array, batch: Batch): void {
  stats.batches++;
  stats.datagrams += batch.count;
  stats.bytes += batchBytes(batch);
  countBatchSize(counts, batch.count);
}

/** The datagrams' bytes as sent (wire lengths, cut ones whole). */
export function batchBytes(batch: Batch): number {
  const wire = batch.wireLengths;
  let bytes = 0;
  for (let i = 0; i < batch.count; i++) bytes += wire[i]!;
  return bytes;
}

/** Counts one batch of `n` datagrams in its bucket (not cumulative). */
export function countBatchSize(counts: Float64Array, n: number): void {
  counts[n > 1 ? Math.min(32 - Math.clz32(n - 1), BATCH_SIZE_BUCKETS.length - 1) : 0]!++;
}

/**
 * Where datagrams come from. One lifecycle for every kind:
 * start() resolves once the source is receiving (socket bound, interface or file open);
 * stop() stops receiving, delivers nothing more and is idempotent.
 */
export interface Source {
  readonly kind: string;
  readonly stats: SourceStats;
  /** True while the source is bound and delivering; /readyz reads it. */
  readonly ready: boolean;
  /** Usable receive-buffer bytes the kernel granted (half what getsockopt says); 0 when not a socket. */
  readonly recvBuffer: number;
  /** The bound UDP port (port 0 resolved); 0 when not a socket. */
  readonly port: number;
  /** Per BATCH_SIZE_BUCKETS bucket, how many batches had that many datagrams. */
  readonly batchSizeCounts: Float64Array;
  /**
   * The largest datagram delivered whole, when the source sized its buffers from the
   * configuration (native: the receive slots); longer ones are cut, their real size kept.
   * Undefined when every datagram arrives whole.
   */
  readonly maxDatagram?: number | undefined;
  /**
   * Zero-copy (native): the receive memory records wait in until written; its bytes come out
   * of the write budget, and whoever owns the writers says how to free it when low (onLow).
   */
  readonly slabRing?: SlabRing | null;
  /** Per receive thread (--workers N), for the `worker` label; absent when the main thread receives. */
  workerStats?(): readonly WorkerStats[];
  /** Brings counters that need I/O to read up to date (called at scrape time). */
  refresh?(): Promise<void>;
  /** Delivers, synchronously, what is already queued for the source (before a shutdown). */
  drain?(): void;
  start(sink: BatchSink): Promise<void>;
  stop(): Promise<void>;
}
