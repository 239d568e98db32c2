/**
 * The catalog of finished files with steps still to run on them (post-rotate today; index,
 * compression, upload later): the ring and the budget never delete a file while a step is
 * pending, count what the step turned it into (X.pcap → X.pcap.gz) and trim once it is free.
 * Checked against the folder itself (readdir/stat), not against the catalog's own numbers.
 */
import { mkdir, mkdtemp, readdir, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { Catalog, type FinishedFile } from '../../src/capture/catalog.js';
import { captureFileName } from '../../src/capture/naming.js';
import type { CaptureFile } from '../../src/capture/writer.js';

const T0 = 1_790_000_000;
const STEP = 'post-rotate';

interface Rig {
  out: string;
  dir: string;
  catalog: Catalog;
  deleted: string[];
  /** Writes the capture file `seq` of session s1 (bytes long) and returns it as a writer reports it. */
  file(seq: number, bytes: number): Promise<CaptureFile>;
}

async function rig(t: Test, maxTotalBytes = 0): Promise<Rig> {
  const out = await mkdtemp(join(tmpdir(), 'mirrorcap-catalog-'));
  t.teardown(() => rm(out, { recursive: true, force: true }));
  const dir = join(out, 's1');
  await mkdir(dir);
  const deleted: string[] = [];
  const catalog = new Catalog(out, maxTotalBytes, {
    deleted: (f, reason) => deleted.push(`${reason}:${f.path.slice(dir.length + 1)}:${f.bytes}`),
    deleteFailed: (f, err) => t.fail(`delete of ${f.path} failed: ${err.code}`),
  });
  const file = async (seq: number, bytes: number): Promise<CaptureFile> => {
    const path = join(dir, captureFileName('s1', T0 + seq, seq));
    await writeFile(path, Buffer.alloc(bytes, seq));
    return { session: 's1', seq, path, bytes, packets: 1, firstSec: T0 + seq, firstNsec: 0, lastSec: T0 + seq, lastNsec: 0 };
  };
  return { out, dir, catalog, deleted, file };
}

/** What a `gzip` post-rotate command does: X.pcap.gz appears, X.pcap goes. */
async function gzipLike(f: FinishedFile, bytes: number): Promise<string> {
  await writeFile(`${f.path}.gz`, Buffer.alloc(bytes, 7));
  await unlink(f.path);
  return `${f.path}.gz`;
}

const onDisk = async (dir: string): Promise<Record<string, number>> => {
  const o: Record<string, number> = {};
  for (const n of (await readdir(dir)).sort()) o[n] = (await stat(join(dir, n))).size;
  return o;
};
const listed = (c: Catalog, dir: string): Record<string, number> =>
  Object.fromEntries(c.all().flatMap((f) => f.artefacts.map((a) => [a.slice(dir.length + 1), -1])).sort());

t.test('ring: a file with a pending step is never deleted; what the step made stays under the ring', async (t) => {
  const { dir, catalog, deleted, file } = await rig(t);
  const e = [];
  for (let i = 0; i < 3; i++) e.push(catalog.add(await file(i, 100), 1, [STEP]));
  await catalog.idle();
  t.same(deleted, [], 'three files, ring 1, all busy: none deleted');
  t.equal(Object.keys(await onDisk(dir)).length, 3);
  t.same(e[0]!.pending, [STEP], 'the entry says what it waits for');

  const gz0 = await gzipLike(e[0]!, 40);
  await catalog.done(e[0]!, STEP);
  await catalog.idle();
  t.same(deleted, [`ring:${gz0.slice(dir.length + 1)}:40`], 'free and beyond the ring: its .gz is deleted, with its own size');

  const gz2 = await gzipLike(e[2]!, 30);
  await catalog.done(e[2]!, STEP);
  await catalog.idle();
  t.equal(e[2]!.path, gz2, 'the entry follows the file to its new name');
  t.equal(e[2]!.bytes, 30);
  t.equal(deleted.length, 1, 'the newest is kept, the middle one is still busy');

  await gzipLike(e[1]!, 35);
  await catalog.done(e[1]!, STEP);
  await catalog.idle();
  t.equal(deleted.length, 2, 'freed, the middle one goes');
  t.same(Object.keys(await onDisk(dir)), [gz2.slice(dir.length + 1)], 'one file left: the ring bounds the disk again');
  t.same(Object.keys(listed(catalog, dir)), Object.keys(await onDisk(dir)), 'and the catalog lists exactly it');
  t.equal(catalog.totalBytes, 30, 'with its real size');
});

t.test('budget: busy files are skipped, the oldest free ones go; trimmed again when a step ends', async (t) => {
  const { dir, catalog, deleted, file } = await rig(t, 250);
  const a = catalog.add(await file(0, 100), 0, [STEP]);
  const b = catalog.add(await file(1, 100), 0);
  const c = catalog.add(await file(2, 100), 0, [STEP]);
  await catalog.idle();
  t.same(deleted, [`budget:${b.path.slice(dir.length + 1)}:100`], 'the oldest free file went, not the older busy one');
  t.equal(catalog.totalBytes, 200);
  catalog.add(await file(3, 100), 0, [STEP]);
  await catalog.idle();
  t.equal(catalog.totalBytes, 300, 'over budget while everything left is busy');
  t.equal(Object.keys(await onDisk(dir)).length, 3);
  await catalog.done(c, STEP);
  await catalog.idle();
  t.equal(deleted[1], `budget:${c.path.slice(dir.length + 1)}:100`, 'the first file freed is deleted, the older busy one stays');
  await gzipLike(a, 20);
  await catalog.done(a, STEP);
  await catalog.idle();
  t.equal(catalog.totalBytes, 120, 'the step made it smaller: back under budget, nothing more deleted');
  t.equal(deleted.length, 2);
  t.equal(a.path, `${join(dir, captureFileName('s1', T0, 0))}.gz`);
});

t.test('a step that moved the file away (shipped and removed): the entry goes, it was not a deletion', async (t) => {
  const { dir, catalog, deleted, file } = await rig(t);
  const e = catalog.add(await file(0, 100), 0, [STEP]);
  await unlink(e.path);
  await catalog.done(e, STEP);
  await catalog.idle();
  t.same(catalog.all(), []);
  t.equal(catalog.totalBytes, 0);
  t.same(deleted, []);
  t.same(await onDisk(dir), {});
});

t.test('a step that leaves a sidecar beside the file: both are the file, counted and deleted together', async (t) => {
  const { dir, catalog, deleted, file } = await rig(t);
  const e = catalog.add(await file(0, 100), 1, [STEP]);
  await writeFile(`${e.path}.idx`, Buffer.alloc(10));
  await catalog.done(e, STEP);
  t.equal(e.path, join(dir, captureFileName('s1', T0, 0)), 'the capture stays the path');
  t.same(e.artefacts, [e.path, `${e.path}.idx`]);
  t.equal(e.bytes, 110);
  catalog.add(await file(1, 100), 1);
  await catalog.idle();
  t.same(deleted, [`ring:${captureFileName('s1', T0, 0)}:110`]);
  t.same(Object.keys(await onDisk(dir)), [captureFileName('s1', T0 + 1, 1)], 'the sidecar went with it');
});

t.test('scan at start: compressed and recovered files count; .part, .corrupt and foreign files do not', async (t) => {
  const { out, dir } = await rig(t);
  const name = (seq: number, suffix: string): string => `${captureFileName('s1', T0 + seq, seq)}${suffix}`;
  const files: Record<string, number> = {
    [name(0, '.gz')]: 50, // compressed by a post-rotate command
    [name(1, '')]: 100, // a command killed halfway: both halves are this file
    [name(1, '.gz')]: 20,
    [name(2, '')]: 100,
    [name(2, '.corrupt')]: 70, // set aside by recovery for a human: never ours to delete
    [name(3, '.part')]: 60, // recovery could not handle it: not finished
    [`${captureFileName('s1', T0 + 4, 4).replace('.pcap', '.recovered.pcap')}`]: 80,
    'notes.txt': 5,
    [captureFileName('other', T0, 9)]: 5,
  };
  for (const [n, size] of Object.entries(files)) await writeFile(join(dir, n), Buffer.alloc(size));
  const deleted: string[] = [];
  const catalog = new Catalog(out, 0, { deleted: (f) => deleted.push(f.path), deleteFailed: () => undefined });
  await catalog.scan();
  t.same(
    catalog.filesOf('s1').map((f) => [f.path.slice(dir.length + 1), f.bytes, f.artefacts.length]),
    [
      [name(0, '.gz'), 50, 1],
      [name(1, ''), 120, 2],
      [name(2, ''), 100, 1],
      [captureFileName('s1', T0 + 4, 4).replace('.pcap', '.recovered.pcap'), 80, 1],
    ],
  );
  t.equal(catalog.totalBytes, 350);
  t.equal(catalog.nextSeq('s1'), 5);
  // The ring applies to them as soon as the session finishes a file.
  const path = join(dir, name(5, ''));
  await writeFile(path, Buffer.alloc(10));
  catalog.add({ session: 's1', seq: 5, path, bytes: 10, packets: 1, firstSec: T0 + 5, firstNsec: 0, lastSec: T0 + 5, lastNsec: 0 }, 2);
  await catalog.idle();
  t.same(
    Object.keys(await onDisk(dir)).sort(),
    [name(2, '.corrupt'), name(3, '.part'), captureFileName('s1', T0 + 4, 4).replace('.pcap', '.recovered.pcap'), name(5, ''), 'notes.txt', captureFileName('other', T0, 9)].sort(),
    'ring 2: the .gz and both halves of the killed command went; .corrupt, .part and foreign files stay',
  );
  t.equal(deleted.length, 3);
});
