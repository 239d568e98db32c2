/**
 * Crash recovery of `.part` files: torn at every kind of place, corrupt, headerless; each result
 * checked with capinfos and tshark, not only with our own reader.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, symlink, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { writeFileHeader, writeRecord } from '../../src/pcap/pcap.js';
import { epbLength, fileHeader, statisticsBlock, writeEpb } from '../../src/pcap/pcapng-write.js';
import { recoverDirectory, recoverPartFile } from '../../src/capture/recover.js';
import type { RecoveryResult } from '../../src/capture/recover.js';
import { pcapBoundaries } from '../lib/captures.js';
import { Random } from '../lib/random.js';
import { mapLimit, run, tool, withTempDir } from '../lib/tools.js';

const SNAPLEN = 65535;
const rand = new Random(99);
const frames = [60, 1514, 0, 9001, 42, 1, 300, 64].map((n) => rand.bytes(n));

/** A file as our writer lays it out (classic ns pcap via src/capture/pcap.ts). */
function writerFile(records = frames, snaplen = SNAPLEN): Buffer {
  const buf = Buffer.alloc(24 + records.reduce((a, f) => a + 16 + f.length, 0));
  let off = writeFileHeader(buf, 0, snaplen);
  records.forEach((f, i) => {
    off = writeRecord(buf, off, f, 0, f.length, f.length + (i % 2), 1_700_000_000 + i, 999_999_000 + i);
  });
  return buf;
}

const FILE = writerFile();
const BOUNDS = pcapBoundaries(FILE);

/** capinfos on many files at once (it fails if any of them is damaged): packets per file. */
async function capinfosCounts(paths: string[]): Promise<Map<string, number>> {
  const out = await tool('capinfos', ['-c', '-M', '-T', ...paths]);
  const counts = new Map<string, number>();
  for (const line of out.split('\n').slice(1)) {
    const [name, n] = line.split('\t');
    if (name) counts.set(name, Number(n));
  }
  return counts;
}

/** tshark must open the file without a warning and see `want` frames. */
async function tsharkCheck(t: Test, path: string, want: number): Promise<void> {
  const r = await run('tshark', ['-r', path, '-T', 'fields', '-e', 'frame.number']);
  const complaint = r.stderr.split('\n').filter((l) => l !== '' && !l.includes('Running as user'));
  if (r.code !== 0 || complaint.length > 0) t.fail(`tshark -r ${basename(path)}: exit ${r.code} ${complaint.join(' ')}`);
  const n = r.stdout.split('\n').filter((l) => l !== '').length;
  if (n !== want) t.fail(`tshark -r ${basename(path)}: ${n} frames, want ${want}`);
}

function cutPoints(): number[] {
  const cuts = new Set<number>([0, 1, 4, 23]);
  for (const b of BOUNDS) for (const d of [-1, 0, 1, 8, 16, 17, 40]) if (b + d >= 24 && b + d <= FILE.length) cuts.add(b + d);
  return [...cuts].sort((a, b) => a - b);
}

