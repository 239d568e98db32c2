/**
 * The zero-copy write path (writer.ts ZERO-COPY, source/slab-ring.ts, the addon's writePieces)
 * against the copy path: the same frames, times and flushes through two writers, one keeping
 * the frames in a receive ring exactly as the native source fills it, one copying them; every
 * file must be byte-identical, valid for capinfos and tshark, at 64, 1500 and 8950 bytes, with
 * a snaplen, with rotation, with the ring running out (the receiver waits) and running low
 * (unpin copies), and after a failed write (cut back to the last whole record).
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { ChunkPool } from '../../src/capture/chunks.js';
import { rotationOf } from '../../src/capture/rotation.js';
import { SessionWriter, ZERO_COPY_MIN, type CaptureFile, type WriterOptions } from '../../src/capture/writer.js';
import type { SessionSettings } from '../../src/config.js';
import { DROP_WRITE_ERROR, newDropCounters } from '../../src/drops.js';
import { EMPTY_FLOW_INFO } from '../../src/flowformat.js';
import { loadNative } from '../../src/native/addon.js';
import { DATAGRAM_HEADROOM, SlabRing } from '../../src/source/slab-ring.js';
import { udpFrame } from '../lib/frames.js';
import { capinfos, tsharkFrames } from '../lib/tshark.js';

const T0 = 1_790_000_000;
const SIZES = [64, 1500, 8950];
const load = loadNative();

interface Side {
  dir: string;
  writer: SessionWriter;
  closed: CaptureFile[];
  drops: Float64Array;
  errors: string[];
}

async function side(t: Test, name: string, settings: Partial<SessionSettings>, writePieces: WriterOptions['writePieces'], pool = new ChunkPool(64 * 1024 * 1024)): Promise<Side> {
  const out = await mkdtemp(join(tmpdir(), `mirrorcap-zc-${name}-`));
  t.teardown(() => rm(out, { recursive: true, force: true }));
  const full: SessionSettings = { rotateSize: 0, rotateSeconds: 0, rotatePackets: 0, rotateAlign: false, ring: 0, dedup: 0, snaplen: 65535, filter: null, format: 'pcap', flows: false, flowFields: EMPTY_FLOW_INFO, ...settings };
  const closed: CaptureFile[] = [];
  const errors: string[] = [];
  const drops = newDropCounters();
  let seq = 0;
  const dir = join(out, 's1');
  const writer = new SessionWriter({
    session: 's1',
    dir,
    rotation: rotationOf(full),
    snaplen: full.snaplen,
    queueSize: 32 * 1024 * 1024,
    nextSeq: () => seq++,
    pool,
    drops,
    disk: { full: false },
    clampTime: true,
    writePieces,
    events: { fileClosed: (f) => closed.push({ ...f }), writeError: (_f, _w, op, err) => errors.push(`${op}:${err.code}`) },
  });
  return { dir, writer, closed, drops, errors };
}

/** The frames of one run: sizes in turn (or one size), each tagged with its number. */
function framesOf(count: number, sizes: readonly number[]): Buffer[] {
  return Array.from({ length: count }, (_, i) => udpFrame(sizes[(i * 7) % sizes.length]!, 7, i));
}

/**
 * Feeds `frames` to both writers as the native source and pipeline would: batches of the ring's
 * cap land in its current region (datagram at slot + DATAGRAM_HEADROOM, VXLAN header first), the
 * held side gets the ring as hold, the copy side a copy; batchDone() after each batch. With no
 * region free the receiver waits for the held side's writes, as the addon rests.
 */
async function feed(ring: SlabRing, held: Side, copied: Side, frames: Buffer[], flushEvery: number): Promise<number> {
  let waits = 0;
  for (let i = 0; i < frames.length; ) {
    while (ring.current === -1) {
      waits++;
      held.writer.flush();
      await held.writer.idle();
    }
    const base = ring.current * ring.cap;
    for (let k = 0; k < ring.cap && i < frames.length; k++, i++) {
      const f = frames[i]!;
      const dgram = (base + k) * ring.slotBytes + DATAGRAM_HEADROOM;
      ring.slab.fill(0xa5, dgram - DATAGRAM_HEADROOM, dgram); // headroom that must never reach a file
      ring.slab.writeUInt32BE(0x08000000, dgram);
      ring.slab.writeUInt32BE(7 << 8, dgram + 4);
      f.copy(ring.slab, dgram + 8);
      const sec = T0 + Math.floor(i / 40);
      const nsec = (i * 1000) % 1e9;
      held.writer.append(ring.slab, dgram + 8, f.length, f.length, sec, nsec, ring);
      copied.writer.append(Buffer.from(f), 0, f.length, f.length, sec, nsec, null);
      if (i % flushEvery === flushEvery - 1) {
        held.writer.flush();
        copied.writer.flush();
      }
    }
    ring.batchDone();
    await new Promise((r) => setImmediate(r)); // completions run between batches, as on the loop
  }
  await Promise.all([held.writer.stop(), copied.writer.stop()]);
  return waits;
}

