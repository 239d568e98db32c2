/**
 * The capture reader on files built byte by byte: every format variant, buffer edge cases,
 * and every kind of corruption (cut at every length, bad length fields, random mutations).
 * tshark comparisons live in reader-tshark.test.ts.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { CaptureError, CaptureErrorCode } from '../../src/pcap/errors.js';
import { CaptureReader } from '../../src/pcap/reader.js';
import { buildPcap, buildPcapngSection, ourRecords, pcapBoundaries, pcapngBoundaries, readRecords, swapPcap } from '../lib/captures.js';
import type { NgBlock, PcapRecord } from '../lib/captures.js';
import { Random } from '../lib/random.js';
import { sameFrames, tsString, type Frame } from '../lib/tshark.js';
import { withTempDir } from '../lib/tools.js';

const rand = new Random(42);
/** Frames of awkward sizes: empty, tiny, odd, not a multiple of 4, large. */
const SIZES = [60, 0, 1, 3, 14, 1514, 97, 9001, 255, 64];
const frames = SIZES.map((n) => rand.bytes(n));

function pcapRecords(ns: boolean): PcapRecord[] {
  return frames.map((data, i) => ({ sec: 1_700_000_000 + i, frac: ns ? 999_999_990 + i : 999_990 + i, data, origLen: data.length + (i % 3) }));
}

function expectedPcap(ns: boolean, linkType = 1): Frame[] {
  return pcapRecords(ns).map((r) => ({
    ts: tsString(r.sec, ns ? r.frac : r.frac * 1000),
    capLen: r.data.length,
    origLen: r.origLen!,
    ifIndex: 0,
    linkType,
    data: r.data,
  }));
}

t.test('classic pcap: both byte orders, µs and ns, any buffer size', async (t) => {
  await withTempDir(async (dir) => {
    for (const le of [true, false]) {
      for (const ns of [false, true]) {
        const path = join(dir, `c-${le}-${ns}.pcap`);
        await writeFile(path, buildPcap({ le, ns, records: pcapRecords(ns), linkType: 1 }));
        const want = expectedPcap(ns);
        for (const bufferSize of [undefined, 1, 16, 17, 100, 1513, 9017]) {
          t.same(await ourRecords(path, bufferSize === undefined ? {} : { bufferSize }), want, `le=${le} ns=${ns} bufferSize=${bufferSize}`);
        }
        const reader = await CaptureReader.open(path);
        t.equal(reader.format, 'pcap');
        t.match(reader.interfaces, [{ index: 0, section: 0, linkType: 1, snaplen: 262144, tsBase: 10, tsExponent: ns ? 9 : 6 }]);
        await reader.close();
        await reader.close();
      }
    }
    // The swapped builder agrees with the big-endian one, so the swap helper is sound too.
    t.same(swapPcap(buildPcap({ ns: true, records: pcapRecords(true) })), buildPcap({ le: false, ns: true, records: pcapRecords(true) }));
  });
});

t.test('classic pcap: the FCS bits of the link type are masked off', async (t) => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'fcs.pcap');
    await writeFile(path, buildPcap({ linkType: 0x14000001, records: pcapRecords(false).slice(0, 1) }));
    t.equal((await ourRecords(path))[0]!.linkType, 1);
  });
});

t.test('read(): records stay valid until the next call; false at the end; the offset is the file size', async (t) => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'a.pcap');
    const file = buildPcap({ records: pcapRecords(false) });
    await writeFile(path, file);
    const reader = await CaptureReader.open(path, { bufferSize: 4000 });
    const want = expectedPcap(false);
    let seen = 0;
    for (;;) {
      const spans: [Buffer, number, number][] = [];
      const more = await reader.read((buf, off, capLen) => void spans.push([buf, off, capLen]));
      if (!more) {
        t.equal(spans.length, 0);
        break;
      }
      t.ok(spans.length > 0, 'a true read delivers at least one record');
      // Checked after read() resolved: the bytes must still be those records.
      for (const [buf, off, capLen] of spans) t.equal(buf.toString('hex', off, off + capLen), want[seen++]!.data.toString('hex'));
    }
    t.equal(seen, want.length);
    t.equal(reader.records, want.length);
    t.equal(reader.offset, file.length);
    t.equal(await reader.read(() => t.fail('no records after the end')), false);
    t.equal(reader.bufferSize, 16 + 9001, 'grew once, to the largest record');
    await reader.close();
  });
});

