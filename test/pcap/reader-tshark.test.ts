/**
 * The reader against tshark, record by record (timestamp to the ns, captured and original
 * length, interface, link type, every byte): the real captures, the same captures converted by
 * editcap/mergecap into every format variant, and pcapng files with unusual resolutions.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { REAL_DIR, buildPcapngSection, ourRecords, pcapBoundaries, readRecords, realCaptures, swapPcap } from '../lib/captures.js';
import type { NgInterface } from '../lib/captures.js';
import { sameFrame, sameFrames, tsharkFrames, type Frame } from '../lib/tshark.js';
import { mapLimit, tool, withTempDir } from '../lib/tools.js';

// Two tshark runs per real capture and conversion take a while on two cores.
t.setTimeout(240_000);

const real = realCaptures();
if (real.skip) console.log(`# skipping the real-capture comparisons: ${real.skip}`);

/** Compares record lists and reports only the first difference (lists can hold 1000+ frames). */
function sameRecords(t: Test, ours: Frame[], theirs: Frame[], what: string): boolean {
  if (ours.length !== theirs.length) return t.fail(`${what}: we read ${ours.length} records, tshark ${theirs.length}`);
  const i = ours.findIndex((r, k) => !sameFrame(r, theirs[k]!));
  if (i < 0) return t.pass(`${what}: ${ours.length} records identical`);
  const short = (r: Frame): string => JSON.stringify({ ...r, data: `${r.data.toString('hex', 0, 20)}… (${r.data.length} bytes)` });
  return t.fail(`${what}: record ${i + 1} differs\n  ours   ${short(ours[i]!)}\n  tshark ${short(theirs[i]!)}`);
}

async function compare(t: Test, path: string, what = basename(path)): Promise<Frame[]> {
  const [ours, theirs] = await Promise.all([ourRecords(path, {}, true), tsharkFrames(path)]);
  // A simple packet block has no timestamp: tshark prints none, we deliver 0.
  for (const r of theirs) if (r.ts === '') r.ts = '0.000000000';
  sameRecords(t, ours, theirs, what);
  return ours;
}

t.test('every real capture reads exactly as tshark reads it', { skip: real.skip }, async (t) => {
  const counts = await mapLimit(real.files, 2, async (f) => (await compare(t, f)).length);
  t.ok(counts.reduce((a, b) => a + b, 0) > 3000, `${counts.reduce((a, b) => a + b, 0)} records in ${real.files.length} files`);
});

/** Sources for the conversions: big frames, snaplen-truncated frames, many frames, pcapng. */
const SOURCES = [
  'suricata-verify-vxlan-aws-traffic-mirror-ssh.pcap',
  'plain-suricata-verify-mixed-lan-ftp-http.pcap',
  'plain-tcpdump-ipv6-jumbogram-65590B.pcap',
  'plain-zeek-tcp-timestamp-snaplen-truncated.pcap',
  'tcpdump-bigtcp-ipv6-vxlan-ipv6.pcap',
  'plain-zeek-vlan-pcp-dei.pcapng',
];

t.test('editcap conversions and byte-swapped files read as tshark reads them', { skip: real.skip }, async (t) => {
  await withTempDir(async (dir) => {
    for (const name of SOURCES) {
      const src = join(REAL_DIR, name);
      const original = await ourRecords(src);
      const us = join(dir, `${name}.us.pcap`);
      const ns = join(dir, `${name}.ns.pcap`);
      const ngUs = join(dir, `${name}.us.pcapng`);
      const ngNs = join(dir, `${name}.ns.pcapng`);
      const beUs = join(dir, `${name}.be-us.pcap`);
      const beNs = join(dir, `${name}.be-ns.pcap`);
      await tool('editcap', ['-F', 'pcap', src, us]);
      await tool('editcap', ['-F', 'nsecpcap', src, ns]);
      await tool('editcap', ['-F', 'pcapng', us, ngUs]);
      await tool('editcap', ['-F', 'pcapng', ns, ngNs]); // IDB with if_tsresol 9
      await writeFile(beUs, swapPcap(await readFile(us)));
      await writeFile(beNs, swapPcap(await readFile(ns)));
      for (const f of [us, ns, ngUs, ngNs, beUs, beNs]) {
        const recs = await compare(t, f, basename(f));
        // Every variant holds the same records (the sources have µs timestamps).
        if (!sameFrames(recs, original)) t.fail(`${basename(f)}: differs from ${name}`);
      }
    }
  });
});

