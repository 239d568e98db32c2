import type { Batch } from './batch.js';

/** Called once per batch, synchronously; the batch is only valid during the call. */
export type BatchSink = (batch: Batch) => void;

/** Counters a source keeps; read at scrape time, never pushed. */
export interface SourceStats {
  /** Datagrams handed to the pipeline. */
  datagrams: number;
  /** Batches handed to the pipeline. */
  batches: number;
  /** Datagrams the kernel dropped before we read them (socket buffer overflow), when known. */
  kernelDrops: number;
}

/**
 * Where datagrams come from. One lifecycle for every kind:
 * start() resolves once the source is receiving (socket bound, interface open);
 * close() stops receiving, delivers nothing more and is idempotent.
 */
export interface Source {
  readonly kind: string;
  readonly stats: SourceStats;
  /** True while the source is bound and delivering; /readyz reads it. */
  readonly ready: boolean;
  start(sink: BatchSink): Promise<void>;
  close(): Promise<void>;
}