t.test('memory stays flat: a file far larger than the buffer never grows it', async (t) => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'big.pcap');
    const frame = rand.bytes(1500);
    const records = Array.from({ length: 4000 }, (_, i) => ({ sec: i, frac: 0, data: frame }));
    await writeFile(path, buildPcap({ records })); // ~6 MB
    const reader = await CaptureReader.open(path, { bufferSize: 64 * 1024 });
    let n = 0;
    while (await reader.read(() => void n++));
    t.equal(n, 4000);
    t.equal(reader.bufferSize, 64 * 1024);
    await reader.close();
  });
});

t.test('concurrent read() calls are refused', async (t) => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'a.pcap');
    await writeFile(path, buildPcap({ records: pcapRecords(false) }));
    // A buffer too small for the first record, so the first read() waits on the file.
    const reader = await CaptureReader.open(path, { bufferSize: 30 });
    const first = reader.read(() => {});
    await t.rejects(reader.read(() => {}), /in progress/);
    await first;
    await reader.close();
  });
});

t.test('options are validated', async (t) => {
  await t.rejects(CaptureReader.open('/nonexistent', { bufferSize: 0 }), RangeError);
  await t.rejects(CaptureReader.open('/nonexistent', { maxRecordLen: 1.5 }), RangeError);
  await t.rejects(CaptureReader.open('/nonexistent/x.pcap'), { code: 'ENOENT' });
});

// ---------------------------------------------------------------------------------------------
// pcapng

const NG_TS = 1_700_000_000_123_456n;

function ngFile(le: boolean): { file: Buffer; want: Frame[] } {
  const blocks: NgBlock[] = [];
  const want: Frame[] = [];
  frames.forEach((data, i) => {
    const ifId = i % 2;
    const ts = NG_TS + BigInt(i) * 1_000_001n;
    blocks.push({ kind: 'epb', ifId, ts: ifId === 0 ? ts : ts * 1000n, data, origLen: data.length + 5 });
    want.push({
      ts: tsString(Number(ts / 1_000_000n), Number(ts % 1_000_000n) * 1000),
      capLen: data.length,
      origLen: data.length + 5,
      ifIndex: ifId,
      linkType: ifId === 0 ? 1 : 101,
      data,
    });
    if (i === 2) blocks.push({ kind: 'raw', type: 4, body: Buffer.alloc(20, 7) }); // name resolution, skipped
    if (i === 5) blocks.push({ kind: 'raw', type: 0x40000bad, body: Buffer.alloc(5000, 9) }); // custom, skipped
  });
  const file = buildPcapngSection({ le, interfaces: [{ linkType: 1 }, { linkType: 101, tsresol: 9 }], blocks });
  return { file, want };
}

t.test('pcapng: both byte orders, interfaces with their own link types and resolutions, skipped blocks', async (t) => {
  await withTempDir(async (dir) => {
    for (const le of [true, false]) {
      const { file, want } = ngFile(le);
      const path = join(dir, `n-${le}.pcapng`);
      await writeFile(path, file);
      for (const bufferSize of [undefined, 1, 12, 13, 64, 1000, 5011]) {
        t.same(await ourRecords(path, bufferSize === undefined ? {} : { bufferSize }), want, `le=${le} bufferSize=${bufferSize}`);
      }
      const reader = await CaptureReader.open(path);
      t.equal(reader.format, 'pcapng');
      while (await reader.read(() => {}));
      t.match(reader.interfaces, [
        { index: 0, section: 0, sectionIndex: 0, linkType: 1, snaplen: 0, tsBase: 10, tsExponent: 6 },
        { index: 1, section: 0, sectionIndex: 1, linkType: 101, tsBase: 10, tsExponent: 9 },
      ]);
      t.equal(reader.offset, file.length);
      await reader.close();
    }
  });
});

