import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, openSync, closeSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { FILE_HEADER_LEN, RECORD_HEADER_LEN, writeFileHeader, writeRecord } from '../../src/pcap/pcap.js';
import { loadNative } from '../../src/native/addon.js';
import { NativeSource } from '../../src/source/native.js';
import { generate, parseGeneratorArgs, parseTarget } from './generator.js';
import { IMIX, VXLAN_HEADER_LEN, frameSizes, setSeq, writeDatagram } from './seqframe.js';
import { checkSequences, SeqFinder } from './seqcheck.js';
import { capinfos, tsharkFrames } from '../lib/tshark.js';
import { haveTool, tool } from '../lib/tools.js';

const dir = mkdtempSync(join(tmpdir(), 'mirrorcap-seq-'));

/** A datagram for (vni, seq) in a fresh buffer. */
function datagram(vni: number, seq: number, frameLen = 64): Buffer {
  const b = Buffer.alloc(VXLAN_HEADER_LEN + frameLen);
  writeDatagram(b, 0, vni, frameLen);
  setSeq(b, 0, seq);
  return b;
}

/** A ns pcap of inner frames, as the appliance writes them. */
function innerPcap(name: string, frames: Buffer[]): string {
  const out = Buffer.alloc(FILE_HEADER_LEN + frames.reduce((a, f) => a + RECORD_HEADER_LEN + f.length, 0));
  let off = writeFileHeader(out, 0, 65535);
  frames.forEach((f, i) => (off = writeRecord(out, off, f, 0, f.length, f.length, 1_700_000_000, i)));
  const file = join(dir, name);
  writeFileSync(file, out);
  return file;
}

const inner = (d: Buffer) => d.subarray(VXLAN_HEADER_LEN);

t.test('frames: what tshark sees in a generated frame', async (t) => {
  const file = innerPcap('one.pcap', [inner(datagram(7, 0x1_0000_0002, 64))]);
  const fields = (
    await tool('tshark', ['-r', file, '-T', 'fields', '-e', 'frame.len', '-e', 'ip.src', '-e', 'ip.dst', '-e', 'ip.checksum.status', '-e', 'udp.srcport', '-e', 'udp.dstport', '-e', 'udp.length', '-e', 'data.data', '-o', 'ip.check_checksum:TRUE'])
  ).trim();
  t.equal(fields, '64\t198.18.0.1\t198.18.0.2\t1\t10007\t5001\t30\t4d435351000000070000000100000002000000000000', 'len, addresses, good checksum, ports, payload');
  t.same(frameSizes('imix'), IMIX);
  t.equal(IMIX.filter((s) => s === 64).length, 7);
  t.equal(IMIX.filter((s) => s === 576).length, 4);
  t.equal(IMIX.filter((s) => s === 1500).length, 1);
  t.throws(() => frameSizes('40'), RangeError);
});

t.test('counts received, lost, duplicated and reordered per VNI across files', async (t) => {
  const a = innerPcap('a.pcap', [0, 1, 2, 4].map((s) => inner(datagram(1, s))).concat([inner(datagram(2, 0))]));
  const b = innerPcap('b.pcap', [3, 3, 6].map((s) => inner(datagram(1, s))).concat([inner(datagram(2, 1, 1500))]));
  const r = await checkSequences([a, b], { '1': 8, '2': 2, '3': 5 });
  t.same(r.perVni, [
    { vni: 1, received: 7, unique: 6, duplicated: 1, reordered: 1, lost: 2, highest: 6 },
    { vni: 2, received: 2, unique: 2, duplicated: 0, reordered: 0, lost: 0, highest: 1 },
    { vni: 3, received: 0, unique: 0, duplicated: 0, reordered: 0, lost: 5, highest: -1 },
  ]);
  t.equal(r.records, 9);
  t.equal(r.records, (await capinfos(a)).packets + (await capinfos(b)).packets, 'capinfos agrees on the record count');
  t.same([r.received, r.lost, r.duplicated, r.reordered, r.foreign], [9, 7, 1, 1, 0]);
  const noSent = await checkSequences([a, b]);
  t.equal(noSent.perVni[0]!.lost, 1, 'without the sent counts, highest + 1 is expected');
});

