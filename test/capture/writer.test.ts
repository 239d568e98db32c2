/** The writer's rotation, ring, bounds and timestamps, checked on disk with capinfos / tshark. */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { Catalog } from '../../src/capture/catalog.js';
import { ChunkPool, LARGE_CHUNK, SMALL_CHUNK } from '../../src/capture/chunks.js';
import { rotationEnd, rotationOf } from '../../src/capture/rotation.js';
import { SessionWriter, type CaptureFile, type SpanCounters, type WriterOptions } from '../../src/capture/writer.js';
import { loadNative } from '../../src/native/addon.js';
import type { SessionSettings } from '../../src/config.js';
import { EMPTY_FLOW_INFO } from '../../src/flowformat.js';
import { DROP_DISK_FULL, DROP_QUEUE_FULL, DROP_WRITE_ERROR, newDropCounters } from '../../src/drops.js';
import { udpFrame } from '../lib/frames.js';
import { capinfos, capinfosInterfaces, pcapngStatistics, tsharkFrames } from '../lib/tshark.js';
import { run } from '../lib/tools.js';

const T0 = 1_790_000_000; // 2026-09-21T14:13:20Z
const SECTION = { application: 'mirrorcap test', os: 'Linux test', hardware: 'x64' };

interface Rig {
  dir: string;
  writer: SessionWriter;
  closed: CaptureFile[];
  drops: Float64Array;
  catalog: Catalog;
  deleted: string[];
  errors: string[];
}

async function rig(
  t: Test,
  rotation: Partial<SessionSettings>,
  opts: { queueSize?: number; pool?: ChunkPool; disk?: { full: boolean }; maxTotalBytes?: number; expectErrors?: boolean; clampTime?: boolean; writeBehind?: WriterOptions['writeBehind']; counters?: SpanCounters } = {},
): Promise<Rig> {
  const out = await mkdtemp(join(tmpdir(), 'mirrorcap-writer-'));
  t.teardown(() => rm(out, { recursive: true, force: true }));
  const dir = join(out, 's1');
  const closed: CaptureFile[] = [];
  const deleted: string[] = [];
  const errors: string[] = [];
  const drops = newDropCounters();
  const full: SessionSettings = { rotateSize: 0, rotateSeconds: 0, rotatePackets: 0, rotateAlign: false, ring: 0, dedup: 0, snaplen: 65535, filter: null, format: 'pcap', flows: false, flowFields: EMPTY_FLOW_INFO, ...rotation };
  const catalog = new Catalog(out, opts.maxTotalBytes ?? 0, { deleted: (f) => deleted.push(f.path), deleteFailed: () => undefined });
  const writer = new SessionWriter({
    session: 's1',
    dir,
    rotation: rotationOf(full),
    snaplen: full.snaplen,
    queueSize: opts.queueSize ?? 32 * 1024 * 1024,
    nextSeq: () => catalog.nextSeq('s1'),
    pool: opts.pool ?? new ChunkPool(256 * 1024 * 1024),
    drops,
    disk: opts.disk ?? { full: false },
    clampTime: opts.clampTime ?? true,
    writeBehind: opts.writeBehind,
    format: full.format,
    filter: full.filter,
    pcapng: { section: SECTION, describe: 'VXLAN VNI 7, outer source 10.0.0.1', counters: opts.counters ?? { received: 0, filtered: 0 } },
    events: {
      fileClosed: (f) => {
        closed.push({ ...f });
        catalog.add(f, full.ring);
      },
      writeError: (_f, _where, op, err) => {
        errors.push(`${op}:${err.code}`);
        if (!opts.expectErrors) t.fail(`unexpected ${op} error ${err.code}`);
      },
    },
  });
  return { dir, writer, closed, drops, catalog, deleted, errors };
}

const files = async (dir: string): Promise<string[]> => (await readdir(dir)).sort();