t.test('pcapng: several sections in different byte orders number interfaces file-wide', async (t) => {
  await withTempDir(async (dir) => {
    const a = ngFile(true);
    const b = ngFile(false);
    const c = buildPcapngSection({ le: true, interfaces: [{ linkType: 113, tsresol: 0x80 | 20, tsoffset: -100n }], blocks: [{ kind: 'epb', ifId: 0, ts: (1n << 20n) * 5000n + (1n << 19n), data: frames[0]! }] });
    const path = join(dir, 'multi.pcapng');
    await writeFile(path, Buffer.concat([a.file, b.file, c]));
    const want = [
      ...a.want,
      ...b.want.map((r) => ({ ...r, ifIndex: r.ifIndex + 2 })),
      { ts: '4900.500000000', capLen: 60, origLen: 60, ifIndex: 4, linkType: 113, data: frames[0]! },
    ];
    t.same(await ourRecords(path, { bufferSize: 100 }), want);
    const reader = await CaptureReader.open(path);
    while (await reader.read(() => {}));
    t.same(
      reader.interfaces.map((i) => [i.index, i.section, i.sectionIndex, i.linkType, i.tsBase, i.tsExponent, i.tsOffset]),
      [[0, 0, 0, 1, 10, 6, 0], [1, 0, 1, 101, 10, 9, 0], [2, 1, 0, 1, 10, 6, 0], [3, 1, 1, 101, 10, 9, 0], [4, 2, 0, 113, 2, 20, -100]],
    );
    await reader.close();
  });
});

t.test('pcapng: simple packet blocks (cut to the snaplen, no timestamp) and obsolete packet blocks', async (t) => {
  await withTempDir(async (dir) => {
    const f = frames[5]!; // 1514 bytes
    const file = buildPcapngSection({
      le: false,
      interfaces: [{ linkType: 1, snaplen: 100 }, { linkType: 228 }],
      blocks: [
        { kind: 'spb', data: f.subarray(0, 100), origLen: f.length },
        { kind: 'spb', data: f.subarray(0, 7) },
        { kind: 'pb', ifId: 1, ts: NG_TS, data: f.subarray(0, 33), origLen: 40 },
      ],
    });
    const path = join(dir, 'spb.pcapng');
    await writeFile(path, file);
    t.same(await ourRecords(path), [
      { ts: '0.000000000', capLen: 100, origLen: 1514, ifIndex: 0, linkType: 1, data: f.subarray(0, 100) },
      { ts: '0.000000000', capLen: 7, origLen: 7, ifIndex: 0, linkType: 1, data: f.subarray(0, 7) },
      { ts: '1700000000.123456000', capLen: 33, origLen: 40, ifIndex: 1, linkType: 228, data: f.subarray(0, 33) },
    ]);
  });
});

t.test('pcapng: a large block grows the buffer once, bounded by maxBlockLen', async (t) => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'big-block.pcapng');
    const file = buildPcapngSection({ interfaces: [{ linkType: 1 }], blocks: [{ kind: 'raw', type: 5, body: Buffer.alloc(100_000) }, { kind: 'epb', ifId: 0, ts: NG_TS, data: frames[0]! }] });
    await writeFile(path, file);
    const reader = await CaptureReader.open(path, { bufferSize: 1024 });
    let n = 0;
    while (await reader.read(() => void n++));
    t.equal(n, 1);
    t.ok(reader.bufferSize >= 100_012 && reader.bufferSize <= 16 << 20);
    await reader.close();
    const small = await readRecords(path, { maxBlockLen: 65536 });
    t.match(small.err, { code: CaptureErrorCode.BAD_BLOCK_LENGTH, offset: pcapngBoundaries(file)[2] });
  });
});

// ---------------------------------------------------------------------------------------------
// Corruption

