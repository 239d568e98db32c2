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
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { EMPTY_FLOW_INFO, parseFlowFormat } from '../../src/flowformat.js';
import { SessionFlowLog, type FlowFile } from '../../src/capture/flowlog.js';
import { FILE_HEADER_LEN, LINKTYPE_ETHERNET, RECORD_HEADER_LEN, writeFileHeader, writeRecord } from '../../src/pcap/pcap.js';
import { readCapture } from '../../src/pcap/reader.js';
import { Decoder } from '../../src/decode/packet.js';
import { L4_UDP } from '../../src/decode/status.js';
import { VXLAN_HEADER_LEN, VXLAN_MIN_DATAGRAM, VXLAN_PORT, vxlanHasVni } from '../../src/decode/vxlan.js';
import { FlowBudget } from '../../src/session/flows.js';
import { readFlowLog } from '../lib/vpcflow.js';
import { addAt } from '../lib/flows.js';
import { aggregate, QUIRKS, tsharkPackets, type Agg } from '../lib/flowtshark.js';

t.setTimeout(180_000);

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const DIRS = [join(ROOT, '../shared/pcaps/real'), join(ROOT, 'pcaps')];
const INTERVAL = 10;
/** Seconds of time each capture is given (its own offsets kept within). */
const WINDOW = 10_000_000;
/** Longest gap kept between two seconds of a capture. */
const GAP = 1000;
const FORMAT = '${version} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} ${packets} ${bytes} ${start} ${end} ${tcp-flags} ${type} ${log-status}';


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
    format: parseFlowFormat(FORMAT),
    settings: { flows: true, flowFields: EMPTY_FLOW_INFO },
    intervalSec: INTERVAL,
    budget: new FlowBudget(),
    fileClosed: (f) => files.push(f),
  });
  const d = new Decoder();
  for (const f of frames) {
    d.decode(f.data, 0, f.data.length);
    addAt(log.table, d, f.sec);
  }
  await log.close(Infinity); // as decap closes: the packets' own time is the clock
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
  const want = aggregate(packets, INTERVAL, keep);
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
