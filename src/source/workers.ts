/**
 * `--workers N`: N receive threads (receive-worker.ts), each with its own socket on the port
 * (SO_REUSEPORT: the kernel spreads datagrams by a hash of their addresses) or its own packet
 * ring (PACKET_FANOUT_HASH), merged here, on the main thread, into one time-ordered stream
 * for the one pipeline and its writers.
 *
 *   worker 0 ──{batch r,n}──▶ pending regions ─┐
 *   worker 1 ──{batch r,n}──▶ pending regions ─┼─▶ merge by kernel timestamp, up to the ──▶ sink(batch)
 *   worker k ──{tick T}────▶ (nothing before T)┘   smallest "nothing before" of all workers
 *                                                   │ region written: freed for its worker (Atomics)
 *
 * Each worker's stream is in time order, so a packet can be written once its timestamp is at
 * or below every worker's watermark (its latest packet, or the T of its latest tick): every
 * session's file then gets its records in time order, whichever workers its packets came
 * through, at the cost of a delay of about one tick. Merged batches point into the shared
 * slab: only a few numbers per packet are copied here, never the packet; a run that is a whole
 * region goes to the sink as it lies.
 *
 * A worker that dies is logged and counted, its packets already here are written, the others
 * go on, and the source stops being ready (/readyz): the NLB sends elsewhere rather than
 * losing a core's share silently.
 */
import { Worker } from 'node:worker_threads';
import { ConfigError } from '../config.js';
import { codedError, ErrorCode } from '../errors.js';
import type { Logger } from '../log.js';
import type { NativeBinding, NativeReceiver } from '../native/addon.js';
import { holdUdpPort } from './afpacket.js';
import { ADDR_BYTES, Batch, sharedArraysBytes } from './batch.js';
import { skipsByReason } from './outer.js';
import { batchBytes, countBatchSize, newBatchSizeCounts, type BatchSink, type Source, type SourceStats, type WorkerStats } from './source.js';
import { REGION_FREE, REGION_HELD, SLOT_BASE, STAT, STAT_COUNT, type ReceiveWorkerData, type WorkerMessage } from './worker-protocol.js';

/** Each worker's regions together stay within this (virtual; pages are touched where datagrams land). */
const WORKER_SLAB_BYTES = 64 * 1024 * 1024;
/** A ring worker's region: its frames packed, up to batchSize of them. */
const PACKED_REGION_BYTES = 4 * 1024 * 1024;
const MIN_REGIONS = 4;
const MAX_REGIONS = 16;
/** Packets per merged batch. */
const MERGE_CAPACITY = 1024;
/** How long stop() waits for the workers' last batches. */
const STOP_MS = 10_000;

export interface WorkerSourceOptions {
  readonly workers: number;
  readonly kind: 'native' | 'afpacket';
  readonly host: string;
  readonly port: number;
  /** afpacket: the interface and kernel filter. */
  readonly iface?: string;
  readonly bpf?: string | null;
  /** The loaded addon (the workers load their own copy). */
  readonly binding: NativeBinding;
  /** Each worker's socket buffer or ring. */
  readonly recvBufferBytes: number;
  readonly slotBytes: number;
  /** Datagrams per receive (slots per region). */
  readonly batchSize: number;
  /** How long a worker's source may hold a frame (afpacket: the ring's retire time). */
  readonly holdMs: number;
  readonly log: Logger;
}

interface Lane {
  readonly index: number;
  readonly worker: Worker;
  readonly control: Int32Array;
  readonly stats: Float64Array;
  /** Region views over the shared memory (offsets into the whole slab). */
  readonly views: Batch[];
  /** Regions received, not yet written, in order; `cursor` is the next slot of the first. */
  readonly queue: number[];
  readonly counts: number[];
  cursor: number;
  /** Nothing before wmSec.wmNsec is still to come from this worker. */
  wmSec: number;
  wmNsec: number;
  state: 'starting' | 'receiving' | 'done' | 'dead';
  /** The thread's Linux id, once it is receiving. */
  tid: number;
}

