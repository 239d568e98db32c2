/**
 * Flow records of real captures against tshark. Every capture of ../shared/pcaps/real and of the
 * project's pcaps/ goes through the flow table and the flow-log writer as the appliance's inner
 * frames would (VXLAN captures decapsulated first, the others taken as they are); the files are
 * read back with the test's reader of AWS's documentation. Independently, tshark reads the same
 * frames (one field per packet, no reassembly) and the test adds them up per direction-specific
 * 5-tuple and interval. Packets, bytes, start, end and tcp-flags must agree for every flow.
 *
 * Where tshark and we cannot agree by construction, the difference is excused by name (QUIRKS),
 * counted, and shown as a comment.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parseFlowFormat } from '../../src/flowformat.js';
import { FlowRenderer } from '../../src/session/flowrender.js';
import { SessionFlowLog, type FlowFile } from '../../src/capture/flowlog.js';
import { FILE_HEADER_LEN, LINKTYPE_ETHERNET, RECORD_HEADER_LEN, writeFileHeader, writeRecord } from '../../src/pcap/pcap.js';
import { readCapture } from '../../src/pcap/reader.js';
import { Decoder } from '../../src/decode/packet.js';
import { L4_UDP } from '../../src/decode/status.js';
import { VXLAN_HEADER_LEN, VXLAN_MIN_DATAGRAM, VXLAN_PORT, vxlanHasVni } from '../../src/decode/vxlan.js';
import { FlowBudget } from '../../src/session/flows.js';
import { readFlowLog } from '../lib/vpcflow.js';
import { addAt } from '../lib/flows.js';

t.setTimeout(180_000);

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const DIRS = [join(ROOT, '../shared/pcaps/real'), join(ROOT, 'pcaps')];
const INTERVAL = 10;
/** Seconds of time each capture is given (its own offsets kept within). */
const WINDOW = 10_000_000;
/** Longest gap kept between two seconds of a capture. */
const GAP = 1000;
const FORMAT = '${version} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} ${packets} ${bytes} ${start} ${end} ${tcp-flags} ${type} ${log-status}';

interface Agg {
  packets: number;
  bytes: number;
  start: number;
  end: number;
  flags: number;
}

/** Frames as the appliance would see them: the inner frames of VXLAN captures, else every frame. */
interface Frame {
  readonly data: Buffer;
  readonly orig: number;
  readonly sec: number;
  readonly nsec: number;
}

async function innerFrames(path: string): Promise<{ frames: Frame[]; vxlan: boolean; other: boolean }> {
  const all: Frame[] = [];
  const inner: typeof all = [];
  const d = new Decoder();
  let other = false;
  await readCapture(path, (buf, off, capLen, origLen, sec, nsec, linkType) => {
    if (linkType !== LINKTYPE_ETHERNET) {
      other = true;
      return;
    }
    all.push({ data: Buffer.from(buf.subarray(off, off + capLen)), orig: origLen, sec, nsec });
    d.decode(buf, off, capLen);
    if (d.l4 === L4_UDP && d.dstPort === VXLAN_PORT && d.payloadLen >= VXLAN_MIN_DATAGRAM && vxlanHasVni(buf, d.payloadOff)) {
      const o = d.payloadOff + VXLAN_HEADER_LEN;
      const len = d.payloadLen - VXLAN_HEADER_LEN;
      inner.push({ data: Buffer.from(buf.subarray(o, o + len)), orig: len + (origLen - capLen), sec, nsec });
    }
  });
  return inner.length > 0 ? { frames: inner, vxlan: true, other } : { frames: all, vxlan: false, other };
}

function writePcap(path: string, frames: Frame[]): void {
  const out = Buffer.alloc(FILE_HEADER_LEN + frames.reduce((n, f) => n + RECORD_HEADER_LEN + f.data.length, 0));
  let off = writeFileHeader(out, 0, 262144);
  for (const f of frames) off = writeRecord(out, off, f.data, 0, f.data.length, Math.max(f.orig, f.data.length), f.sec, f.nsec);
  writeFileSync(path, out);
}