t.test('files are named <session>-<UTC start>-<seq>.pcap and renamed from .part on close', async (t) => {
  const { dir, writer } = await rig(t, {});
  const f = udpFrame(100, 1, 1);
  writer.append(f, 0, f.length, f.length, T0, 5);
  writer.flush();
  await writer.idle();
  t.same(await files(dir), ['s1-20260921T141320Z-000000.pcap.part'], 'open file carries .part');
  t.equal((await stat(dir)).mode & 0o777, 0o750, 'folder mode 0750');
  t.equal((await stat(join(dir, 's1-20260921T141320Z-000000.pcap.part'))).mode & 0o777, 0o640, 'file mode 0640');
  t.equal((await tsharkFrames(join(dir, 's1-20260921T141320Z-000000.pcap.part'))).length, 1, 'a flushed record is readable while the file is open');
  await writer.stop();
  await writer.stop();
  t.same(await files(dir), ['s1-20260921T141320Z-000000.pcap'], 'closed file renamed; close() is idempotent');
});

t.test('rotation by size: no file grows past rotate-size', async (t) => {
  const { dir, writer, closed } = await rig(t, { rotateSize: 4096 });
  const f = udpFrame(1000, 1, 1);
  for (let i = 0; i < 10; i++) writer.append(f, 0, f.length, f.length, T0, i);
  await writer.stop();
  const names = await files(dir);
  t.equal(names.length, 3, '4 + 4 + 2 records of 1016 bytes');
  t.same(closed.map((c) => c.packets), [4, 4, 2]);
  for (const n of names) {
    t.ok((await stat(join(dir, n))).size <= 4096, `${n} within 4096 bytes`);
  }
  t.same(names.map((n) => n.slice(-12)), ['-000000.pcap', '-000001.pcap', '-000002.pcap'], 'sequence numbers count up');
  t.same(await Promise.all(names.map(async (n) => (await capinfos(join(dir, n))).packets)), [4, 4, 2], 'capinfos agrees');
});

t.test('rotation by packet count', async (t) => {
  const { dir, writer } = await rig(t, { rotatePackets: 10 });
  const f = udpFrame(60, 1, 1);
  for (let i = 0; i < 35; i++) writer.append(f, 0, f.length, f.length, T0, i);
  await writer.stop();
  t.same(await Promise.all((await files(dir)).map(async (n) => (await capinfos(join(dir, n))).packets)), [10, 10, 10, 5]);
});

t.test('rotation by age: packet time, and tick() for a session gone quiet', async (t) => {
  const { dir, writer, closed } = await rig(t, { rotateSeconds: 60 });
  const f = udpFrame(60, 1, 1);
  for (let s = 0; s < 150; s += 10) writer.append(f, 0, f.length, f.length, T0 + s, 0);
  t.equal(closed.length, 0, 'nothing closed before the drain');
  writer.tick(T0 + 179);
  t.not(writer.stats().current, null, 'tick leaves a file younger than rotate-seconds');
  writer.tick(T0 + 180);
  t.equal(writer.stats().current, null, 'tick closes a file as old as rotate-seconds');
  await writer.idle();
  t.same(closed.map((c) => [c.firstSec - T0, c.lastSec - T0, c.packets]), [[0, 50, 6], [60, 110, 6], [120, 140, 3]]);
  t.same((await files(dir)).map((n) => n.slice(3, 19)), ['20260921T141320Z', '20260921T141420Z', '20260921T141520Z'], 'each name has its UTC start');
});

