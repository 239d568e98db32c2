/**
 * The capture writer's record path, pcap against pcapng in the same run: one SessionWriter
 * appending IMIX-sized frames (64, 594, 1518 bytes, 7:4:1) into its chunks and writing them
 * to a temporary folder, rotated at 64 MiB. Rate = packets per CPU second of the process (user +
 * system, the writes' system time included; wall time on a shared machine measured the
 * neighbours), best of 3 alternating runs; the baseline is the pcap format.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChunkPool } from '../../src/capture/chunks.js';
import { SessionWriter } from '../../src/capture/writer.js';
import { newDropCounters } from '../../src/drops.js';
import { printTable } from './table.js';

const IMIX = [64, 64, 64, 64, 64, 64, 64, 594, 594, 594, 594, 1518];

async function once(format: 'pcap' | 'pcapng', packets: number): Promise<{ ms: number; bytes: number; drops: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'mirrorcap-bench-writer-'));
  const frame = Buffer.alloc(1518, 0x5a);
  let seq = 0;
  const drops = newDropCounters();
  const counters = { received: 0, filtered: 0 };
  const writer = new SessionWriter({
    session: 'bench',
    dir,
    rotation: { size: 64 << 20, seconds: 0, packets: 0, align: false },
    snaplen: 65535,
    format,
    filter: null,
    pcapng: { section: { application: 'mirrorcap bench', os: 'Linux', hardware: 'x64' }, describe: 'VXLAN VNI 1, outer source any', counters },
    queueSize: 256 << 20,
    nextSeq: () => seq++,
    pool: new ChunkPool(512 << 20),
    drops,
    disk: { full: false },
    clampTime: false,
    events: { fileClosed: () => undefined, writeError: () => undefined },
  });
  try {
    const t0 = process.cpuUsage();
    for (let i = 0; i < packets; i++) {
      counters.received++;
      const len = IMIX[i % IMIX.length]!;
      writer.append(frame, 0, len, len, 1_790_000_000 + (i >>> 16), i & 0xffff);
      // Let the disk drain now and then, as the event loop does between batches.
      if ((i & 0x3fff) === 0x3fff) {
        writer.flush();
        await writer.idle();
      }
    }
    await writer.stop();
    const d = process.cpuUsage(t0);
    return { ms: (d.user + d.system) / 1000, bytes: writer.writtenBytes, drops: drops.reduce((a, b) => a + b, 0) };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export async function run(opts: { quick: boolean }): Promise<void> {
  const packets = opts.quick ? 300_000 : 2_000_000;
  console.log(`\n## writer: ${packets.toLocaleString('en-US')} IMIX packets appended and written, pcap (baseline) vs pcapng, best of 3`);
  const rows: string[][] = [['format', 'Mpps per core', 'MB/s per core', 'bytes/packet', 'vs pcap', 'drops']];
  // Alternating runs, so warm-up and a busy machine weigh on both formats alike.
  const best = { pcap: { ms: Infinity, bytes: 0, drops: 0 }, pcapng: { ms: Infinity, bytes: 0, drops: 0 } };
  for (let r = 0; r < 3; r++) {
    for (const format of r % 2 === 0 ? (['pcapng', 'pcap'] as const) : (['pcap', 'pcapng'] as const)) {
      const x = await once(format, packets);
      if (x.ms < best[format].ms) best[format] = x;
    }
  }
  const base = packets / (best.pcap.ms / 1000);
  for (const format of ['pcap', 'pcapng'] as const) {
    const b = best[format];
    const pps = packets / (b.ms / 1000);
    rows.push([format, (pps / 1e6).toFixed(2), (b.bytes / 1e6 / (b.ms / 1000)).toFixed(0), (b.bytes / packets).toFixed(1), `${((100 * pps) / base).toFixed(0)} %`, String(b.drops)]);
  }
  printTable(rows);
}