t.test('a .part torn anywhere is cut to its last whole record and renamed; capinfos and tshark agree', async (t) => {
  await withTempDir(async (dir) => {
    const cuts = cutPoints();
    const results: [number, RecoveryResult][] = [];
    for (const cut of cuts) {
      const part = join(dir, `s-${String(cut).padStart(6, '0')}.pcap.part`);
      await writeFile(part, FILE.subarray(0, cut));
      results.push([cut, await recoverPartFile(part)]);
    }
    const recovered: [string, number][] = [];
    for (const [cut, r] of results) {
      const part = join(dir, `s-${String(cut).padStart(6, '0')}.pcap.part`);
      t.notOk(existsSync(part), `cut ${cut}: the .part file is gone`);
      if (cut < 24) {
        t.match(r, { action: 'deleted', finalPath: null, records: 0, bytesCut: cut, bytes: 0, code: 'ERR_MIRRORCAP_CAPTURE_TRUNCATED_HEADER' }, `cut ${cut}`);
        continue;
      }
      const end = BOUNDS.filter((b) => b <= cut).pop()!;
      const whole = BOUNDS.indexOf(end);
      const finalPath = part.slice(0, -5);
      t.match(r, { action: 'recovered', path: part, finalPath, records: whole, bytesCut: cut - end, bytes: end }, `cut ${cut}`);
      t.equal(r.code, end === cut ? null : cut - end < 16 ? 'ERR_MIRRORCAP_CAPTURE_TRUNCATED_RECORD_HEADER' : 'ERR_MIRRORCAP_CAPTURE_TRUNCATED_RECORD', `cut ${cut}: reason`);
      if (end !== cut) t.match(r.reason, new RegExp(`byte ${end}: file ends inside a record`));
      t.ok((await readFile(finalPath)).equals(FILE.subarray(0, end)), `cut ${cut}: exactly the whole records, byte for byte`);
      recovered.push([finalPath, whole]);
    }
    const counts = await capinfosCounts(recovered.map(([p]) => p));
    for (const [p, whole] of recovered) t.equal(counts.get(p), whole, `capinfos: ${basename(p)} holds ${whole} packets`);
    await mapLimit(recovered, 2, ([p, whole]) => tsharkCheck(t, p, whole));
    t.ok(recovered.length > 50, `${recovered.length} recovered files checked`);
  });
});

t.test('a record header our writer cannot have written is where the file is cut', async (t) => {
  await withTempDir(async (dir) => {
    const at = BOUNDS[3]!; // record 3 (9001 bytes) starts here
    const cases: [string, (b: Buffer) => void, number, string][] = [
      ['garbage incl_len', (b) => b.writeUInt32LE(0xdeadbeef, at + 8), 3, 'ERR_MIRRORCAP_CAPTURE_RECORD_TOO_LONG'],
      ['incl_len over the snaplen', (b) => b.writeUInt32LE(SNAPLEN + 1, at + 8), 3, 'ERR_MIRRORCAP_CAPTURE_RECORD_TOO_LONG'],
      ['orig_len below incl_len', (b) => b.writeUInt32LE(5, at + 12), 3, 'ERR_MIRRORCAP_CAPTURE_BAD_RECORD_HEADER'],
      ['nanoseconds of a second or more', (b) => b.writeUInt32LE(1_000_000_000, at + 4), 3, 'ERR_MIRRORCAP_CAPTURE_BAD_RECORD_HEADER'],
      ['zero-filled tail', (b) => b.fill(0, at), 3, 'ERR_MIRRORCAP_CAPTURE_BAD_RECORD_HEADER'],
      ['garbage first record', (b) => b.fill(0xff, 24, 40), 0, 'ERR_MIRRORCAP_CAPTURE_RECORD_TOO_LONG'],
    ];
    const outs: [string, number][] = [];
    for (const [name, edit, whole, code] of cases) {
      const b = Buffer.from(FILE);
      edit(b);
      const part = join(dir, `${name.replace(/ /g, '-')}.pcap.part`);
      await writeFile(part, b);
      const r = await recoverPartFile(part);
      t.match(r, { action: 'recovered', records: whole, bytesCut: FILE.length - BOUNDS[whole]!, code }, name);
      t.ok((await readFile(r.finalPath!)).equals(FILE.subarray(0, BOUNDS[whole])), `${name}: the whole records before it, byte for byte`);
      outs.push([r.finalPath!, whole]);
    }
    // A snaplen of 0 in the header means no snaplen: the 262144-byte limit still applies.
    const noSnap = writerFile(frames, 0);
    noSnap.writeUInt32LE(262145, BOUNDS[2]! + 8);
    const part = join(dir, 'nosnap.pcap.part');
    await writeFile(part, noSnap);
    const r = await recoverPartFile(part);
    t.match(r, { records: 2, code: 'ERR_MIRRORCAP_CAPTURE_RECORD_TOO_LONG', reason: /above the record limit of 262144/ });
    outs.push([r.finalPath!, 2]);
    const counts = await capinfosCounts(outs.map(([p]) => p));
    for (const [p, whole] of outs) {
      t.equal(counts.get(p), whole, `capinfos ${basename(p)}`);
      await tsharkCheck(t, p, whole);
    }
  });
});