/** The flows our table and writer produce, read back from the files. */
async function ours(frames: Frame[], root: string): Promise<{ flows: Map<string, Agg>; notIp: number; files: FlowFile[] }> {
  const files: FlowFile[] = [];
  const log = new SessionFlowLog({
    root,
    session: 'real',
    node: 'test',
    renderer: new FlowRenderer(parseFlowFormat(FORMAT)),
    intervalSec: INTERVAL,
    budget: new FlowBudget(),
    fileClosed: (f) => files.push(f),
  });
  const d = new Decoder();
  for (const f of frames) {
    d.decode(f.data, 0, f.data.length);
    addAt(log.table, d, f.sec);
  }
  await log.close(Number.MAX_SAFE_INTEGER);
  if (log.writeErrors > 0) throw new Error(`${log.writeErrors} flow files not written`);
  const flows = new Map<string, Agg>();
  for (const file of files) {
    for (const r of readFlowLog(file.path).records) {
      if (r['log-status'] !== 'OK') continue;
      const start = Number(r.start);
      const key = [Math.floor(start / INTERVAL) * INTERVAL, r.srcaddr, r.dstaddr, r.srcport, r.dstport, r.protocol].join(' ');
      if (flows.has(key)) throw new Error(`two records for ${key}`);
      flows.set(key, { packets: Number(r.packets), bytes: Number(r.bytes), start, end: Number(r.end), flags: Number(r['tcp-flags']) });
    }
  }
  return { flows, notIp: log.table.notIp, files };
}

const TSHARK_FIELDS = [
  'frame.time_epoch',
  'ip.src',
  'ip.dst',
  'ip.proto',
  'ip.len',
  'ipv6.src',
  'ipv6.dst',
  'ipv6.plen',
  'ipv6.opt.jumbo',
  'ipv6.nxt',
  'ipv6.hopopts.nxt',
  'ipv6.routing.nxt',
  'ipv6.dstopts.nxt',
  'ipv6.fraghdr.nxt',
  'ah.next_header',
  'tcp.srcport',
  'tcp.dstport',
  'tcp.flags',
  'udp.srcport',
  'udp.dstport',
  'sctp.srcport',
  'sctp.dstport',
  'dccp.srcport',
  'dccp.dstport',
  '_ws.malformed',
  'frame.protocols',
];

/** IPv6 extension headers (and AH): their "next header" is not the transport. */
const EXT = new Set([0, 43, 44, 51, 60, 135, 139, 140, 253, 254]);

interface TsharkPacket {
  readonly key: string | null;
  readonly epoch: number;
  readonly bytes: number;
  readonly flags: number;
  readonly malformed: boolean;
  readonly protocols: string;
  /** IPv6 payload length 0 and no hop-by-hop header (so no jumbo option). */
  readonly lengthZero: boolean;
  /** tshark could not read the destination address: the IP header is cut short. */
  readonly headerCut: boolean;
}

