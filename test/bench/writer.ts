/**
 * The capture writer's record path, pcap against pcapng in the same run: one SessionWriter
 * appending IMIX-sized frames (64, 594, 1518 bytes, 7:4:1; IPv4 TCP and UDP of 50,000 flows,
 * each packet another flow: the worst case for the index's key table) into its chunks and
 * writing them to a temporary folder, rotated at 64 MiB; and pcap with each file's index
 * built as it is written (the writer's tap, as the appliance runs it), with those flows and
 * and pcap with and without it for 3 flows (the index-cost section's traffic): the index's
 * cost per packet is the difference to pcap of the same flows. Rate = packets per CPU second of the process
 * (user + system, the writes' system time included; wall time on a shared machine measured
 * the neighbours), best of 3 alternating runs; the baseline is the pcap format. Then the time
 * to encode one 64 MiB file's sidecar from its builder (what the index step does at close).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChunkPool } from '../../src/capture/chunks.js';
import { SessionWriter } from '../../src/capture/writer.js';
import { newDropCounters } from '../../src/drops.js';
import { IndexBuilder } from '../../src/finish/index-build.js';
import { Random } from '../lib/random.js';
import { printTable } from './table.js';

const IMIX = [64, 64, 64, 64, 64, 64, 64, 594, 594, 594, 594, 1518];
const FLOWS = 50_000;
/** The flows of the index-cost section's traffic (one per VNI, three VNIs). */
const FEW_FLOWS = 3;

type Kind = 'pcap' | 'pcapng' | 'pcap + index' | 'pcap, 3 flows' | 'pcap + index, 3 flows';

/** An Ethernet/IPv4 frame of 1518 bytes whose headers are patched per packet (addresses, ports, protocol). */
function frameTemplate(): Buffer {
  const b = Buffer.alloc(1518, 0x5a);
  b.fill(0, 0, 54);
  b.writeUInt16BE(0x0800, 12);
  b[14] = 0x45;
  b[22] = 64;
  return b;
}

async function once(kind: Kind, packets: number): Promise<{ ms: number; bytes: number; drops: number; builders: IndexBuilder[] }> {
  const format = kind === 'pcapng' ? 'pcapng' : 'pcap';
  const dir = await mkdtemp(join(tmpdir(), 'mirrorcap-bench-writer-'));
  const frame = frameTemplate();
  const random = new Random(0x71e);
  const flows = Array.from({ length: kind.endsWith('3 flows') ? FEW_FLOWS : FLOWS }, () => [(10 << 24) | random.below(1 << 24), ((172 << 24) | random.below(1 << 20)) >>> 0, 1024 + random.below(60000), [443, 80, 53][random.below(3)]!, random.below(4) === 0 ? 17 : 6]);
  const builders: IndexBuilder[] = [];
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
    tap:
      kind.startsWith('pcap + index')
        ? (header, linkType) => {
            const b = new IndexBuilder(header, linkType);
            builders.push(b);
            return b;
          }
        : undefined,
  });
  try {
    const t0 = process.cpuUsage();
    for (let i = 0; i < packets; i++) {
      counters.received++;
      const len = IMIX[i % IMIX.length]!;
      const f = flows[(i * 7919) % flows.length]!;
      frame.writeUInt32BE(f[0]!, 26);
      frame.writeUInt32BE(f[1]!, 30);
      frame[23] = f[4]!;
      frame.writeUInt16BE(f[2]!, 34);
      frame.writeUInt16BE(f[3]!, 36);
      writer.append(frame, 0, len, len, 1_790_000_000 + (i >>> 16), i & 0xffff);
      // Let the disk drain now and then, as the event loop does between batches.
      if ((i & 0x3fff) === 0x3fff) {
        writer.flush();
        await writer.idle();
      }
    }
    await writer.stop();
    const d = process.cpuUsage(t0);
    return { ms: (d.user + d.system) / 1000, bytes: writer.writtenBytes, drops: drops.reduce((a, b) => a + b, 0), builders };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export async function run(opts: { quick: boolean }): Promise<void> {
  const packets = opts.quick ? 300_000 : 2_000_000;
  console.log(`\n## writer: ${packets.toLocaleString('en-US')} IMIX packets appended and written, pcap (baseline) vs pcapng vs pcap with its index built while written, best of 3`);
  const rows: string[][] = [['format', 'Mpps per core', 'MB/s per core', 'bytes/packet', 'vs pcap', 'drops']];
  // Alternating runs, so warm-up and a busy machine weigh on every kind alike.
  const kinds: Kind[] = ['pcap', 'pcapng', 'pcap + index', 'pcap, 3 flows', 'pcap + index, 3 flows'];
  const best = new Map<Kind, Awaited<ReturnType<typeof once>>>();
  for (let r = 0; r < 3; r++) {
    for (const kind of r % 2 === 0 ? [...kinds].reverse() : kinds) {
      const x = await once(kind, packets);
      if (x.ms < (best.get(kind)?.ms ?? Infinity)) best.set(kind, x);
    }
  }
  const base = packets / (best.get('pcap')!.ms / 1000);
  for (const kind of kinds) {
    const b = best.get(kind)!;
    const pps = packets / (b.ms / 1000);
    rows.push([kind, (pps / 1e6).toFixed(2), (b.bytes / 1e6 / (b.ms / 1000)).toFixed(0), (b.bytes / packets).toFixed(1), `${((100 * pps) / base).toFixed(0)} %`, String(b.drops)]);
  }
  printTable(rows);
  const more = (kind: Kind, base: Kind): string => `${((1e6 * (best.get(kind)!.ms - best.get(base)!.ms)) / packets).toFixed(0)} ns`;
  console.log(`  index built while written: ${more('pcap + index', 'pcap')} (50,000 flows) and ${more('pcap + index, 3 flows', 'pcap, 3 flows')} (3 flows) CPU per packet more than pcap alone`);
  const indexed = best.get('pcap + index')!;
  // Encoding at close (the index step), timed on the builders of whole 64 MiB files (the last one is shorter).
  const whole = indexed.builders.slice(0, -1);
  if (whole.length > 0) {
    const ms: number[] = [];
    for (const b of whole) {
      const t0 = performance.now();
      const bytes = b.encode(b.covered, 0).length;
      ms.push(performance.now() - t0);
      if (bytes <= 0) throw new Error('empty sidecar');
    }
    ms.sort((a, b) => a - b);
    console.log(`  encoding a 64 MiB file's sidecar at close: median ${ms[ms.length >> 1]!.toFixed(1)} ms, max ${ms[ms.length - 1]!.toFixed(1)} ms (${whole.length} files)`);
  }
}