t.test('--rotate-align: files end on multiples of rotate-seconds since 00:00 UTC, by packet time and by tick()', async (t) => {
  // T0 is 14:13:20 UTC: the first file runs to 14:14:00, the next ones a whole minute each.
  const { dir, writer, closed } = await rig(t, { rotateSeconds: 60, rotateAlign: true });
  const f = udpFrame(60, 1, 1);
  for (const s of [0, 30, 39, 40, 99, 100]) writer.append(f, 0, f.length, f.length, T0 + s, s === 39 || s === 99 ? 999_999_999 : 0);
  writer.tick(T0 + 159);
  t.not(writer.stats().current, null, 'tick leaves the file before 14:16:00');
  writer.tick(T0 + 160);
  t.equal(writer.stats().current, null, 'tick closes it at 14:16:00');
  await writer.idle();
  t.same(closed.map((c) => [c.firstSec - T0, c.lastSec - T0, c.packets]), [[0, 39, 3], [40, 99, 2], [100, 100, 1]]);
  t.same((await files(dir)).map((n) => n.slice(3, 19)), ['20260921T141320Z', '20260921T141400Z', '20260921T141500Z'], 'every file but the first starts on the minute');
  const day = Date.UTC(2026, 8, 21) / 1000;
  const r = rotationOf({ rotateSize: 0, rotateSeconds: 420, rotatePackets: 0, rotateAlign: true });
  t.equal(rotationEnd(day + 1000, r), day + 1260, '7 minutes: the next multiple after 00:16:40 is 00:21:00');
  t.equal(rotationEnd(day + 86_300, r), day + 86_400, 'a period that does not divide the day ends at midnight');
  t.equal(rotationEnd(day + 1000, rotationOf({ rotateSize: 0, rotateSeconds: 420, rotatePackets: 0, rotateAlign: false })), day + 1420, 'unaligned: first packet + 420 s');
});

t.test('snaplen cuts the record, orig_len keeps the real length; a larger origLen is kept', async (t) => {
  const { dir, writer } = await rig(t, { snaplen: 128 });
  const big = udpFrame(1000, 1, 1);
  const small = udpFrame(100, 1, 2);
  writer.append(big, 0, big.length, big.length, T0, 1);
  writer.append(small, 0, small.length, 1500, T0, 2);
  await writer.stop();
  const [name] = await files(dir);
  t.equal((await capinfos(join(dir, name!))).snaplen, 128, 'snaplen in the file header');
  const got = await tsharkFrames(join(dir, name!));
  t.same(got.map((g) => [g.capLen, g.origLen]), [[128, 1000], [100, 1500]]);
  t.ok(got[0]!.data.equals(big.subarray(0, 128)), 'the first 128 bytes are written');
});

t.test('timestamps never go backwards within a file', async (t) => {
  const { dir, writer } = await rig(t, {});
  const f = udpFrame(60, 1, 1);
  writer.append(f, 0, f.length, f.length, T0 + 5, 500);
  writer.append(f, 0, f.length, f.length, T0 + 4, 900); // a clock step back
  writer.append(f, 0, f.length, f.length, T0 + 5, 400);
  writer.append(f, 0, f.length, f.length, T0 + 6, 1);
  await writer.stop();
  const [name] = await files(dir);
  t.same((await tsharkFrames(join(dir, name!))).map((g) => g.ts), [`${T0 + 5}.000000500`, `${T0 + 5}.000000500`, `${T0 + 5}.000000500`, `${T0 + 6}.000000001`]);
});

t.test('clampTime off (a capture\'s own times): a step back is written as it is; the file\'s last time is its newest', async (t) => {
  const { dir, writer, closed } = await rig(t, {}, { clampTime: false });
  const f = udpFrame(60, 1, 1);
  writer.append(f, 0, f.length, f.length, T0 + 5, 500);
  writer.append(f, 0, f.length, f.length, T0 + 6, 1);
  writer.append(f, 0, f.length, f.length, T0 + 5, 400); // captured earlier than the one before
  await writer.stop();
  const [name] = await files(dir);
  t.same((await tsharkFrames(join(dir, name!))).map((g) => g.ts), [`${T0 + 5}.000000500`, `${T0 + 6}.000000001`, `${T0 + 5}.000000400`]);
  t.same([closed[0]!.firstSec, closed[0]!.firstNsec, closed[0]!.lastSec, closed[0]!.lastNsec], [T0 + 5, 500, T0 + 6, 1]);
});

