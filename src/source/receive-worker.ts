/**
 * One receive thread of `--workers N` (workers.ts starts it): its own socket (SO_REUSEPORT)
 * or packet ring (PACKET_FANOUT), reading into regions of memory the main thread shares.
 *
 *   socket ──recvmmsg──▶ region r of the shared slab ──{batch, r, n}──▶ main thread (merge, write)
 *                          ▲                                               │
 *                          └──── region r marked free (Atomics) ◀──────────┘ once written
 *
 * No copy and no message per packet: a batch is received where the main thread reads it, and
 * one message names it. When every region is waiting at the main thread the receiver rests
 * (slotBase -1) and the kernel holds, or drops and counts, what arrives meanwhile. Every
 * TICK_MS the thread reads what is queued and says "nothing older than T is still to come",
 * so the main thread can write an idle worker's peers without waiting for it.
 */
import { readlinkSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { setTimeout as sleep } from 'node:timers/promises';
import { AfPacketSource } from './afpacket.js';
import { Batch, ADDR_BYTES } from './batch.js';
import { NativeSource } from './native.js';
import { SKIP_REASONS } from './outer.js';
import { codedError, ErrorCode } from '../errors.js';
import type { Source } from './source.js';
import { REGION_FREE, REGION_HELD, SLOT_BASE, STAT, TICK_MARGIN_MS, TICK_MS, type ReceiveWorkerData, type WorkerMessage } from './worker-protocol.js';

/** How long a ring worker waits for a free region before it drops (and counts) a batch. */
const WAIT_MS = 2000;
/** How long the stop drain waits for the main thread to free a region before giving up. */
const STOP_DRAIN_MS = 5000;

const port = parentPort;
if (port === null) throw codedError(ErrorCode.INVALID_STATE, 'receive-worker.js runs as a worker thread (source/workers.ts starts it)');
const d = workerData as ReceiveWorkerData;
const cap = d.batchSize;
const total = d.regions * cap;
const slab = Buffer.from(d.slab, d.slabOffset, d.regions * d.regionBytes);
const batch = new Batch(total, slab, { buffer: d.meta, total, first: 0 });
const control = new Int32Array(d.control);
const stats = new Float64Array(d.stats);
const post = (m: WorkerMessage): void => port.postMessage(m);

/** The next free region after r becomes the one the receiver fills; -1 (rest) when none is. */
function nextRegion(r: number): void {
  for (let k = 1; k <= d.regions; k++) {
    const r2 = (r + k) % d.regions;
    if (Atomics.compareExchange(control, 1 + r2, REGION_FREE, REGION_HELD) === REGION_FREE) {
      Atomics.store(control, SLOT_BASE, r2 * cap);
      return;
    }
  }
  Atomics.store(control, SLOT_BASE, -1);
  stats[STAT.slabWaits]++;
  // A region freed between the scan and the store would otherwise go unnoticed: the main
  // thread hands one over only once it sees -1 (release() in workers.ts).
  for (let r2 = 0; r2 < d.regions; r2++) {
    if (Atomics.compareExchange(control, 1 + r2, REGION_FREE, REGION_HELD) !== REGION_FREE) continue;
    if (Atomics.compareExchange(control, SLOT_BASE, -1, r2 * cap) !== -1) Atomics.store(control, 1 + r2, REGION_FREE);
    return;
  }
}

const paused = (): boolean => Atomics.load(control, SLOT_BASE) < 0;

let source: Source & { drain(): number | void };
let copyInto: ((from: Batch) => void) | null = null;
if (d.kind === 'native') {
  source = new NativeSource({
    host: d.host,
    port: d.port,
    recvBufferBytes: d.recvBufferBytes,
    slotBytes: d.slotBytes,
    batchSize: cap,
    reusePort: true,
    saturatedRestMs: 1,
    shared: { batch, slotBase: control.subarray(SLOT_BASE, SLOT_BASE + 1) },
  });
} else {
  // The ring is this thread's mapping, which the main thread cannot see: each frame is copied
  // once into a shared region (on this thread's core), cut to the slot.
  source = new AfPacketSource({ iface: d.iface, listen: [{ host: d.host, port: d.port }], geneve: null, bpf: d.bpf, ringBytes: d.recvBufferBytes, fanout: d.fanout, holdPort: false });
  // A region fills up to `cap` frames or its bytes; with none free the thread waits for the
  // main thread to write one (the ring keeps filling meanwhile, and drops and counts when full).
  copyInto = (from) => {
    let base = Atomics.load(control, SLOT_BASE);
    if (base < 0) base = waitForRegion();
    let k = 0;
    let used = 0;
    for (let i = 0; i < from.count; i++) {
      const len = Math.min(from.lengths[i]!, d.slotBytes);
      if (k === cap || used + len > d.regionBytes) {
        hand(base, k);
        base = waitForRegion();
        k = 0;
        used = 0;
      }
      if (base < 0) {
        stats[STAT.slabDrops] += from.count - i;
        return;
      }
      const s = base + k;
      const at = (base / cap) * d.regionBytes + used;
      from.slab.copy(slab, at, from.offsets[i]!, from.offsets[i]! + len);
      batch.offsets[s] = d.slabOffset + at;
      batch.lengths[s] = len;
      batch.wireLengths[s] = from.wireLengths[i]!;
      batch.tsSec[s] = from.tsSec[i]!;
      batch.tsNsec[s] = from.tsNsec[i]!;
      batch.srcPort[s] = from.srcPort[i]!;
      batch.srcAddr.set(from.srcAddr.subarray(i * ADDR_BYTES, i * ADDR_BYTES + ADDR_BYTES), s * ADDR_BYTES);
      batch.geneve[s] = from.geneve[i]!;
      k++;
      used += len;
    }
    if (k > 0) hand(base, k);
  };
}

/** The slot of a free region, waiting up to WAIT_MS for the main thread to free one; -1 if none came. */
function waitForRegion(): number {
  const until = Date.now() + WAIT_MS;
  let base = Atomics.load(control, SLOT_BASE);
  while (base < 0 && Date.now() < until) {
    Atomics.wait(control, SLOT_BASE, -1, 50);
    base = Atomics.load(control, SLOT_BASE);
  }
  return base;
}

/** Region (base / cap) holds n datagrams: tell the main thread, move on to a free region. */
function hand(base: number, n: number): void {
  const r = base / cap;
  post({ t: 'batch', r, n });
  stats[STAT.datagrams] += n;
  stats[STAT.batches]++;
  nextRegion(r);
}

/** Every half second, at start and at stop (skipped builds an object: not per batch). */
function copyStats(): void {
  const s = source.stats;
  stats[STAT.kernelDrops] = s.kernelDrops;
  stats[STAT.receiveErrors] = s.receiveErrors;
  stats[STAT.receiveTruncated] = s.receiveTruncated;
  stats[STAT.recvBuffer] = source.recvBuffer;
  const skipped = s.skipped;
  SKIP_REASONS.forEach((reason, k) => (stats[STAT.skipped + k] = skipped[reason] ?? 0));
}

let ticks = 0;
const tick = (): void => {
  const before = Date.now();
  if (paused()) return;
  source.drain();
  // Read until the socket (or the ring's handed-over blocks) ran dry after `before`: nothing
  // stamped before then is still to come, but for what the ring keeps in an open block.
  if (!paused()) post({ t: 'tick', ms: before - TICK_MARGIN_MS - d.holdMs });
  if (++ticks % 100 === 0) copyStats();
};

async function stop(): Promise<void> {
  clearInterval(timer);
  const until = Date.now() + STOP_DRAIN_MS;
  if (d.kind === 'afpacket') {
    await source.stop(); // waits for the open block, delivers it, closes
  } else {
    while (Date.now() < until) {
      if (paused()) {
        await sleep(1);
        continue;
      }
      const n = source.drain() ?? 0;
      if (n === 0 && !paused()) break;
    }
    await source.stop();
  }
  copyStats();
  post({ t: 'done' });
}

const timer = setInterval(tick, TICK_MS);
timer.unref();
port.on('message', (m: { t: string }) => {
  if (m.t === 'stop') void stop();
});

Atomics.store(control, 1, REGION_HELD);
Atomics.store(control, SLOT_BASE, 0);
try {
  await source.start((b) => {
    if (copyInto !== null) copyInto(b);
    else hand(Atomics.load(control, SLOT_BASE), b.count);
    return false;
  });
  // "<pid>/task/<tid>": this thread's id, for per-thread CPU accounting (ps -L, the bench).
  const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
  copyStats();
  post({ t: 'ready', port: source.port, tid });
} catch (err) {
  const e = err as NodeJS.ErrnoException;
  post({ t: 'failed', message: e.message, code: e.code ?? null, config: e.name === 'ConfigError' });
  clearInterval(timer);
  port.close();
}
