/**
 * Compression of finished files: ratio and CPU cost on the bench mix (test/lib/mix.ts: real
 * frames interleaved with IMIX-sized frames of random payload), and what reading compressed
 * files costs. Costs are CPU time (user + system of every thread of the process, or of the
 * tool), not wall time, so a busy machine does not skew them: MB/s per core = input MB per
 * CPU second. Our compression includes checking every block by decompressing it again.
 *   baseline   the `gzip` and `zstd` command-line tools on the same file
 *   read       CaptureReader over the file plain, .gz and .zst, every record delivered (best of 3)
 */
import { spawnSync } from 'node:child_process';
import { copyFile, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readCapture } from '../../src/pcap/reader.js';
import { Compressor, type CompressFormat } from '../../src/finish/compress.js';
import { zstd, zstdUnavailableReason } from '../../src/pcap/zstd.js';
import { realFrames, writeMixCapture } from '../lib/mix.js';
import { printTable } from './table.js';

const MiB = 1 << 20;

/** CPU milliseconds (user + system, every thread of the process) that `fn` took. */
async function cpuMs(fn: () => Promise<unknown>): Promise<number> {
  const before = process.cpuUsage();
  await fn();
  const d = process.cpuUsage(before);
  return (d.user + d.system) / 1000;
}

function mbps(bytes: number, ms: number): string {
  return (bytes / 1e6 / (ms / 1000)).toFixed(0);
}

export async function run(opts: { quick: boolean }): Promise<void> {
  const size = (opts.quick ? 16 : 96) * MiB;
  console.log(`\n## compress: ${size / MiB} MiB of the bench mix, one compression thread per run`);
  const dir = await mkdtemp(join(tmpdir(), 'mirrorcap-bench-compress-'));
  try {
    const src = join(dir, 'mix.pcap');
    await writeMixCapture(src, size, await realFrames());
    const raw = (await stat(src)).size;
    const rows: string[][] = [['run', 'level', 'ratio', 'size', 'MB/s per core', 'read MB/s']];

    for (const [tool, level] of [['gzip', 6], ['zstd', 3]] as const) {
      // bash's `time` gives the tool's CPU seconds on stderr; the compressed size is counted on stdout.
      const r = spawnSync('bash', ['-c', `TIMEFORMAT='%U %S'; time (${tool} -${level} -c "$1" > "$1.out")`, 'bash', src], { encoding: 'utf8' });
      if (r.status !== 0) continue;
      const [user, sys] = r.stderr.trim().split(/\s+/).slice(-2).map(Number) as [number, number];
      const out = (await stat(`${src}.out`)).size;
      await rm(`${src}.out`);
      rows.push([`baseline: ${tool} tool`, String(level), (raw / out).toFixed(2), `${(out / MiB).toFixed(1)} MiB`, mbps(raw, (user + sys) * 1000), '']);
    }

    const readMs = async (path: string): Promise<number> => {
      let best = Infinity;
      for (let i = 0; i < 3; i++) best = Math.min(best, await cpuMs(() => readCapture(path, () => {})));
      return best;
    };
    rows.push(['plain pcap', '', '1.00', `${(raw / MiB).toFixed(1)} MiB`, '', mbps(raw, await readMs(src))]);

    const runs: [CompressFormat, number][] = [
      ['gzip', 1],
      ['gzip', 3],
      ['gzip', 6],
      ['gzip', 9],
      ['zstd', 1],
      ['zstd', 3],
      ['zstd', 9],
      ['zstd', 19],
    ];
    for (const [format, level] of runs) {
      if (format === 'zstd' && zstd() === null) {
        rows.push([`zstd: ${zstdUnavailableReason().slice(0, 60)}...`, String(level), '', '', '', '']);
        continue;
      }
      if (opts.quick && level > 6 && !(format === 'zstd' && level === 9)) continue;
      const copy = join(dir, `mix-${format}-${level}.pcap`);
      await copyFile(src, copy);
      const c = new Compressor({ format, level, threads: 1 });
      try {
        let result: Awaited<ReturnType<Compressor['compress']>> | null = null;
        const ms = await cpuMs(async () => {
          result = await c.compress(copy);
        });
        const r = result!;
        rows.push([`${format}${format === 'zstd' ? ` (${zstd()!.name})` : ''}`, String(level), (r.rawSize / r.packedSize).toFixed(2), `${(r.packedSize / MiB).toFixed(1)} MiB`, mbps(r.rawSize, ms), mbps(r.rawSize, await readMs(r.path))]);
        await rm(r.path);
      } finally {
        await c.close();
        await rm(copy);
      }
    }
    printTable(rows);
    console.log('(MB/s per core: input MB per CPU second, all threads; ours include checking every block by decompressing it again; read: CaptureReader, every record, best of 3)');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