t.test('a full queue drops and counts, memory stays bounded, everything else is written', async (t) => {
  const pool = new ChunkPool(4 * LARGE_CHUNK);
  const { dir, writer, drops } = await rig(t, {}, { queueSize: 64 * 1024 * 1024, pool });
  const f = udpFrame(1400, 1, 1);
  let accepted = 0;
  // No await in the loop: the disk gets no chance to drain, as under a burst.
  for (let i = 0; i < 2000; i++) if (writer.append(f, 0, f.length, f.length, T0, i)) accepted++;
  t.ok(pool.allocatedBytes <= 4 * LARGE_CHUNK, 'the pool never exceeds its limit');
  t.equal(accepted + drops[DROP_QUEUE_FULL]!, 2000, 'every packet is either accepted or counted as queue_full');
  t.ok(drops[DROP_QUEUE_FULL]! > 0, 'some were dropped');
  await writer.stop();
  const [name] = await files(dir);
  t.equal((await capinfos(join(dir, name!))).packets, accepted, 'every accepted packet is in the file');
  t.equal(writer.writtenPackets, accepted);
});

t.test('the per-session queue size bounds a session even when the pool has room', async (t) => {
  const pool = new ChunkPool(64 * LARGE_CHUNK);
  const { writer, drops } = await rig(t, {}, { queueSize: 2 * LARGE_CHUNK, pool });
  const f = udpFrame(1400, 1, 1);
  for (let i = 0; i < 2000; i++) writer.append(f, 0, f.length, f.length, T0, i);
  t.ok(writer.stats().heldBytes <= 2 * LARGE_CHUNK, 'held bytes within queue-size');
  t.ok(drops[DROP_QUEUE_FULL]! > 0);
  await writer.stop();
});

t.test('quiet sessions hold small chunks, busy ones large: memory follows traffic', async (t) => {
  const pool = new ChunkPool(256 * 1024 * 1024);
  const quiet = await Promise.all(Array.from({ length: 20 }, () => rig(t, {}, { pool })));
  const f = udpFrame(200, 1, 1);
  for (const r of quiet) r.writer.append(f, 0, f.length, f.length, T0, 0);
  t.equal(pool.allocatedBytes, 20 * SMALL_CHUNK, 'one packet each: a small chunk each');
  const busy = quiet[0]!.writer;
  for (let i = 0; i < 1000; i++) busy.append(f, 0, f.length, f.length, T0, i);
  t.ok(busy.stats().heldBytes > SMALL_CHUNK * 2, 'a session that fills its chunk moves to large ones');
  const jumbo = udpFrame(60000, 1, 1);
  t.ok(quiet[1]!.writer.append(jumbo, 0, jumbo.length, jumbo.length, T0, 1), 'a record larger than a small chunk gets a large one');
  for (const r of quiet) await r.writer.stop();
  t.equal((await capinfos(join(quiet[1]!.dir, (await files(quiet[1]!.dir))[0]!))).packets, 2);
});

t.test('ring keeps the newest N finished files of the session', async (t) => {
  const { dir, writer, deleted } = await rig(t, { rotatePackets: 1, ring: 2 });
  const f = udpFrame(60, 1, 1);
  for (let i = 0; i < 5; i++) {
    writer.append(f, 0, f.length, f.length, T0 + i, 0);
    await writer.idle();
  }
  await writer.stop();
  await new Promise((r) => setTimeout(r, 50));
  const left = await files(dir);
  t.same(left.map((n) => n.slice(-11, -5)), ['000003', '000004'], 'the two newest remain');
  t.equal(deleted.length, 3, 'three deletions reported');
});

t.test('sequence numbers continue after files from an earlier run', async (t) => {
  const first = await rig(t, { rotatePackets: 1 });
  const f = udpFrame(60, 1, 1);
  for (let i = 0; i < 3; i++) first.writer.append(f, 0, f.length, f.length, T0, 0);
  await first.writer.stop();
  const again = new Catalog(join(first.dir, '..'), 0, { deleted: () => undefined, deleteFailed: () => undefined });
  await again.scan();
  t.equal(again.nextSeq('s1'), 3);
  t.equal(again.filesOf('s1').length, 3);
  t.same(await readFile(join(first.dir, (await files(first.dir))[0]!)).then((b) => b.readUInt32LE(0).toString(16)), 'a1b23c4d');
});