async function sameFiles(t: Test, held: Side, copied: Side, label: string): Promise<string[]> {
  const names = (await readdir(held.dir)).sort();
  t.same(names, (await readdir(copied.dir)).sort(), `${label}: the same files`);
  let identical = true;
  for (const n of names) identical &&= (await readFile(join(held.dir, n))).equals(await readFile(join(copied.dir, n)));
  t.ok(identical, `${label}: every file byte-identical to the copy path's`);
  const counts = (s: Side): number[] => [s.writer.writtenPackets, s.writer.writtenBytes, s.drops[DROP_WRITE_ERROR]!];
  t.same(counts(held), counts(copied), `${label}: the same written packets, bytes and drops counted`);
  return names;
}

t.test('byte-identical to the copy path at 64, 1500 and 8950 B, with rotation and a snaplen', { skip: load.ok ? false : `the addon is not built: ${load.ok ? '' : load.reason}` }, async (t) => {
  if (!load.ok) return;
  const cases: Array<{ label: string; sizes: number[]; settings: Partial<SessionSettings>; count: number }> = [
    { label: '64 B', sizes: [64], settings: { rotatePackets: 400 }, count: 600 },
    { label: '1500 B, rotation by packets', sizes: [1500], settings: { rotatePackets: 150 }, count: 400 },
    { label: '8950 B, rotation by size', sizes: [8950], settings: { rotateSize: 1_000_000 }, count: 400 },
    { label: 'mixed sizes, snaplen 1000, rotation by time', sizes: SIZES, settings: { snaplen: 1000, rotateSeconds: 3 }, count: 400 },
  ];
  for (const c of cases) {
    const ring = new SlabRing(8, 16, 9216 + DATAGRAM_HEADROOM);
    let pieces = 0;
    const counting: WriterOptions['writePieces'] = (fd, pos, bufs, which, offsets, lengths, count) => {
      for (let i = 0; i < count; i++) if (which[i] !== 0) pieces++;
      return load.binding.writePieces(fd, pos, bufs, which, offsets, lengths, count);
    };
    const held = await side(t, 'held', c.settings, counting);
    const copied = await side(t, 'copied', c.settings, undefined);
    const frames = framesOf(c.count, c.sizes);
    await feed(ring, held, copied, frames, 37);
    const large = frames.filter((f) => Math.min(f.length, c.settings.snaplen ?? 65535) >= ZERO_COPY_MIN).length;
    t.equal(pieces, large, `${c.label}: the ${large} frames of ${ZERO_COPY_MIN} B or more were written from the ring, the others copied`);
    const names = await sameFiles(t, held, copied, c.label);
    t.ok(names.length > 1 && names.every((n) => n.endsWith('.pcap')), `${c.label}: rotated into ${names.length} finished files`);
    let packets = 0;
    for (const n of names) {
      const info = await capinfos(join(held.dir, n));
      t.equal(info.snaplen, c.settings.snaplen ?? 65535, `${c.label}: ${n} states the snaplen`);
      packets += info.packets;
    }
    t.equal(packets, c.count, `${c.label}: capinfos counts every packet`);
    const got = await tsharkFrames(join(held.dir, names[names.length - 1]!));
    const cut = c.settings.snaplen ?? 65535;
    const last = frames.slice(c.count - got.length);
    t.ok(got.every((f, i) => f.origLen === last[i]!.length && f.data.equals(last[i]!.subarray(0, cut))), `${c.label}: tshark reads the last file's frames, cut at the snaplen`);
    t.same([held.drops[DROP_WRITE_ERROR], held.errors, held.writer.stats().heldBytes], [0, [], 0], `${c.label}: nothing dropped or held`);
    t.equal(ring.free, ring.regions - 1, `${c.label}: every region back to the receiver but the one receiving`);
  }
});

