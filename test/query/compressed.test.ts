/**
 * Queries over a compressed store (--compress gzip|zstd): each capture indexed as written, then
 * compressed (gzip in independent 64 KiB blocks, zstd) and its index rebound to the compressed
 * file, the plain file removed, as the finish steps do. The answers must equal `tcpdump -r`
 * over the plain copies byte for byte, for expressions and windows; a .gz query reads only some
 * of its blocks. A corrupt or stale index of a compressed file is scanned around, then rebuilt
 * from the compressed file (by `mirrorcap index`), and trusted again.
 */
import { readFile, unlink, utimes, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import t from 'tap';
import { captureFileName } from '../../src/capture/naming.js';
import { Compressor, type CompressFormat } from '../../src/finish/compress.js';
import { buildIndex, indexPathOf, indexProblem, rebindIndex } from '../../src/finish/index-build.js';
import { zstd } from '../../src/pcap/zstd.js';
import { runQuery } from '../../src/query/query.js';
import type { QueryStats, Time } from '../../src/query/file-source.js';
import { buildCorpus } from '../filter/corpus.js';
import { buildPcap, REPO_ROOT, type PcapRecord } from '../lib/captures.js';
import { haveTool, withTempDir } from '../lib/tools.js';
import { splitRecords } from './store.js';

const MAIN = join(REPO_ROOT, 'dist/src/main.js');
const BASE = 1_790_000_000;
const EXPRESSIONS = ['', 'tcp', 'udp port 53', 'host 10.0.0.1', 'net 192.168.0.0/16 and port 80', 'ip6', 'vlan 100', 'len > 1000', 'tcp[tcpflags] & tcp-syn != 0', 'not arp'];

async function query(out: string, filter: string, since: Time | null, until: Time | null): Promise<{ bytes: Buffer; stats: QueryStats }> {
  const chunks: Buffer[] = [];
  const stats = await runQuery({ out, sessions: [], filter, since, until, limit: 0 }, async (c) => void chunks.push(Buffer.from(c)));
  return { bytes: Buffer.concat(chunks), stats };
}

async function tcpdump(path: string, filter: string): Promise<Buffer> {
  const { stdout } = await promisify(execFile)('tcpdump', ['--time-stamp-precision=nano', '-r', path, '-w', '-', ...(filter === '' ? [] : ['--', filter])], {
    encoding: 'buffer',
    maxBuffer: 1 << 28,
  });
  return stdout;
}

function windowed(file: Buffer, since: Time | null, until: Time | null): Buffer {
  const lt = (a: Time, b: Time): boolean => a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);
  return Buffer.concat(
    splitRecords(file)
      .filter((r) => (since === null || !lt([r.sec, r.nsec], since)) && (until === null || lt([r.sec, r.nsec], until)))
      .map((r) => r.bytes),
  );
}

const formats: CompressFormat[] = zstd() === null ? ['gzip'] : ['gzip', 'zstd'];
const skip = haveTool('tcpdump') ? false : 'tcpdump is not installed';