t.test('while the disk is below min-free, packets are dropped as disk_full; writing resumes after', async (t) => {
  const disk = { full: false };
  const { dir, writer, drops } = await rig(t, {}, { disk });
  const f = udpFrame(60, 1, 1);
  t.ok(writer.append(f, 0, f.length, f.length, T0, 1));
  disk.full = true;
  for (let i = 0; i < 5; i++) t.notOk(writer.append(f, 0, f.length, f.length, T0, 2));
  t.equal(drops[DROP_DISK_FULL], 5);
  disk.full = false;
  t.ok(writer.append(f, 0, f.length, f.length, T0, 3));
  await writer.stop();
  t.equal((await capinfos(join(dir, (await files(dir))[0]!))).packets, 2);
});

t.test('max-total-bytes: the oldest finished files go first, whatever their session', async (t) => {
  const out = await mkdtemp(join(tmpdir(), 'mirrorcap-budget-'));
  t.teardown(() => rm(out, { recursive: true, force: true }));
  const deleted: string[] = [];
  const catalog = new Catalog(out, 2500, { deleted: (f, reason) => deleted.push(`${reason}:${f.session}:${f.seq}`), deleteFailed: () => undefined });
  const file = (session: string, seq: number, start: number): CaptureFile => ({
    session, seq, path: join(out, `${session}-${seq}.pcap`), bytes: 1000, packets: 1, firstSec: start, firstNsec: 0, lastSec: start, lastNsec: 0,
  });
  catalog.add(file('a', 0, T0 + 10), 0);
  catalog.add(file('b', 0, T0 + 5), 0);
  catalog.add(file('a', 1, T0 + 20), 0);
  t.equal(catalog.totalBytes, 2000, 'within budget: nothing deleted');
  catalog.add(file('b', 1, T0 + 30), 0);
  t.equal(catalog.totalBytes, 2000, 'back under budget at once');
  t.same(catalog.all().map((f) => `${f.session}:${f.seq}`).sort(), ['a:1', 'b:1']);
  await new Promise((r) => setTimeout(r, 20));
  t.same(deleted, [], 'files that were already gone are not reported as deleted');
  t.same(catalog.deleted, { ring: 0, budget: 0 });
});

/** Ten records written, the folder removed, ten more written: the file has no name left. */
async function removedWhileOpen(t: Test): Promise<Awaited<ReturnType<typeof rig>> & { f: Buffer }> {
  const r = await rig(t, {}, { expectErrors: true });
  const f = udpFrame(500, 1, 1);
  for (let i = 0; i < 10; i++) r.writer.append(f, 0, f.length, f.length, T0, i);
  r.writer.flush();
  await r.writer.idle();
  await rm(r.dir, { recursive: true });
  for (let i = 0; i < 10; i++) r.writer.append(f, 0, f.length, f.length, T0 + 1, i);
  r.writer.flush();
  await r.writer.idle();
  return { ...r, f };
}

t.test('the folder removed under an open file: nothing written is lost, the file is rewritten in place', async (t) => {
  const { dir, writer, errors, drops, f } = await removedWhileOpen(t);
  // The name is looked for at most once a second while the file is written: the write just
  // done came within the second of the first, so it is found at the next write after that.
  t.same(errors, [], 'not looked for again within the second');
  await new Promise((r) => setTimeout(r, 1100));
  writer.append(f, 0, f.length, f.length, T0 + 1, 10);
  writer.flush();
  await writer.idle();
  t.same(errors, ['relink:ENOENT'], 'the event is reported once');
  for (let i = 0; i < 3; i++) writer.append(f, 0, f.length, f.length, T0 + 2, i);
  await rm(dir, { recursive: true }); // and again, between the last write and the close
  await writer.stop();
  t.equal(drops[DROP_WRITE_ERROR], 0, 'no packet lost');
  const left = await files(dir);
  t.equal(left.length, 1, `the file is back under its name (${left.join(', ')})`);
  t.equal((await capinfos(join(dir, left[0]!))).packets, 24, 'with every packet');
});