t.test('reads outer captures too: Ethernet/IPv4 and IPv6/UDP/VXLAN, cut records, foreign frames', async (t) => {
  const outer = (d: Buffer, v6: boolean) => {
    const ipLen = v6 ? 40 : 20;
    const f = Buffer.alloc(14 + ipLen + 8 + d.length);
    f.writeUInt16BE(v6 ? 0x86dd : 0x0800, 12);
    if (v6) {
      f[14] = 0x60;
      f[14 + 6] = 17;
    } else {
      f[14] = 0x45;
      f[14 + 9] = 17;
    }
    f.writeUInt16BE(4789, 14 + ipLen + 2);
    d.copy(f, 14 + ipLen + 8);
    return f;
  };
  const frames = [outer(datagram(5, 0), false), outer(datagram(5, 1), true), Buffer.alloc(60), inner(datagram(5, 2))];
  const file = innerPcap('outer.pcap', frames);
  const r = await checkSequences([file]);
  t.same([r.records, r.foreign, r.perVni[0]?.unique, r.perVni[0]?.lost], [4, 1, 3, 0]);
  const finder = new SeqFinder();
  for (const [i, f] of frames.entries()) t.equal(finder.find(f, 0, f.length, 1) >= 0, i !== 2, `frame ${i}`);
  t.equal(finder.find(frames[0]!, 0, 40, 1), -1, 'a cut frame is not read past its end');

  // A .part file cut inside its last record: the whole records still count.
  const whole = innerPcap('whole.pcap', [0, 1, 2].map((s) => inner(datagram(9, s))));
  const cut = join(dir, 'cut.pcap.part');
  const fd = openSync(cut, 'w');
  const bytes = readFileSync(whole);
  writeSync(fd, bytes, 0, bytes.length - 10);
  closeSync(fd);
  const partial = await checkSequences([cut]);
  t.equal(partial.records, 2, 'the two whole records count');
  t.same(partial.perVni.map((r) => [r.vni, r.unique]), [[9, 2]]);
});

t.test('generator arguments', async (t) => {
  t.same(parseTarget('[::1]:4789'), { host: '::1', port: 4789 });
  t.same(parseTarget('localhost:9'), { host: 'localhost', port: 9 });
  t.throws(() => parseTarget('127.0.0.1'), RangeError);
  const o = parseGeneratorArgs(['--target', '127.0.0.1:4789', '--vnis', '3', '--size', 'imix', '--rate', '1000', '--duration', '2', '--count', '50']);
  t.match(o, { host: '127.0.0.1', port: 4789, vnis: 3, size: 'imix', rate: 1000, durationSec: 2, count: 50, sender: 'auto' });
  t.throws(() => parseGeneratorArgs(['--target', '127.0.0.1:1', '--rate', '5', '--flat-out']), /exactly one/);
  t.throws(() => parseGeneratorArgs(['--target', '127.0.0.1:1']), /exactly one/);
  t.throws(() => parseGeneratorArgs(['--target', '127.0.0.1:1', '--flat-out', '--count', '0']), /count/);
  await t.rejects(generate({ host: '127.0.0.1', port: 1, vnis: 0, size: '64', durationSec: 1 }), RangeError);
});

const load = loadNative();

/** Receives on a NativeSource and writes one inner-frame pcap per VNI, as the appliance would. */
async function capture(run: (port: number) => Promise<{ sentPerVni: Record<string, number> }>) {
  const src = new NativeSource({ host: '127.0.0.1', port: 0, recvBufferBytes: 16 << 20 });
  const files = new Map<number, { fd: number; buf: Buffer }>();
  await src.start((b) => {
    for (let i = 0; i < b.count; i++) {
      const o = b.offsets[i]!;
      const vni = b.slab.readUIntBE(o + 4, 3);
      let f = files.get(vni);
      if (f === undefined) {
        f = { fd: openSync(join(dir, `vni-${vni}.pcap`), 'w'), buf: Buffer.alloc(RECORD_HEADER_LEN + 65536) };
        writeSync(f.fd, f.buf, 0, writeFileHeader(f.buf, 0, 65535));
        files.set(vni, f);
      }
      const len = b.lengths[i]! - VXLAN_HEADER_LEN;
      const end = writeRecord(f.buf, 0, b.slab, o + VXLAN_HEADER_LEN, len, b.wireLengths[i]! - VXLAN_HEADER_LEN, b.tsSec[i]!, b.tsNsec[i]!);
      writeSync(f.fd, f.buf, 0, end);
    }
  });
  const summary = await run(src.address()!.port);
  await sleep(100);
  await src.stop();
  for (const f of files.values()) closeSync(f.fd);
  return { summary, files: [...files.keys()].sort().map((v) => join(dir, `vni-${v}.pcap`)), source: src };
}