t.test('pcapng from mergecap: one interface per input, each with its own link type', { skip: real.skip }, async (t) => {
  await withTempDir(async (dir) => {
    const v4 = join(REAL_DIR, 'plain-zeek-icmp-ping.pcap');
    const v6 = join(REAL_DIR, 'plain-zeek-icmp6-ping.pcap');
    const dns = join(REAL_DIR, 'plain-tcpdump-dns-udp.pcap');
    const inputs: [string, string[]][] = [
      ['eth.pcap', ['-F', 'pcap', v4]],
      ['ipv4.pcap', ['-F', 'pcap', '-C', '14', '-T', 'rawip4', v4]],
      ['ipv6.pcap', ['-F', 'nsecpcap', '-C', '14', '-T', 'rawip6', v6]],
      ['raw.pcapng', ['-F', 'pcapng', '-C', '14', '-T', 'rawip', v6]],
      ['sll.pcap', ['-F', 'pcap', '-T', 'linux-sll', dns]],
      ['sll2.pcap', ['-F', 'pcap', '-T', 'linux-sll2', dns]],
      ['null.pcap', ['-F', 'pcap', '-T', 'null', dns]],
      ['loop.pcap', ['-F', 'pcap', '-T', 'loop', dns]],
    ];
    const paths: string[] = [];
    for (const [out, args] of inputs) {
      const p = join(dir, out);
      await tool('editcap', [...args.slice(0, -1), args[args.length - 1]!, p]);
      paths.push(p);
      await compare(t, p, `editcap ${args.slice(0, -1).join(' ')}`);
    }
    const merged = join(dir, 'merged.pcapng');
    await tool('mergecap', ['-F', 'pcapng', '-w', merged, ...paths]);
    const recs = await compare(t, merged, 'mergecap of 8 link types');
    t.same([...new Set(recs.map((r) => r.linkType))].sort((a, b) => a - b), [0, 1, 101, 108, 113, 228, 229, 276]);
    t.same([...new Set(recs.map((r) => r.ifIndex))].sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7]);
    const concatenated = join(dir, 'concatenated.pcapng');
    await tool('mergecap', ['-a', '-F', 'pcapng', '-w', concatenated, ...paths]);
    await compare(t, concatenated, 'mergecap -a');
  });
});