t.test('headerless files are deleted, unrecognisable ones set aside, never crashed on', async (t) => {
  await withTempDir(async (dir) => {
    const cases: [string, Buffer, string, string][] = [
      ['empty', Buffer.alloc(0), 'deleted', 'ERR_MIRRORCAP_CAPTURE_TRUNCATED_HEADER'],
      ['ten-bytes', FILE.subarray(0, 10), 'deleted', 'ERR_MIRRORCAP_CAPTURE_TRUNCATED_HEADER'],
      ['short-junk', Buffer.from('not a pcap'), 'deleted', 'ERR_MIRRORCAP_CAPTURE_BAD_MAGIC'],
      ['junk', Buffer.alloc(100, 0x41), 'quarantined', 'ERR_MIRRORCAP_CAPTURE_BAD_MAGIC'],
      ['bad-version', Buffer.concat([FILE.subarray(0, 4), Buffer.from([9, 0]), FILE.subarray(6)]), 'quarantined', 'ERR_MIRRORCAP_CAPTURE_UNSUPPORTED_VERSION'],
    ];
    for (const [name, bytes, action, code] of cases) {
      const part = join(dir, `${name}.pcap.part`);
      await writeFile(part, bytes);
      const r = await recoverPartFile(part);
      t.match(r, { action, code, records: 0 }, name);
      t.notOk(existsSync(part), `${name}: no .part left to retry on every start`);
      if (action === 'deleted') {
        t.same([r.finalPath, r.bytesCut, r.bytes], [null, bytes.length, 0]);
      } else {
        t.equal(r.finalPath, join(dir, `${name}.pcap.corrupt`));
        t.ok((await readFile(r.finalPath!)).equals(bytes), `${name}: kept intact for a human`);
        t.same([r.bytesCut, r.bytes], [0, bytes.length]);
      }
    }
    // A header and nothing else: a valid, empty capture.
    const part = join(dir, 'header-only.pcap.part');
    await writeFile(part, FILE.subarray(0, 24));
    t.match(await recoverPartFile(part), { action: 'recovered', records: 0, bytesCut: 0, bytes: 24, reason: null, code: null });
    t.equal((await capinfosCounts([join(dir, 'header-only.pcap')])).get(join(dir, 'header-only.pcap')), 0);
  });
});

t.test('an existing .pcap of the same name is never overwritten', async (t) => {
  await withTempDir(async (dir) => {
    await writeFile(join(dir, 'x.pcap'), 'precious');
    await writeFile(join(dir, 'x.recovered.pcap'), 'also precious');
    await writeFile(join(dir, 'x.pcap.part'), FILE);
    const r = await recoverPartFile(join(dir, 'x.pcap.part'));
    t.match(r, { action: 'recovered', finalPath: join(dir, 'x.recovered-2.pcap'), records: frames.length, bytesCut: 0 });
    t.equal(await readFile(join(dir, 'x.pcap'), 'utf8'), 'precious');
    t.equal(await readFile(join(dir, 'x.recovered.pcap'), 'utf8'), 'also precious');
    t.ok((await readFile(r.finalPath!)).equals(FILE));
  });
});

t.test('recoverPartFile refuses what is not a .part regular file', async (t) => {
  await withTempDir(async (dir) => {
    await t.rejects(recoverPartFile(join(dir, 'x.pcap')), TypeError);
    await mkdir(join(dir, 'd.pcap.part'));
    await t.rejects(recoverPartFile(join(dir, 'd.pcap.part')), /not a regular file/);
    await t.rejects(recoverPartFile(join(dir, 'missing.pcap.part')), { code: 'ENOENT' });
  });
});

