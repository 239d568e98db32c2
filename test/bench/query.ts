/**
 * Queries against `tcpdump -r`. Builds a store of IMIX traffic (64/576/1500-byte frames 7:4:1,
 * 50,000 TCP and UDP flows, 4 sessions, files rotated at 64 MiB) of MIRRORCAP_BENCH_QUERY_GIB
 * GiB (default 1; --quick 0.25), indexes every file (timed: CPU per GiB), then times, best of
 * runs, on a warm page cache:
 *   one flow   host A and host B and tcp port 443: one flow of 0.067 % of the packets
 *   most       tcp or udp: nearly every packet
 * as a query (runQuery in this process, answer discarded, reading as `mirrorcap query` does:
 * synchronous preads) and as `tcpdump -r FILE -w /dev/null EXPR` on every file in turn (the
 * baseline: what an analyst runs without an index). The one-flow query is also timed with the
 * thread pool's reads (what /api/query inside the appliance does) and as the whole
 * `mirrorcap query` process (node's start and imports included), each against the same tcpdump. It does the same on a
 * quarter of the store, so the table can show how time grows with size, and extrapolates the
 * one-flow latency to 10 and 100 GiB from those two points (said so in the table).
 */
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, open, rm, stat, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { captureFileName } from '../../src/capture/naming.js';
import { buildIndex, indexPathOf } from '../../src/finish/index-build.js';
import { writeFileHeader, writeRecord } from '../../src/pcap/pcap.js';
import { runQuery } from '../../src/query/query.js';
import { MAIN } from '../lib/appliance.js';
import { Random } from '../lib/random.js';
import { printTable } from './table.js';

const MiB = 1 << 20;
const GiB = 1 << 30;
const SESSIONS = 4;
const FLOWS = 50_000;
const TARGET_EVERY = 1500;
const SIZES = [64, 64, 576, 64, 1500, 64, 576, 64, 64, 576, 64, 576];
const ONE_FLOW = 'host 10.99.0.1 and host 52.95.1.9 and tcp port 443';
const MOST = 'tcp or udp';

/** One IPv4 frame of `size` bytes, TCP or UDP, with the addresses and ports patched in later. */
function template(size: number, proto: number): Buffer {
  const b = Buffer.alloc(size, 0x5a);
  b.fill(0, 0, 54);
  b.writeUInt16BE(0x0800, 12);
  b[14] = 0x45;
  b.writeUInt16BE(size - 14, 16);
  b[22] = 64;
  b[23] = proto;
  if (proto === 6) b[46] = 0x50;
  else b.writeUInt16BE(size - 34, 38);
  return b;
}

interface Store {
  readonly dir: string;
  readonly files: string[];
  readonly bytes: number;
  readonly packets: number;
}

export async function buildStore(dir: string, bytes: number, fileBytes: number): Promise<Store> {
  const random = new Random(0xbe7c);
  const flows = Array.from({ length: FLOWS }, () => ({
    client: (10 << 24) | (1 << 16) | random.below(1 << 16),
    server: ((172 << 24) | (16 << 16) | random.below(256)) >>> 0,
    cport: 1024 + random.below(60000),
    sport: [443, 80, 53, 22, 8080][random.below(5)]!,
    proto: random.below(4) === 0 ? 17 : 6,
  }));
  const target = { client: ((10 << 24) | (99 << 16) | 1) >>> 0, server: ((52 << 24) | (95 << 16) | (1 << 8) | 9) >>> 0, cport: 51234, sport: 443, proto: 6 };
  const templates = new Map<string, Buffer>();
  for (const s of SIZES) for (const p of [6, 17]) templates.set(`${s}/${p}`, template(s, p));
  const out = join(dir, 'out');
  const files: string[] = [];
  const writers: Array<{ fh: FileHandle | null; chunk: Buffer; at: number; written: number; seq: number }> = [];
  for (let s = 0; s < SESSIONS; s++) {
    await mkdir(join(out, `s${s}`), { recursive: true });
    writers.push({ fh: null, chunk: Buffer.alloc(4 * MiB), at: 0, written: 0, seq: 0 });
  }
  const base = 1_790_000_000;
  let total = 0;
  let packets = 0;
  for (let i = 0; total < bytes; i++) {
    const f = i % TARGET_EVERY === 7 ? target : flows[random.below(FLOWS)]!;
    const frame = templates.get(`${SIZES[i % SIZES.length]!}/${f.proto}`)!;
    const up = (i & 1) === 0;
    frame.writeUInt32BE(up ? f.client : f.server, 26);
    frame.writeUInt32BE(up ? f.server : f.client, 30);
    frame.writeUInt16BE(up ? f.cport : f.sport, 34);
    frame.writeUInt16BE(up ? f.sport : f.cport, 36);
    const w = writers[(f.client ^ f.cport) % SESSIONS]!;
    const sec = base + Math.floor(i / 1e6);
    if (w.fh === null) {
      const path = join(out, `s${writers.indexOf(w)}`, captureFileName(`s${writers.indexOf(w)}`, sec, w.seq++));
      files.push(path);
      w.fh = await open(path, 'w');
      w.at = writeFileHeader(w.chunk, 0, 65535);
      w.written = 0;
    }
    if (w.at + 16 + frame.length > w.chunk.length) {
      await w.fh.write(w.chunk, 0, w.at);
      w.written += w.at;
      w.at = 0;
    }
    w.at = writeRecord(w.chunk, w.at, frame, 0, frame.length, frame.length, sec, (i % 1e6) * 1000);
    total += 16 + frame.length;
    packets++;
    if (w.written + w.at >= fileBytes) {
      await w.fh.write(w.chunk, 0, w.at);
      await w.fh.close();
      w.fh = null;
    }
  }
  for (const w of writers) {
    if (w.fh === null) continue;
    await w.fh.write(w.chunk, 0, w.at);
    await w.fh.close();
  }
  return { dir: out, files: files.sort(), bytes: total, packets };
}