function expectError(t: Test, err: unknown, code: string, offset: number, path: string, what: string): void {
  if (!(err instanceof CaptureError)) {
    t.fail(`${what}: expected a CaptureError ${code}, got ${String(err)}`);
    return;
  }
  if (err.code !== code || err.offset !== offset) t.fail(`${what}: got ${err.code} at ${err.offset}, want ${code} at ${offset} (${err.message})`);
  if (!err.message.startsWith(`${path}: byte ${offset}: `)) t.fail(`${what}: message "${err.message}" does not name the path and offset`);
}


t.test('classic pcap cut at every length: every whole record, then the right error at the right byte', async (t) => {
  await withTempDir(async (dir) => {
    for (const le of [true, false]) {
      const file = buildPcap({ le, ns: true, records: pcapRecords(true).filter((r) => r.data.length < 1000) });
      const want = expectedPcap(true).filter((r) => r.capLen < 1000);
      const bounds = pcapBoundaries(file);
      t.equal(bounds.length, want.length + 1);
      const path = join(dir, `cut-${le}.pcap`);
      let checked = 0;
      for (let cut = 0; cut <= file.length; cut++) {
        await writeFile(path, file.subarray(0, cut));
        for (const bufferSize of [undefined, 20]) {
          const { recs, err } = await readRecords(path, bufferSize === undefined ? {} : { bufferSize });
          const what = `le=${le} cut=${cut} bufferSize=${bufferSize}`;
          if (cut < 24) {
            expectError(t, err, CaptureErrorCode.TRUNCATED_HEADER, 0, path, what);
            continue;
          }
          const whole = bounds.filter((b) => b <= cut).length - 1;
          const last = bounds[whole]!;
          if (!sameFrames(recs, want.slice(0, whole))) t.fail(`${what}: delivered ${recs.length} records, want the first ${whole}`);
          if (last === cut) {
            if (err !== null) t.fail(`${what}: a cut on a record boundary is a valid file, got ${String(err)}`);
          } else {
            const code = cut - last < 16 ? CaptureErrorCode.TRUNCATED_RECORD_HEADER : CaptureErrorCode.TRUNCATED_RECORD;
            expectError(t, err, code, last, path, what);
          }
          checked++;
        }
      }
      t.ok(checked > 2 * 600, `le=${le}: ${checked} cuts checked`);
    }
  });
});

t.test('pcapng cut at every length: every whole record, then TRUNCATED_BLOCK at the torn block', async (t) => {
  await withTempDir(async (dir) => {
    for (const le of [true, false]) {
      const { file, want } = ngFile(le);
      const bounds = pcapngBoundaries(file);
      // Records delivered once the file reaches each boundary.
      const recsAt = new Map<number, number>();
      let n = 0;
      for (const b of bounds) {
        recsAt.set(b, n);
        const type = b + 4 <= file.length ? (le ? file.readUInt32LE(b) : file.readUInt32BE(b)) : 0;
        if (type === 6) n++;
      }
      const path = join(dir, `cut-${le}.pcapng`);
      for (let cut = 0; cut <= file.length; cut += cut < 200 || file.length - cut < 200 ? 1 : 7) {
        await writeFile(path, file.subarray(0, cut));
        const { recs, err } = await readRecords(path, { bufferSize: 64 });
        const what = `le=${le} cut=${cut}`;
        if (cut < 4) {
          expectError(t, err, CaptureErrorCode.TRUNCATED_HEADER, 0, path, what);
          continue;
        }
        const last = bounds.filter((b) => b <= cut).pop()!;
        const whole = recsAt.get(last)!;
        if (!sameFrames(recs, want.slice(0, whole))) t.fail(`${what}: delivered ${recs.length} records, want the first ${whole}`);
        if (last === cut) {
          if (err !== null) t.fail(`${what}: a cut on a block boundary is a valid file, got ${String(err)}`);
        } else {
          expectError(t, err, CaptureErrorCode.TRUNCATED_BLOCK, last, path, what);
        }
      }
    }
    t.pass('every cut checked');
  });
});