t.test('recoverDirectory: every session folder, nothing else, a few files at a time', async (t) => {
  await withTempDir(async (dir) => {
    const out = join(dir, 'captures');
    t.same(await recoverDirectory(out), [], 'no output folder yet: nothing to do');
    for (const s of ['vni-100', 'web', 'web/deeper', 'elsewhere']) await mkdir(join(out, s), { recursive: true });
    await mkdir(join(dir, 'outside'));
    const torn = FILE.subarray(0, BOUNDS[5]! + 7);
    await writeFile(join(out, 'vni-100', 'vni-100-20260101T000000Z-000001.pcap.part'), torn);
    await writeFile(join(out, 'vni-100', 'vni-100-20260101T000500Z-000002.pcap.part'), FILE);
    await writeFile(join(out, 'web', 'web-20260101T000000Z-000001.pcap.part'), Buffer.alloc(0));
    for (let i = 0; i < 9; i++) await writeFile(join(out, 'web', `web-many-${i}.pcap.part`), FILE.subarray(0, BOUNDS[i % BOUNDS.length]! + 3));
    // Left alone: finished files, other files, the top level, deeper folders, symbolic links.
    await writeFile(join(out, 'web', 'web-finished.pcap'), FILE);
    await writeFile(join(out, 'web', 'notes.txt.part'), 'x');
    await writeFile(join(out, 'top.pcap.part'), torn);
    await writeFile(join(out, 'web', 'deeper', 'deep.pcap.part'), torn);
    await writeFile(join(dir, 'outside', 'o.pcap.part'), torn);
    await symlink(join(dir, 'outside'), join(out, 'linked-session'));
    await symlink(join(dir, 'outside', 'o.pcap.part'), join(out, 'web', 'linked.pcap.part'));

    const results = await recoverDirectory(out, { concurrency: 3 });
    t.same(results.map((r) => basename(r.path)), [
      'vni-100-20260101T000000Z-000001.pcap.part',
      'vni-100-20260101T000500Z-000002.pcap.part',
      'web-20260101T000000Z-000001.pcap.part',
      ...Array.from({ length: 9 }, (_, i) => `web-many-${i}.pcap.part`),
    ]);
    t.match(results[0], { action: 'recovered', records: 5, bytesCut: 7 });
    t.match(results[1], { action: 'recovered', records: frames.length, bytesCut: 0, reason: null });
    t.match(results[2], { action: 'deleted' });
    t.same((await readdir(join(out, 'vni-100'))).sort(), ['vni-100-20260101T000000Z-000001.pcap', 'vni-100-20260101T000500Z-000002.pcap']);
    for (const left of [join(out, 'top.pcap.part'), join(out, 'web', 'deeper', 'deep.pcap.part'), join(dir, 'outside', 'o.pcap.part'), join(out, 'web', 'notes.txt.part'), join(out, 'web', 'web-finished.pcap')]) {
      t.ok(existsSync(left), `${basename(left)} left alone`);
    }
    const finals = results.filter((r) => r.action === 'recovered').map((r) => r.finalPath!);
    const counts = await capinfosCounts(finals);
    for (const r of results.filter((x) => x.action === 'recovered')) t.equal(counts.get(r.finalPath!), r.records, `capinfos ${basename(r.finalPath!)}`);
    await t.rejects(recoverDirectory(out, { concurrency: 0 }), RangeError);
  });
});

t.test('a large torn file is recovered by streaming', async (t) => {
  await withTempDir(async (dir) => {
    const big = Buffer.concat(Array.from({ length: 40 }, () => FILE.subarray(24)));
    const file = Buffer.concat([FILE.subarray(0, 24), big, big, big, FILE.subarray(24, BOUNDS[3]! + 100)]); // ~4 MB, torn inside a 9001-byte record
    const part = join(dir, 'big.pcap.part');
    await writeFile(part, file);
    const r = await recoverPartFile(part);
    t.match(r, { action: 'recovered', records: 120 * frames.length + 3, bytesCut: 100 });
    t.equal((await capinfosCounts([r.finalPath!])).get(r.finalPath!), r.records);
  });
});

t.test('recoverDirectory: an I/O error on one file is a failed result, the others are recovered', async (t) => {
  await withTempDir(async (dir) => {
    const session = join(dir, 'out', 's');
    await mkdir(session, { recursive: true });
    const stuck = join(session, 'a.pcap.part');
    await writeFile(stuck, FILE.subarray(0, 100));
    await writeFile(join(session, 'b.pcap.part'), FILE.subarray(0, 100));
    // An immutable file cannot be opened for writing or renamed, even by root.
    const attr = await run('chattr', ['+i', stuck]).catch(() => ({ code: -1, stderr: 'chattr not found' }));
    if (attr.code !== 0) {
      t.plan(0, `skipped: cannot make a file immutable here (${attr.stderr.trim()})`);
      return;
    }
    try {
      const [a, b] = await recoverDirectory(join(dir, 'out'));
      t.match(a, { path: stuck, action: 'failed', finalPath: null, code: 'EPERM', reason: /operation not permitted/i });
      t.match(b, { action: 'recovered', records: 1 });
      t.ok(existsSync(stuck), 'the failed file is left for the next start');
    } finally {
      await run('chattr', ['-i', stuck]);
    }
  });
});