t.test('pcapng written here: resolutions, offsets, byte orders, sections, old and simple packet blocks', async (t) => {
  await withTempDir(async (dir) => {
    const frame = Buffer.from('00112233445500112233445608004500001c000100004011f7ce0a0000010a000002003500350008d6f8', 'hex');
    const resolutions: [NgInterface, bigint][] = [
      [{ linkType: 1 }, 1_700_000_000_123_456n],
      [{ linkType: 1, tsresol: 0 }, 1_700_000_000n],
      [{ linkType: 1, tsresol: 3 }, 1_700_000_000_999n],
      [{ linkType: 1, tsresol: 9 }, 1_700_000_000_999_999_999n],
      [{ linkType: 1, tsresol: 9, tsoffset: 3600n }, 1_000_000_001n],
      [{ linkType: 1, tsoffset: 1_700_000_000n }, 999_999n],
      [{ linkType: 1, tsresol: 0x80 | 10 }, (1_700_000_000n << 10n) + 1023n],
      [{ linkType: 1, tsresol: 0x80 | 20 }, (1_700_000_000n << 20n) + 12345n],
      [{ linkType: 1, tsresol: 0x80 | 30 }, (1_700_000_000n << 30n) + 123_456_789n],
      [{ linkType: 1, tsresol: 0x80 | 32 }, (1_700_000_000n << 32n) + 0xffffffffn],
      [{ linkType: 101, snaplen: 20 }, 1_700_000_000_000_001n],
    ];
    let n = 0;
    for (const le of [true, false]) {
      for (const [iface, ts] of resolutions) {
        const p = join(dir, `r${n++}.pcapng`);
        await writeFile(p, buildPcapngSection({ le, interfaces: [iface], blocks: [{ kind: 'epb', ifId: 0, ts, data: frame }, { kind: 'epb', ifId: 0, ts: ts + 1n, data: frame.subarray(0, 20), origLen: 1500 }] }));
        await compare(t, p, `le=${le} ${JSON.stringify(iface, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))}`);
      }
    }
    // Three sections, alternating byte order, with old packet blocks and simple packet blocks.
    const multi = join(dir, 'multi.pcapng');
    await writeFile(multi, Buffer.concat([
      buildPcapngSection({ le: true, interfaces: [{ linkType: 1 }, { linkType: 228, tsresol: 9 }], blocks: [
        { kind: 'epb', ifId: 1, ts: 1_700_000_000_123_456_789n, data: frame.subarray(14) },
        { kind: 'pb', ifId: 0, ts: 1_700_000_000_123_457n, data: frame },
        { kind: 'raw', type: 5, body: Buffer.alloc(20) },
      ] }),
      buildPcapngSection({ le: false, interfaces: [{ linkType: 113, snaplen: 30 }], blocks: [
        { kind: 'spb', data: Buffer.concat([Buffer.alloc(14), Buffer.from([8, 0]), frame.subarray(14, 28)]), origLen: 44 },
        { kind: 'epb', ifId: 0, ts: 1_700_000_001_000_000n, data: Buffer.concat([Buffer.alloc(14), Buffer.from([8, 0]), frame.subarray(14, 28)]), origLen: 44 },
      ] }),
      buildPcapngSection({ le: true, interfaces: [{ linkType: 1, tsresol: 0x80 | 16 }], blocks: [{ kind: 'epb', ifId: 0, ts: (1_700_000_002n << 16n) | 0x8000n, data: frame }] }),
    ]));
    await compare(t, multi, 'three sections');
  });
});

t.test('resolutions finer than a nanosecond: exact, where tshark 4.0 overflows', async (t) => {
  await withTempDir(async (dir) => {
    const p = join(dir, 'ps.pcapng');
    const ts = 1_700_000_000_123_456_789_012n % (1n << 64n); // ps since 1970 wraps 64 bits; any count will do
    await writeFile(p, buildPcapngSection({ interfaces: [{ linkType: 1, tsresol: 12 }], blocks: [{ kind: 'epb', ifId: 0, ts, data: Buffer.alloc(60) }] }));
    const [ours] = await ourRecords(p);
    const want = `${ts / 10n ** 12n}.${String((ts % 10n ** 12n) / 1000n).padStart(9, '0')}`;
    t.equal(ours!.ts, want, 'floor(count / 10^12) s and floor(remainder / 1000) ns');
    const [theirs] = await tsharkFrames(p);
    t.comment(`tshark says ${theirs!.ts}, we say ${ours!.ts}: Wireshark 4.0 multiplies the remainder by 1e9 in 64 bits`);
  });
});

t.test('truncated real captures: the records tshark shows before "cut short" are the ones we deliver', { skip: real.skip }, async (t) => {
  await withTempDir(async (dir) => {
    const src = await readFile(join(REAL_DIR, 'plain-suricata-verify-mixed-lan-ftp-http.pcap'));
    const bounds = pcapBoundaries(src);
    const p = join(dir, 'cut.pcap');
    // Not within the first two records: Wireshark guesses among pcap variants (Nokia, the
    // modified 24-byte headers) by reading the first records, and a cut there can mislead it.
    for (const k of [3, 100, 700, bounds.length - 2]) {
      for (const delta of [1, 8, 16, 17, -1]) {
        const cut = bounds[k]! + delta;
        await writeFile(p, src.subarray(0, cut));
        const theirs = await tsharkFrames(p, true);
        const { recs: ours, err } = await readRecords(p);
        t.match(err, { code: delta === -1 ? 'ERR_MIRRORCAP_CAPTURE_TRUNCATED_RECORD' : /TRUNCATED_RECORD/, offset: delta === -1 ? bounds[k - 1] : bounds[k] });
        sameRecords(t, ours, theirs, `cut at record ${k} ${delta >= 0 ? '+' : ''}${delta}`);
      }
    }
  });
});