t.test('file headers: empty, short, unknown magic, unsupported versions', async (t) => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'h.pcap');
    const good = buildPcap({ records: [] });
    const cases: [Buffer, string, RegExp][] = [
      [Buffer.alloc(0), CaptureErrorCode.TRUNCATED_HEADER, /empty file/],
      [good.subarray(0, 3), CaptureErrorCode.TRUNCATED_HEADER, /3 bytes/],
      [good.subarray(0, 23), CaptureErrorCode.TRUNCATED_HEADER, /needs 24 bytes, file has 23/],
      [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), CaptureErrorCode.BAD_MAGIC, /magic 0x20544547/],
      [Buffer.concat([Buffer.from([0xd4, 0xc3, 0xb2, 0xa1, 3, 0]), good.subarray(6)]), CaptureErrorCode.UNSUPPORTED_VERSION, /version 3\.4/],
    ];
    for (const [bytes, code, msg] of cases) {
      await writeFile(path, bytes);
      const err = await CaptureReader.open(path).then(
        () => null,
        (e: unknown) => e,
      );
      t.match(err, { name: 'CaptureError', code, offset: 0, path, message: msg }, code);
    }
    // A header alone is a valid, empty capture.
    await writeFile(path, good);
    t.same(await readRecords(path), { recs: [], err: null });
  });
});

t.test('classic pcap: impossible record lengths', async (t) => {
  await withTempDir(async (dir) => {
    const records = pcapRecords(false).slice(0, 4); // 60, 0, 1, 3 bytes
    const want = expectedPcap(false).slice(0, 4);
    const path = join(dir, 'len.pcap');
    const bounds = pcapBoundaries(buildPcap({ records }));
    const mutate = async (k: number, field: 4 | 8 | 12, value: number, opts: { snaplen?: number } = {}): Promise<void> => {
      const file = buildPcap({ records, snaplen: opts.snaplen ?? 262144 });
      file.writeUInt32LE(value, bounds[k]! + field);
      await writeFile(path, file);
    };
    for (const [value, re] of [[0xffffffff, /captured length 4294967295 is above the record limit of 262144/], [262145, /262145/]] as const) {
      await mutate(2, 8, value);
      const { recs, err } = await readRecords(path);
      t.same(recs, want.slice(0, 2));
      expectError(t, err, CaptureErrorCode.RECORD_TOO_LONG, bounds[2]!, path, `incl_len ${value}`);
      t.match((err as Error).message, re);
    }
    // A tighter limit, and strict checks against the snaplen and the original length.
    await mutate(0, 8, 60, { snaplen: 50 });
    t.equal((await readRecords(path)).err, null, 'lax: a record over the snaplen is read, as Wireshark does');
    expectError(t, (await readRecords(path, { strict: true })).err, CaptureErrorCode.RECORD_TOO_LONG, 24, path, 'strict snaplen');
    t.match((await readRecords(path, { strict: true })).err, { message: /above the snaplen of 50/ });
    expectError(t, (await readRecords(path, { maxRecordLen: 59 })).err, CaptureErrorCode.RECORD_TOO_LONG, 24, path, 'maxRecordLen');
    await mutate(3, 12, 2);
    t.equal((await readRecords(path)).err, null, 'lax: original length below captured length is read');
    const strict = await readRecords(path, { strict: true });
    t.same(strict.recs, want.slice(0, 3));
    expectError(t, strict.err, CaptureErrorCode.BAD_RECORD_HEADER, bounds[3]!, path, 'strict orig < cap');
    // A fraction of a second that is not one.
    await mutate(1, 4, 1_000_000);
    t.equal((await readRecords(path)).err, null, 'lax: a µs fraction of 1e6 is read');
    expectError(t, (await readRecords(path, { strict: true })).err, CaptureErrorCode.BAD_RECORD_HEADER, bounds[1]!, path, 'strict fraction');
    // A zero-filled tail (what a power loss can leave) reads as empty records: strict refuses them,
    // but an empty frame with a real timestamp is fine.
    await writeFile(path, buildPcap({ records: [{ sec: 1, frac: 0, data: Buffer.alloc(0) }] }));
    t.equal((await readRecords(path, { strict: true })).err, null);
    const zeroTail = Buffer.concat([buildPcap({ records }), Buffer.alloc(64)]);
    await writeFile(path, zeroTail);
    t.equal((await readRecords(path)).recs.length, 8);
    const z = await readRecords(path, { strict: true });
    t.equal(z.recs.length, 4);
    expectError(t, z.err, CaptureErrorCode.BAD_RECORD_HEADER, bounds[4]!, path, 'zero tail');
  });
});