t.test('queries over compressed files equal tcpdump -r over the plain ones; broken indexes are rebuilt', { skip }, async (t) => {
  if (formats.length === 1) t.comment('zstd is unavailable in this Node: gzip only');
  await withTempDir(async (dir) => {
    const corpus = await buildCorpus(join(dir, 'corpus'));
    const frames = corpus.ethernet;
    // Two files per format, 3 000 records each, in one session; every record's time differs.
    const session = 'vni-3';
    const out = join(dir, 'out');
    await mkdir(join(out, session), { recursive: true });
    const all: PcapRecord[] = [];
    const plain: string[] = [];
    const perFile = 3000;
    for (let f = 0; f < 2 * formats.length; f++) {
      const recs: PcapRecord[] = [];
      for (let i = 0; i < perFile; i++) {
        const n = f * perFile + i;
        const fr = frames[n % frames.length]!;
        recs.push({ sec: BASE + Math.floor(n / 10), frac: (n % 10) * 100_000_000 + n, data: fr.data, origLen: fr.wireLen });
      }
      all.push(...recs);
      const path = join(out, session, captureFileName(session, BASE + f, f));
      await writeFile(path, buildPcap({ ns: true, snaplen: 65535, records: recs }));
      plain.push(path);
    }
    const allPath = join(dir, 'all.pcap');
    await writeFile(allPath, buildPcap({ ns: true, snaplen: 65535, records: all }));
    // Index, compress, rebind, remove the plain file: what the index and compress steps do.
    const compressed: string[] = [];
    for (const [i, path] of plain.entries()) {
      await buildIndex(path);
      const c = new Compressor({ format: formats[i % formats.length]!, blockSize: 64 << 10, threads: 1 });
      const r = await c.compress(path);
      await c.close();
      t.ok(await rebindIndex(path, r.path), `${r.path.slice(-8)}: the index is rebound to the compressed file`);
      if (r.path.endsWith('.gz')) t.ok(r.blocks.length > 3, `gzip in ${r.blocks.length} blocks`);
      await unlink(path);
      compressed.push(r.path);
      t.equal(await indexProblem(r.path), null, 'and trusted for it');
    }
    const span = all.length / 10;
    for (const e of EXPRESSIONS) {
      const want = await tcpdump(allPath, e);
      const windows: Array<[Time | null, Time | null]> = [
        [null, null],
        [[BASE + Math.floor(span / 3), 5], [BASE + Math.floor(span / 3) + 90, 0]],
      ];
      for (const [since, until] of windows) {
        const got = await query(out, e, since, until);
        t.ok(got.bytes.subarray(24).equals(windowed(want, since, until)), `"${e}" ${since === null ? 'all time' : 'window'}: equal to tcpdump -r`);
        t.same(got.stats.errors, [], 'no file errors');
        t.equal(got.stats.indexed, compressed.length, 'every file through its index');
      }
    }
    const narrow = await query(out, 'host 10.0.0.1', [BASE + Math.floor(span / 3), 0], [BASE + Math.floor(span / 3) + 30, 0]);
    t.ok(narrow.stats.bytesRead < (all.length * 16) / 4, `a narrow query reads a part of the records (${narrow.stats.bytesRead} bytes)`);

    // Broken indexes: the gz's corrupt (its head), the other's stale: scanned, exact, then rebuilt.
    const [gz, other] = compressed as [string, string];
    const idx = await readFile(indexPathOf(gz));
    idx[200] ^= 0x10;
    await writeFile(indexPathOf(gz), idx);
    const later = new Date(Date.now() + 5000);
    await utimes(other, later, later);
    const bad: string[] = [];
    const chunks: Buffer[] = [];
    const stats = await runQuery({ out, sessions: [], filter: 'udp', since: null, until: null, limit: 0 }, async (c) => void chunks.push(Buffer.from(c)), {
      badIndex: (path) => bad.push(path),
    });
    t.ok(Buffer.concat(chunks).subarray(24).equals(windowed(await tcpdump(allPath, 'udp'), null, null)), 'exact with broken indexes');
    t.equal(stats.scanned.corrupt, 1, 'the corrupt index is counted');
    t.equal(stats.scanned.stale, 1, 'the stale one too');
    t.same(bad.sort(), [gz, other].sort(), 'both reported for rebuilding');
    const child = spawn(process.execPath, [MAIN, 'index', out], { stdio: ['ignore', 'pipe', 'pipe'] });
    let said = '';
    child.stdout.on('data', (d: Buffer) => (said += d.toString()));
    const code = await new Promise((r) => child.on('close', r));
    t.equal(code, 0, 'mirrorcap index succeeds');
    t.match(said, /2 indexed/, `it rebuilt the two from the compressed files: ${said.trim()}`);
    for (const p of [gz, other]) t.equal(await indexProblem(p), null, `${p.slice(-8)}: trusted again`);
    const again = await query(out, 'udp', null, null);
    t.equal(again.stats.indexed, compressed.length, 'every file through its index again');
    t.ok(again.bytes.subarray(24).equals(windowed(await tcpdump(allPath, 'udp'), null, null)), 'and exact');
  });
});
