/**
 * Bad input on the wire: short datagrams, datagrams without the VXLAN I flag, unknown
 * VNIs in strict mode. Each is counted under its reason, the process stays up, and the
 * good packets around them are all written.
 */
import { mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { httpGet, metricValue, sendDatagrams, startAppliance, waitFor } from '../lib/appliance.js';
import { udpFrame, vxlan } from '../lib/frames.js';
import { capinfos } from '../lib/tshark.js';
import { haveTool, run } from '../lib/tools.js';

t.test('short and non-VXLAN datagrams are counted, good ones written, the process stays up', async (t) => {
  const out = await mkdtemp(join(tmpdir(), 'mirrorcap-bad-'));
  const app = await startAppliance(['--out', out]);
  t.teardown(() => app.proc.kill('SIGKILL'));
  const good = (i: number): Buffer => vxlan(42, udpFrame(60 + i, 42, i));
  const datagrams: Buffer[] = [];
  let short = 0;
  let badVxlan = 0;
  let goodCount = 0;
  for (let len = 0; len < 22; len++) {
    datagrams.push(good(len).subarray(0, len)); // every length too short for VXLAN + Ethernet
    short++;
    datagrams.push(good(len));
    goodCount++;
  }
  for (const flags of [0x00, 0x80, 0x07, 0xf7]) {
    const d = good(100);
    d[0] = flags; // no I bit
    datagrams.push(d);
    badVxlan++;
  }
  for (const flags of [0x88, 0x0c, 0xff]) {
    const d = good(200 + flags);
    d[0] = flags; // I bit plus reserved bits (VXLAN-GBP style): accepted, as RFC 7348 says
    d[1] = 0x80;
    d[7] = 0x55;
    datagrams.push(d);
    goodCount++;
  }
  const random = Buffer.alloc(3000);
  for (let i = 0; i < random.length; i++) random[i] = (i * 7919) & 0xff & ~0x08;
  datagrams.push(random.subarray(0, 1500));
  badVxlan++;
  await sendDatagrams(app.udpPort, datagrams);
  await waitFor(async () => metricValue((await httpGet(app.httpPort, '/metrics')).body, 'mirrorcap_datagrams_total') === datagrams.length, 5000, 'all counted');
  const m = (await httpGet(app.httpPort, '/metrics')).body;
  t.equal(metricValue(m, 'mirrorcap_dropped_packets_total', { reason: 'short' }), short, 'short datagrams counted');
  t.equal(metricValue(m, 'mirrorcap_dropped_packets_total', { reason: 'bad_vxlan' }), badVxlan, 'datagrams without the I flag counted');
  t.equal(metricValue(m, 'mirrorcap_packets_total', { session: 'vni-42' }), goodCount, 'every good datagram accepted');
  t.equal((await httpGet(app.httpPort, '/healthz')).status, 200, 'still alive');
  t.equal(await app.stop(), 0);
  const files = (await readdir(join(out, 'vni-42'))).filter((f) => !/\.idx(\.tmp)?$/.test(f)); // not the index sidecars
  let written = 0;
  for (const f of files) written += (await capinfos(join(out, 'vni-42', f))).packets;
  t.equal(written, goodCount, 'every good packet is in the files');
});

t.test('strict mode drops unknown VNIs as unknown_vni and keeps configured sessions', async (t) => {
  const out = await mkdtemp(join(tmpdir(), 'mirrorcap-strict-'));
  const cfg = join(out, 'c.yaml');
  await writeFile(cfg, 'sessions:\n  - { vni: 5, name: known }\n');
  const app = await startAppliance(['--out', join(out, 'cap'), '--strict', '--config', cfg]);
  t.teardown(() => app.proc.kill('SIGKILL'));
  const datagrams = [vxlan(5, udpFrame(80, 5, 1)), vxlan(6, udpFrame(80, 6, 1)), vxlan(7, udpFrame(80, 7, 1)), vxlan(5, udpFrame(80, 5, 2))];
  await sendDatagrams(app.udpPort, datagrams);
  await waitFor(async () => metricValue((await httpGet(app.httpPort, '/metrics')).body, 'mirrorcap_datagrams_total') === 4, 5000, 'all counted');
  const m = (await httpGet(app.httpPort, '/metrics')).body;
  t.equal(metricValue(m, 'mirrorcap_dropped_packets_total', { reason: 'unknown_vni' }), 2);
  t.equal(metricValue(m, 'mirrorcap_packets_total', { session: 'known', vni: '5' }), 2);
  t.equal(metricValue(m, 'mirrorcap_sessions'), 1, 'no automatic sessions');
  t.equal(await app.stop(), 0);
  t.same(await readdir(join(out, 'cap')), ['known'], 'only the configured session has a folder');
});

t.test('/metrics passes promtool check metrics', { skip: haveTool('promtool') ? false : 'promtool not installed' }, async (t) => {
  const out = await mkdtemp(join(tmpdir(), 'mirrorcap-prom-'));
  const app = await startAppliance(['--out', out]);
  t.teardown(() => app.proc.kill('SIGKILL'));
  await sendDatagrams(app.udpPort, [vxlan(1, udpFrame(64, 1, 1)), vxlan(2, udpFrame(64, 2, 1))]);
  await waitFor(async () => metricValue((await httpGet(app.httpPort, '/metrics')).body, 'mirrorcap_datagrams_total') === 2, 5000, 'counted');
  const text = (await httpGet(app.httpPort, '/metrics')).body;
  const check = await run('promtool', ['check', 'metrics'], { input: text });
  // The one finding promtool has is about a name issue 2 fixes on purpose: network people
  // alert on bits per second, and mirrorcap_session_bits_per_second is the documented name.
  const findings = `${check.stdout}${check.stderr}`.trim().split('\n').filter((l) => l !== '');
  t.same(findings, ['mirrorcap_session_bits_per_second use base unit "bytes" instead of "bits"'], 'no finding but the documented one');
  t.equal(await app.stop(), 0);
});

t.test('the UDP port already taken: exit 1 with a clear log line', async (t) => {
  const out = await mkdtemp(join(tmpdir(), 'mirrorcap-busy-'));
  const first = await startAppliance(['--out', out]);
  t.teardown(() => first.proc.kill('SIGKILL'));
  const r = spawnSync(process.execPath, [(await import('../lib/appliance.js')).MAIN, '--out', out, '--listen', `127.0.0.1:${first.udpPort}`, '--http', '127.0.0.1:0'], { encoding: 'utf8', timeout: 10_000 });
  t.equal(r.status, 1);
  t.match(r.stdout, /"event":"start_failed".*EADDRINUSE/);
  t.equal(await first.stop(), 0);
});

t.test('an output folder that cannot be made: exit 1 with one clear line, run and decap alike', async (t) => {
  const { MAIN } = await import('../lib/appliance.js');
  const dir = await mkdtemp(join(tmpdir(), 'mirrorcap-badout-'));
  await writeFile(join(dir, 'a-file'), 'x');
  // /proc/mc: mkdir answers ENOENT though /proc exists (node's recursive mkdir looped on it forever).
  const cases: Array<[string, RegExp]> = [
    ['/proc/mc', /ENOENT/],
    ['/proc/mc/deeper', /ENOENT/],
    [join(dir, 'a-file', 'x'), /ENOTDIR/],
  ];
  for (const [out, code] of cases) {
    const run = spawnSync(process.execPath, [MAIN, '--out', out, '--listen', '127.0.0.1:0', '--http', '127.0.0.1:0'], { encoding: 'utf8', timeout: 15_000 });
    t.equal(run.status, 1, `run --out ${out}: exit 1 (not a hang)`);
    const lines = run.stdout.trim().split('\n');
    t.equal(lines.length, 1, 'one log line');
    t.match(JSON.parse(lines[0] ?? '{}'), { event: 'start_failed', level: 'fatal', msg: new RegExp(`output folder ${out.replace(/[/.]/g, '\\$&')}.*`) }, 'start_failed names the folder');
    t.match(lines[0], code);
    const decap = spawnSync(process.execPath, [MAIN, 'decap', 'pcaps/ipv4.pcap', '--out', out], { encoding: 'utf8', timeout: 15_000 });
    t.equal(decap.status, 1, `decap --out ${out}: exit 1`);
    t.match(decap.stderr, new RegExp(`^mirrorcap decap: cannot create output folder ${out.replace(/[/.]/g, '\\$&')}: .*${code.source}.*\\n$`), 'one line naming the folder and why');
    t.equal(decap.stderr.split('\n').length, 2, 'no stack trace');
  }
});
