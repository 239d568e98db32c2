/**
 * A configured name that is another VNI's automatic name would put two VNIs in one folder,
 * one file and one metric series: refused at start (exit 2, one line) and on SIGHUP (the
 * running config stays, each VNI keeps its own folder and labels).
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { httpGet, MAIN, metricValue, sendDatagrams, startAppliance, waitFor } from '../lib/appliance.js';
import { udpFrame, vxlan } from '../lib/frames.js';
import { capinfos } from '../lib/tshark.js';

const traffic = (vni: number, n: number): Buffer[] => Array.from({ length: n }, (_, i) => vxlan(vni, udpFrame(100, vni, i)));

t.test('sessions: [{vni: 1, name: vni-2}] is refused at start with one line naming the key', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mirrorcap-names-'));
  const cfg = join(dir, 'mirrorcap.yaml');
  await writeFile(cfg, 'sessions:\n  - { vni: 1, name: vni-2 }\n');
  const r = spawnSync(process.execPath, [MAIN, '--config', cfg, '--out', join(dir, 'cap'), '--listen', '127.0.0.1:0', '--http', '127.0.0.1:0'], { encoding: 'utf8', timeout: 20_000 });
  t.equal(r.status, 2, 'exit 2');
  t.match(r.stderr, /^mirrorcap: invalid sessions\[0\]\.name "vni-2" \(from config file .*\): expected .*VNI 2\n$/, r.stderr);
  t.equal(r.stdout, '', 'nothing started');
});

t.test('a reload that would merge two VNIs is refused; each keeps its folder and labels', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mirrorcap-names-'));
  const cfg = join(dir, 'mirrorcap.yaml');
  await writeFile(cfg, 'sessions:\n  - { vni: 1, name: one }\n');
  const out = join(dir, 'cap');
  const app = await startAppliance(['--config', cfg, '--out', out]);
  t.teardown(() => app.proc.kill('SIGKILL'));
  await writeFile(cfg, 'sessions:\n  - { vni: 1, name: vni-2 }\n');
  app.proc.kill('SIGHUP');
  await waitFor(() => app.logs.some((l) => l.event === 'reload_failed'), 5000, 'reload refused');
  t.match(String(app.logs.find((l) => l.event === 'reload_failed')!.err), /sessions\[0\]\.name "vni-2"/);
  await sendDatagrams(app.udpPort, [...traffic(1, 7), ...traffic(2, 5)]);
  await waitFor(async () => metricValue((await httpGet(app.httpPort, '/metrics')).body, 'mirrorcap_datagrams_total') === 12, 5000, 'counted');
  const m = (await httpGet(app.httpPort, '/metrics')).body;
  t.equal(metricValue(m, 'mirrorcap_packets_total', { session: 'one', vni: '1' }), 7);
  t.equal(metricValue(m, 'mirrorcap_packets_total', { session: 'vni-2', vni: '2' }), 5);
  t.equal(await app.stop(), 0);
  t.same((await readdir(out)).sort(), ['one', 'vni-2']);
  for (const [name, n] of [['one', 7], ['vni-2', 5]] as const) {
    const files = (await readdir(join(out, name))).filter((f) => !/\.idx(\.tmp)?$/.test(f)); // not the index sidecars
    t.equal((await Promise.all(files.map((f) => capinfos(join(out, name, f))))).reduce((sum, c) => sum + c.packets, 0), n, `${name} holds its own VNI's packets`);
  }
});
