/**
 * The index step with the real catalog and finisher: a finished capture gets X.pcap.idx,
 * which the catalog then lists and counts as the capture's artefact; the ring deletes the
 * two together; at a restart the step is resumed only for the files whose sidecar is
 * missing, stale or of another version; a capture that is not classic pcap is counted as
 * failed and gets no sidecar. The folder is the oracle.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { Catalog } from '../../src/capture/catalog.js';
import { captureFileName } from '../../src/capture/naming.js';
import { Finisher } from '../../src/finish/finisher.js';
import { IndexStep } from '../../src/finish/index-step.js';
import { buildPcap } from '../lib/captures.js';
import { udpFrame } from '../lib/frames.js';

const T0 = 1_790_000_000;

/** Until every file's steps have ended and the catalog has settled (stop() would end the finisher). */
async function settled(finisher: Finisher, catalog: Catalog): Promise<void> {
  while (finisher.pending > 0) await new Promise((r) => setTimeout(r, 5));
  await catalog.idle();
}

t.test('a sidecar is an artefact of its capture: listed and counted with it', async (t) => {
  const out = await mkdtemp(join(tmpdir(), 'mirrorcap-index-step-'));
  t.teardown(() => rm(out, { recursive: true, force: true }));
  const dir = join(out, 's1');
  await mkdir(dir);
  const failures: string[] = [];
  const step = new IndexStep({ indexed: () => undefined, failed: (path) => failures.push(path) });
  const deleted: string[] = [];
  const catalog = new Catalog(out, 0, { deleted: (f) => deleted.push(...f.artefacts), deleteFailed: () => undefined });
  const finisher = new Finisher([step], catalog, { skipped: () => undefined });
  const add = async (seq: number, body?: Buffer): Promise<string> => {
    const path = join(dir, captureFileName('s1', T0 + seq, seq));
    const data = body ?? buildPcap({ ns: true, records: Array.from({ length: 50 }, (_, i) => ({ sec: T0 + seq, frac: i, data: udpFrame(200, seq, i) })) });
    await writeFile(path, data);
    finisher.add(catalog.add({ session: 's1', seq, path, bytes: data.length, packets: 50, firstSec: T0 + seq, firstNsec: 0, lastSec: T0 + seq, lastNsec: 0 }, 2, finisher.names));
    return path;
  };
  const a = await add(0);
  await settled(finisher, catalog);
  const [entry] = catalog.all();
  t.same(entry!.artefacts, [a, `${a}.idx`], 'the sidecar is listed with its capture');
  t.equal(entry!.bytes, (await stat(a)).size + (await stat(`${a}.idx`)).size, 'and its bytes count');
  t.equal(step.built, 1);
  t.equal(step.bytes, (await stat(`${a}.idx`)).size);
});

t.test('the ring deletes a sidecar with its capture; a restart resumes only what is needed', async (t) => {
  const out = await mkdtemp(join(tmpdir(), 'mirrorcap-index-step-'));
  t.teardown(() => rm(out, { recursive: true, force: true }));
  const dir = join(out, 's1');
  await mkdir(dir);
  const step = new IndexStep({ indexed: () => undefined, failed: () => undefined });
  const catalog = new Catalog(out, 0, { deleted: () => undefined, deleteFailed: () => undefined });
  const finisher = new Finisher([step], catalog, { skipped: () => undefined });
  const paths: string[] = [];
  for (let seq = 0; seq < 4; seq++) {
    const path = join(dir, captureFileName('s1', T0 + seq, seq));
    const data = seq === 3 ? Buffer.from('not a capture at all, but long enough') : buildPcap({ ns: true, records: [{ sec: T0 + seq, frac: 0, data: udpFrame(100, seq, 0) }] });
    await writeFile(path, data);
    paths.push(path);
    finisher.add(catalog.add({ session: 's1', seq, path, bytes: data.length, packets: 1, firstSec: T0 + seq, firstNsec: 0, lastSec: T0 + seq, lastNsec: 0 }, 3, finisher.names));
    await settled(finisher, catalog);
  }
  const names = (await readdir(dir)).sort();
  const base = (p: string): string => p.slice(dir.length + 1);
  const want = [base(paths[1]!), `${base(paths[1]!)}.idx`, base(paths[2]!), `${base(paths[2]!)}.idx`, base(paths[3]!)].sort();
  t.same(names, want, 'ring 3: the oldest capture went with its sidecar; the one that is not pcap has none');
  t.equal(step.failed, 1, 'the capture that is not pcap is counted as failed');

  // A restart: one sidecar stale, one missing; the good ones are left alone.
  const later = new Date(Date.now() + 10_000);
  await utimes(paths[1]!, later, later);
  await unlink(`${paths[2]!}.idx`);
  const again = new Catalog(out, 0, { deleted: () => undefined, deleteFailed: () => undefined });
  await again.scan();
  const step2 = new IndexStep({ indexed: () => undefined, failed: () => undefined });
  const needed: string[] = [];
  for (const f of again.all()) if (await step2.needed(f)) needed.push(f.path);
  t.same(needed, [paths[1], paths[2], paths[3]], 'stale, missing, and the one that never had one');
  const before = await readFile(`${paths[1]!}.idx`);
  const finisher2 = new Finisher([step2], again, { skipped: () => undefined });
  await finisher2.resume(again.all());
  await settled(finisher2, again);
  t.equal(step2.built, 2, 'two rebuilt');
  t.not((await readFile(`${paths[1]!}.idx`)).equals(before), 'the stale one rewritten');
  for (const f of again.all()) if (f.path !== paths[3]) t.notOk(await step2.needed(f), `${f.path}: fine now`);
});
