/**
 * Bench section: the decoder on one core over a realistic mix of mirrored
 * frames (64 to 1500 bytes; IPv4 and IPv6; TCP, UDP, a little ICMP; some VLAN
 * tags and IPv6 extension headers), packed into one slab as a batch would be.
 *
 * Rows, all in the same run:
 *   baseline   a loop that reads one byte per frame: the floor any per-frame work sits on
 *   naive      a decoder written the usual way: an object and a subarray per layer
 *   Decoder    ours
 *   + talkers  ours plus two TopTalkers.add() calls per frame, as the pipeline will do
 *   + flows    ours plus FlowTable.add() per frame (--flows): the mix holds ~4000 flows, so the
 *              table stays in cache; a few intervals roll over during the run
 *
 * Allocation: the heap in use before and after a short run between forced
 * collections (no collection in between, so every allocated byte is still
 * there), divided by the frames; and the collections counted over the long
 * run with a PerformanceObserver. The machine is shared: throughput is noisy,
 * the best of a few repetitions is shown.
 */
import { PerformanceObserver } from 'node:perf_hooks';
import v8 from 'node:v8';
import vm from 'node:vm';
import { Decoder } from '../../src/decode/packet.js';
import { FlowBudget, FlowTable, type FlowInterval } from '../../src/session/flows.js';
import { TopTalkers } from '../../src/session/talkers.js';
import { ether, extOpts, icmp, icmpv6, ipv4, ipv6, SYN_OPTIONS, tcp, TPID_8021Q, udp } from '../lib/frames.js';
import { Random } from '../lib/random.js';

export const MIX_FRAMES = 4096;

/** Seeded, and seeded again by buildMix(), so every section and every run benches the same mix. */
const MIX_SEED = 0x2545f491;
let random = new Random(MIX_SEED);

/** Frame sizes as a mirror of a busy VPC sees them: many ACK-sized, many full-sized, some in between. */
function frameSize(): number {
  const r = random.below(100);
  if (r < 40) return 64 + random.below(40);
  if (r < 60) return 200 + random.below(400);
  return 1400 + random.below(101);
}

function mixFrame(): Buffer {
  const size = frameSize();
  const v6 = random.below(100) < 20;
  const kind = random.below(100);
  const proto = kind < 85 ? 6 : kind < 97 ? 17 : v6 ? 58 : 1;
  const tags: [number, number][] = random.below(100) < 10 ? [[TPID_8021Q, 1 + random.below(4094)]] : [];
  const hbh = v6 && random.below(100) < 5;
  const headers = 14 + 4 * tags.length + (v6 ? 40 : 20) + (hbh ? 8 : 0);
  const opts = proto === 6 && random.below(100) < 10 ? SYN_OPTIONS : undefined;
  const l4Header = proto === 6 ? 20 + (opts ? opts.length : 0) : 8;
  const body = Buffer.alloc(Math.max(0, size - headers - l4Header), 0x5a);
  // Clients from a pool of a few hundred, most traffic from a few of them; a handful of servers.
  const client = Math.floor(400 ** (random.below(1000) / 1000));
  const server = random.below(16);
  const src = `10.0.${client >> 8}.${client & 255}`;
  const dst = `10.1.0.${server}`;
  const l4 =
    proto === 6
      ? tcp({ sport: 1024 + random.below(60000), dport: 443, flags: 0x018, seq: random.below(1 << 30), options: opts }, body)
      : proto === 17
        ? udp(1024 + random.below(60000), 53, body)
        : proto === 1
          ? icmp(8, 0, random.below(1 << 30), body)
          : icmpv6(128, 0, Buffer.concat([Buffer.alloc(4), body]));
  if (!v6) return ether(0x0800, ipv4(proto, l4, { src, dst }), { tags });
  const src6 = `2001:db8::${client.toString(16)}`;
  const dst6 = `2001:db8:1::${server.toString(16)}`;
  const payload = hbh ? Buffer.concat([extOpts(proto, Buffer.from('05020000', 'hex')), l4]) : l4;
  return ether(0x86dd, ipv6(hbh ? 0 : proto, payload, { src: src6, dst: dst6 }), { tags });
}

export interface Mix {
  slab: Buffer;
  offsets: Uint32Array;
  lengths: Uint32Array;
  avgLen: number;
}

function buildMix(): Mix {
  random = new Random(MIX_SEED); // the same mix in every section that builds one
  const frames = Array.from({ length: MIX_FRAMES }, mixFrame);
  const slab = Buffer.concat(frames);
  const offsets = new Uint32Array(MIX_FRAMES);
  const lengths = new Uint32Array(MIX_FRAMES);
  let off = 0;
  frames.forEach((f, i) => {
    offsets[i] = off;
    lengths[i] = f.length;
    off += f.length;
  });
  return { slab, offsets, lengths, avgLen: slab.length / MIX_FRAMES };
}

/**
 * Runs `frames` frames through the case; returns a sum so nothing is optimised
 * away. The sum is kept a small integer (| 0): a double accumulator would be
 * boxed across the calls and its allocations charged to the case.
 */