t.test('generator -> NativeSource -> pcap per VNI: nothing lost at a modest rate', { skip: !load.ok && load.reason }, async (t) => {
  const { summary, files, source } = await capture((port) =>
    generate({ host: '127.0.0.1', port, vnis: 3, vniBase: 100, size: 'imix', rate: 20000, durationSec: 5, count: 3600, sender: 'sendmmsg' }),
  );
  t.same(summary.sentPerVni, { '100': 1200, '101': 1200, '102': 1200 });
  const r = await checkSequences(files, summary.sentPerVni);
  t.same([r.received, r.lost, r.duplicated, r.reordered], [3600, 0, 0, 0], JSON.stringify(r.perVni));
  let records = 0;
  for (const f of files) records += (await capinfos(f)).packets;
  t.equal(records, 3600, 'capinfos counts every record');
  t.equal(source.stats.kernelDrops, 0);
  const frameLens = (await tsharkFrames(files[0]!)).map((f) => f.origLen);
  t.same(frameLens.slice(0, 12), IMIX, 'each VNI gets the whole IMIX cycle, in order');
});

t.test('the CLI, with the dgram fallback sender, prints a JSON summary', async (t) => {
  const generator = fileURLToPath(new URL('./generator.js', import.meta.url));
  const { summary, files } = await capture(async (port) => {
    const run = spawnSync(process.execPath, [generator, '--target', `127.0.0.1:${port}`, '--vnis', '2', '--size', '512', '--rate', '5000', '--count', '400', '--sender', 'dgram'], { encoding: 'utf8' });
    t.equal(run.status, 0, run.stderr);
    return JSON.parse(run.stdout) as { sentPerVni: Record<string, number>; method: string; sent: number };
  });
  t.match(summary, { method: 'dgram', sent: 400, sentPerVni: { '1': 200, '2': 200 }, mode: 'rate' });
  const r = await checkSequences(files, summary.sentPerVni);
  t.same([r.received, r.lost, r.duplicated], [400, 0, 0]);
  const bad = spawnSync(process.execPath, [generator, '--target', 'nowhere', '--flat-out'], { encoding: 'utf8' });
  t.equal(bad.status, 2);
  t.match(bad.stderr, /^generator: --target must be host:port/);
});

t.test('a tcpdump -i lo capture of the outer traffic checks the same way', async (t) => {
  if (!haveTool('tcpdump')) return t.plan(0, 'tcpdump is not installed');
  const file = join(dir, 'lo.pcap');
  const port = 40000 + (process.pid % 20000);
  const dump = spawn('tcpdump', ['-i', 'lo', '-n', '-U', '-w', file, `udp dst port ${port}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  const listening = await new Promise<boolean>((resolve) => {
    dump.stderr.on('data', (d: Buffer) => /listening on/.test(d.toString()) && resolve(true));
    dump.on('exit', () => resolve(false));
  });
  if (!listening) { dump.kill(); return t.plan(0, 'tcpdump cannot capture on lo here'); }
  const summary = await generate({ host: '127.0.0.1', port, vnis: 2, size: '64', rate: 10000, durationSec: 5, count: 500 });
  // TPACKET_V3 hands a block to tcpdump when it fills or after its 1 s timeout; SIGINT
  // before then loses the block (and --immediate-mode drops packets here).
  await sleep(1500);
  dump.kill('SIGINT');
  await new Promise((r) => dump.on('exit', r));
  const r = await checkSequences([file], summary.sentPerVni);
  t.same([r.records, r.received, r.lost, r.foreign], [500, 500, 0, 0]);
  t.equal((await capinfos(file)).packets, 500);
});
