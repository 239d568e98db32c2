/**
 * The appliance end to end, as a user runs it: the built CLI on loopback, VXLAN for
 * several VNIs with inner frames from 60 to 9001 bytes, SIGTERM, then the files read by
 * tshark and capinfos (not by our code) and compared byte for byte with what was sent.
 */
import { spawnSync } from 'node:child_process';
import { cp, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { httpGet, metricValue, sendDatagrams, startAppliance, waitFor } from '../lib/appliance.js';
import { udpFrame, vxlan } from '../lib/frames.js';
import { capinfos, tsharkFrames, type Frame } from '../lib/tshark.js';

const SIZES = [60, 61, 64, 100, 512, 1400, 1514, 3000, 8000, 9000, 9001];
const VNIS = [100, 200, 0xffffff];
const PER_VNI = 44;

for (const source of ['native', 'dgram']) t.test(`VXLAN in, one folder of valid pcap files per session out (--source ${source})`, async (t) => {
  const out = await mkdtemp(join(tmpdir(), 'mirrorcap-e2e-'));
  const configFile = join(out, 'mirrorcap.yaml');
  await writeFile(configFile, 'sessions:\n  - { vni: 100, name: web-prod }\n');
  const app = await startAppliance(['--out', join(out, 'captures'), '--config', configFile, '--rotate-packets', '20', '--source', source]);
  t.teardown(() => app.proc.kill('SIGKILL'));
  t.equal(app.logs.find((l) => l.event === 'start')?.source, source, `receiving with ${source}`);

  const sent = new Map<number, Buffer[]>(VNIS.map((v) => [v, []]));
  const datagrams: Buffer[] = [];
  for (let i = 0; i < PER_VNI; i++) {
    for (const vni of VNIS) {
      const frame = udpFrame(SIZES[(i + vni) % SIZES.length]!, vni, i);
      sent.get(vni)!.push(frame);
      datagrams.push(vxlan(vni, frame));
    }
  }
  const before = Date.now();
  await sendDatagrams(app.udpPort, datagrams);
  const total = datagrams.length;

  await waitFor(async () => {
    const m = (await httpGet(app.httpPort, '/metrics')).body;
    return metricValue(m, 'mirrorcap_datagrams_total') === total;
  }, 5000, 'all datagrams counted');

  const ready = await httpGet(app.httpPort, '/readyz');
  t.equal(ready.status, 200, '/readyz answers 200 while listening');
  t.equal((await httpGet(app.httpPort, '/healthz')).status, 200, '/healthz answers 200');
  t.equal((await httpGet(app.httpPort, '/nope')).status, 404, 'unknown paths are 404');

  const names = new Map([[100, 'web-prod'], [200, 'vni-200'], [0xffffff, 'vni-16777215']]);
  const metrics = (await httpGet(app.httpPort, '/metrics')).body;
  const sessions = JSON.parse((await httpGet(app.httpPort, '/api/sessions')).body) as Array<{ name: string; vni: number; packets: number; bytes: number }>;
  t.equal(metricValue(metrics, 'mirrorcap_sessions'), 3, 'three sessions');
  for (const [vni, frames] of sent) {
    const labels = { session: names.get(vni)!, vni: String(vni) };
    const bytes = frames.reduce((n, f) => n + f.length, 0);
    t.equal(metricValue(metrics, 'mirrorcap_packets_total', labels), frames.length, `packets_total for ${labels.session}`);
    t.equal(metricValue(metrics, 'mirrorcap_bytes_total', labels), bytes, `bytes_total for ${labels.session}`);
    const api = sessions.find((s) => s.name === labels.session);
    t.same(api && { vni: api.vni, packets: api.packets, bytes: api.bytes }, { vni, packets: frames.length, bytes }, `/api/sessions agrees for ${labels.session}`);
  }
  t.equal(metricValue(metrics, 'mirrorcap_dropped_packets_total', { reason: 'bad_vxlan' }), 0, 'nothing dropped');
  type Finished = Array<{ session: string; path: string; packets: number; bytes: number; first: string; last: string }>;
  // Counted is not yet rotated: the writers close the full files on their own turn.
  const files = async (): Promise<Finished> => JSON.parse((await httpGet(app.httpPort, '/api/files')).body) as Finished;
  await waitFor(async () => (await files()).length >= 2 * VNIS.length, 5000, 'the full files closed').catch(() => undefined);
  const finished = await files();
  t.equal(finished.length, 2 * VNIS.length, '/api/files: two finished files per session (20 + 20 of 44 packets)');
  for (const f of finished) {
    t.equal(f.packets, 20, `${f.path}: 20 packets`);
    t.equal((await capinfos(f.path)).packets, 20, `${f.path}: capinfos agrees`);
    t.match(f.first, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/, 'first timestamp in ISO form with nanoseconds');
  }

  t.equal(await app.stop('SIGTERM'), 0, 'SIGTERM exits 0');
  const after = Date.now();
  t.ok(app.logs.some((l) => l.event === 'shutdown'), 'a shutdown summary is logged');

  for (const [vni, frames] of sent) {
    const session = names.get(vni)!;
    const dir = join(out, 'captures', session);
    const files = (await readdir(dir)).filter((f) => !/\.idx(\.tmp)?$/.test(f)).sort(); // not the index sidecars
    t.ok(files.length >= 1 && files.every((f) => /^[\w.-]+-\d{8}T\d{6}Z-\d{6}\.pcap$/.test(f) && f.startsWith(`${session}-`)), `${session}: only finished, well-named files (${files.join(', ')})`);
    const got: Frame[] = [];
    for (const f of files) {
      const info = await capinfos(join(dir, f));
      t.equal(info.encapsulation, 'ether', `${f}: Ethernet`);
      t.equal(info.fileType, 'nsecpcap', `${f}: classic pcap, nanosecond timestamps`);
      t.equal(info.snaplen, 65535, `${f}: snaplen in the header`);
      got.push(...(await tsharkFrames(join(dir, f))));
    }
    t.equal(files.length, 3, `${session}: 44 packets rotated at 20 make 3 files`);
    t.equal(got.length, frames.length, `${session}: tshark reads every packet sent`);
    t.ok(got.some((g) => Number(g.ts.split('.')[1]) % 1_000_000 !== 0), `${session}: timestamps finer than milliseconds`);
    let bad = 0;
    let prev = '0';
    for (let i = 0; i < frames.length; i++) {
      const g = got[i];
      if (!g || !g.data.equals(frames[i]!) || g.origLen !== frames[i]!.length || g.capLen !== g.origLen) bad++;
      if (g && Number(g.ts) < Number(prev)) bad++;
      if (g && (Number(g.ts) * 1000 < before - 1000 || Number(g.ts) * 1000 > after + 1000)) bad++;
      if (g) prev = g.ts;
    }
    t.equal(bad, 0, `${session}: every frame byte-identical, in order, timestamps in range and non-decreasing`);
  }
});

t.test('/readyz answers 503 with the reason when the output folder cannot be written', async (t) => {
  const out = await mkdtemp(join(tmpdir(), 'mirrorcap-ready-'));
  const captures = join(out, 'captures');
  const app = await startAppliance(['--out', captures]);
  t.teardown(() => app.proc.kill('SIGKILL'));
  t.equal((await httpGet(app.httpPort, '/readyz')).status, 200);
  t.equal(metricValue((await httpGet(app.httpPort, '/metrics')).body, 'mirrorcap_ready'), 1, 'mirrorcap_ready 1 while ready');
  await rm(captures, { recursive: true });
  const r = await httpGet(app.httpPort, '/readyz');
  t.equal(r.status, 503);
  t.match(JSON.parse(r.body), { ready: false, reasons: [/output folder .* not writable: ENOENT/] });
  t.equal(metricValue((await httpGet(app.httpPort, '/metrics')).body, 'mirrorcap_ready'), 0, 'mirrorcap_ready 0 when /readyz says 503');
  t.equal((await httpGet(app.httpPort, '/healthz')).status, 200, 'still alive');
  t.equal(await app.stop(), 0);
});

t.test('without the native addon: auto falls back to dgram with one warning; --source native exits 2', async (t) => {
  // A copy of the built package with no native/build, as after an install where the addon failed to compile.
  const pkg = await mkdtemp(join(tmpdir(), 'mirrorcap-noaddon-'));
  const root = fileURLToPath(new URL('../../../', import.meta.url));
  await cp(join(root, 'dist'), join(pkg, 'dist'), { recursive: true });
  await cp(join(root, 'package.json'), join(pkg, 'package.json'));
  await symlink(join(root, 'node_modules'), join(pkg, 'node_modules'));
  const main = join(pkg, 'dist', 'src', 'main.js');
  const out = join(pkg, 'captures');
  const app = await startAppliance(['--out', out], {}, 10_000, main);
  t.teardown(() => app.proc.kill('SIGKILL'));
  const warnings = app.logs.filter((l) => l.event === 'native_unavailable');
  t.equal(warnings.length, 1, 'one warning line');
  t.match(warnings[0]?.msg, /native addon not built.*receiving with node:dgram/);
  t.equal(app.logs.find((l) => l.event === 'start')?.source, 'dgram');
  await sendDatagrams(app.udpPort, [vxlan(1, udpFrame(60, 1, 1))]);
  await waitFor(async () => metricValue((await httpGet(app.httpPort, '/metrics')).body, 'mirrorcap_packets_total', { session: 'vni-1' }) === 1, 5000, 'received');
  t.equal(await app.stop(), 0);
  const native = spawnSync(process.execPath, [main, '--source', 'native', '--out', out, '--listen', '127.0.0.1:0', '--http', '127.0.0.1:0'], { encoding: 'utf8', timeout: 10_000 });
  t.equal(native.status, 2, '--source native without the addon exits 2');
  t.match(native.stderr, /--source native: native addon not built.*use --source dgram/);
});
