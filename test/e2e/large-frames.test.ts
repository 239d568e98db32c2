/**
 * Inner frames larger than a 9001-MTU mirror sends (another tap, loopback, jumbo offload):
 * every source writes them whole up to --snaplen, with the same records, checked with
 * tshark. The native source sizes its receive slots from the largest snaplen; a snaplen
 * raised past them by a reload cuts frames at the slot, counted apart from AWS truncation.
 */
import { createSocket } from 'node:dgram';
import { mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { loadCap } from '../../src/source/libpcap.js';
import { loadNative } from '../../src/native/addon.js';
import { httpGet, metricValue, sendDatagrams, startAppliance, waitFor, type Appliance } from '../lib/appliance.js';
import { udpFrame, vxlan } from '../lib/frames.js';
import { capinfos, tsharkFrames, type Frame } from '../lib/tshark.js';

const SIZES = [65000, 20000, 9300, 9200];
const VNI = 9;
const frames = SIZES.map((size, i) => udpFrame(size, VNI, i));
const session = { session: `vni-${VNI}`, vni: String(VNI) };

const metrics = async (app: Appliance): Promise<string> => (await httpGet(app.httpPort, '/metrics')).body;

async function sessionFrames(dir: string): Promise<Frame[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.pcap')).sort();
  return (await Promise.all(files.map((f) => tsharkFrames(join(dir, f))))).flat();
}

t.test('65000, 20000, 9300 and 9200-byte inner frames with --snaplen 262144: the same records from every source', async (t) => {
  const out = await mkdtemp(join(tmpdir(), 'mirrorcap-large-'));
  const sources = ['dgram'];
  if (loadNative().ok) sources.push('native');
  else t.comment('native source not tested: the addon is not built');
  const pcap = process.getuid?.() === 0 && loadCap().ok;
  if (pcap) sources.push('pcap:lo');
  else t.comment('interface source not tested: needs root and the cap module');
  const written = new Map<string, Frame[]>();
  for (const source of sources) {
    const args = ['--source', source, '--snaplen', '262144', '--out', join(out, source.replace(':', '-'))];
    // The interface source owns no socket: an unread one holds the port so the kernel does not refuse.
    const holder = source.startsWith('pcap:') ? createSocket('udp4') : null;
    if (holder !== null) {
      await new Promise<void>((r) => holder.bind(0, '127.0.0.1', () => r()));
      args.push('--listen', `127.0.0.1:${(holder.address() as { port: number }).port}`);
    }
    const app = await startAppliance(args);
    t.teardown(() => app.proc.kill('SIGKILL'));
    try {
      await sendDatagrams(holder === null ? app.udpPort : (holder.address() as { port: number }).port, frames.map((f) => vxlan(VNI, f)));
      await waitFor(async () => metricValue(await metrics(app), 'mirrorcap_packets_total', session) === SIZES.length, 5000, `${source}: counted`);
      const m = await metrics(app);
      t.equal(metricValue(m, 'mirrorcap_truncated_packets_total', session), 0, `${source}: no AWS truncation counted`);
      t.equal(metricValue(m, 'mirrorcap_receive_truncated_packets_total', session), 0, `${source}: nothing cut by the receiver`);
      // Native writes these frames from its receive ring (zero-copy); the ring never ran out here.
      if (source === 'native') t.equal(metricValue(m, 'mirrorcap_receive_ring_waits_total'), 0, 'native: the receive ring never ran out');
      t.equal(await app.stop(), 0);
    } finally {
      holder?.close();
    }
    const dir = join(out, source.replace(':', '-'), `vni-${VNI}`);
    const got = await sessionFrames(dir);
    t.same(got.map((f) => [f.origLen, f.capLen]), SIZES.map((s) => [s, s]), `${source}: tshark reads every frame whole`);
    t.ok(got.length === frames.length && got.every((f, i) => f.data.equals(frames[i]!)), `${source}: byte for byte`);
    for (const f of (await readdir(dir)).filter((x) => x.endsWith('.pcap'))) t.equal((await capinfos(join(dir, f))).snaplen, 262144, `${source}: the file says snaplen 262144`);
    written.set(source, got);
  }
  const [first, ...others] = [...written.entries()];
  for (const [source, got] of others) {
    t.same(got.map((f) => [f.origLen, f.capLen, f.data.toString('hex')]), first![1].map((f) => [f.origLen, f.capLen, f.data.toString('hex')]), `${source} wrote the records ${first![0]} wrote`);
  }
});

t.test('native: a snaplen reloaded past the receive slots cuts at the slot, counted as receive truncation, never as AWS truncation', { skip: loadNative().ok ? false : 'the native addon is not built' }, async (t) => {
  const out = await mkdtemp(join(tmpdir(), 'mirrorcap-large-'));
  const config = join(out, 'mirrorcap.yaml');
  await writeFile(config, 'snaplen: 1000\n');
  const app = await startAppliance(['--source', 'native', '--config', config, '--out', join(out, 'files')]);
  t.teardown(() => app.proc.kill('SIGKILL'));
  const send = async (want: number): Promise<string> => {
    await sendDatagrams(app.udpPort, frames.map((f) => vxlan(VNI, f)));
    await waitFor(async () => metricValue(await metrics(app), 'mirrorcap_packets_total', session) === want, 5000, 'counted');
    return metrics(app);
  };
  // Slots for snaplen 1000 hold 2048 bytes: frames are cut there, but the file keeps 1000 anyway.
  let m = await send(SIZES.length);
  t.equal(metricValue(m, 'mirrorcap_receive_truncated_packets_total', session), 0, 'a cut beyond the snaplen loses nothing: not counted');
  await writeFile(config, 'snaplen: 262144\n');
  app.proc.kill('SIGHUP');
  await waitFor(() => app.logs.some((l) => l.event === 'reload'), 5000, 'reloaded');
  const warning = app.logs.find((l) => l.event === 'snaplen_above_receive_slot');
  t.match(warning, { level: 'warn', snaplen: 262144, slotBytes: 2048, maxFrame: 2040 }, 'the reload says frames will be cut until a restart');
  m = await send(2 * SIZES.length);
  t.equal(metricValue(m, 'mirrorcap_receive_truncated_packets_total', session), SIZES.length, 'every frame longer than the slot is counted');
  t.equal(metricValue(m, 'mirrorcap_truncated_packets_total', session), 0, 'and none as AWS truncation');
  t.equal(metricValue(m, 'mirrorcap_bytes_total', session), 2 * SIZES.reduce((a, b) => a + b, 0), 'bytes count the real lengths');
  t.equal(await app.stop(), 0);
  const got = await sessionFrames(join(out, 'files', `vni-${VNI}`));
  t.same(got.map((f) => [f.origLen, f.capLen]), [...SIZES.map((s) => [s, 1000]), ...SIZES.map((s) => [s, 2040])], 'tshark: the real length on the wire, what the slot held captured');
  t.ok(got.slice(4).every((f, i) => f.data.equals(frames[i]!.subarray(0, 2040))), 'the kept bytes are the frame\'s first');
});