t.test('a file removed within the second before its close is rewritten at the close', async (t) => {
  const { dir, writer, errors, drops } = await removedWhileOpen(t);
  await writer.stop();
  t.same(errors, ['relink:ENOENT'], 'found at the close');
  t.equal(drops[DROP_WRITE_ERROR], 0, 'no packet lost');
  const left = await files(dir);
  t.equal(left.length, 1, `the file is back under its name (${left.join(', ')})`);
  t.equal((await capinfos(join(dir, left[0]!))).packets, 20, 'with every packet');
});

t.test('ENOSPC: the file is cut to its last whole record and renamed, drops are counted, writing resumes when space returns', async (t) => {
  const mnt = await mkdtemp(join(tmpdir(), 'mirrorcap-tmpfs-'));
  const mounted = await run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt]);
  if (mounted.code !== 0) {
    t.pass(`skipped: cannot mount a small tmpfs here (not root?): ${mounted.stderr}`);
    return;
  }
  t.teardown(() => run('umount', [mnt]));
  const dir = join(mnt, 's1');
  const errors: string[] = [];
  const closed: CaptureFile[] = [];
  const drops = newDropCounters();
  const catalog = new Catalog(mnt, 0, { deleted: () => undefined, deleteFailed: () => undefined });
  const writer = new SessionWriter({
    session: 's1',
    dir,
    rotation: { size: 0, seconds: 0, packets: 0, align: false },
    snaplen: 65535,
    queueSize: 32 * 1024 * 1024,
    nextSeq: () => catalog.nextSeq('s1'),
    pool: new ChunkPool(64 * 1024 * 1024),
    drops,
    disk: { full: false },
    clampTime: true,
    events: { fileClosed: (f) => closed.push({ ...f }), writeError: (_f, _where, op, err) => errors.push(`${op}:${err.code}`) },
  });
  const f = udpFrame(1400, 1, 1);
  let accepted = 0;
  for (let i = 0; i < 1500; i++) if (writer.append(f, 0, f.length, f.length, T0, i)) accepted++; // ~2.1 MB into 1 MiB
  await writer.idle();
  t.ok(errors.includes('write:ENOSPC'), `ENOSPC reported (${errors.join(', ')})`);
  const first = await files(dir);
  t.equal(first.length, 1, 'the failed file was closed and renamed');
  const info = await capinfos(join(dir, first[0]!));
  t.ok(info.packets > 0, `capinfos opens it: ${info.packets} whole records`);
  t.equal((await tsharkFrames(join(dir, first[0]!))).length, info.packets, 'tshark reads every record, none torn');
  t.equal(info.packets + drops[DROP_WRITE_ERROR]!, accepted, 'every accepted packet is either in the file or counted as write_error');
  t.equal(writer.writtenPackets, info.packets);
  await rm(join(dir, first[0]!));
  await new Promise((r) => setTimeout(r, 1100));
  for (let i = 0; i < 5; i++) t.ok(writer.append(f, 0, f.length, f.length, T0 + 5, i));
  await writer.stop();
  const after = (await files(dir)).filter((n) => n !== first[0]);
  t.equal(after.length, 1);
  t.equal((await capinfos(join(dir, after[0]!))).packets, 5, 'writing resumed in a new file once space returned');
});

/** Resident bytes of a file in the page cache, as util-linux's fincore (mincore) reports them. */
async function cachedBytes(path: string): Promise<number> {
  const r = await run('fincore', ['--bytes', '--noheadings', '--output', 'RES', path]);
  if (r.code !== 0) throw new Error(`fincore ${path}: ${r.stderr}`);
  return Number(r.stdout.trim());
}

/** 24 MiB of jumbo frames in 1 MiB flushes, each waited for, as a steady capture would write. */
async function writeJumbo(writer: SessionWriter): Promise<number> {
  const f = udpFrame(8950, 1, 1);
  let n = 0;
  for (let mib = 0; mib < 24; mib++) {
    for (let i = 0; i < 117; i++) writer.append(f, 0, f.length, f.length, T0, n++);
    writer.flush();
    await writer.idle();
  }
  await writer.stop();
  return n;
}