export type Case = (mix: Mix, frames: number) => number;

const baseline: Case = (mix, frames) => {
  const { slab, offsets } = mix;
  let sink = 0;
  for (let n = 0; n < frames; n++) sink = (sink + slab[offsets[n & (MIX_FRAMES - 1)] + 12]) | 0;
  return sink;
};

interface NaiveLayer {
  type: number;
  payload: Buffer;
}

/** How decoders are commonly written in JS: a result object and a Buffer view per layer. */
function naiveDecode(buf: Buffer): { eth: NaiveLayer; ip?: { proto: number; src: number; dst: number; payload: Buffer }; ports?: [number, number] } {
  const eth: NaiveLayer = { type: buf.readUInt16BE(12), payload: buf.subarray(14) };
  let p = eth.payload;
  while (eth.type === 0x8100) {
    eth.type = p.readUInt16BE(2);
    p = p.subarray(4);
  }
  if (eth.type === 0x0800) {
    const ip = { proto: p[9], src: p.readUInt32BE(12), dst: p.readUInt32BE(16), payload: p.subarray((p[0] & 15) * 4) };
    return { eth, ip, ports: [ip.payload.readUInt16BE(0), ip.payload.readUInt16BE(2)] };
  }
  if (eth.type === 0x86dd) {
    const ip = { proto: p[6], src: p.readUInt32BE(8), dst: p.readUInt32BE(24), payload: p.subarray(40) };
    return { eth, ip, ports: [ip.payload.readUInt16BE(0), ip.payload.readUInt16BE(2)] };
  }
  return { eth };
}

const naive: Case = (mix, frames) => {
  const { slab, offsets, lengths } = mix;
  let sink = 0;
  for (let n = 0; n < frames; n++) {
    const i = n & (MIX_FRAMES - 1);
    const r = naiveDecode(slab.subarray(offsets[i], offsets[i] + lengths[i]));
    sink = (sink + r.eth.type + (r.ip ? r.ip.proto : 0) + (r.ports ? r.ports[0] : 0)) | 0;
  }
  return sink;
};

const decoder = new Decoder();

export const decodeCase: Case = (mix, frames) => {
  const { slab, offsets, lengths } = mix;
  const d = decoder;
  let sink = 0;
  for (let n = 0; n < frames; n++) {
    const i = n & (MIX_FRAMES - 1);
    sink = (sink + d.decode(slab, offsets[i], lengths[i]) + d.l3 + d.l4 + d.claimedFrameLength + d.srcPort) | 0;
  }
  return sink;
};

const talkers = new TopTalkers(64);

const oursWithTalkers: Case = (mix, frames) => {
  const { slab, offsets, lengths } = mix;
  const d = decoder;
  const tt = talkers;
  let sink = 0;
  for (let n = 0; n < frames; n++) {
    const i = n & (MIX_FRAMES - 1);
    sink = (sink + d.decode(slab, offsets[i], lengths[i]) + d.l3 + d.l4) | 0;
    if (d.addrLen !== 0) {
      tt.add(slab, d.srcAddrOff, d.addrLen, lengths[i]);
      tt.add(slab, d.dstAddrOff, d.addrLen, lengths[i]);
    }
  }
  return sink;
};

// Sealed intervals are handed straight back, as the flow-log writer does once it has written them.
const flowTable: FlowTable = new FlowTable({
  intervalSec: 60,
  budget: new FlowBudget(),
  sealed: (iv: FlowInterval) => flowTable.recycle(iv),
});

/** Frames given to the flow table so far, across runs: its clock never goes back. */
let flowFrames = 0;
/** Receive seconds as a batch holds them. */
const flowSec = Uint32Array.of(1_700_000_000);

const oursWithFlows: Case = (mix, frames) => {
  const { slab, offsets, lengths } = mix;
  const d = decoder;
  const ft = flowTable;
  let sink = 0;
  for (let n = 0; n < frames; n++) {
    const i = n & (MIX_FRAMES - 1);
    sink = (sink + d.decode(slab, offsets[i], lengths[i]) + d.l3 + d.l4) | 0;
    // A new 60 s interval every 2^22 frames: the roll-over is part of the cost. (The second
    // count is only ever touched in the typed array: as a number above 2^30 it would be boxed
    // in unoptimised code and the case charged for it.)
    const f = flowFrames++ & 0x3fffffff;
    if ((f & 0x3fffff) === 0) flowSec[0]! += 60;
    ft.add(d, flowSec, 0);
  }
  return sink;
};

function exposeGc(): () => void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) return g;
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

let gcRuns = 0;

/** Lets the observer deliver the entries of collections that have happened. */
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 20));

export interface Result {
  name: string;
  framesPerSec: number;
  nsPerFrame: number;
  bytesPerFrame: number;
  /** False when a collection ran during the allocation run: bytesPerFrame is then a lower bound. */
  bytesExact: boolean;
  gcs: number;
}