t.test('pcapng: impossible lengths, unknown interfaces, bad headers and options', async (t) => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'bad.pcapng');
    const { file, want } = ngFile(true);
    const bounds = pcapngBoundaries(file);
    const firstEpb = bounds[3]!; // SHB, IDB, IDB, EPB
    const cases: { name: string; edit: (b: Buffer) => void; code: string; at: number; recs: number; strict?: boolean }[] = [
      { name: 'block length not a multiple of 4', edit: (b) => b.writeUInt32LE(b.readUInt32LE(firstEpb + 4) + 2, firstEpb + 4), code: CaptureErrorCode.BAD_BLOCK_LENGTH, at: firstEpb, recs: 0 },
      { name: 'block length under 12', edit: (b) => b.writeUInt32LE(8, bounds[4]! + 4), code: CaptureErrorCode.BAD_BLOCK_LENGTH, at: bounds[4]!, recs: 1 },
      { name: 'block length huge', edit: (b) => b.writeUInt32LE(0xfffffff0, bounds[4]! + 4), code: CaptureErrorCode.BAD_BLOCK_LENGTH, at: bounds[4]!, recs: 1 },
      { name: 'trailing length differs', edit: (b) => b.writeUInt32LE(1234, bounds[4]! - 4), code: CaptureErrorCode.BLOCK_LENGTH_MISMATCH, at: bounds[3]!, recs: 0 },
      { name: 'block length longer than the block', edit: (b) => b.writeUInt32LE(b.readUInt32LE(firstEpb + 4) + 4, firstEpb + 4), code: CaptureErrorCode.BLOCK_LENGTH_MISMATCH, at: firstEpb, recs: 0 },
      { name: 'captured length past the block', edit: (b) => b.writeUInt32LE(61, firstEpb + 20), code: CaptureErrorCode.BAD_BLOCK_LENGTH, at: firstEpb, recs: 0 },
      { name: 'captured length over the limit', edit: (b) => b.writeUInt32LE(0x7fffffff, firstEpb + 20), code: CaptureErrorCode.RECORD_TOO_LONG, at: firstEpb, recs: 0 },
      { name: 'interface never described', edit: (b) => b.writeUInt32LE(2, bounds[4]! + 8), code: CaptureErrorCode.UNKNOWN_INTERFACE, at: bounds[4]!, recs: 1 },
      { name: 'byte-order magic', edit: (b) => b.writeUInt32LE(0x1a2b3c4e, 8), code: CaptureErrorCode.BAD_MAGIC, at: 0, recs: 0 },
      { name: 'major version 2', edit: (b) => b.writeUInt16LE(2, 12), code: CaptureErrorCode.UNSUPPORTED_VERSION, at: 0, recs: 0 },
      { name: 'original length below captured', edit: (b) => b.writeUInt32LE(1, firstEpb + 24), code: CaptureErrorCode.BAD_RECORD_HEADER, at: firstEpb, recs: 0, strict: true },
    ];
    for (const c of cases) {
      const b = Buffer.from(file);
      c.edit(b);
      await writeFile(path, b);
      const { recs, err } = await readRecords(path, { bufferSize: 256, strict: c.strict ?? false });
      t.same(recs, want.slice(0, c.recs), `${c.name}: records before the fault`);
      expectError(t, err, c.code, c.at, path, c.name);
    }
    // Malformed interface descriptions.
    const idbCases: [string, Buffer, string][] = [
      ['tsresol finer than 64 bits', buildPcapngSection({ interfaces: [{ linkType: 1, tsresol: 20 }], blocks: [] }), CaptureErrorCode.BAD_OPTION],
      ['tsresol 2^-64', buildPcapngSection({ interfaces: [{ linkType: 1, tsresol: 0x80 | 64 }], blocks: [] }), CaptureErrorCode.BAD_OPTION],
    ];
    const overrun = buildPcapngSection({ interfaces: [{ linkType: 1, tsresol: 6 }], blocks: [] });
    overrun.writeUInt16LE(200, 28 + 16 + 2); // if_tsresol claims 200 bytes
    idbCases.push(['option past the block end', overrun, CaptureErrorCode.BAD_OPTION]);
    const shortIdb = buildPcapngSection({ blocks: [{ kind: 'raw', type: 1, body: Buffer.alloc(4) }] });
    idbCases.push(['IDB shorter than its fields', shortIdb, CaptureErrorCode.BAD_BLOCK_LENGTH]);
    const shortShb = buildPcapngSection({ blocks: [] });
    shortShb.writeUInt32LE(24, 4);
    shortShb.writeUInt32LE(24, 20);
    idbCases.push(['SHB shorter than its fields', shortShb.subarray(0, 24), CaptureErrorCode.BAD_BLOCK_LENGTH]);
    for (const [name, bytes, code] of idbCases) {
      await writeFile(path, bytes);
      const { err } = await readRecords(path);
      expectError(t, err, code, name.startsWith('SHB') ? 0 : 28, path, name);
    }
    const noIdb = buildPcapngSection({ blocks: [{ kind: 'spb', data: frames[0]! }] });
    await writeFile(path, noIdb);
    expectError(t, (await readRecords(path)).err, CaptureErrorCode.UNKNOWN_INTERFACE, 28, path, 'SPB without an IDB');
  });
});

