/**
 * Compression of finished files: the gzip/zstd tools and tshark read our output equal to the
 * original, each gzip block decompresses on its own (tail | head | gzip -d, not our code), the
 * seek table read back matches, CaptureReader reads compressed files (whole, from a block, and
 * damaged ones up to the damage), and the pool stays bounded and fails cleanly.
 */
import { spawnSync } from 'node:child_process';
import { Readable, Writable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createHash } from 'node:crypto';
import { copyFile, mkdtemp, readFile, readdir, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import t, { type Test } from 'tap';
import { CaptureErrorCode } from '../../src/pcap/errors.js';
import { CaptureReader } from '../../src/pcap/reader.js';
import { ConfigError } from '../../src/config.js';
import { blockSizeFor } from '../../src/finish/compress-worker.js';
import { COMPRESS_SUFFIX, CompressError, Compressor, compressSettings, removeCompressTemps, type CompressFormat } from '../../src/finish/compress.js';
import { blockAt, MAX_BLOCKS, readBlockTable } from '../../src/pcap/blocks.js';
import { openByteSource } from '../../src/pcap/compressed.js';
import { zstd, zstdBackends, ZstdFrameWalker } from '../../src/pcap/zstd.js';
import { MAIN } from '../lib/appliance.js';
import { ourRecords, readRecords, REPO_ROOT } from '../lib/captures.js';
import { realFrames, writeMixCapture } from '../lib/mix.js';
import { haveTool } from '../lib/tools.js';
import { sameFrames, tsharkFrames, type Frame } from '../lib/tshark.js';

const FORMATS: CompressFormat[] = ['gzip', 'zstd'];
const TOOL: Record<CompressFormat, string> = { gzip: 'gzip', zstd: 'zstd' };
const BLOCK = 64 << 10;

const dir = await mkdtemp(join(tmpdir(), 'mirrorcap-compress-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));

const real = await realFrames();
const mix = join(dir, 'mix.pcap');
const mixRecords = await writeMixCapture(mix, 2 << 20, real);
const mixBytes = await readFile(mix);

function md5(buf: Buffer): string {
  return createHash('md5').update(buf).digest('hex');
}

/** What an independent tool decompresses from bytes [off, off + len) of a file. */
function toolDecompress(format: CompressFormat, path: string, off = 0, len?: number): Buffer {
  const slice = len === undefined ? `tail -c +${off + 1} "$1"` : `tail -c +${off + 1} "$1" | head -c ${len}`;
  const r = spawnSync('sh', ['-c', `${slice} | ${TOOL[format]} -dc`, 'sh', path], { maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${TOOL[format]} -dc failed: ${r.stderr.toString()}`);
  return r.stdout;
}

async function copyOf(name: string): Promise<string> {
  const p = join(dir, name);
  await copyFile(mix, p);
  return p;
}

for (const format of FORMATS) {
  const skip = format === 'zstd' && zstd() === null ? 'zstd unavailable in this Node' : haveTool(TOOL[format]) ? false : `${TOOL[format]} not installed`;
  t.test(`${format}: the tools and tshark read it equal to the original${format === 'gzip' ? '; every block stands alone' : ''}`, { skip }, async (t) => {
    const src = await copyOf(`a-${format}.pcap`);
    const c = new Compressor({ format, blockSize: BLOCK });
    t.teardown(() => c.close());
    const r = await c.compress(src);
    t.equal(r.path, src + COMPRESS_SUFFIX[format]);
    t.equal(r.source, src);
    t.equal(md5(await readFile(src)), md5(mixBytes), 'the original is left as it was (the caller deletes it)');
    t.notOk((await readdir(dir)).some((n) => n.endsWith('.tmp')), 'no temp file left');
    const packed = await readFile(r.path);
    t.equal(r.packedSize, packed.length, 'packedSize is the file size');
    t.ok(r.packedSize < r.rawSize, `smaller: ${r.packedSize} of ${r.rawSize}`);
    t.equal(r.rawSize, mixBytes.length);
    t.equal(md5(toolDecompress(format, r.path)), md5(mixBytes), `${TOOL[format]} -d gives the original bytes`);

    const table = await readBlockTable(r.path);
    if (format === 'gzip') {
      t.equal(r.blocks.length, Math.ceil(mixBytes.length / BLOCK), 'one block per 64 KiB');
      t.same(table?.blocks, r.blocks, 'the seek table in the file is the one returned');
      for (const i of [0, 1, Math.floor(r.blocks.length / 2), r.blocks.length - 1]) {
        const b = r.blocks[i]!;
        const alone = toolDecompress(format, r.path, b.packedOffset, b.packedSize);
        t.ok(alone.equals(mixBytes.subarray(b.rawOffset, b.rawOffset + b.rawSize)), `block ${i} decompresses on its own to its slice`);
      }
    } else {
      t.same(r.blocks, [{ rawOffset: 0, rawSize: r.rawSize, packedOffset: 0, packedSize: r.packedSize }], 'zstd: one frame, one block');
      t.equal(table, null, 'and no seek table');
      t.equal(spawnSync('sh', ['-c', 'zstd -lv "$1" | grep -c "^# Zstandard Frames: *1$"', 'sh', r.path]).stdout.toString().trim(), '1', 'zstd -lv counts one frame');
    }

    const ours = await ourRecords(r.path);
    t.equal(ours.length, mixRecords, 'CaptureReader reads every record');
    t.same(ours, await ourRecords(src), 'CaptureReader: compressed file reads as the original');
    const shark = await tsharkFrames(r.path);
    t.same(shark, await tsharkFrames(src), 'tshark reads the compressed file as the original');
    t.ok(sameFrames(shark, ours), 'and as CaptureReader does');
    t.equal(c.files, 1);
    t.equal(c.rawBytes, r.rawSize);
    t.equal(c.packedBytes, r.packedSize);
  });

  t.test(`${format}: ${format === 'gzip' ? 'reading from a block, and ' : ''}damaged files`, { skip: format === 'zstd' && zstd() === null ? 'zstd unavailable in this Node' : false }, async (t) => {
    const src = await copyOf(`b-${format}.pcap`);
    const c = new Compressor({ format, blockSize: BLOCK });
    t.teardown(() => c.close());
    const r = await c.compress(src);
    const all = await ourRecords(src);
    if (format === 'zstd') {
      await t.rejects(openByteSource(r.path, { rawOffset: BLOCK, rawSize: BLOCK, packedOffset: 1000, packedSize: 1000 }), { code: CaptureErrorCode.UNSUPPORTED_COMPRESSION }, 'a zstd file has no block to start at');
      // One frame, one checksum at its end: a flipped byte is caught there, after the bytes before it.
      await damaged(t, format, r.path, Math.floor(r.packedSize / 2), Math.floor(r.packedSize / 3), 0, all);
      return;
    }
    const table = (await readBlockTable(r.path))!;
    const target = 2 * BLOCK + 1000;
    const b = blockAt(table, target)!;
    t.equal(b, table.blocks[2], 'blockAt finds the block of an offset');
    t.equal(blockAt(table, mixBytes.length), undefined, 'nothing past the end');
    const { source, container } = await openByteSource(r.path, b);
    t.equal(container, format);
    const got = Buffer.alloc(mixBytes.length - b.rawOffset);
    let n = 0;
    for (;;) {
      const { bytesRead } = await source.read(got, n, got.length - n, b.rawOffset + n);
      if (bytesRead === 0) break;
      n += bytesRead;
    }
    await source.close();
    t.equal(n, got.length, 'reads to the end from the block');
    t.ok(got.equals(mixBytes.subarray(b.rawOffset)), 'the bytes from that block on');

    const plain = await openByteSource(src);
    t.equal(plain.container, null, 'a plain file is read as it is');
    await plain.source.close();

    // A flipped byte in block 1: its member's CRC catches it; block 0 is delivered intact.
    await damaged(t, format, r.path, table.blocks[2]!.packedOffset + 100, table.blocks[1]!.packedOffset + 200, BLOCK, all);
    t.ok(reached(cutRecords, all, 2 * BLOCK - 1600), 'the records of the whole blocks before the cut arrive');
  });
}

let cutRecords = 0;

/**
 * A copy cut at `cutAt`: read up to the cut, then one error. One with the byte at `flipAt`
 * flipped: one error, the records in the first `intact` bytes delivered as they were (a
 * decompressor finds the damage by the checksum at the end of the member or frame, so what it
 * decompressed before that point may be wrong; the read still fails).
 */
async function damaged(t: Test, format: CompressFormat, path: string, cutAt: number, flipAt: number, intact: number, all: Frame[]): Promise<void> {
  const cut = join(dir, `cut-${basename(path)}`);
  await copyFile(path, cut);
  await truncate(cut, cutAt);
  const cutRead = await readRecords(cut);
  t.match(cutRead.err, { code: CaptureErrorCode.BAD_COMPRESSION, path: cut }, `${format}: a cut file ends with BAD_COMPRESSION`);
  t.ok(cutRead.recs.length > 0 && cutRead.recs.length < all.length, `records before the cut delivered (${cutRead.recs.length} of ${all.length})`);
  t.same(cutRead.recs, all.slice(0, cutRead.recs.length), 'and they are the original records');
  cutRecords = cutRead.recs.length;

  const bad = join(dir, `bad-${basename(path)}`);
  const bytes = await readFile(path);
  bytes[flipAt]! ^= 0xff;
  await writeFile(bad, bytes);
  const badRead = await readRecords(bad);
  t.match(badRead.err, { code: CaptureErrorCode.BAD_COMPRESSION, path: bad }, `${format}: corrupt data ends the read with BAD_COMPRESSION`);
  let whole = 0;
  for (let off = 24; whole < all.length && off + 16 + all[whole]!.capLen <= intact; whole++) off += 16 + all[whole]!.capLen;
  t.ok(badRead.recs.length >= whole, `the records of the intact blocks arrive (${badRead.recs.length} >= ${whole})`);
  t.same(badRead.recs.slice(0, whole), all.slice(0, whole), 'as they were');
}

/** Whether `count` records reach at least `bytes` into the file (16-byte headers plus frames). */
function reached(count: number, recs: readonly { capLen: number }[], bytes: number): boolean {
  let off = 24;
  for (let i = 0; i < count; i++) off += 16 + recs[i]!.capLen;
  return off >= bytes;
}

t.test('every zstd backend of this Node writes frames the other and the zstd tool read', { skip: zstdBackends().length === 0 ? 'no zstd backend in this Node' : false }, async (t) => {
  const backends = zstdBackends();
  t.comment(`zstd backends: ${backends.map((b) => b.name).join(', ')} (in use: ${zstd()?.name})`);
  const raw = mixBytes.subarray(0, 300_000);
  const through = async (stream: Transform, input: Buffer): Promise<Buffer> => {
    const out: Buffer[] = [];
    await pipeline(Readable.from([input]), stream, new Writable({ write: (c: Buffer, _e, cb) => (out.push(c), cb()) }));
    return Buffer.concat(out);
  };
  for (const w of backends) {
    const frame = await through(w.createCompressor(3), raw);
    for (const r of backends) t.ok((await through(r.createDecompressor(), frame)).equals(raw), `${r.name} reads ${w.name}`);
    if (haveTool('zstd')) t.ok(spawnSync('zstd', ['-dc'], { input: frame, maxBuffer: 16 << 20 }).stdout.equals(raw), `zstd -d reads ${w.name}`);
  }
});

t.test('ZstdFrameWalker: whole zstd streams (from the zstd tool, several frames, a skippable one) are complete, every cut one is not', { skip: haveTool('zstd') ? false : 'zstd not installed' }, async (t) => {
  const raw = mixBytes.subarray(0, 200_000);
  const z = (args: string[], input: Buffer): Buffer => spawnSync('zstd', ['-c', '-q', ...args], { input, maxBuffer: 16 << 20 }).stdout;
  const skippable = Buffer.alloc(8 + 5);
  skippable.writeUInt32LE(0x184d2a5e, 0);
  skippable.writeUInt32LE(5, 4);
  const streams: [string, Buffer][] = [
    ['checksum, content size', z(['--check'], raw)],
    ['no checksum, streamed (no content size)', spawnSync('sh', ['-c', 'cat | zstd -c -q --no-check'], { input: raw, maxBuffer: 16 << 20 }).stdout],
    ['level 19, long window', z(['-19', '--long'], raw)],
    ['two frames and a skippable frame', Buffer.concat([z([], raw.subarray(0, 100_000)), skippable, z([], raw.subarray(100_000))])],
    ['an empty input', z([], Buffer.alloc(0))],
  ];
  for (const [what, stream] of streams) {
    const whole = new ZstdFrameWalker();
    whole.feed(stream);
    t.ok(whole.complete(), `${what}: complete`);
    const bytewise = new ZstdFrameWalker();
    for (let i = 0; i < stream.length; i++) bytewise.feed(stream.subarray(i, i + 1));
    t.ok(bytewise.complete(), `${what}: complete fed a byte at a time`);
    let cutComplete = 0;
    for (let cut = 1; cut < stream.length; cut += Math.max(1, Math.floor(stream.length / 400))) {
      const w = new ZstdFrameWalker();
      w.feed(stream.subarray(0, cut));
      const frameEnd = what.startsWith('two') && (cut === stream.indexOf(skippable) || cut === stream.indexOf(skippable) + skippable.length);
      if (w.complete() && !frameEnd) cutComplete++;
    }
    t.equal(cutComplete, 0, `${what}: no cut inside a frame counts as complete`);
  }
  const junk = new ZstdFrameWalker();
  junk.feed(Buffer.from('not zstd at all'));
  t.ok(junk.invalid && !junk.complete(), 'other bytes are not zstd');
});

t.test('a bounded pool: at most `threads` threads, every file done, counters add up', async (t) => {
  const c = new Compressor({ format: 'gzip', level: 1, threads: 2 });
  t.teardown(() => c.close());
  const files = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => copyOf(`pool-${i}.pcap`)));
  let most = 0;
  let turns = 0;
  const watch = setInterval(() => {
    most = Math.max(most, c.threads);
    turns++;
  }, 1);
  const results = await Promise.all(files.map((f) => c.compress(f)));
  clearInterval(watch);
  t.ok(most <= 2, `at most 2 threads (saw ${most})`);
  t.ok(turns > 5, `the event loop kept running timers meanwhile (${turns} turns)`);
  t.equal(c.files, 6);
  t.equal(c.pending, 0);
  t.equal(c.rawBytes, 6 * mixBytes.length);
  t.equal(c.packedBytes, results.reduce((n, r) => n + r.packedSize, 0));
  t.ok(c.busyMs > 0);
  for (const r of results) t.equal(md5(toolDecompress('gzip', r.path)), md5(mixBytes), `${basename(r.path)} decompresses to the original`);
});

t.test('failures: a missing file, a closed compressor, leftovers of a killed run', async (t) => {
  const c = new Compressor({ format: 'gzip' });
  const missing = join(dir, 'no-such.pcap');
  const err = await c.compress(missing).then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(err instanceof CompressError, 'rejects with a CompressError');
  t.match(err, { code: 'ENOENT', path: missing });
  t.equal(c.failures.get('ENOENT'), 1, 'counted by code');
  t.notOk((await readdir(dir)).includes('no-such.pcap.gz.tmp'), 'no temp file left behind');

  // Queue more than the one thread takes, close at once: the running one may finish or not, the queued ones are refused.
  const files = await Promise.all([0, 1, 2].map((i) => copyOf(`close-${i}.pcap`)));
  const outcomes = files.map((f) => c.compress(f).then(() => 'done', (e: CompressError) => e.code));
  await c.close();
  const codes = await Promise.all(outcomes);
  t.same(codes.slice(1), ['ERR_MIRRORCAP_COMPRESS_CLOSED', 'ERR_MIRRORCAP_COMPRESS_CLOSED'], 'queued files are refused at close');
  t.match(await c.compress(files[0]!).catch((e: CompressError) => e.code), 'ERR_MIRRORCAP_COMPRESS_CLOSED', 'nothing is taken after close');
  for (const f of files) t.ok((await stat(f)).isFile(), 'originals stay');

  await writeFile(join(dir, 'x.pcap.gz.tmp'), 'partial');
  await writeFile(join(dir, 'y.pcap.zst.tmp'), 'partial');
  await writeFile(join(dir, 'keep.pcap.tmp'), 'not ours');
  const removed = (await removeCompressTemps(dir)).map((p) => basename(p));
  // close() stopped the thread of close-0.pcap, so its temp file may be there too.
  t.same(removed.filter((n) => !n.startsWith('close-0.')).sort(), ['x.pcap.gz.tmp', 'y.pcap.zst.tmp'], 'temp files of ours are removed');
  t.notOk((await readdir(dir)).some((n) => n.endsWith('.gz.tmp') || n.endsWith('.zst.tmp')), 'none is left');
  t.ok((await readdir(dir)).includes('keep.pcap.tmp'), 'other files are left alone');
});

t.test('mirrorcap decap reads a compressed capture: the files it writes equal those from the plain one', async (t) => {
  const input = join(REPO_ROOT, 'pcaps', 'vxlan-outer.pcap');
  const outputs: string[] = [];
  for (const format of FORMATS) {
    if (format === 'zstd' && zstd() === null) continue;
    const copy = join(dir, `decap-${format}.pcap`);
    await copyFile(input, copy);
    const c = new Compressor({ format });
    const r = await c.compress(copy);
    await c.close();
    outputs.push(r.path);
  }
  const frames = async (capture: string): Promise<string[]> => {
    const out = await mkdtemp(join(dir, 'decap-'));
    const run = spawnSync(process.execPath, [MAIN, 'decap', capture, '--out', out], { encoding: 'utf8' });
    t.equal(run.status, 0, `decap ${basename(capture)}: ${run.stderr.slice(0, 200)}`);
    const all: string[] = [];
    for (const session of (await readdir(out)).sort()) {
      // The captures, not their index sidecars (X.pcap.idx).
      for (const f of (await readdir(join(out, session))).filter((n) => n.endsWith('.pcap')).sort()) all.push(...(await ourRecords(join(out, session, f))).map((x) => `${session} ${x.ts} ${x.data.toString('hex')}`));
    }
    return all;
  };
  const plain = await frames(input);
  t.ok(plain.length > 0, `the plain capture gives ${plain.length} frames`);
  for (const p of outputs) t.same(await frames(p), plain, `${basename(p)}: the same sessions and frames`);
});

t.test('settings are validated with a clear error', async (t) => {
  t.throws(() => compressSettings({ format: 'lz4' as CompressFormat }), ConfigError);
  t.throws(() => compressSettings({ format: 'gzip', level: 10 }), /level 10 for gzip: expected 1-9/);
  t.throws(() => compressSettings({ format: 'gzip', blockSize: 1000 }), /block size/);
  t.throws(() => compressSettings({ format: 'gzip', threads: 0 }), /threads/);
  t.match(compressSettings({ format: 'gzip' }), { level: 6, blockSize: 4 << 20 });
  if (zstd() === null) t.throws(() => compressSettings({ format: 'zstd' }), /zstd is unavailable: .+/, 'zstd without a backend: a ConfigError saying why');
  else t.match(compressSettings({ format: 'zstd' }), { level: 3 });
  t.equal(blockSizeFor(100 << 20, 4 << 20), 4 << 20, 'the configured block size for an ordinary file');
  const huge = 64 * 1024 ** 3;
  const grown = blockSizeFor(huge, 4 << 20);
  t.ok(Math.ceil(huge / grown) <= MAX_BLOCKS, 'grown so a 64 GiB file fits the seek table');
});

t.test('CaptureReader: a zstd file where zstd is missing says why', { skip: zstd() !== null ? 'zstd is available here: the missing-zstd error cannot be shown' : false }, async (t) => {
  const p = join(dir, 'x.pcap.zst');
  await writeFile(p, Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0]));
  await t.rejects(CaptureReader.open(p), { code: CaptureErrorCode.UNSUPPORTED_COMPRESSION });
});