class PoolStats implements SourceStats {
  /** Counted on the main thread as batches are delivered (the workers count datagrams). */
  bytes = 0;
  constructor(private readonly lanes: () => readonly Lane[]) {}
  /** A ring worker's packets that were not ours, by reason, summed over the workers (non-zero only). */
  get skipped(): Readonly<Record<string, number>> {
    return skipsByReason((k) => this.sum(STAT.skipped + k));
  }
  /** The receive threads' sockets' buffers together (0 for rings). */
  get recvBuffer(): number {
    return this.sum(STAT.recvBuffer);
  }
  private sum(i: number): number {
    let n = 0;
    for (const l of this.lanes()) n += l.stats[i]!;
    return n;
  }
  get datagrams(): number {
    return this.sum(STAT.datagrams);
  }
  get batches(): number {
    return this.sum(STAT.batches);
  }
  get kernelDrops(): number {
    return this.sum(STAT.kernelDrops);
  }
  get receiveErrors(): number {
    return this.sum(STAT.receiveErrors);
  }
  get receiveTruncated(): number {
    return this.sum(STAT.receiveTruncated);
  }
}

export class WorkerSource implements Source {
  readonly kind: string;
  readonly stats: PoolStats;
  /** Merged batches handed to the sink, by size. */
  readonly batchSizeCounts = newBatchSizeCounts();
  /** Workers that died (exited without being asked). */
  deaths = 0;
  port = 0;
  private lanes: Lane[] = [];
  private sink: BatchSink = () => false;
  private readonly merged: Batch;
  private readonly regions: number;
  private readonly regionBytes: number;
  private state: 'idle' | 'starting' | 'receiving' | 'stopping' | 'closed' = 'idle';
  private stopped: Promise<void> | null = null;
  /** afpacket: the UDP socket that holds the port, never read. */
  private holder: NativeReceiver | undefined;
  private allDone: (() => void) | null = null;

  constructor(private readonly opts: WorkerSourceOptions) {
    this.kind = `${opts.kind} x${opts.workers}`;
    // A socket's batch lands in fixed slots; a ring worker copies its frames in, packed.
    this.regionBytes = opts.kind === 'afpacket' ? PACKED_REGION_BYTES : opts.batchSize * opts.slotBytes;
    this.regions = Math.max(MIN_REGIONS, Math.min(MAX_REGIONS, Math.floor(WORKER_SLAB_BYTES / this.regionBytes)));
    this.stats = new PoolStats(() => this.lanes);
    this.merged = new Batch(MERGE_CAPACITY, Buffer.alloc(0));
  }

  /** Usable bytes of the receive threads' socket buffers together (0 for rings). */
  get recvBuffer(): number {
    return this.stats.recvBuffer;
  }

  get ready(): boolean {
    return this.state === 'receiving' && this.deaths === 0;
  }

  get maxDatagram(): number | undefined {
    return this.opts.slotBytes < 65536 ? this.opts.slotBytes : undefined;
  }

  /** Per worker, for the `worker` label. */
  workerStats(): WorkerStats[] {
    return this.lanes.map((l) => ({
      datagrams: l.stats[STAT.datagrams]!,
      batches: l.stats[STAT.batches]!,
      kernelDrops: l.stats[STAT.kernelDrops]!,
      slabWaits: l.stats[STAT.slabWaits]!,
      slabDrops: l.stats[STAT.slabDrops]!,
      died: l.state === 'dead',
    }));
  }