t.test('write-behind: the same bytes on disk, and the page cache holds only the last windows of the file', async (t) => {
  const native = loadNative();
  if (!native.ok || spawnSync('sh', ['-c', 'command -v fincore']).status !== 0) return void t.pass(`skipped: needs the native addon and fincore (${native.ok ? 'no fincore' : native.reason})`);
  const calls: number[][] = [];
  const window = 1024 * 1024;
  const run = (fd: number, ...range: number[]): Promise<void> => {
    calls.push(range);
    return native.binding.writeBehind(fd, range[0]!, range[1]!, range[2]!, range[3]!);
  };
  const on = await rig(t, {}, { writeBehind: { window, run } });
  const off = await rig(t, {});
  const packets = await writeJumbo(on.writer);
  t.equal(await writeJumbo(off.writer), packets);
  const [a] = await files(on.dir);
  const [b] = await files(off.dir);
  // Before anything reads the files back in.
  const size = (await stat(join(on.dir, a!))).size;
  const cachedOn = await cachedBytes(join(on.dir, a!));
  const cachedOff = await cachedBytes(join(off.dir, b!));
  t.ok(cachedOn <= 4 * window, `with write-behind ${cachedOn} of ${size} bytes stay in the page cache (the last windows)`);
  t.ok(cachedOff > size / 2, `without it the kernel keeps ${cachedOff} (the oracle sees cached pages)`);
  t.ok((await readFile(join(on.dir, a!))).equals(await readFile(join(off.dir, b!))), 'byte for byte the file written without write-behind');
  t.equal((await capinfos(join(on.dir, a!))).packets, packets, 'capinfos reads every record');
  t.ok(calls.length >= 20, `write-behind ran every window or so (${calls.length} times)`);
  t.ok(
    calls.every(([start, end, dropStart, dropEnd], i) => end! > start! && start === (i === 0 ? 0 : calls[i - 1]![1]) && (i < 2 ? dropStart === dropEnd : dropStart === calls[i - 2]![0] && dropEnd === calls[i - 2]![1])),
    'windows follow each other: write out the new one, wait for and drop the one two before',
  );
});

t.test('write-behind failing (the disk refused the data): the file is cut to its last whole record and finished, as after a failed write', async (t) => {
  const refuse = (): Promise<void> => Promise.reject(Object.assign(new Error('sync_file_range EIO'), { code: 'EIO', syscall: 'sync_file_range' }));
  const { dir, writer, errors, closed, drops } = await rig(t, {}, { writeBehind: { window: 1024 * 1024, run: refuse }, expectErrors: true });
  const appended = await writeJumbo(writer);
  t.equal(errors[0], 'write:EIO', 'reported as a write error');
  const names = await files(dir);
  t.ok(names.length >= 1 && names.every((n) => n.endsWith('.pcap')), `every file finished and renamed (${names.join(', ')})`);
  let inFiles = 0;
  for (const n of names) {
    const packets = (await capinfos(join(dir, n))).packets;
    inFiles += packets;
    t.equal(packets, closed.find((c) => c.path.endsWith(n))?.packets, `${n}: capinfos reads every record the writer says it holds`);
  }
  t.ok(drops[DROP_WRITE_ERROR]! > 0, 'what came while the writer waited to retry is counted (write_error)');
  t.equal(inFiles + drops[DROP_WRITE_ERROR]!, appended, 'every packet is in a file or counted');
});