/** tshark's view, packet by packet; key is null for a frame without IPv4/IPv6. */
function tsharkPackets(pcap: string): TsharkPacket[] {
  const args = ['-r', pcap, '-n', '-o', 'ip.defragment:FALSE', '-o', 'ipv6.defragment:FALSE', '-T', 'fields', '-E', 'occurrence=a', '-E', 'aggregator=,', '-E', 'separator=/t'];
  for (const f of TSHARK_FIELDS) args.push('-e', f);
  const r = spawnSync('tshark', args, { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`tshark failed: ${r.stderr}`);
  return r.stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((line) => {
      const all = Object.fromEntries(line.split('\t').map((x, i) => [TSHARK_FIELDS[i]!, x === '' ? [] : x.split(',')]));
      // The first occurrence is the packet's own header; later ones are quoted (ICMP errors) or tunnelled.
      const v = Object.fromEntries(Object.entries(all).map(([k, x]) => [k, x[0] ?? '']));
      const epoch = Number(v['frame.time_epoch']);
      const malformed = v['_ws.malformed'] !== '';
      const protocols = v['frame.protocols']!;
      let src: string, dst: string, proto: number, bytes: number, type: string;
      if (v['ip.src'] !== '' && protocols.split(':').find((p) => p === 'ip' || p === 'ipv6') === 'ip') {
        src = v['ip.src']!;
        dst = v['ip.dst']!;
        proto = Number(v['ip.proto']);
        // AH authenticates and hides nothing: like the decoder (and RFC 4302), the flow is what it protects.
        if (proto === 51 && v['ah.next_header'] !== '') proto = Number(v['ah.next_header']);
        bytes = Number(v['ip.len']);
        type = 'IPv4';
      } else if (v['ipv6.src'] !== '') {
        src = v['ipv6.src']!;
        dst = v['ipv6.dst']!;
        // The transport follows the extension headers: the first next-header value that is not one.
        const chain = [v['ipv6.nxt']!, ...['ipv6.hopopts.nxt', 'ipv6.routing.nxt', 'ipv6.dstopts.nxt', 'ipv6.fraghdr.nxt', 'ah.next_header'].flatMap((f) => all[f]!)].filter((x) => x !== '').map(Number);
        proto = chain.find((n) => !EXT.has(n)) ?? chain[chain.length - 1]!;
        // A jumbogram (RFC 2675) has payload length 0 and its length in the jumbo payload option.
        bytes = 40 + (v['ipv6.plen'] === '0' && v['ipv6.opt.jumbo'] !== '' ? Number(v['ipv6.opt.jumbo']) : Number(v['ipv6.plen']));
        type = 'IPv6';
      } else {
        return { key: null, epoch, bytes: 0, flags: 0, malformed, protocols, lengthZero: false, headerCut: false };
      }
      const ports = (p: string): [string, string] => [v[`${p}.srcport`] || '0', v[`${p}.dstport`] || '0'];
      const [sport, dport] = proto === 6 ? ports('tcp') : proto === 17 ? ports('udp') : proto === 132 ? ports('sctp') : proto === 33 ? ports('dccp') : ['0', '0'];
      // AWS: FIN 1, SYN 2, RST 4, and SYN-ACK 18; ACK alone and the other flags are not reported.
      const raw = proto === 6 && v['tcp.flags'] !== '' ? Number(v['tcp.flags']) : 0;
      const flags = (raw & 7) | ((raw & 0x12) === 0x12 ? 16 : 0);
      const lengthZero = type === 'IPv6' && v['ipv6.plen'] === '0' && v['ipv6.opt.jumbo'] === '';
      return { key: `${src} ${dst} ${sport} ${dport} ${proto}|${type}`, epoch, bytes, flags, malformed, protocols, lengthZero, headerCut: dst === '' };
    });
}

function aggregate(packets: TsharkPacket[], keep: (i: number) => boolean): Map<string, Agg> {
  const flows = new Map<string, Agg>();
  packets.forEach((p, i) => {
    if (p.key === null || !keep(i)) return;
    const sec = Math.floor(p.epoch);
    const key = `${Math.floor(sec / INTERVAL) * INTERVAL} ${p.key.split('|')[0]}`;
    const a = flows.get(key);
    if (a === undefined) flows.set(key, { packets: 1, bytes: p.bytes, start: sec, end: sec, flags: p.flags });
    else {
      a.packets++;
      a.bytes += p.bytes;
      a.start = Math.min(a.start, sec);
      a.end = Math.max(a.end, sec);
      a.flags |= p.flags;
    }
  });
  return flows;
}

/**
 * Packets where tshark's view is not comparable with a flow record, each with the reason; they are
 * left out on both sides (the same frame index), counted and shown.
 */
const QUIRKS: ReadonlyArray<{ id: string; reason: string; applies: (p: TsharkPacket) => boolean }> = [
  {
    id: 'ipv6-length-zero',
    reason: 'IPv6 payload length 0 without a jumbo option (Linux BIG TCP): tshark stops at the IPv6 header; the decoder takes the bytes the frame holds and reads the transport',
    applies: (p) => p.lengthZero,
  },
  {
    id: 'ip-header-cut',
    reason: 'an IP header cut short or with an impossible length: tshark shows the fields it could read; for us it is not an IP packet (not a flow, counted in notIp)',
    applies: (p) => p.key !== null && p.headerCut,
  },
  {
    id: 'malformed-ip-layer',
    reason:
      'tshark flags an IP extension header or AH as malformed (Mobile IPv6 options in destination options, a header past the IP length): the decoder walks a header by its length, or reports the header it could not walk as the protocol',
    applies: (p) => p.malformed && /:(ip|ipv6|ipv6\.[a-z]+|ah)$/.test(p.protocols),
  },
  {
    id: 'ext-limit',
    reason: 'more than eight IPv6 extension headers: the decoder walks eight (its fixed cap) and reports the ninth as the protocol',
    applies: (p) => (p.protocols.match(/:ipv6\.[a-z]+(?=:|$)/g) ?? []).length > 8,
  },
  {
    id: 'vlan-limit',
    reason: 'more than three VLAN tags: the decoder walks three (its fixed cap), tshark all of them',
    applies: (p) => (p.protocols.match(/(^|:)(vlan|ieee8021ad)(?=:|$)/g) ?? []).length > 3,
  },
  {
    id: 'mpls',
    reason: 'IP inside an MPLS label stack: the decoder does not walk MPLS (mirrored ENI traffic carries none)',
    applies: (p) => /(^|:)mpls(:|$)/.test(p.protocols),
  },
];

t.test('flow records of real captures equal tshark, packet for packet', async (t) => {
  const paths = DIRS.filter((dir) => {
    if (!existsSync(dir)) t.comment(`skipped: ${dir} is absent`);
    return existsSync(dir);
  }).flatMap((dir) =>
    readdirSync(dir)
      .filter((f) => /\.pcap(ng)?$/.test(f))
      .sort()
      .map((f) => join(dir, f)),
  );
  t.ok(paths.length > 0, `${paths.length} captures`);
  const work = mkdtempSync(join(tmpdir(), 'mirrorcap-flows-real-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  // All captures in one file for one tshark run, each moved to a time window of its own
  // (same offsets within it), so flows of different captures never meet.
  const frames: Frame[] = [];
  const windows: Array<{ name: string; from: number; count: number }> = [];
  for (const [n, path] of paths.entries()) {
    const name = path.slice(path.lastIndexOf('/') + 1);
    const got = await innerFrames(path);
    if (got.frames.length === 0) continue;
    // Each capture in a window of its own; gaps of more than GAP seconds shortened to GAP, so
    // captures spanning years fit (both sides see the same, shifted times).
    const secs = [...new Set(got.frames.map((f) => f.sec))].sort((a, b) => a - b);
    const shifted = new Map<number, number>();
    let at = 1_500_000_000 + n * WINDOW;
    secs.forEach((sec, i) => {
      if (i > 0) at += Math.min(sec - secs[i - 1]!, GAP);
      shifted.set(sec, at);
    });
    t.ok(at < 1_500_000_000 + (n + 1) * WINDOW, `${name}: fits its window`);
    windows.push({ name: got.vxlan ? `${name} (inner frames)` : name, from: frames.length, count: got.frames.length });
    for (const f of got.frames) frames.push({ ...f, sec: shifted.get(f.sec)! });
  }
  const pcap = join(work, 'all.pcap');
  writePcap(pcap, frames);
  const packets = tsharkPackets(pcap);
  t.equal(packets.length, frames.length, 'tshark read every frame');
  const excused = new Map<string, number>();
  const skip = new Set<number>();
  packets.forEach((p, i) => {
    const q = QUIRKS.find((x) => x.applies(p));
    if (q === undefined) return;
    skip.add(i);
    excused.set(q.id, (excused.get(q.id) ?? 0) + 1);
  });
  const keep = (i: number): boolean => !skip.has(i);
  const got = await ours(frames.filter((_, i) => keep(i)), join(work, 'flows'));
  const want = aggregate(packets, keep);
  const byWindow = new Map<number, string[]>();
  for (const key of new Set([...got.flows.keys(), ...want.keys()])) {
    const o = got.flows.get(key);
    const th = want.get(key);
    if (o !== undefined && th !== undefined && o.packets === th.packets && o.bytes === th.bytes && o.start === th.start && o.end === th.end && o.flags === th.flags) continue;
    const w = Math.floor((Number(key.split(' ')[0]) - 1_500_000_000) / WINDOW);
    byWindow.set(w, [...(byWindow.get(w) ?? []), `${key}: ours ${JSON.stringify(o)}, tshark ${JSON.stringify(th)}`]);
  }
  for (const [n, path] of paths.entries()) {
    const w = windows.find((x) => x.name.startsWith(path.slice(path.lastIndexOf('/') + 1)));
    if (w === undefined) continue;
    const flows = [...want.keys()].filter((k) => Math.floor((Number(k.split(' ')[0]) - 1_500_000_000) / WINDOW) === n).length;
    const ipPackets = packets.slice(w.from, w.from + w.count).filter((p, k) => p.key !== null && keep(w.from + k)).length;
    t.same(byWindow.get(n) ?? [], [], `${w.name}: ${flows} flows, ${ipPackets} IP packets`);
  }
  const files = got.files.length;
  for (const [id, count] of excused) t.comment(`left out, ${id}: ${count} packets: ${QUIRKS.find((q) => q.id === id)!.reason}`);
  t.comment(`${windows.length} captures, ${frames.length} frames, ${got.flows.size} flow records in ${files} files, ${frames.length - skip.size - got.notIp} IP packets compared`);
  t.ok(got.flows.size > 500, 'a corpus worth the name');
  t.ok(skip.size < frames.length / 50, `few packets left out: ${skip.size}`);
});
