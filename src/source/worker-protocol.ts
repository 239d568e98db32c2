/**
 * What the main thread (workers.ts) and a receive thread (receive-worker.ts) share: the
 * layout of the shared memory and the messages. One message per batch or tick, never per packet.
 *
 * control (Int32Array over a SharedArrayBuffer):
 *   [SLOT_BASE]   the slot the receiver fills next (region r starts at r * batchSize); -1 = none free
 *   [1 + r]       region r: REGION_FREE, or REGION_HELD (being filled, or waiting at the main thread)
 * stats (Float64Array over a SharedArrayBuffer): indexed by STAT, written by the worker,
 * read by the main thread at scrape time.
 */
import { SKIP_REASONS } from './outer.js';

export const SLOT_BASE = 0;
export const REGION_FREE = 0;
export const REGION_HELD = 1;

export const STAT = {
  datagrams: 0,
  batches: 1,
  kernelDrops: 2,
  receiveErrors: 3,
  receiveTruncated: 4,
  /** Times every region was waiting at the main thread and the receiver had to rest. */
  slabWaits: 5,
  /** Frames a ring worker had read but no free region to put in (afpacket only). */
  slabDrops: 6,
  /** The socket receive buffer the kernel granted (usable bytes; native only). */
  recvBuffer: 7,
  /** First of SKIP_REASONS.length counts: packets a ring worker captured that were not ours, by reason. */
  skipped: 8,
} as const;
export const STAT_COUNT = STAT.skipped + SKIP_REASONS.length;

/**
 * Every TICK_MS an idle worker reads what is queued and reports "nothing before T": the
 * main thread writes the other workers' packets up to the smallest such T, so a file's
 * records stay in time order and wait at most about TICK_MS + TICK_MARGIN_MS (+ the ring's
 * retire time for afpacket) for a quiet worker.
 */
export const TICK_MS = 5;
/** Kernel timestamps are taken a little before the datagram is queued where we read it. */
export const TICK_MARGIN_MS = 2;

export interface ReceiveWorkerData {
  readonly index: number;
  readonly kind: 'native' | 'afpacket';
  readonly host: string;
  readonly port: number;
  readonly iface: string;
  readonly bpf: string | null;
  readonly fanout: number;
  /** How long the source may hold a frame before handing it over (the ring's retire time). */
  readonly holdMs: number;
  readonly recvBufferBytes: number;
  readonly slotBytes: number;
  /** Slots per region: the most one receive hands over. */
  readonly batchSize: number;
  readonly regions: number;
  /** Bytes of slab per region: batchSize * slotBytes, or (afpacket) frames packed up to this. */
  readonly regionBytes: number;
  /** All workers' slabs, one after the other; this worker's starts at slabOffset. */
  readonly slab: SharedArrayBuffer;
  readonly slabOffset: number;
  /** sharedArraysBytes(regions * batchSize): the per-slot arrays. */
  readonly meta: SharedArrayBuffer;
  readonly control: SharedArrayBuffer;
  readonly stats: SharedArrayBuffer;
}

export type WorkerMessage =
  /** Receiving on port; tid is the thread's Linux id (for per-thread CPU). */
  | { readonly t: 'ready'; readonly port: number; readonly tid: number }
  | { readonly t: 'failed'; readonly message: string; readonly code: string | null; readonly config: boolean }
  /** Region r holds n datagrams from its first slot on, in the order received. */
  | { readonly t: 'batch'; readonly r: number; readonly n: number }
  /** Nothing stamped before ms (epoch milliseconds) is still to come from this worker. */
  | { readonly t: 'tick'; readonly ms: number }
  /** Stopped: everything it received was sent. */
  | { readonly t: 'done' };