t.test('pcapng: the same frames and nanosecond times as pcap, the session as a named interface with its filter', async (t) => {
  const frames = [udpFrame(60, 1, 1), udpFrame(61, 1, 2), udpFrame(62, 1, 3), udpFrame(63, 1, 4), udpFrame(1401, 1, 5)];
  const times: Array<[number, number]> = [[T0, 0], [T0, 1], [T0 + 1, 999_999_999], [0xffff_ffff - 1, 123_456_789], [T0 + 65536, 500]];
  const written: Record<string, string[]> = {};
  for (const format of ['pcap', 'pcapng'] as const) {
    const { dir, writer } = await rig(t, { format, filter: 'udp port 53', snaplen: 1000 });
    for (const [i, f] of frames.entries()) writer.append(f, 0, f.length, f.length, times[i]![0], times[i]![1]);
    await writer.stop();
    written[format] = (await files(dir)).map((n) => join(dir, n));
  }
  t.match(written.pcapng![0]!, /-000000\.pcapng$/, 'named .pcapng');
  const [a, b] = [await tsharkFrames(written.pcap![0]!), await tsharkFrames(written.pcapng![0]!)];
  t.equal(b.length, frames.length);
  t.ok(a.every((x, i) => x.data.equals(b[i]!.data) && x.ts === b[i]!.ts && x.origLen === b[i]!.origLen), 'every frame, cut length, original length and timestamp as in the pcap file');
  const [iface] = await capinfosInterfaces(written.pcapng![0]!);
  t.equal(iface!['Name'], 's1');
  t.equal(iface!['Description'], 'VXLAN VNI 7, outer source 10.0.0.1, filter: udp port 53');
  t.equal(iface!['Filter string'], 'udp port 53');
  t.equal(iface!['Time precision'], 'nanoseconds (9)');
  t.equal(iface!['Capture length'], '1000');
  const info = await capinfos(written.pcapng![0]!);
  t.match(info.fileType, /pcapng/);
  const warn = spawnSync('capinfos', [written.pcapng![0]!], { encoding: 'utf8' });
  t.equal(warn.status, 0);
  t.notMatch(warn.stderr, /warn|error|cut short/i, 'capinfos reads it without a warning');
  t.match(warn.stdout, /Capture application: mirrorcap test/);
});

t.test('pcapng statistics: every file ends with what the session received and dropped since the last one, and a reload that changes the format starts a new file', async (t) => {
  const counters = { received: 0, filtered: 0 };
  const pool = new ChunkPool(4 * LARGE_CHUNK);
  const { dir, writer, drops } = await rig(t, { format: 'pcapng', rotatePackets: 300 }, { pool, counters });
  const f = udpFrame(1400, 1, 1);
  let accepted = 0;
  // No await: the disk cannot drain, so the queue fills and drops, as under a burst.
  for (let i = 0; i < 2000; i++) {
    counters.received++;
    if (i % 10 === 0) {
      counters.filtered++; // the session's filter kept it out: never reaches the writer
      continue;
    }
    if (writer.append(f, 0, f.length, f.length, T0, i)) accepted++;
  }
  t.ok(drops[DROP_QUEUE_FULL]! > 0, `${drops[DROP_QUEUE_FULL]} dropped`);
  await writer.idle();
  writer.configure({ rotateSize: 0, rotateSeconds: 0, rotatePackets: 300, rotateAlign: false, ring: 0, dedup: 0, snaplen: 65535, filter: null, format: 'pcap', flows: false, flowFields: EMPTY_FLOW_INFO });
  counters.received++;
  writer.append(f, 0, f.length, f.length, T0 + 1, 0);
  await writer.stop();
  const names = await files(dir);
  t.match(names[names.length - 1]!, /\.pcap$/, 'the reload to pcap starts a .pcap file');
  const ng = names.filter((n) => n.endsWith('.pcapng'));
  const stats = await Promise.all(ng.map((n) => pcapngStatistics(join(dir, n))));
  t.ok(stats.every((s) => s.length === 1), 'one statistics block per file');
  const all = stats.map((s) => s[0]!);
  t.equal(all.reduce((n, s) => n + s.received, 0), 2000, 'received: every packet of the session, in exactly one file');
  t.equal(all.reduce((n, s) => n + s.dropped, 0), drops[DROP_QUEUE_FULL], 'dropped: what the session counted as dropped');
  t.equal(all.reduce((n, s) => n + s.accepted, 0), 1800, 'accepted by the filter: received less filtered');
  const packets = await Promise.all(ng.map(async (n) => (await capinfos(join(dir, n))).packets));
  t.same(all.map((s) => s.delivered), packets, 'delivered: the packets in the file');
  t.equal(packets.reduce((a, b) => a + b, 0), accepted);
});
