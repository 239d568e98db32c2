/**
 * Running it for months: source allow-lists, the API token, SIGUSR1 / SIGHUP, post-rotate
 * hooks and a disk that fills up. Each test drives the built CLI as an operator would.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { httpGet, metricValue, sendDatagrams, startAppliance, waitFor, type Appliance } from '../lib/appliance.js';
import { udpFrame, vxlan } from '../lib/frames.js';
import { capinfos } from '../lib/tshark.js';
import { run } from '../lib/tools.js';

const temp = (): Promise<string> => mkdtemp(join(tmpdir(), 'mirrorcap-ops-'));
const metrics = async (app: Appliance): Promise<string> => (await httpGet(app.httpPort, '/metrics')).body;
const countIn = async (dir: string): Promise<number> => {
  let n = 0;
  for (const f of await readdir(dir)) if (f.endsWith('.pcap')) n += (await capinfos(join(dir, f))).packets;
  return n;
};
const traffic = (vni: number, n: number, from = 0): Buffer[] => Array.from({ length: n }, (_, i) => vxlan(vni, udpFrame(100, vni, from + i)));

t.test('--allow: sources outside the prefixes are dropped as source_denied before anything else', async (t) => {
  const out = await temp();
  const denied = await startAppliance(['--out', join(out, 'a'), '--allow', '10.0.0.0/8,fd00::/8']);
  t.teardown(() => denied.proc.kill('SIGKILL'));
  const allowed = await startAppliance(['--out', join(out, 'b'), '--allow', '10.0.0.0/8,127.0.0.0/8']);
  t.teardown(() => allowed.proc.kill('SIGKILL'));
  await sendDatagrams(denied.udpPort, traffic(7, 20));
  await sendDatagrams(allowed.udpPort, traffic(7, 20));
  await waitFor(async () => metricValue(await metrics(denied), 'mirrorcap_datagrams_total') === 20, 5000, 'denied counted');
  await waitFor(async () => metricValue(await metrics(allowed), 'mirrorcap_datagrams_total') === 20, 5000, 'allowed counted');
  t.equal(metricValue(await metrics(denied), 'mirrorcap_dropped_packets_total', { reason: 'source_denied' }), 20);
  t.equal(metricValue(await metrics(denied), 'mirrorcap_sessions'), 0, 'no session made for a denied source');
  t.equal(metricValue(await metrics(allowed), 'mirrorcap_packets_total', { session: 'vni-7' }), 20);
  t.equal(await denied.stop(), 0);
  t.equal(await allowed.stop(), 0);
});

t.test('--http-token guards /api, not /metrics or the health checks', async (t) => {
  const app = await startAppliance(['--out', await temp()], { MIRRORCAP_HTTP_TOKEN: 's3cret' });
  t.teardown(() => app.proc.kill('SIGKILL'));
  t.equal((await httpGet(app.httpPort, '/api/sessions')).status, 401);
  t.equal((await httpGet(app.httpPort, '/api/files', { Authorization: 'Bearer wrong!' })).status, 401);
  t.equal((await httpGet(app.httpPort, '/api/sessions', { Authorization: 'Bearer s3cret' })).status, 200);
  // RFC 7235: the scheme is case-insensitive, and one or more spaces follow it.
  for (const header of ['bearer s3cret', 'BEARER s3cret', 'bEaReR  s3cret']) {
    t.equal((await httpGet(app.httpPort, '/api/sessions', { Authorization: header })).status, 200, header);
  }
  for (const header of ['Basic s3cret', 'Bearers3cret', 'Bearer s3cre', 's3cret', 'Bearer']) {
    t.equal((await httpGet(app.httpPort, '/api/sessions', { Authorization: header })).status, 401, header);
  }
  t.equal((await httpGet(app.httpPort, '/metrics')).status, 200);
  t.equal((await httpGet(app.httpPort, '/readyz')).status, 200);
  t.notMatch(JSON.stringify(app.logs), /s3cret/, 'the token never reaches the logs');
  t.equal(await app.stop(), 0);
});

t.test('an idle appliance sleeps: its main thread wakes a few times a second, not hundreds', async (t) => {
  const app = await startAppliance(['--out', await temp()]);
  t.teardown(() => app.proc.kill('SIGKILL'));
  await sendDatagrams(app.udpPort, traffic(1, 100));
  await waitFor(async () => metricValue(await metrics(app), 'mirrorcap_datagrams_total') === 100, 5000, 'the traffic');
  await new Promise((r) => setTimeout(r, 500));
  const switches = async (): Promise<number> => Number(/^voluntary_ctxt_switches:\s+(\d+)$/m.exec(await readFile(`/proc/${app.proc.pid}/status`, 'utf8'))?.[1]);
  const before = await switches();
  await new Promise((r) => setTimeout(r, 2000));
  const woke = (await switches()) - before;
  // Polling the socket every 1 ms (2,000 in 2 s) or sampling the event loop every 10 ms (200) would show here.
  t.ok(woke < 100, `${woke} wake-ups in 2 s with no traffic`);
  t.equal(await app.stop(), 0);
});

t.test('SIGUSR1 closes every current file; the next packets start new ones', async (t) => {
  const out = await temp();
  const app = await startAppliance(['--out', out]);
  t.teardown(() => app.proc.kill('SIGKILL'));
  await sendDatagrams(app.udpPort, [...traffic(1, 10), ...traffic(2, 10)]);
  await waitFor(async () => metricValue(await metrics(app), 'mirrorcap_datagrams_total') === 20, 5000, 'counted');
  app.proc.kill('SIGUSR1');
  await waitFor(() => app.logs.filter((l) => l.event === 'file_rotated').length === 2, 5000, 'two files rotated');
  await sendDatagrams(app.udpPort, traffic(1, 5, 10));
  t.equal(await app.stop(), 0);
  const captures = async (dir: string): Promise<string[]> => (await readdir(dir)).filter((f) => !/\.idx(\.tmp)?$/.test(f)); // not the index sidecars
  t.equal((await captures(join(out, 'vni-1'))).length, 2, 'vni-1 has a file before and after the signal');
  t.equal(await countIn(join(out, 'vni-1')), 15);
  t.equal((await captures(join(out, 'vni-2'))).length, 1);
});

t.test('SIGHUP reloads sessions and rotation without losing a packet; a bad file changes nothing', async (t) => {
  const out = await temp();
  const cfg = join(out, 'mirrorcap.yaml');
  await writeFile(cfg, 'sessions:\n  - { vni: 5, name: alpha }\n');
  const app = await startAppliance(['--out', join(out, 'cap'), '--config', cfg]);
  t.teardown(() => app.proc.kill('SIGKILL'));
  const total = 3000;
  const sending = sendDatagrams(app.udpPort, traffic(5, total), '127.0.0.1', 50);
  await waitFor(async () => (metricValue(await metrics(app), 'mirrorcap_datagrams_total') ?? 0) > 500, 10_000, 'traffic flowing');
  await writeFile(cfg, 'rotate-packets: 100000\nqueue-size: 64MiB\nsessions:\n  - { vni: 5, name: beta }\n  - { vni: 6, name: gamma }\n');
  app.proc.kill('SIGHUP');
  await waitFor(() => app.logs.some((l) => l.event === 'reload'), 5000, 'reloaded');
  await sending;
  await waitFor(async () => metricValue(await metrics(app), 'mirrorcap_datagrams_total') === total, 5000, 'all counted');
  const reload = app.logs.find((l) => l.event === 'reload')!;
  t.same(reload.retired, ['alpha'], 'the renamed session is retired');
  t.same(reload.restartNeeded, ['queueSize'], 'an option a reload cannot apply is named, rotation is not');
  const m = await metrics(app);
  const alpha = metricValue(m, 'mirrorcap_packets_total', { session: 'alpha' }) ?? 0;
  const beta = metricValue(m, 'mirrorcap_packets_total', { session: 'beta' }) ?? 0;
  t.ok(alpha > 0 && beta > 0, `traffic before (${alpha}) and after (${beta}) the reload`);
  t.equal(alpha + beta, total, 'every packet counted in one of the two');

  await writeFile(cfg, 'sessions:\n  - { vni: 5, name: "../escape" }\n');
  app.proc.kill('SIGHUP');
  await waitFor(() => app.logs.some((l) => l.event === 'reload_failed'), 5000, 'bad reload reported');
  await sendDatagrams(app.udpPort, traffic(5, 10, total));
  await waitFor(async () => metricValue(await metrics(app), 'mirrorcap_datagrams_total') === total + 10, 5000, 'counted');
  t.equal(metricValue(await metrics(app), 'mirrorcap_packets_total', { session: 'beta' }), beta + 10, 'the running config is kept');

  t.equal(await app.stop(), 0);
  t.equal(await countIn(join(out, 'cap', 'alpha')), alpha, 'alpha files hold every alpha packet');
  t.equal(await countIn(join(out, 'cap', 'beta')), beta + 10, 'beta files hold every beta packet');
  t.equal(metricValue(m, 'mirrorcap_dropped_packets_total', { reason: 'queue_full', session: 'beta' }), 0);
});

t.test('--post-rotate runs for every finished file, shutdown included, and failures are counted', async (t) => {
  const out = await temp();
  const hookLog = join(out, 'hook.log');
  const app = await startAppliance(['--out', join(out, 'cap'), '--rotate-packets', '10', '--post-rotate', `echo >> ${hookLog}`]);
  t.teardown(() => app.proc.kill('SIGKILL'));
  await sendDatagrams(app.udpPort, traffic(3, 25));
  t.equal(await app.stop(), 0);
  const files = (await readdir(join(out, 'cap', 'vni-3'))).filter((f) => !/\.idx(\.tmp)?$/.test(f)).map((f) => join(out, 'cap', 'vni-3', f)).sort();
  t.equal(files.length, 3);
  t.same((await readFile(hookLog, 'utf8')).trim().split('\n').sort(), files, 'once per file, path as the argument');

  const failing = await startAppliance(['--out', join(out, 'cap2'), '--rotate-packets', '5', '--post-rotate', 'exit 3 #']);
  t.teardown(() => failing.proc.kill('SIGKILL'));
  await sendDatagrams(failing.udpPort, traffic(3, 12));
  await waitFor(async () => metricValue(await metrics(failing), 'mirrorcap_post_rotate_total', { result: 'failed' }) === 2, 5000, 'failures counted');
  t.ok(failing.logs.some((l) => l.event === 'post_rotate_failed' && /exit 3/.test(String(l.why))), 'failure logged with its exit code');
  t.equal(await failing.stop(), 0, 'a failing hook does not stop the appliance');
});

t.test('a filling disk: writing pauses below min-free-bytes, /readyz says why, resumes by itself', async (t) => {
  const mnt = await temp();
  if ((await run('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mnt])).code !== 0) {
    t.pass('skipped: cannot mount a tmpfs here (needs root)');
    return;
  }
  t.teardown(() => run('umount', ['-l', mnt]));
  const app = await startAppliance(['--out', mnt, '--min-free-bytes', '6MiB', '--flush-interval', '100ms']);
  t.teardown(() => app.proc.kill('SIGKILL'));
  await writeFile(join(mnt, 'ballast'), Buffer.alloc(3 * 1024 * 1024));
  await waitFor(async () => (await httpGet(app.httpPort, '/readyz')).status === 503, 5000, 'not ready');
  const r = await httpGet(app.httpPort, '/readyz');
  t.match(JSON.parse(r.body).reasons, [/below min-free-bytes/]);
  await sendDatagrams(app.udpPort, traffic(9, 30));
  await waitFor(async () => metricValue(await metrics(app), 'mirrorcap_datagrams_total') === 30, 5000, 'counted');
  t.equal(metricValue(await metrics(app), 'mirrorcap_dropped_packets_total', { reason: 'disk_full', session: 'vni-9' }), 30);
  t.equal(app.logs.filter((l) => l.event === 'disk_full').length, 1, 'one warning, not one per packet');
  await rm(join(mnt, 'ballast'));
  await waitFor(async () => (await httpGet(app.httpPort, '/readyz')).status === 200, 5000, 'ready again');
  await sendDatagrams(app.udpPort, traffic(9, 7, 30));
  t.equal(await app.stop(), 0);
  t.equal(await countIn(join(mnt, 'vni-9')), 7, 'writing resumed by itself');
  t.ok(app.logs.some((l) => l.event === 'disk_ok'));
});

t.test('--session-key vni+src on a dual-stack [::] socket: one session per mirrored ENI (outer source)', async (t) => {
  const out = await temp();
  const app = await startAppliance(['--out', out, '--listen', '[::]:0', '--session-key', 'vni+src']);
  t.teardown(() => app.proc.kill('SIGKILL'));
  await sendDatagrams(app.udpPort, traffic(5, 4), '127.0.0.1');
  await sendDatagrams(app.udpPort, traffic(5, 6), '::1');
  await waitFor(async () => metricValue(await metrics(app), 'mirrorcap_datagrams_total') === 10, 5000, 'counted');
  const m = await metrics(app);
  t.equal(metricValue(m, 'mirrorcap_packets_total', { session: 'vni-5-127.0.0.1', vni: '5' }), 4, 'IPv4 sender (v4-mapped on the dual-stack socket)');
  t.equal(metricValue(m, 'mirrorcap_packets_total', { session: 'vni-5---1', vni: '5' }), 6, 'IPv6 sender ::1');
  const api = JSON.parse((await httpGet(app.httpPort, '/api/sessions')).body) as Array<{ name: string; source: string }>;
  t.same(api.map((s) => s.source).sort(), ['127.0.0.1', '::1']);
  t.equal(await app.stop(), 0);
  t.same((await readdir(out)).sort(), ['vni-5---1', 'vni-5-127.0.0.1']);
});