t.test('a ring that runs out makes the receiver wait; one that runs low is unpinned by copying; same bytes', { skip: load.ok ? false : 'the addon is not built' }, async (t) => {
  if (!load.ok) return;
  // Never flushed: the records wait in the ring, which runs out (the receiver rests until writes free it).
  let ring = new SlabRing(8, 4, 9216 + DATAGRAM_HEADROOM);
  let held = await side(t, 'held', { rotatePackets: 100 }, load.binding.writePieces);
  let copied = await side(t, 'copied', { rotatePackets: 100 }, undefined);
  const waits = await feed(ring, held, copied, framesOf(300, [8950]), 1_000_000);
  t.ok(waits > 0 && ring.waits > 0, `the receiver found the ring full ${ring.waits} times and waited for the writes`);
  await sameFiles(t, held, copied, 'ring out');
  t.equal(ring.free, ring.regions - 1, 'ring out: every region back');

  // With onLow wired as the recorder does, a quiet session's few records are copied out instead.
  ring = new SlabRing(8, 4, 9216 + DATAGRAM_HEADROOM);
  held = await side(t, 'held', { rotatePackets: 100 }, load.binding.writePieces);
  copied = await side(t, 'copied', { rotatePackets: 100 }, undefined);
  let unpins = 0;
  ring.onLow = () => {
    unpins++;
    held.writer.unpin();
  };
  const frames = framesOf(300, [1500, 8950]);
  t.ok(frames.every((f) => f.length >= ZERO_COPY_MIN), 'every frame is large enough to be held');
  const waited = await feed(ring, held, copied, frames, 1_000_000);
  t.ok(unpins > 0, `onLow ran ${unpins} times`);
  t.equal(waited, 0, 'unpinned by copying, the ring never ran out');
  await sameFiles(t, held, copied, 'ring low');

  // Behind a slow disk the ops queued with held records are copied out too (the copy path's
  // memory takes over): the receiver never waits, and the files are the same.
  ring = new SlabRing(8, 4, 9216 + DATAGRAM_HEADROOM);
  let written = 0;
  const slow: WriterOptions['writePieces'] = async (fd, pos, bufs, which, offsets, lengths, count) => {
    for (let i = 0; i < count; i++) if (which[i] !== 0) written++;
    await new Promise((r) => setTimeout(r, 20));
    return load.binding.writePieces(fd, pos, bufs, which, offsets, lengths, count);
  };
  held = await side(t, 'held', { rotatePackets: 100 }, slow);
  copied = await side(t, 'copied', { rotatePackets: 100 }, undefined);
  ring.onLow = () => held.writer.unpin();
  const slowWaits = await feed(ring, held, copied, framesOf(300, [8950]), 3);
  t.equal(slowWaits, 0, 'behind a slow disk the ring never ran out');
  t.ok(written > 0 && written < 300, `${written} of 300 records written from the ring, the others copied out of it`);
  await sameFiles(t, held, copied, 'slow disk');
  t.equal(ring.free, ring.regions - 1, 'slow disk: every region back');
});

t.test('a failed write cuts the file back to its last whole record and gives the regions back', { skip: load.ok ? false : 'the addon is not built' }, async (t) => {
  if (!load.ok) return;
  const ring = new SlabRing(8, 8, 9216 + DATAGRAM_HEADROOM);
  let calls = 0;
  const flaky: WriterOptions['writePieces'] = (...args) => {
    if (++calls === 2) return Promise.reject(Object.assign(new Error('pwritev EIO'), { code: 'EIO' }));
    return load.binding.writePieces(...args);
  };
  const held = await side(t, 'held', {}, flaky);
  const copied = await side(t, 'copied', {}, undefined);
  await feed(ring, held, copied, framesOf(40, [1500]), 10);
  t.same(held.errors, ['write:EIO'], 'the write error is reported');
  t.equal(ring.free, ring.regions - 1, 'every region went back to the receiver');
  const names = (await readdir(held.dir)).sort();
  t.ok(names.length >= 1 && names.every((n) => n.endsWith('.pcap')), 'the failed file was finished and renamed');
  let packets = 0;
  for (const n of names) packets += (await capinfos(join(held.dir, n))).packets;
  t.equal((await capinfos(join(held.dir, names[0]!))).packets, 10, 'the failed file holds its whole records up to the failure');
  t.equal(packets + held.drops[DROP_WRITE_ERROR]!, 40, `every packet is in a file or counted as a write error (${held.drops[DROP_WRITE_ERROR]})`);
});
