/**
 * The finish steps of a file run one after another, each on what the step before left; the
 * catalog keeps the file (and what the steps made of it) from the ring until the last step has
 * ended; files of an earlier run get the steps they still need; at shutdown steps that have not
 * started are skipped and a step still running is not waited for. Checked against the folder.
 */
import { mkdir, mkdtemp, readdir, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { Catalog, type FinishedFile } from '../../src/capture/catalog.js';
import { captureFileName } from '../../src/capture/naming.js';
import type { CaptureFile } from '../../src/capture/writer.js';
import { Finisher, type FinishStep } from '../../src/finish/finisher.js';

const T0 = 1_790_000_000;

async function rig(t: Test): Promise<{ out: string; dir: string; file(seq: number): Promise<CaptureFile> }> {
  const out = await mkdtemp(join(tmpdir(), 'mirrorcap-finisher-'));
  t.teardown(() => rm(out, { recursive: true, force: true }));
  const dir = join(out, 's1');
  await mkdir(dir);
  const file = async (seq: number): Promise<CaptureFile> => {
    const path = join(dir, captureFileName('s1', T0 + seq, seq));
    await writeFile(path, Buffer.alloc(100, seq));
    return { session: 's1', seq, path, bytes: 100, packets: 1, firstSec: T0 + seq, firstNsec: 0, lastSec: T0 + seq, lastNsec: 0 };
  };
  return { out, dir, file };
}

const newCatalog = (out: string, deleted: string[] = []): Catalog =>
  new Catalog(out, 0, { deleted: (f) => deleted.push(f.path), deleteFailed: () => undefined });

/** A step that records what it saw and waits for `gate` before it ends. */
function recording(name: string, seen: string[], act: (f: FinishedFile) => Promise<void> = async () => undefined, needed?: (f: FinishedFile) => Promise<boolean>): FinishStep {
  return {
    name,
    run: async (f) => {
      seen.push(`${name}:${f.path.slice(f.path.lastIndexOf('/') + 1)}`);
      await act(f);
    },
    ...(needed ? { needed } : {}),
  };
}

t.test('steps run in order, each on what the one before made; the ring waits for the last', async (t) => {
  const { out, dir, file } = await rig(t);
  const deleted: string[] = [];
  const catalog = newCatalog(out, deleted);
  const seen: string[] = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const compress = recording('compress', seen, async (f) => {
    await writeFile(`${f.path}.gz`, Buffer.alloc(10));
    await unlink(f.path);
  });
  const ship = recording('s3', seen, () => gate);
  const finisher = new Finisher([compress, ship], catalog, { skipped: () => t.fail('nothing skipped') });
  t.same(finisher.names, ['compress', 's3']);
  const files = [await file(0), await file(1)];
  for (const f of files) finisher.add(catalog.add(f, 1, finisher.names));
  await new Promise((r) => setTimeout(r, 50));
  const name0 = captureFileName('s1', T0, 0);
  const name1 = captureFileName('s1', T0 + 1, 1);
  // Each file's steps run in order; two files' chains run side by side, so their order across files is free.
  t.same([...seen].sort(), [`compress:${name0}`, `compress:${name1}`, `s3:${name0}.gz`, `s3:${name1}.gz`], 's3 saw the compressed file');
  for (const name of [name0, name1]) t.ok(seen.indexOf(`compress:${name}`) < seen.indexOf(`s3:${name}.gz`), `${name}: compress before s3`);
  t.same(deleted, [], 'ring 1, but both files still have a step pending: nothing deleted');
  t.same((await readdir(dir)).sort(), [`${name0}.gz`, `${name1}.gz`]);
  t.equal(finisher.pending, 2);
  release();
  await finisher.stop();
  await catalog.idle();
  t.same((await readdir(dir)).sort(), [`${name1}.gz`], 'once free, the ring took the older file, its .gz included');
  t.same(catalog.all().map((f) => [f.path.slice(dir.length + 1), f.bytes, f.pending]), [[`${name1}.gz`, 10, []]], 'the catalog lists what exists');
});

t.test('files of an earlier run get the steps they still need; a step that cannot tell is never resumed', async (t) => {
  const { out, dir, file } = await rig(t);
  await file(0);
  await file(1);
  await writeFile(join(dir, `${captureFileName('s1', T0 + 1, 1)}.idx`), 'x');
  const catalog = newCatalog(out);
  await catalog.scan();
  const seen: string[] = [];
  const index = recording('index', seen, async (f) => writeFile(`${f.path}.idx`, 'x'), async (f) => !f.artefacts.some((a) => a.endsWith('.idx')));
  const post = recording('post-rotate', seen);
  const finisher = new Finisher([index, post], catalog, { skipped: () => t.fail('nothing skipped') });
  await finisher.resume(catalog.all());
  t.same(catalog.filesOf('s1').map((f) => f.pending), [['index'], []], 'only the file without an index is held');
  await finisher.stop();
  t.same(seen, [`index:${captureFileName('s1', T0, 0)}`], 'post-rotate is not run again for an earlier file');
  t.same(catalog.filesOf('s1').map((f) => [f.artefacts.length, f.pending]), [[2, []], [2, []]], 'the new sidecar is listed with its capture');
});

t.test('stop(deadline): steps not started are skipped; a step still running is not waited for', async (t) => {
  const { out, file } = await rig(t);
  const catalog = newCatalog(out);
  const seen: string[] = [];
  const skipped: string[] = [];
  const slow = recording('post-rotate', seen, () => new Promise((r) => setTimeout(r, 60_000).unref()));
  const after = recording('s3', seen);
  const finisher = new Finisher([slow, after], catalog, { skipped: (path, step) => skipped.push(`${step}:${path.slice(path.lastIndexOf('/') + 1)}`) });
  const f = catalog.add(await file(0), 0, finisher.names);
  finisher.add(f);
  const started = Date.now();
  await finisher.stop(Date.now() + 200);
  t.ok(Date.now() - started < 5_000, 'stop returned at its deadline, not after the running step');
  t.same(seen, [`post-rotate:${captureFileName('s1', T0, 0)}`]);
  t.same(skipped, [], 'the running step is not reported as skipped');
  t.same(f.pending, ['post-rotate', 's3'], 'the file stays busy: nothing may delete it under the running step');
});

t.test('a file whose next step has not started by the deadline has it skipped and reported', async (t) => {
  const { out, file } = await rig(t);
  const catalog = newCatalog(out);
  const skipped: string[] = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  // A queue step like post-rotate: its stop() releases what it had not started.
  const queued: FinishStep = { name: 'post-rotate', run: () => gate, stop: async () => release() };
  const finisher = new Finisher([queued, recording('s3', [])], catalog, { skipped: (_path, step) => skipped.push(step) });
  const f = catalog.add(await file(0), 0, finisher.names);
  finisher.add(f);
  await finisher.stop(Date.now() + 100);
  await catalog.idle();
  t.same(skipped, ['s3'], 'the step after the released one is skipped, not run during shutdown');
  t.same(f.pending, [], 'and the file is free');
});

t.test('flow-log files: no capture-only step (index, compress); the rest resumed from what is beside them at start; the budget takes one still waiting only as it takes a capture', async (t) => {
  const { out } = await rig(t);
  const day = join(out, 'flows', 'AWSLogs', '123456789012', 'vpcflowlogs', 'eu-west-1', '2026', '09', '21');
  await mkdir(day, { recursive: true });
  const name = (minute: number): string => `123456789012_vpcflowlogs_eu-west-1_fl-0123456789abcdef0_20260921T03${String(minute).padStart(2, '0')}Z_0000000${minute}.log.gz`;
  // An earlier run: file 0 uploaded (its marker beside it), file 1 not (and a marker being written when killed).
  for (const m of [0, 1]) await writeFile(join(day, name(m)), Buffer.alloc(100, m));
  await writeFile(join(day, `${name(0)}.s3`), '{}');
  await writeFile(join(day, `${name(1)}.s3.tmp`), '{');
  const deleted: string[] = [];
  const catalog = new Catalog(out, 250, { deleted: (f) => deleted.push(f.path), deleteFailed: () => undefined }, new Set(['s3']));
  const seen: string[] = [];
  const onDisk = async (f: FinishedFile): Promise<boolean> => !f.artefacts.includes(`${f.path}.s3`);
  const index: FinishStep = { ...recording('index', seen, async () => undefined, async () => true), capturesOnly: true };
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const ship = recording('s3', seen, () => gate, onDisk);
  const finisher = new Finisher([index, recording('post-rotate', seen), ship], catalog, { skipped: () => t.fail('nothing skipped') });
  t.same(finisher.namesFor('flow-log'), ['post-rotate', 's3'], 'a new flow-log file: post-rotate, then s3');
  t.same(finisher.namesFor('capture'), ['index', 'post-rotate', 's3']);
  await catalog.scan();
  const files = catalog.all();
  t.same(files.map((f) => [f.kind, f.artefacts.map((p) => p.slice(day.length + 1))]), [
    ['flow-log', [name(0), `${name(0)}.s3`]],
    ['flow-log', [name(1)]],
  ], 'each with what is beside it; a .tmp is nobody\'s yet');
  t.same(files.map((f) => f.bytes), [102, 100]);
  await finisher.resume(files);
  t.same(seen, [`s3:${name(1)}`], 'only the upload of the file without a marker is resumed: not the capture-only step, not post-rotate (never resumed)');
  // A new file takes the total over 250: the budget takes the oldest free one first, then a file waiting only for s3.
  await writeFile(join(day, name(2)), Buffer.alloc(100, 2));
  const start = (minute: number): number => Date.UTC(2026, 8, 21, 3, minute) / 1000;
  const added = catalog.addFlowLog('fl-0123456789abcdef0', join(day, name(2)), start(2), 100, finisher.namesFor('flow-log'));
  t.same(added.pending, ['post-rotate', 's3']);
  finisher.add(added);
  await catalog.idle();
  t.same(deleted.map((p) => p.slice(day.length + 1)), [name(0)], 'the uploaded file goes first (with its marker)');
  await writeFile(join(day, name(3)), Buffer.alloc(100, 3));
  // Every file is now waiting for s3 alone: the budget takes the oldest of them.
  catalog.addFlowLog('fl-0123456789abcdef0', join(day, name(3)), start(3), 100, ['s3']);
  await catalog.idle();
  t.same(deleted.map((p) => p.slice(day.length + 1)), [name(0), name(1)], 'then the oldest still waiting for s3, reported as deleted');
  t.same((await readdir(day)).sort(), [`${name(1)}.s3.tmp`, name(2), name(3)]);
  release();
  await finisher.stop();
});