  async start(sink: BatchSink): Promise<void> {
    if (this.state !== 'idle') throw codedError(ErrorCode.INVALID_STATE, `WorkerSource.start(): source is ${this.state}`);
    this.state = 'starting';
    this.sink = sink;
    const { opts, regions } = this;
    const slots = regions * opts.batchSize;
    const slabPerWorker = regions * this.regionBytes;
    const slabShared = new SharedArrayBuffer(slabPerWorker * opts.workers);
    const slab = Buffer.from(slabShared);
    this.merged.slab = slab;
    const started: Array<Promise<number>> = [];
    let port = opts.port;
    if (opts.kind === 'afpacket') {
      // The rings see every datagram; one socket, here, holds the port so none draws an ICMP error.
      const warn = (text: string): void => opts.log.warn({ event: 'afpacket_warning', iface: opts.iface, text }, text);
      this.holder = await holdUdpPort(opts.binding, opts.host, port, warn);
      port = this.holder?.address().port ?? port;
    }
    for (let w = 0; w < opts.workers; w++) {
      const meta = new SharedArrayBuffer(sharedArraysBytes(slots));
      const control = new SharedArrayBuffer(4 * (1 + regions));
      const stats = new SharedArrayBuffer(8 * STAT_COUNT);
      const data: ReceiveWorkerData = {
        index: w,
        kind: opts.kind,
        host: opts.host,
        port,
        iface: opts.iface ?? '',
        bpf: opts.bpf ?? null,
        // One fanout group per appliance (per process): two appliances on one host stay apart.
        fanout: process.pid & 0xffff,
        holdMs: opts.holdMs,
        recvBufferBytes: opts.recvBufferBytes,
        slotBytes: opts.slotBytes,
        batchSize: opts.batchSize,
        regionBytes: this.regionBytes,
        regions,
        slab: slabShared,
        slabOffset: w * slabPerWorker,
        meta,
        control,
        stats,
      };
      const views: Batch[] = [];
      for (let r = 0; r < regions; r++) {
        const v = new Batch(opts.batchSize, slab, { buffer: meta, total: slots, first: r * opts.batchSize });
        // Fixed slots (native); a ring worker writes each frame's offset as it packs them.
        if (opts.kind === 'native') for (let i = 0; i < opts.batchSize; i++) v.offsets[i] = w * slabPerWorker + (r * opts.batchSize + i) * opts.slotBytes;
        views.push(v);
      }
      const worker = new Worker(new URL('./receive-worker.js', import.meta.url), { workerData: data });
      const lane: Lane = {
        index: w,
        worker,
        control: new Int32Array(control),
        stats: new Float64Array(stats),
        views,
        queue: [],
        counts: [],
        cursor: 0,
        wmSec: 0,
        wmNsec: 0,
        state: 'starting',
        tid: 0,
      };
      this.lanes.push(lane);
      started.push(this.watch(lane));
      // Port 0: the first worker's socket picks the port, the others join it.
      if (w === 0 && port === 0 && opts.kind === 'native') {
        port = await started[0]!.catch(() => 0);
        if (port === 0) break;
      }
    }
    const results = await Promise.allSettled(started);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined || this.state !== 'starting') {
      this.holder?.close();
      await Promise.all(this.lanes.map((l) => l.worker.terminate()));
      this.state = 'closed';
      throw failed?.reason ?? codedError(ErrorCode.INVALID_STATE, 'WorkerSource stopped while starting');
    }
    this.port = opts.kind === 'afpacket' ? (this.holder?.address().port ?? 0) : (results[0] as PromiseFulfilledResult<number>).value;
    this.state = 'receiving';
    opts.log.info({ event: 'workers_started', workers: opts.workers, tids: this.lanes.map((l) => l.tid), regions, regionBytes: this.regionBytes }, `${opts.workers} receive threads started`);
  }

  /** The workers deliver what they hold as part of stop(). */
  drain(): void {}

  /**
   * Every worker stops receiving, reads what its socket holds and sends its last batches;
   * they are written, then this resolves. Idempotent.
   */
  stop(): Promise<void> {
    this.stopped ??= this.doStop();
    return this.stopped;
  }

  private async doStop(): Promise<void> {
    if (this.state !== 'receiving') {
      this.state = 'closed';
      this.holder?.close();
      await Promise.all(this.lanes.map((l) => l.worker.terminate()));
      return;
    }
    this.state = 'stopping';
    const done = new Promise<void>((resolve) => (this.allDone = resolve));
    for (const l of this.lanes) if (l.state === 'receiving') l.worker.postMessage({ t: 'stop' });
    this.checkAllDone();
    const timeout = setTimeout(() => this.allDone?.(), STOP_MS);
    await done;
    clearTimeout(timeout);
    for (const l of this.lanes) {
      if (l.state === 'receiving') this.opts.log.warn({ event: 'worker_stop_timeout', worker: l.index }, `receive worker ${l.index} did not finish within ${STOP_MS} ms`);
      l.wmSec = Infinity;
    }
    this.pump();
    this.state = 'closed';
    this.holder?.close();
    await Promise.all(this.lanes.map((l) => l.worker.terminate()));
  }

  /** Resolves with the worker's bound port once it receives; rejects when it cannot start. */
  private watch(lane: Lane): Promise<number> {
    return new Promise((resolve, reject) => {
      lane.worker.on('message', (m: WorkerMessage) => {
        switch (m.t) {
          case 'batch':
            return this.received(lane, m.r, m.n);
          case 'tick':
            return this.advance(lane, Math.floor(m.ms / 1000), (m.ms % 1000) * 1e6);
          case 'ready':
            lane.state = 'receiving';
            lane.tid = m.tid;
            return resolve(m.port);
          case 'failed': {
            lane.state = 'done';
            const err = m.config ? new ConfigError(m.message) : Object.assign(new Error(m.message), m.code === null ? {} : { code: m.code });
            return reject(err);
          }
          case 'done':
            lane.state = 'done';
            lane.wmSec = Infinity;
            this.pump();
            return this.checkAllDone();
        }
      });
      lane.worker.on('error', (err) => {
        if (lane.state === 'starting') {
          lane.state = 'dead';
          return reject(err);
        }
        this.died(lane, err.message);
      });
      lane.worker.on('exit', (code) => {
        if (lane.state === 'starting') {
          lane.state = 'dead';
          reject(codedError(ErrorCode.INVALID_STATE, `receive worker ${lane.index} exited (code ${code}) while starting`));
        } else if (lane.state === 'receiving') this.died(lane, `exited with code ${code}`);
      });
    });
  }

  private died(lane: Lane, reason: string): void {
    if (lane.state === 'dead' || lane.state === 'done') return;
    lane.state = 'dead';
    this.deaths++;
    this.opts.log.error({ event: 'worker_died', worker: lane.index, reason }, `receive worker ${lane.index} died (${reason}): its share of the traffic is lost until a restart; /readyz now fails`);
    // What it sent is written; nothing more will come from it.
    lane.wmSec = Infinity;
    this.pump();
    this.checkAllDone();
  }

  private checkAllDone(): void {
    if (this.allDone !== null && this.lanes.every((l) => l.state === 'done' || l.state === 'dead')) this.allDone();
  }

  private received(lane: Lane, r: number, n: number): void {
    if (n > 0) {
      lane.queue.push(r);
      lane.counts.push(n);
      const v = lane.views[r]!;
      this.advance(lane, v.tsSec[n - 1]!, v.tsNsec[n - 1]!);
    } else this.release(lane, r);
  }

  private advance(lane: Lane, sec: number, nsec: number): void {
    if (sec > lane.wmSec || (sec === lane.wmSec && nsec > lane.wmNsec)) {
      lane.wmSec = sec;
      lane.wmNsec = nsec;
      this.pump();
    }
  }

  /**
   * Writes, in timestamp order, every pending packet at or below the smallest watermark.
   * Per step: the lane with the oldest head packet gives a run of packets up to the next
   * lane's head (or the watermark).
   */
  private pump(): void {
    const lanes = this.lanes;
    let limSec = Infinity;
    let limNsec = 0;
    for (const l of lanes) {
      if (l.wmSec < limSec || (l.wmSec === limSec && l.wmNsec < limNsec)) {
        limSec = l.wmSec;
        limNsec = l.wmNsec;
      }
    }
    for (;;) {
      // The lane with the oldest head packet ...
      let best: Lane | null = null;
      let bSec = 0;
      let bNsec = 0;
      for (const l of lanes) {
        if (l.queue.length === 0) continue;
        const v = l.views[l.queue[0]!]!;
        const s = v.tsSec[l.cursor]!;
        const ns = v.tsNsec[l.cursor]!;
        if (best === null || s < bSec || (s === bSec && ns < bNsec)) {
          best = l;
          bSec = s;
          bNsec = ns;
        }
      }
      // ... gives packets up to the next oldest head of another lane, or the watermark.
      let nSec = limSec;
      let nNsec = limNsec;
      for (const l of lanes) {
        if (l === best || l.queue.length === 0) continue;
        const v = l.views[l.queue[0]!]!;
        const s = v.tsSec[l.cursor]!;
        const ns = v.tsNsec[l.cursor]!;
        if (s < nSec || (s === nSec && ns < nNsec)) {
          nSec = s;
          nNsec = ns;
        }
      }
      if (best === null || bSec > limSec || (bSec === limSec && bNsec > limNsec)) break;
      this.take(best, nSec, nNsec);
    }
    this.flush();
  }

  /** From lane l's first region: its packets up to (sec, nsec), at least one. */
  private take(l: Lane, sec: number, nsec: number): void {
    const r = l.queue[0]!;
    const v = l.views[r]!;
    const n = l.counts[0]!;
    let end = l.cursor + 1;
    while (end < n) {
      const s = v.tsSec[end]!;
      if (s > sec || (s === sec && v.tsNsec[end]! > nsec)) break;
      end++;
    }
    if (l.cursor === 0 && end === n && this.merged.count === 0) {
      v.count = n;
      this.deliver(v);
    } else {
      const m = this.merged;
      for (let i = l.cursor; i < end; i++) {
        if (m.count === MERGE_CAPACITY) this.flush();
        const j = m.count++;
        m.offsets[j] = v.offsets[i]!;
        m.lengths[j] = v.lengths[i]!;
        m.wireLengths[j] = v.wireLengths[i]!;
        m.tsSec[j] = v.tsSec[i]!;
        m.tsNsec[j] = v.tsNsec[i]!;
        m.srcPort[j] = v.srcPort[i]!;
        m.geneve[j] = v.geneve[i]!;
        m.srcAddr.set(v.srcAddr.subarray(i * ADDR_BYTES, i * ADDR_BYTES + ADDR_BYTES), j * ADDR_BYTES);
      }
      // The region's bytes are read by the sink when the merged batch goes: flush first.
      if (end === n) this.flush();
    }
    if (end < n) {
      l.cursor = end;
      return;
    }
    l.queue.shift();
    l.counts.shift();
    l.cursor = 0;
    this.release(l, r);
  }

  private flush(): void {
    if (this.merged.count === 0) return;
    this.deliver(this.merged);
    this.merged.count = 0;
  }

  private deliver(b: Batch): void {
    countBatchSize(this.batchSizeCounts, b.count);
    this.stats.bytes += batchBytes(b);
    this.sink(b);
  }

  /** Region r of the lane is written: free for its worker; handed over at once if the worker rests for want of one. */
  private release(l: Lane, r: number): void {
    const c = l.control;
    Atomics.store(c, 1 + r, REGION_FREE);
    if (Atomics.load(c, SLOT_BASE) !== -1) return;
    if (Atomics.compareExchange(c, 1 + r, REGION_FREE, REGION_HELD) !== REGION_FREE) return;
    if (Atomics.compareExchange(c, SLOT_BASE, -1, r * this.opts.batchSize) !== -1) Atomics.store(c, 1 + r, REGION_FREE);
    else Atomics.notify(c, SLOT_BASE); // a ring worker waits for it
  }
}