t.test('after a failure every read() rejects with the same error; records before it came first', async (t) => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'f.pcap');
    const file = buildPcap({ records: pcapRecords(false) });
    await writeFile(path, file.subarray(0, file.length - 1));
    const reader = await CaptureReader.open(path);
    let n = 0;
    let first: unknown = null;
    for (;;) {
      try {
        if (!(await reader.read(() => void n++))) break;
      } catch (err) {
        first = err;
        break;
      }
    }
    t.equal(n, frames.length - 1);
    t.type(first, CaptureError);
    await t.rejects(reader.read(() => t.fail('nothing after a failure')), first as Error);
    await reader.close();
  });
});

t.test('random mutations never crash the reader: it ends cleanly or with a CaptureError', async (t) => {
  await withTempDir(async (dir) => {
    const r = new Random(7);
    const bases = [buildPcap({ records: pcapRecords(true), ns: true }), buildPcap({ le: false, records: pcapRecords(false) }), ngFile(true).file, ngFile(false).file];
    const path = join(dir, 'fuzz');
    let clean = 0;
    let failed = 0;
    for (let i = 0; i < 600; i++) {
      const b = Buffer.from(bases[i % bases.length]!);
      const flips = 1 + (r.next() % 8);
      for (let k = 0; k < flips; k++) {
        // Mostly hit header and length bytes, where the parser makes decisions.
        const at = r.next() % 2 === 0 ? r.next() % 64 : r.next() % b.length;
        b[at] = r.next() & 0xff;
      }
      const cut = r.next() % 4 === 0 ? r.next() % b.length : b.length;
      await writeFile(path, b.subarray(0, cut));
      const { err } = await readRecords(path, { bufferSize: 1 + (r.next() % 4096) });
      if (err === null) clean++;
      else if (err instanceof CaptureError && err.offset >= 0 && err.offset <= cut) failed++;
      else t.fail(`mutation ${i}: unexpected ${String(err)}`);
    }
    t.equal(clean + failed, 600, `${clean} read cleanly, ${failed} ended with a CaptureError`);
  });
});
