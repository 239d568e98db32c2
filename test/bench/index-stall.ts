/**
 * The event-loop stall at a file's close: the index step's encoding of a big file's sidecar
 * (sorting the key logs, writing the postings) on the event loop (the baseline: what every
 * close did before the index thread) against on the index thread, same builders, same run.
 * Each builder is fed as a writer feeds it (IndexBuilder.add per record) with 700,000
 * records of 80-byte frames (a 64 MiB file) of 50,000 random IPv4 TCP/UDP flows, each record
 * a flow drawn at random; the capture on disk is a sparse file of the size the builder
 * covered (the step reads nothing of it). The stall is the longest event-loop delay
 * (perf_hooks.monitorEventLoopDelay, 1 ms resolution) while the step runs; the first file
 * of the thread also starts the thread. The floor is the same watch over an idle wait as long
 * as the loop's step: what the machine's neighbours and the timer's resolution add.
 */
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FinishedFile } from '../../src/capture/catalog.js';
import { IndexBuilder } from '../../src/finish/index-build.js';
import { IndexStep } from '../../src/finish/index-step.js';
import { FILE_HEADER_LEN, LINKTYPE_ETHERNET } from '../../src/pcap/pcap.js';
import { Random } from '../lib/random.js';
import { printTable } from './table.js';

const FLOWS = 50_000;
const RECORDS = 700_000;
const FRAME = 80;

/** A builder fed RECORDS records as a writer would, and the bytes it covered. */
function fedBuilder(random: Random, flows: readonly number[][]): IndexBuilder {
  const frame = Buffer.alloc(FRAME, 0x5a);
  frame.fill(0, 0, 54);
  frame.writeUInt16BE(0x0800, 12);
  frame[14] = 0x45;
  frame[22] = 64;
  const b = new IndexBuilder(Buffer.alloc(FILE_HEADER_LEN), LINKTYPE_ETHERNET);
  let offset = FILE_HEADER_LEN;
  for (let i = 0; i < RECORDS; i++) {
    const f = flows[random.below(flows.length)]!;
    frame.writeUInt32BE(f[0]!, 26);
    frame.writeUInt32BE(f[1]!, 30);
    frame[23] = f[4]!;
    frame.writeUInt16BE(f[2]!, 34);
    frame.writeUInt16BE(f[3]!, 36);
    b.add(frame, 0, FRAME, FRAME, 1_790_000_000 + (i >>> 14), (i & 0x3fff) * 1000, offset);
    offset += 16 + FRAME;
  }
  b.end(offset);
  return b;
}

interface Close {
  readonly stepMs: number;
  readonly stallMs: number;
}

/** The longest event-loop delay while `work` runs, and how long it took. */
async function watched(work: () => Promise<void>): Promise<Close> {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  // Its first tick only starts the clock, and a stall shows when the tick after it comes.
  await sleep(5);
  const t0 = performance.now();
  await work();
  const stepMs = performance.now() - t0;
  await sleep(5);
  h.disable();
  return { stepMs, stallMs: h.max / 1e6 };
}

/** Runs the index step on one file fed to `builder`, watching the event loop. */
async function close(step: IndexStep, dir: string, n: number, builder: IndexBuilder): Promise<Close> {
  const path = join(dir, `f${n}.pcap`);
  await writeFile(path, '');
  await truncate(path, builder.covered);
  const file = { path } as FinishedFile;
  step.tapped(file, builder);
  const c = await watched(() => step.run(file));
  if (step.failed > 0 || step.built !== n % 100 + 1) throw new Error('the index step did not index the file');
  return c;
}

export async function run(opts: { quick: boolean }): Promise<void> {
  const files = opts.quick ? 2 : 4;
  console.log(`\n## index-stall: event-loop stall at a file's close, sidecar encoded on the loop (baseline) vs on the index thread; ${files} files of ${RECORDS.toLocaleString('en-US')} records (${FRAME} B frames), ${FLOWS.toLocaleString('en-US')} random flows`);
  const dir = await mkdtemp(join(tmpdir(), 'mirrorcap-bench-stall-'));
  const random = new Random(0x57a11);
  const flows = Array.from({ length: FLOWS }, () => [(10 << 24) | random.below(1 << 24), ((172 << 24) | random.below(1 << 20)) >>> 0, 1024 + random.below(60000), [443, 80, 53][random.below(3)]!, random.below(4) === 0 ? 17 : 6]);
  const quiet = { indexed: () => undefined, failed: () => undefined, abandoned: () => undefined, threadFailed: () => undefined };
  const modes: [string, IndexStep][] = [
    ['loop', new IndexStep(quiet, { threadFrom: Infinity })],
    ['thread', new IndexStep(quiet)],
  ];
  const results = new Map<string, Close[]>([...modes.map(([m]) => m), 'nothing (floor)'].map((m) => [m, []]));
  try {
    for (let n = 0; n < files; n++) {
      // Alternating, so warm-up and the neighbours weigh on both alike.
      for (const [mode, step] of n % 2 === 0 ? modes : [...modes].reverse()) results.get(mode)!.push(await close(step, dir, results.get(mode)!.length + (mode === 'loop' ? 0 : 100), fedBuilder(random, flows)));
    }
    for (const [, step] of modes) await step.stop(Infinity);
    // The floor: the same watch over as long a wait, nothing else done.
    for (let n = 0; n < files; n++) results.get('nothing (floor)')!.push(await watched(() => sleep(results.get('loop')![n]!.stepMs)));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const rows = [['encoded on', 'step ms (median)', 'longest stall ms', 'stall, first file', 'stall, the others (max)']];
  for (const [mode, r] of results) {
    const steps = r.map((c) => c.stepMs).sort((a, b) => a - b);
    rows.push([mode, steps[steps.length >> 1]!.toFixed(1), Math.max(...r.map((c) => c.stallMs)).toFixed(1), r[0]!.stallMs.toFixed(1), Math.max(...r.slice(1).map((c) => c.stallMs)).toFixed(1)]);
  }
  printTable(rows);
}