async function measure(name: string, fn: Case, mix: Mix, frames: number, reps: number, gc: () => void): Promise<Result> {
  fn(mix, 200_000); // warm up: let the optimiser settle before anything is timed
  // Allocation: heap growth over a run between collections, short enough that no
  // scavenge interrupts it, minus the growth over an empty run (the measuring's own
  // cost). Noise only ever adds bytes, so the smallest of three is kept.
  const allocFrames = 1_000;
  const grow = async (n: number): Promise<{ bytes: number; clean: boolean }> => {
    gc();
    await settle();
    const g0 = gcRuns;
    const before = v8.getHeapStatistics().used_heap_size;
    fn(mix, n);
    const after = v8.getHeapStatistics().used_heap_size;
    await settle();
    return { bytes: after - before, clean: gcRuns === g0 };
  };
  const least = async (n: number): Promise<{ bytes: number; clean: boolean }> => {
    let best = await grow(n);
    for (let i = 0; i < 2; i++) {
      const g = await grow(n);
      if (g.bytes < best.bytes) best = g;
    }
    return best;
  };
  const empty = await least(0);
  const full = await least(allocFrames);
  let sink = 0;
  // Throughput and collections over the long run; best of `reps` on a shared machine.
  let best = Infinity;
  let gcs = 0;
  for (let r = 0; r < reps; r++) {
    gc();
    await settle();
    const g0 = gcRuns;
    const t0 = process.hrtime.bigint();
    sink = (sink + fn(mix, frames)) | 0;
    const ns = Number(process.hrtime.bigint() - t0);
    await settle();
    gcs = Math.max(gcs, gcRuns - g0);
    best = Math.min(best, ns);
  }
  if (sink === 0.5) console.log('unreachable');
  return {
    name,
    framesPerSec: (frames * 1e9) / best,
    nsPerFrame: best / frames,
    bytesPerFrame: Math.max(0, full.bytes - empty.bytes) / allocFrames,
    bytesExact: full.clean && empty.clean,
    gcs,
  };
}

/**
 * Measures each case over the decode mix (built once), after one thrown-away warm-up run,
 * with collections counted; the bench sections that compare against the decoder share it.
 */
export async function measureCases(cases: readonly (readonly [string, Case])[], opts: { quick: boolean }): Promise<{ mix: Mix; frames: number; reps: number; results: Result[] }> {
  const frames = opts.quick ? 1_000_000 : 10_000_000;
  const reps = opts.quick ? 1 : 3;
  const gc = exposeGc();
  const obs = new PerformanceObserver((list) => {
    gcRuns += list.getEntries().length;
  });
  obs.observe({ entryTypes: ['gc'] });
  const mix = buildMix();
  // The first measurement pays for setting the measuring up; it is thrown away.
  await measure('warm-up', baseline, mix, 100_000, 1, gc);
  const results: Result[] = [];
  for (const [name, fn] of cases) results.push(await measure(name, fn, mix, frames, reps, gc));
  obs.disconnect();
  return { mix, frames, reps, results };
}

/** The table: one row per case, x baseline against the first row. */
export function printResults(title: string, results: readonly Result[]): void {
  const base = results[0]!.nsPerFrame;
  console.log(title);
  const head = ['case', 'frames/s', 'ns/frame', 'x baseline', 'bytes/frame', 'GCs'];
  const rows = results.map((r) => [
    r.name,
    `${(r.framesPerSec / 1e6).toFixed(1)} M`,
    r.nsPerFrame.toFixed(1),
    (r.nsPerFrame / base).toFixed(1),
    (r.bytesExact ? '' : '>= ') + r.bytesPerFrame.toFixed(2),
    String(r.gcs),
  ]);
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  const line = (cells: string[]): string => cells.map((s, c) => (c === 0 ? s.padEnd(widths[c]) : s.padStart(widths[c]))).join('  ');
  console.log(line(head));
  for (const r of rows) console.log(line(r));
}

export const MIX_DESCRIPTION = `mix of ${MIX_FRAMES} frames (64..1500 B, 80% IPv4, 85% TCP to 443, 12% UDP to 53, 10% VLAN); one core, shared machine: noisy`;

export async function run(opts: { quick: boolean }): Promise<void> {
  const { mix, frames, reps, results } = await measureCases(
    [
      ['baseline: read 1 byte/frame', baseline],
      ['naive: object + subarray/layer', naive],
      ['Decoder.decode', decodeCase],
      ['Decoder.decode + 2 talker adds', oursWithTalkers],
      ['Decoder.decode + FlowTable.add', oursWithFlows],
    ],
    opts,
  );
  printResults(`\n## decode: ${(frames / 1e6).toFixed(0)} M frames per row, best of ${reps}; ${MIX_DESCRIPTION}, avg ${mix.avgLen.toFixed(0)} B`, results);
  for (const d of [results[2]!, results[4]!]) {
    console.log(
      `goal (${d.name}): >= 10 M frames/s and 0 bytes/frame -> ${(d.framesPerSec / 1e6).toFixed(1)} M frames/s, ${d.bytesPerFrame.toFixed(2)} bytes/frame, ${d.gcs} GCs in ${(frames / 1e6).toFixed(0)} M frames`,
    );
  }
}
