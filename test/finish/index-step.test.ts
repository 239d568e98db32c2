/**
 * The index step with the real catalog and finisher: a finished capture gets X.pcap.idx,
 * which the catalog then lists and counts as the capture's artefact; the ring deletes the
 * two together; at a restart the step is resumed only for the files whose sidecar is
 * missing, stale or of another version; a capture that is not classic pcap is counted as
 * failed and gets no sidecar. The folder is the oracle.
 *
 * Then the sidecars the recorder builds while writing (the writer feeds the index builder):
 * byte for byte what buildIndex makes by reading the finished file back, for classic pcap and
 * pcapng, the real corpus and generated VLAN/IPv6/ARP/fragment frames cut by a snaplen,
 * across rotated files of two sessions; and a builder that does not cover the file as it is
 * (a write error cut it back) is not used: the file is read back instead. Encoded on the index
 * thread or on the loop, the bytes are the same.
 *
 * The index thread failing: one that cannot be handed the job (the sidecar is encoded on the
 * loop; given up after 3 in a row), one that dies with the builder's memory (the file is read
 * back), one that never answers when the step stops (abandoned: no sidecar, no .tmp, the file
 * still needed at the next start).
 */
import { mkdir, mkdtemp, readdir, readFile, rm, stat, truncate, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { Catalog, type FinishedFile } from '../../src/capture/catalog.js';
import { captureFileName } from '../../src/capture/naming.js';
import { resolveConfig } from '../../src/config.js';
import { Finisher } from '../../src/finish/finisher.js';
import { buildIndex, GROUP_PACKETS, indexChecked, IndexBuilder, indexPathOf, loadIndex } from '../../src/finish/index-build.js';
import { frameKeys, KEY_PORT } from '../../src/finish/index-keys.js';
import { indexMemory } from '../../src/finish/index-memory.js';
import { withFlows } from '../../src/finish/key-table.js';
import { readSummary } from '../../src/finish/index-format.js';
import { IndexStep, type IndexStepEvents } from '../../src/finish/index-step.js';
import { createLogger } from '../../src/log.js';
import { layoutOf } from '../../src/pcap/layout.js';
import { Recorder } from '../../src/recorder.js';
import { Batch } from '../../src/source/batch.js';
import { buildPcap, ourRecords, realCaptures } from '../lib/captures.js';
import { arp, ether, fragment, ipv4, ipv6, tcp, udp, udpFrame, vxlan } from '../lib/frames.js';

const T0 = 1_790_000_000;

/** The step's events, none of them looked at. */
const QUIET: IndexStepEvents = { indexed: () => undefined, failed: () => undefined, abandoned: () => undefined, threadFailed: () => undefined };

/** Until every file's steps have ended and the catalog has settled (stop() would end the finisher). */
async function settled(finisher: Finisher, catalog: Catalog): Promise<void> {
  while (finisher.pending > 0) await new Promise((r) => setTimeout(r, 5));
  await catalog.idle();
}

/** An output folder with session folder s1, and an index step run by a finisher over a catalog of it. */
interface Rig {
  out: string;
  dir: string;
  step: IndexStep;
  catalog: Catalog;
  finisher: Finisher;
}

async function rig(t: Test): Promise<Rig> {
  const out = await mkdtemp(join(tmpdir(), 'mirrorcap-index-step-'));
  t.teardown(() => rm(out, { recursive: true, force: true }));
  const dir = join(out, 's1');
  await mkdir(dir);
  const step = new IndexStep(QUIET);
  const catalog = new Catalog(out, 0, { deleted: () => undefined, deleteFailed: () => undefined });
  return { out, dir, step, catalog, finisher: new Finisher([step], catalog, { skipped: () => undefined }) };
}

t.test('a sidecar is an artefact of its capture: listed and counted with it', async (t) => {
  const out = await mkdtemp(join(tmpdir(), 'mirrorcap-index-step-'));
  t.teardown(() => rm(out, { recursive: true, force: true }));
  const dir = join(out, 's1');
  await mkdir(dir);
  const failures: string[] = [];
  const step = new IndexStep({ ...QUIET, failed: (path) => failures.push(path) });
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
  const { out, dir, step, catalog, finisher } = await rig(t);
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
  const step2 = new IndexStep(QUIET);
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

/** Inner frames: the real corpus's Ethernet frames (VLAN, QinQ, IPv6, fragments, ...), then generated ARP, VLAN, fragments. */
async function innerFrames(files: readonly string[]): Promise<Buffer[]> {
  const frames: Buffer[] = [];
  for (const f of files) {
    const recs = await ourRecords(f).catch(() => []);
    // Whole frames only (a VXLAN datagram must hold one), and none too big for a UDP datagram.
    for (const r of recs) if (r.linkType === 1 && r.capLen === r.origLen && r.capLen <= 9000) frames.push(r.data);
  }
  const l4 = udp(5353, 53, Buffer.alloc(300, 7));
  frames.push(
    ether(0x0806, arp(1, '02:00:00:00:00:01', '10.0.0.1', '00:00:00:00:00:00', '10.0.0.2')),
    ether(0x0806, arp(2, '02:00:00:00:00:02', '10.0.0.2', '02:00:00:00:00:01', '10.0.0.1')),
    ether(0x0800, ipv4(6, tcp({ sport: 443, dport: 40000 }, Buffer.alloc(200, 1)), { src: '10.0.4.17', dst: '52.95.1.9' }), { tags: [[0x8100, 100]] }),
    ether(0x0800, ipv4(17, l4, { src: '10.0.0.1', dst: '10.0.0.2', id: 7, mf: true })),
    ether(0x0800, ipv4(17, l4.subarray(0, 64), { src: '10.0.0.1', dst: '10.0.0.2', id: 7, fragOffset: 40 })),
    ether(0x86dd, ipv6(44, Buffer.concat([fragment(17, 0, true, 9), l4]), { src: '2001:db8::1', dst: '2001:db8::2' })),
  );
  return frames;
}

t.test('a sidecar built while the file is written is the one read back would build, byte for byte', async (t) => {
  const real = realCaptures();
  const frames = await innerFrames(real.files.filter((f) => /\/plain-/.test(f)));
  t.ok(frames.length > 500, `${frames.length} inner frames${real.skip === false ? '' : ` (generated only: ${real.skip})`}`);
  const SNAPLEN = 96;
  t.ok(frames.filter((f) => f.length > SNAPLEN).length > 100, 'many frames longer than the snaplen (cut in the files)');
  for (const format of ['pcap', 'pcapng']) {
    const out = await mkdtemp(join(tmpdir(), 'mirrorcap-index-written-'));
    t.teardown(() => rm(out, { recursive: true, force: true }));
    const flags = new Map(Object.entries({ out, format, snaplen: String(SNAPLEN), 'rotate-packets': '300' }).map(([k, v]) => [k, { value: v, origin: `--${k}` }]));
    // pcap's sidecars are all encoded on the index thread; pcapng's, small, on the loop (the default).
    const indexEncoder = format === 'pcap' ? { threadFrom: 0 } : {};
    const recorder = new Recorder(resolveConfig(flags, {}), createLogger('silent'), { guardDisk: false, clampTime: false, wallClock: false, ship: false, application: 'mirrorcap test', indexEncoder });
    await recorder.start();
    for (let i = 0; i < frames.length; i++) {
      // Two sessions (VNI 5 and 6); times with every nanosecond digit used, a step back now and then.
      const d = vxlan(5 + (i % 2), frames[i]!);
      const b = new Batch(1, d);
      b.count = 1;
      b.lengths[0] = d.length;
      b.wireLengths[0] = d.length;
      b.tsSec[0] = 1_790_000_000 + Math.floor(i / 10);
      b.tsNsec[0] = i % 17 === 0 ? 1 : (i * 7_654_321) % 1e9;
      recorder.pipeline.process(b);
      if (recorder.backlogged) await recorder.drained();
    }
    await recorder.stop();
    const files = recorder.catalog.all().map((f) => f.path);
    t.ok(files.length >= 4, `${format}: ${files.length} files in two sessions`);
    t.equal(recorder.index.built, files.length, `${format}: every file indexed`);
    t.equal(recorder.index.readBack, 0, `${format}: none of them read back`);
    t.same(recorder.index.encoding.encoded, format === 'pcap' ? { thread: files.length, loop: 0 } : { thread: 0, loop: files.length }, `${format}: encoded on the ${format === 'pcap' ? 'index thread' : 'loop'}`);
    t.equal(recorder.index.encoding.threadFailures, 0);
    let packets = 0;
    for (const path of files) {
      const written = await readFile(indexPathOf(path));
      packets += readSummary(written)!.packets;
      await unlink(indexPathOf(path));
      t.ok(await buildIndex(path), `${path}: read back`);
      t.ok((await readFile(indexPathOf(path))).equals(written), `${format} ${path.slice(out.length)}: byte-identical sidecars`);
    }
    t.equal(packets, frames.length, `${format}: the sidecars count every packet`);
  }
});

t.test('a builder that did not see the file as it is (cut back by a write error) is not used: the file is read back', async (t) => {
  const { dir, step, catalog, finisher } = await rig(t);
  const data = buildPcap({ ns: true, snaplen: 65535, records: Array.from({ length: 50 }, (_, i) => ({ sec: T0, frac: i, data: udpFrame(200, 1, i) })) });
  // The builder sees all 50 records, as the writer appended them; the disk keeps 40 (the file cut back).
  const tap = step.tap(data, 1);
  layoutOf(data)!.walk(data, 24, data.length, 0, (...record) => tap.add(...record));
  tap.end(data.length);
  const path = join(dir, captureFileName('s1', T0, 0));
  await writeFile(path, data);
  await truncate(path, 24 + 40 * (16 + 200));
  const entry = catalog.add({ session: 's1', seq: 0, path, bytes: 24 + 40 * 216, packets: 40, firstSec: T0, firstNsec: 0, lastSec: T0, lastNsec: 0 }, 0, finisher.names);
  step.tapped(entry, tap);
  finisher.add(entry);
  await settled(finisher, catalog);
  t.equal(step.readBack, 1, 'read back');
  t.equal(await indexChecked(path), null, 'the sidecar matches the file');
  t.equal(readSummary(await readFile(indexPathOf(path)))!.packets, 40, 'and counts the 40 records it holds');
});

/** A capture of `n` records in `dir`, fed to `step`'s tap as its writer would, handed to the finisher. */
async function fedFile(rig: Rig, seq: number, n = 50): Promise<{ path: string; entry: FinishedFile }> {
  const { dir, step, catalog, finisher } = rig;
  const data = buildPcap({ ns: true, snaplen: 65535, records: Array.from({ length: n }, (_, i) => ({ sec: T0 + seq, frac: i, data: udpFrame(200, seq, i) })) });
  const tap = step.tap(data, 1);
  layoutOf(data)!.walk(data, 24, data.length, 0, (...record) => tap.add(...record));
  tap.end(data.length);
  const path = join(dir, captureFileName('s1', T0 + seq, seq));
  await writeFile(path, data);
  const entry = catalog.add({ session: 's1', seq, path, bytes: data.length, packets: n, firstSec: T0 + seq, firstNsec: 0, lastSec: T0 + seq, lastNsec: 0 }, 0, finisher.names);
  step.tapped(entry, tap);
  finisher.add(entry);
  return { path, entry };
}

/** The sidecar of `path` equals what reading the capture back builds (on the loop). */
async function sameAsReadBack(t: Test, path: string, what: string): Promise<void> {
  const written = await readFile(indexPathOf(path));
  await unlink(indexPathOf(path));
  await buildIndex(path);
  t.ok((await readFile(indexPathOf(path))).equals(written), `${what}: the sidecar read back would build`);
}

/** A rig whose step sends every sidecar to the index thread `script`, its thread failures recorded. */
async function threadRig(t: Test, script: URL | undefined, events: Partial<IndexStepEvents> = {}): Promise<Rig> {
  const r = await rig(t);
  const step = new IndexStep({ ...QUIET, ...events }, { threadFrom: 0, ...(script !== undefined && { script }) });
  return { ...r, step, finisher: new Finisher([step], r.catalog, { skipped: () => undefined }) };
}

t.test('an index thread that cannot be handed the job: encoded on the loop, given up after 3 in a row', async (t) => {
  const failed: boolean[] = [];
  // Not a module a thread can load from: new Worker throws at once, the builder keeps its memory.
  const r = await threadRig(t, new URL('http://127.0.0.1:9/index-worker.js'), { threadFailed: (_why, givenUp) => failed.push(givenUp) });
  const paths: string[] = [];
  for (let seq = 0; seq < 4; seq++) {
    paths.push((await fedFile(r, seq)).path);
    await settled(r.finisher, r.catalog);
  }
  t.same(failed, [false, false, true], 'three failures told, the third gives the thread up');
  t.equal(r.step.encoding.threadFailures, 3);
  t.same(r.step.encoding.encoded, { thread: 0, loop: 4 }, 'every sidecar encoded on the loop');
  t.equal(r.step.readBack, 0, 'none read back: the builders kept their memory');
  t.equal(r.step.built, 4);
  for (const path of paths) await sameAsReadBack(t, path, path.slice(r.dir.length));
});

t.test('an index thread that dies with the builder: the file is read back, its sidecar exact', async (t) => {
  const dies = new URL(`data:text/javascript,${encodeURIComponent("import { parentPort } from 'node:worker_threads'; parentPort.on('message', () => process.exit(7));")}`);
  const why: string[] = [];
  const r = await threadRig(t, dies, { threadFailed: (w) => why.push(w) });
  const { path } = await fedFile(r, 0, 100);
  await settled(r.finisher, r.catalog);
  t.match(why, [/exited with code 7/], 'the death is told');
  t.equal(r.step.encoding.threadFailures, 1);
  t.equal(r.step.readBack, 1, 'read back: the thread took the builder\'s memory');
  t.same(r.step.encoding.encoded, { thread: 0, loop: 1 });
  t.equal(r.step.built, 1);
  t.equal(readSummary(await readFile(indexPathOf(path)))!.packets, 100);
  await sameAsReadBack(t, path, 'read back');
  await r.finisher.stop();
});

t.test('stopping while the index thread encodes: abandoned at the deadline, nothing half-written, indexed at the next start', async (t) => {
  const silent = new URL(`data:text/javascript,${encodeURIComponent("import { parentPort } from 'node:worker_threads'; parentPort.on('message', () => {});")}`);
  const abandoned: string[] = [];
  const r = await threadRig(t, silent, { abandoned: (p) => abandoned.push(p) });
  const { path, entry } = await fedFile(r, 0);
  const t0 = Date.now();
  await r.finisher.stop(Date.now() + 300);
  const ms = Date.now() - t0;
  t.ok(ms < 3000, `stop returned at its deadline (${ms} ms)`);
  t.same(abandoned, [path], 'the file is told abandoned');
  t.equal(r.step.built, 0);
  t.equal(r.step.failed, 0, 'not a failure');
  t.same((await readdir(r.dir)).filter((n) => n.includes('.idx')), [], 'no sidecar, no .tmp');
  t.ok(await r.step.needed(entry), 'the next start indexes it');
});

t.test('the builder holds exactly the keys frameKeys finds in each group, through runs of one flow and every other frame', async (t) => {
  const flowA = (sport: number, payload = 10): Buffer => ether(0x0800, ipv4(17, udp(sport, 53, Buffer.alloc(payload)), { src: '10.1.0.1', dst: '10.1.0.2' }));
  const kinds: Buffer[] = [
    flowA(1000),
    flowA(1000, 200), // same flow, another size
    flowA(1001), // one port differs
    ether(0x0800, ipv4(6, tcp({ sport: 1000, dport: 53 }), { src: '10.1.0.1', dst: '10.1.0.2' })), // same ports, TCP
    ether(0x0800, ipv4(17, udp(1000, 53, Buffer.alloc(10)), { src: '10.1.0.1', dst: '10.1.0.3' })), // another destination
    ether(0x0800, ipv4(17, udp(1000, 53, Buffer.alloc(10)), { src: '10.1.0.1', dst: '10.1.0.2', mf: true })), // first fragment: ports
    ether(0x0800, ipv4(17, Buffer.from('later fragment, no ports here'), { src: '10.1.0.1', dst: '10.1.0.2', fragOffset: 8 })),
    ether(0x0800, ipv4(17, udp(1000, 53, Buffer.alloc(10)), { src: '10.1.0.1', dst: '10.1.0.2', options: Buffer.from([1, 1, 1, 0]) })), // IHL 6
    ether(0x0800, ipv4(1, Buffer.alloc(40), { src: '10.1.0.1', dst: '10.1.0.2' })), // ICMP: no ports
    ether(0x0800, ipv4(17, udp(1000, 53, Buffer.alloc(10)), { src: '10.1.0.1', dst: '10.1.0.2' }), { tags: [[0x8100, 7]] }),
    ether(0x86dd, ipv6(17, udp(1000, 53, Buffer.alloc(10)), { src: '2001:db8::1', dst: '2001:db8::2' })),
    ether(0x0806, arp(1, '02:00:00:00:00:01', '10.1.0.1', '00:00:00:00:00:00', '10.1.0.2')),
  ];
  // Runs of one frame, and interleavings, across group boundaries; some frames cut short.
  const frames: { buf: Buffer; capLen: number }[] = [];
  let seed = 7;
  const next = (n: number): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 16) % n;
  for (let i = 0; i < 3000; i++) {
    const f = kinds[next(4) === 0 ? next(kinds.length) : next(3)]!;
    const capLen = next(10) === 0 ? Math.min(f.length, 30 + next(12)) : f.length;
    const run = 1 + next(40);
    for (let k = 0; k < run; k++) frames.push({ buf: f, capLen });
  }
  const b = new IndexBuilder(Buffer.alloc(24), 1);
  const want = new Set<string>();
  let group = 0;
  frames.forEach(({ buf, capLen }, i) => {
    b.add(buf, 0, capLen, buf.length, 1_700_000_000, i, 24 + i);
    group = Math.floor(i / GROUP_PACKETS);
    frameKeys(buf, 0, capLen, { add: (kind, value) => want.add(`${kind}:${value | 0}:${group}`) });
  });
  const lease = indexMemory.lease();
  const logs = withFlows(b.parts().keys!, lease);
  const got = new Set<string>();
  for (let kind = 0; kind < logs.lengths.length; kind++) {
    for (let j = 0; j < logs.lengths[kind]!; j++) got.add(`${kind}:${logs.values[kind]![j]!}:${logs.groups[kind]![j]!}`);
  }
  lease.end();
  t.equal(got.size, want.size, `${frames.length} records in ${group + 1} groups: ${want.size} (key, group) pairs`);
  t.same([...want].filter((k) => !got.has(k)), [], 'none missing');
  t.same([...got].filter((k) => !want.has(k)), [], 'none extra');
});

t.test('a sidecar encoded in memory earlier files left dirty: the same bytes as the first time', async (t) => {
  // Records of 300 flows (every frame kind the key table logs) in an order and number of its own.
  const flowSeed = 11;
  const fed = (seed: number, n: number): IndexBuilder => {
    let s = flowSeed;
    const next = (m: number): number => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) >>> 8) % m;
    const flows = Array.from({ length: 300 }, (_, i) =>
      i % 5 === 4
        ? ether(0x86dd, ipv6(17, udp(next(65536), 53, Buffer.alloc(10)), { src: `2001:db8::${next(65536).toString(16)}`, dst: '2001:db8::2' }))
        : ether(0x0800, ipv4(i % 2 === 0 ? 6 : 17, i % 2 === 0 ? tcp({ sport: next(65536), dport: 443 }) : udp(next(65536), 53, Buffer.alloc(10)), { src: `10.${next(256)}.${next(256)}.1`, dst: '10.9.0.2' }), i % 7 === 3 ? { tags: [[0x8100, next(4096)]] } : {}),
    );
    // First, IPv6 to port 0: a key the poison below looks like.
    const port0 = ether(0x86dd, ipv6(17, udp(0, 53, Buffer.alloc(10)), { src: '2001:db8::1', dst: '2001:db8::2' }));
    s = seed;
    const b = new IndexBuilder(Buffer.alloc(24), 1);
    let off = 24;
    for (let i = 0; i < n; i++) {
      const f = i === 0 ? port0 : flows[next(flows.length)]!;
      b.add(f, 0, f.length, f.length, 1_790_000_000 + (i >> 12), next(1e9), off);
      off += 16 + f.length;
    }
    b.end(off);
    return b;
  };
  // As the index step does: the bytes given back once written.
  const encoded = (b: IndexBuilder): Buffer => {
    const body = b.encode(1e6, 5);
    const copy = Buffer.from(body);
    indexMemory.give(body.buffer as ArrayBuffer);
    return copy;
  };
  const first = encoded(fed(1, 20_000));
  // Other files of the same flows, then every size class filled with what looks like a key
  // (bytes of KEY_PORT, words of 0: port 0 in group 0, in the repeat cache's every slot):
  // whatever a builder or encoding takes next is dirty.
  for (let k = 0; k < 4; k++) t.ok(encoded(fed(100 + k, 5_000 + 20_000 * k)).length > 0);
  for (let size = 4096; size <= 4 << 20; size *= 2) {
    const taken = Array.from({ length: 4 }, () => indexMemory.take(size));
    for (const b of taken) (size === 4096 ? new Uint8Array(b).fill(KEY_PORT) : new Int32Array(b).fill(0));
    for (const b of taken) indexMemory.give(b);
  }
  const kept = indexMemory.kept;
  t.ok(kept > 1 << 20, `${(kept / 2 ** 20).toFixed(1)} MiB kept for reuse`);
  const again = fed(1, 20_000);
  t.ok(indexMemory.kept < kept, 'the builder took kept memory');
  t.ok(encoded(again).equals(first), `${first.length} bytes, identical`);
  t.ok(again.spent, 'an encoded builder holds no memory');
  t.throws(() => again.encode(1e6, 5), { code: 'ERR_MIRRORCAP_INVALID_STATE' }, 'and cannot encode again');
});

