/**
 * The decoder at work in the appliance: true original lengths of AWS-truncated frames
 * (checked with tshark), per-protocol counts, decode errors and top talkers.
 */
import { mkdtemp, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { httpGet, metricValue, sendDatagrams, startAppliance, waitFor } from '../lib/appliance.js';
import { udpFrame, vxlan } from '../lib/frames.js';
import { tsharkFrames } from '../lib/tshark.js';
import { tool } from '../lib/tools.js';

t.test('truncated mirror frames keep their real length; padding is not truncation; protocols and talkers are counted', async (t) => {
  const out = await mkdtemp(join(tmpdir(), 'mirrorcap-decode-'));
  const app = await startAppliance(['--out', out]);
  t.teardown(() => app.proc.kill('SIGKILL'));

  const whole = udpFrame(1500, 7, 1); // IPv4 total length 1486
  const cut = whole.subarray(0, 128); // as AWS PacketLength 128 sends it
  const cutHeader = whole.subarray(0, 40); // PacketLength 40: inside the UDP header
  const padded = udpFrame(60, 7, 2);
  padded.writeUInt16BE(28 + 4, 16); // IP says 32 bytes: the rest of the 60 is Ethernet padding
  padded.writeUInt16BE(12, 38);
  const broken = udpFrame(100, 7, 3);
  broken[14] = 0x43; // IHL 3 (< 5): an IPv4 header error
  const arp = Buffer.alloc(60);
  arp.writeUInt16BE(0x0806, 12);
  await sendDatagrams(app.udpPort, [whole, cut, padded, broken, arp, cutHeader].map((f) => vxlan(7, f)));
  await waitFor(async () => metricValue((await httpGet(app.httpPort, '/metrics')).body, 'mirrorcap_packets_total', { session: 'vni-7' }) === 6, 5000, 'counted');

  const m = (await httpGet(app.httpPort, '/metrics')).body;
  const s = { session: 'vni-7', vni: '7' };
  t.equal(metricValue(m, 'mirrorcap_truncated_packets_total', s), 2, 'two truncated frames');
  t.equal(metricValue(m, 'mirrorcap_inner_packets_total', { ...s, l3: 'ipv4', l4: 'udp' }), 3);
  t.equal(metricValue(m, 'mirrorcap_inner_packets_total', { ...s, l3: 'arp', l4: 'none' }), 1);
  t.equal(metricValue(m, 'mirrorcap_inner_packets_total', { ...s, l3: 'other', l4: 'none' }), 1, 'the broken IPv4 header counts as other');
  t.equal(metricValue(m, 'mirrorcap_inner_packets_total', { ...s, l3: 'ipv4', l4: 'other' }), 1, 'the cut UDP header counts as other');
  t.equal(metricValue(m, 'mirrorcap_decode_errors_total', { ...s, layer: 'ipv4' }), 1);
  t.equal(metricValue(m, 'mirrorcap_decode_errors_total', { ...s, layer: 'udp' }), 1);
  t.equal(metricValue(m, 'mirrorcap_bytes_total', s), 1500 + 1500 + 60 + 100 + 60 + 1500, 'bytes count the real lengths');

  const api = JSON.parse((await httpGet(app.httpPort, '/api/sessions')).body) as Array<Record<string, unknown>>;
  const session = api.find((x) => x.name === 'vni-7')!;
  t.same(session.protocols, { ipv4: { udp: 3, other: 1 }, arp: { none: 1 }, other: { none: 1 } });
  t.same(session.decodeErrors, { ipv4: 1, udp: 1 });
  t.equal(session.truncatedPackets, 2);
  const talkers = session.topTalkers as Array<{ address: string; bytes: number }>;
  t.same(talkers.map((x) => x.address).sort(), ['10.0.0.7', '10.1.0.1'], 'both ends of the inner flow');
  t.equal(talkers[0]!.bytes, 1500 + 1500 + 60 + 1500, 'bytes by real length, both directions counted');

  t.equal(await app.stop(), 0);
  const [file] = await readdir(join(out, 'vni-7'));
  const path = join(out, 'vni-7', file!);
  const frames = await tsharkFrames(path);
  t.same(frames.map((f) => [f.capLen, f.origLen]), [[1500, 1500], [128, 1500], [60, 60], [100, 100], [60, 60], [40, 1500]], 'tshark: cap_len / len');
  const verbose = (n: number): Promise<string> => tool('tshark', ['-r', path, '-V', '-Y', `frame.number == ${n}`]);
  t.match(await verbose(2), /Frame 2: 1500 bytes on wire \(12000 bits\), 128 bytes captured/, 'Wireshark shows the real size of a cut frame');
  t.match(await verbose(6), /\[Packet size limited during capture: UDP truncated\]/, 'and says the packet was cut where a header is missing');
  const third = await verbose(3);
  t.match(third, /Frame 3: 60 bytes on wire \(480 bits\), 60 bytes captured/, 'a padded frame is whole');
  t.notMatch(third, /Packet size limited/);
});