/** A pcapng file as our writer lays it out (--format pcapng), and where each of its blocks starts. */
function writerNgFile(): { file: Buffer; bounds: number[] } {
  const head = fileHeader({ application: 'mirrorcap test', os: 'Linux', hardware: 'x64' }, { linkType: 1, snaplen: SNAPLEN, name: 's', description: 'VXLAN VNI 1', filter: 'tcp' });
  const shbLen = head.readUInt32LE(4);
  const isb = statisticsBlock({ startSec: 1, startNsec: 0, endSec: 2, endNsec: 0, received: 9, dropped: 1, accepted: 8, delivered: 8 });
  const file = Buffer.alloc(head.length + frames.reduce((n, f) => n + epbLength(f.length), 0) + isb.length, 0xa5);
  const bounds = [0, shbLen, head.length];
  let off = head.copy(file, 0);
  frames.forEach((f, i) => {
    off = writeEpb(file, off, f, 0, f.length, f.length + (i % 2), 1_700_000_000 + i, 999_999_000 + i);
    bounds.push(off);
  });
  isb.copy(file, off);
  bounds.push(off + isb.length);
  return { file, bounds };
}

t.test('a pcapng .part torn anywhere is cut to its last whole block (no statistics block is made up); a torn section header is deleted', async (t) => {
  const { file, bounds } = writerNgFile();
  const shbLen = bounds[1]!;
  const cuts = new Set<number>([0, 3, 12, shbLen - 1]);
  for (const b of bounds) for (const d of [-1, 0, 4, 29]) if (b + d > 0 && b + d <= file.length) cuts.add(b + d);
  await withTempDir(async (dir) => {
    const recovered: [string, number][] = [];
    for (const cut of [...cuts].sort((a, b) => a - b)) {
      const part = join(dir, `s-${String(cut).padStart(6, '0')}.pcapng.part`);
      await writeFile(part, file.subarray(0, cut));
      const r = await recoverPartFile(part);
      if (cut < shbLen) {
        t.match(r, { action: 'deleted', records: 0 }, `cut ${cut}: inside the section header, nothing to keep`);
        continue;
      }
      const end = bounds.filter((b) => b <= cut).pop()!;
      const packets = Math.max(0, bounds.indexOf(end) - 2 - (end === file.length ? 1 : 0));
      t.match(r, { action: 'recovered', finalPath: part.slice(0, -5), records: packets, bytes: end, bytesCut: cut - end }, `cut ${cut}`);
      t.ok((await readFile(r.finalPath!)).equals(file.subarray(0, end)), `cut ${cut}: exactly the whole blocks`);
      recovered.push([r.finalPath!, packets]);
    }
    // Zero-filled space after the last whole block (a power loss) is cut too.
    const zeroed = join(dir, 'z-000000.pcapng.part');
    await writeFile(zeroed, Buffer.concat([file.subarray(0, bounds[4]!), Buffer.alloc(4096)]));
    t.match(await recoverPartFile(zeroed), { action: 'recovered', records: 2, bytes: bounds[4]! }, 'zero-filled tail cut');
    const counts = await capinfosCounts(recovered.map(([p]) => p));
    for (const [p, n] of recovered) t.equal(counts.get(p), n, `capinfos: ${basename(p)} holds ${n} packets`);
    // capinfos read them all above; tshark (slower to start) reads a torn one and the whole one.
    const sample = [recovered.find(([, n]) => n === 3)!, recovered[recovered.length - 1]!];
    await mapLimit(sample, 2, ([p, n]) => tsharkCheck(t, p, n));
  });
});