t.test('a sidecar whose head is larger than the first read: read and checked alike with synchronous and pooled reads', async (t) => {
  const out = await mkdtemp(join(tmpdir(), 'mirrorcap-index-head-'));
  t.teardown(() => rm(out, { recursive: true, force: true }));
  const path = join(out, 'big.pcap');
  // 2,000 groups: a head of about 48 KiB, three times the first read.
  const records = Array.from({ length: 2000 * GROUP_PACKETS }, (_, i) => ({ sec: T0 + (i >> 10), frac: i & 1023, data: udpFrame(60 + (i % 7), i % 13, i) }));
  await writeFile(path, buildPcap({ records }));
  t.ok(await buildIndex(path));
  const st = await stat(path);
  const offsets: number[] = [];
  let at = 24;
  for (const [i, r] of records.entries()) {
    if (i % GROUP_PACKETS === 0) offsets.push(at);
    at += 16 + r.data.length;
  }
  for (const sync of [true, false]) {
    const r = await loadIndex(path, st.size, st.mtimeMs, sync);
    if (typeof r === 'string') {
      t.fail(`sync ${sync}: ${r}`);
      continue;
    }
    t.equal(r.groups, 2000, `sync ${sync}: every group`);
    t.same(Array.from({ length: r.groups }, (_, g) => r.groupOffset(g)), offsets, `sync ${sync}: each group's offset`);
    t.equal(r.groupEnd(r.groups - 1), st.size, `sync ${sync}: the last group ends at the file's end`);
  }
  // A byte of the head past the first read flipped: its CRC fails, whichever the reads.
  const idx = await readFile(indexPathOf(path));
  idx[40_000] ^= 0xff;
  await writeFile(indexPathOf(path), idx);
  for (const sync of [true, false]) t.equal(await loadIndex(path, st.size, st.mtimeMs, sync), 'corrupt', `sync ${sync}: corrupt`);
  await unlink(indexPathOf(path));
  for (const sync of [true, false]) t.equal(await loadIndex(path, st.size, st.mtimeMs, sync), 'missing', `sync ${sync}: missing`);
});