async function best(runs: number, fn: () => Promise<void> | void): Promise<number> {
  let min = Infinity;
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    await fn();
    min = Math.min(min, performance.now() - t0);
  }
  return min / 1000;
}

/** runQuery in this process: with synchronous preads as `mirrorcap query` reads, or with the thread pool's as /api/query does. */
async function queryTime(store: Store, filter: string, runs: number, syncReads: boolean): Promise<{ s: number; records: number; read: number }> {
  let records = 0;
  let read = 0;
  const s = await best(runs, async () => {
    let n = 0;
    const stats = await runQuery({ out: store.dir, sessions: [], filter, since: null, until: null, limit: 0 }, async (c) => void (n += c.length), { syncReads });
    read = stats.bytesRead;
    records = n;
  });
  return { s, records, read };
}

/** The whole `mirrorcap query` command, its own process: node's start and the imports included. */
function cliTime(store: Store, filter: string, runs: number): Promise<number> {
  return best(runs, () => {
    const r = spawnSync(process.execPath, [MAIN, 'query', '--out', store.dir, '-w', '/dev/null', filter], { stdio: 'ignore' });
    if (r.status !== 0) throw new Error(`mirrorcap query failed (${r.status})`);
  });
}

function tcpdumpTime(files: readonly string[], filter: string, runs: number): Promise<number> {
  return best(runs, () => {
    for (const f of files) {
      const r = spawnSync('tcpdump', ['-r', f, '-w', '/dev/null', '--', filter], { stdio: 'ignore' });
      if (r.status !== 0) throw new Error(`tcpdump failed on ${f}`);
    }
  });
}

export async function run({ quick }: { quick: boolean }): Promise<void> {
  const gib = Number(process.env.MIRRORCAP_BENCH_QUERY_GIB ?? (quick ? 0.25 : 1));
  console.log(`\n## query: a store of ${gib} GiB of IMIX in ${SESSIONS} sessions vs tcpdump -r on every file`);
  if (spawnSync('tcpdump', ['--version']).status !== 0) {
    console.log('skipped: tcpdump is not installed');
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), 'mirrorcap-bench-query-'));
  try {
    const rows: string[][] = [['store', 'query', 'packets', 'answer', 'mirrorcap s', 'read', 'tcpdump -r s', 'speed-up']];
    const points: Array<{ bytes: number; s: number }> = [];
    for (const fraction of [0.25, 1]) {
      const store = await buildStore(join(dir, String(fraction)), Math.round(gib * fraction * GiB), quick ? 16 * MiB : 64 * MiB);
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      for (const f of store.files) await buildIndex(f);
      const cpu = process.cpuUsage(cpu0);
      const wall = (performance.now() - t0) / 1000;
      let indexBytes = 0;
      for (const f of store.files) indexBytes += (await stat(indexPathOf(f))).size;
      const size = `${(store.bytes / GiB).toFixed(2)} GiB, ${store.files.length} files`;
      console.log(
        `${size}: ${store.packets} packets; index ${(indexBytes / MiB).toFixed(1)} MiB = ${((100 * indexBytes) / store.bytes).toFixed(2)} % of the capture; ` +
          `built in ${wall.toFixed(1)} s, ${((cpu.user + cpu.system) / 1e6 / (store.bytes / GiB)).toFixed(1)} CPU s per GiB`,
      );
      for (const [name, filter] of [['one flow', ONE_FLOW], ['most', MOST]] as const) {
        const q = await queryTime(store, filter, 3, true);
        const td = await tcpdumpTime(store.files, filter, 2);
        const row = (how: string, s: number): void =>
          void rows.push([size, `${name}${how}`, String(store.packets), `${(q.records / MiB).toFixed(1)} MiB`, s.toFixed(3), `${((100 * q.read) / store.bytes).toFixed(1)} %`, td.toFixed(3), `${(td / s).toFixed(1)}x`]);
        row('', q.s);
        if (name === 'one flow') {
          points.push({ bytes: store.bytes, s: q.s });
          row(', async reads (/api/query)', (await queryTime(store, filter, 3, false)).s);
          row(', CLI process', await cliTime(store, filter, 3));
        }
      }
      await rm(join(dir, String(fraction)), { recursive: true, force: true });
    }
    printTable(rows, [0, 1]);
    const [a, b] = points as [{ bytes: number; s: number }, { bytes: number; s: number }];
    const slope = (b.s - a.s) / (b.bytes - a.bytes);
    const at = (bytes: number): number => Math.max(b.s, b.s + slope * (bytes - b.bytes));
    console.log(
      `one-flow latency: ${a.s.toFixed(3)} s at ${(a.bytes / GiB).toFixed(2)} GiB, ${b.s.toFixed(3)} s at ${(b.bytes / GiB).toFixed(2)} GiB measured; ` +
        `extrapolated linearly from those two: ${at(10 * GiB).toPrecision(2)} s at 10 GiB, ${at(100 * GiB).toPrecision(2)} s at 100 GiB`,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
