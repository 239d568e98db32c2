/**
 * Bench section `write-behind`: one session's writer (capture/writer.ts) fed 8950-byte frames
 * as fast as it takes them, for 60 s (--quick: 10 s) with --write-behind off (the kernel's own
 * writeback: the baseline) and then on (8 MiB windows), on the same file system in the same
 * run. Files rotate at 256 MiB and are deleted once closed, so the disk holds at most a few.
 *
 * Per mode: the rate each second (min / median / max MB/s), the longest time no write finished
 * (a stall: what drops packets upstream), the most dirty + writeback memory /proc/meminfo
 * showed, our RSS at the start and the end, and the frames the writer refused (queue_full).
 *
 *   node dist/test/bench/write-behind.js [--quick]
 */
import { unlink } from 'node:fs/promises';
import { mkdtemp, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { ChunkPool } from '../../src/capture/chunks.js';
import { rotationOf } from '../../src/capture/rotation.js';
import { SessionWriter, type WriterOptions } from '../../src/capture/writer.js';
import { DROP_QUEUE_FULL, newDropCounters } from '../../src/drops.js';
import { loadNative } from '../../src/native/addon.js';
import { udpFrame } from '../lib/frames.js';
import { median, printTable } from './table.js';

const MiB = 1 << 20;
const FRAME = 8950;
const WINDOW = 8 * MiB;
const SAMPLE_MS = 20;

interface Run {
  name: string;
  perSecond: number[];
  longestStallMs: number;
  peakDirty: number;
  rssStart: number;
  rssEnd: number;
  written: number;
  refused: number;
}

/** Dirty + Writeback of /proc/meminfo, bytes. */
function dirtyBytes(): number {
  const text = readFileSync('/proc/meminfo', 'utf8');
  const kb = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0);
  return (kb('Dirty') + kb('Writeback')) * 1024;
}

async function runMode(name: string, root: string, seconds: number, writeBehind: WriterOptions['writeBehind']): Promise<Run> {
  const dir = await mkdtemp(join(root, 'wb-'));
  const drops = newDropCounters();
  let seq = 0;
  const writer = new SessionWriter({
    session: 'bench',
    dir,
    rotation: rotationOf({ rotateSize: 256 * MiB, rotateSeconds: 0, rotatePackets: 0, rotateAlign: false }),
    snaplen: 65535,
    queueSize: 32 * MiB,
    nextSeq: () => seq++,
    pool: new ChunkPool(256 * MiB),
    drops,
    disk: { full: false },
    clampTime: true,
    writeBehind,
    events: {
      fileClosed: (f) => void unlink(f.path).catch(() => undefined),
      writeError: (_f, where, op, err) => console.error(`write-behind bench: ${op} ${where}: ${err.message}`),
    },
  });
  const frame = udpFrame(FRAME, 1, 1);
  const rssStart = process.memoryUsage.rss();
  const start = performance.now();
  const end = start + seconds * 1000;
  const perSecond: number[] = [];
  let lastWritten = 0;
  let lastProgress = start;
  let longestStallMs = 0;
  let secondStart = start;
  let secondWritten = 0;
  let peakDirty = 0;
  let n = 0;
  while (performance.now() < end) {
    // A burst per turn, as a receiver hands batches over; refused frames count as queue_full.
    for (let i = 0; i < 64; i++) writer.append(frame, 0, frame.length, frame.length, 1_790_000_000, n++);
    writer.flush();
    await sleep(writer.saturated ? SAMPLE_MS : 0);
    const now = performance.now();
    if (writer.writtenBytes !== lastWritten) {
      longestStallMs = Math.max(longestStallMs, now - lastProgress);
      lastWritten = writer.writtenBytes;
      lastProgress = now;
    }
    if (now - secondStart >= 1000) {
      perSecond.push((writer.writtenBytes - secondWritten) / ((now - secondStart) / 1000));
      secondWritten = writer.writtenBytes;
      secondStart = now;
      peakDirty = Math.max(peakDirty, dirtyBytes());
    }
  }
  longestStallMs = Math.max(longestStallMs, performance.now() - lastProgress);
  await writer.stop();
  const rssEnd = process.memoryUsage.rss();
  await rm(dir, { recursive: true, force: true });
  return { name, perSecond, longestStallMs, peakDirty, rssStart, rssEnd, written: writer.writtenBytes, refused: drops[DROP_QUEUE_FULL]! };
}

export async function run(opts: { quick: boolean }): Promise<void> {
  const seconds = opts.quick ? 10 : 60;
  const native = loadNative();
  console.log(`\n## write-behind: one session writer, ${FRAME}-byte frames as fast as it takes them, ${seconds} s per mode, files in ${tmpdir()}`);
  if (!native.ok) {
    console.log(`skipped: write-behind needs the native addon (${native.reason})`);
    return;
  }
  const root = await mkdtemp(join(tmpdir(), 'mirrorcap-wb-'));
  try {
    const runs: Run[] = [];
    runs.push(await runMode("off (the kernel's writeback)", root, seconds, undefined));
    runs.push(await runMode(`on, ${WINDOW / MiB} MiB windows`, root, seconds, { window: WINDOW, run: native.binding.writeBehind }));
    const mb = (b: number): string => (b / 1e6).toFixed(0);
    const rows = [['write-behind', 'MB/s min', 'median', 'max', 'mean', 'longest stall', 'peak dirty+writeback', 'RSS start -> end', 'frames refused']];
    for (const r of runs) {
      const sorted = [...r.perSecond].sort((a, b) => a - b);
      rows.push([
        r.name,
        mb(sorted[0] ?? 0),
        mb(median(r.perSecond) || 0),
        mb(sorted[sorted.length - 1] ?? 0),
        mb(r.written / seconds),
        `${r.longestStallMs.toFixed(0)} ms`,
        `${(r.peakDirty / MiB).toFixed(0)} MiB`,
        `${(r.rssStart / MiB).toFixed(0)} -> ${(r.rssEnd / MiB).toFixed(0)} MiB`,
        r.refused.toLocaleString('en'),
      ]);
    }
    console.log(`load average ${loadavg().map((l) => l.toFixed(2)).join(' ')} (shared machine: compare the rows, not runs)`);
    printTable(rows, [0]);
    for (const r of runs) console.log(`  ${r.name}, MB/s each second: ${r.perSecond.map((v) => mb(v)).join(' ')}`);
    const on = runs[1]!;
    console.log(`\ngoals (issue 17), this run:`);
    console.log(`  [${on.longestStallMs <= 1000 ? 'met' : 'not met'}] no write stall over 1 s with write-behind: longest ${on.longestStallMs.toFixed(0)} ms (off: ${runs[0]!.longestStallMs.toFixed(0)} ms)`);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await run({ quick: process.argv.includes('--quick') });
}
