/**
 * For sources that are handed one packet at a time (node:dgram, libpcap): each packet is
 * copied into a slab at once, and the batch goes to the pipeline on setImmediate, after the
 * event-loop turn that delivered the burst, so downstream sees batches as from recvmmsg.
 */
import { Batch } from './batch.js';
import { countBatch, newBatchSizeCounts, newSourceStats, type BatchSink, type SourceStats } from './source.js';

export class Batcher {
  readonly batch: Batch;
  readonly stats: SourceStats = newSourceStats();
  readonly batchSizeCounts = newBatchSizeCounts();
  /** Bytes of the slab in use: where the next packet is copied. */
  used = 0;
  private scheduled = false;
  private sink: BatchSink | null = null;

  constructor(
    private readonly capacity: number,
    private readonly slabBytes: number,
  ) {
    this.batch = new Batch(capacity, Buffer.allocUnsafeSlow(slabBytes));
  }

  start(sink: BatchSink): void {
    this.sink = sink;
  }

  /** Makes room for a packet of `len` bytes at `used` (delivering the batch when full). */
  room(len: number): void {
    if (this.batch.count === this.capacity || this.used + len > this.slabBytes) this.flush();
  }

  /** The packet copied at `used` (len bytes) is in slot batch.count - 1: keep it, deliver soon. */
  commit(len: number): void {
    this.used += len;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }

  readonly flush = (): void => {
    this.scheduled = false;
    const b = this.batch;
    if (b.count === 0 || this.sink === null) return;
    countBatch(this.stats, this.batchSizeCounts, b);
    this.sink(b);
    b.count = 0;
    this.used = 0;
  };
}

/** What the per-packet sources share: a Batcher and the Source fields it keeps. */
export abstract class BatchingSource {
  protected readonly batcher: Batcher;

  constructor(capacity: number, slabBytes: number) {
    this.batcher = new Batcher(capacity, slabBytes);
  }

  get stats(): SourceStats {
    return this.batcher.stats;
  }

  get batchSizeCounts(): Float64Array {
    return this.batcher.batchSizeCounts;
  }
}
