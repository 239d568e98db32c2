/**
 * What a clean stop (SIGTERM) owes the files: every finished file gets its --post-rotate
 * command or is logged and counted as skipped; ring deletions made while stopping are
 * logged; a file that cannot be renamed is logged, counted, named in the shutdown line and
 * recovered at the next start. Each test drives the built CLI and reads its log lines.
 */
import { spawnSync } from 'node:child_process';
import { chmod, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { httpGet, launchAppliance, MAIN, metricValue, sendDatagrams, startAppliance, waitFor, type LogLine } from '../lib/appliance.js';
import { udpFrame, vxlan } from '../lib/frames.js';
import { capinfos } from '../lib/tshark.js';

const temp = (): Promise<string> => mkdtemp(join(tmpdir(), 'mirrorcap-shutdown-'));
const traffic = (vni: number, n: number, from = 0): Buffer[] => Array.from({ length: n }, (_, i) => vxlan(vni, udpFrame(120, vni, from + i)));
const events = (logs: readonly LogLine[], event: string): LogLine[] => logs.filter((l) => l.event === event);

t.test('queued --post-rotate commands at shutdown: each file runs its command or is logged and counted as skipped', async (t) => {
  const dir = await temp();
  const started = join(dir, 'started.log');
  const slow = join(dir, 'slow.sh');
  // Longer than the 8 s the commands get at shutdown; the two still running at exit end by
  // themselves a little later (no longer our children: not ours to signal).
  await writeFile(slow, `#!/bin/sh\necho "$1" >> ${started}\nexec sleep 15\n`);
  await chmod(slow, 0o755);
  const app = await startAppliance(['--out', join(dir, 'cap'), '--rotate-packets', '5', '--post-rotate', slow]);
  t.teardown(() => app.proc.kill('SIGKILL'));
  await sendDatagrams(app.udpPort, traffic(6, 21));
  await waitFor(() => events(app.logs, 'file_rotated').length === 4, 10_000, 'four files finished while running');
  await waitFor(async () => (await readFile(started, 'utf8').catch(() => '')).split('\n').filter(Boolean).length === 2, 10_000, 'two commands started');
  const t0 = Date.now();
  t.equal(await app.stop(), 0, 'clean exit');
  t.ok(Date.now() - t0 < 10_000, `within 10 s (${Date.now() - t0} ms)`);

  const finished = events(app.logs, 'file_rotated').map((l) => String(l.path)).sort();
  t.equal(finished.length, 5, 'five finished files, the last one at shutdown');
  const ran = (await readFile(started, 'utf8')).split('\n').filter(Boolean).sort();
  const skipped = events(app.logs, 'post_rotate_skipped');
  t.same(skipped.map((l) => l.reason), ['shutdown', 'shutdown', 'shutdown'], 'skipped because of the shutdown');
  t.same([...ran, ...skipped.map((l) => String(l.path))].sort(), finished, 'every finished file: its command ran, or it is logged as skipped');
  t.same(events(app.logs, 'post_rotate_running').map((l) => String(l.path)).sort(), ran, 'the commands still running are named');
  const shutdown = events(app.logs, 'shutdown')[0]!;
  t.match(shutdown.postRotate, { ok: 0, failed: 0, skipped: 3, running: 2 }, 'the shutdown line counts them (the metric\'s numbers)');
});

t.test('ring deletions made while stopping are logged before the shutdown line, and done', async (t) => {
  // Without a command the ring deletes as the last files close; with one, as the commands end
  // (the older files' commands still run when the signal comes).
  for (const postRotate of [[], ['--post-rotate', 'sleep 0.5; :']]) {
    const out = await temp();
    const app = await startAppliance(['--out', out, '--rotate-packets', '2', '--ring', '1', ...postRotate]);
    t.teardown(() => app.proc.kill('SIGKILL'));
    const vnis = postRotate.length > 0 ? [11, 12, 13] : [11, 12, 13, 14, 15, 16, 17, 18];
    for (const vni of vnis) await sendDatagrams(app.udpPort, traffic(vni, 3));
    await waitFor(() => events(app.logs, 'file_rotated').length === vnis.length, 10_000, 'one file per session finished');
    t.equal(await app.stop(), 0);
    const label = postRotate.length > 0 ? 'with --post-rotate' : 'without --post-rotate';
    const shutdownAt = app.logs.findIndex((l) => l.event === 'shutdown');
    const deleted = app.logs.flatMap((l, i) => (l.event === 'file_deleted' ? [{ i, path: String(l.path) }] : []));
    t.equal(deleted.length, vnis.length, `${label}: each session's older file deleted at shutdown, and logged`);
    t.ok(deleted.every((d) => d.i < shutdownAt), `${label}: before the shutdown line`);
    for (const vni of vnis) {
      const left = (await readdir(join(out, `vni-${vni}`))).filter((f) => !/\.idx(\.tmp)?$/.test(f)); // not the index sidecar
      t.equal(left.length, 1, `${label}: vni-${vni} keeps its newest file only (${left.join(', ')})`);
      t.notOk(deleted.some((d) => d.path.endsWith(left[0]!)), `${label}: the file kept is not the one logged as deleted`);
    }
  }
});

t.test('a file that cannot be renamed (folder made read-only): logged, counted, in the shutdown line, recovered at the next start', async (t) => {
  // Root writes into a 0555 folder anyway; without CAP_DAC_OVERRIDE it is refused like anyone.
  const asRoot = process.getuid?.() === 0;
  if (asRoot && spawnSync('setpriv', ['--version']).status !== 0) {
    t.pass('skipped: running as root and setpriv (util-linux) is missing, so a read-only folder cannot be made to refuse us');
    return;
  }
  const drop = asRoot ? ['setpriv', '--inh-caps=-dac_override,-dac_read_search', '--bounding-set=-dac_override,-dac_read_search'] : [];
  const out = await temp();
  const argv = [...drop, process.execPath, MAIN, '--listen', '127.0.0.1:0', '--http', '127.0.0.1:0', '--out', out, '--flush-interval', '100ms'];
  const app = await launchAppliance(argv, { env: process.env });
  t.teardown(() => app.proc.kill('SIGKILL'));
  const readOnly = async (vni: number): Promise<string> => {
    const dir = join(out, `vni-${vni}`);
    await waitFor(async () => (await readdir(dir).catch(() => [])).some((f) => f.endsWith('.pcap.part')), 5000, `vni-${vni} file open`);
    await chmod(dir, 0o555);
    t.teardown(() => chmod(dir, 0o750).catch(() => undefined));
    return dir;
  };
  // While running: SIGUSR1 rotates into the read-only folder.
  await sendDatagrams(app.udpPort, traffic(21, 5));
  const dir21 = await readOnly(21);
  app.proc.kill('SIGUSR1');
  await waitFor(() => events(app.logs, 'write_error').length === 1, 5000, 'rename failure logged');
  t.match(events(app.logs, 'write_error')[0], { op: 'rename', code: 'EACCES', session: 'vni-21', path: /vni-21-.*\.pcap\.part$/, msg: /stays \.part.*next start/ });
  const m = (await httpGet(app.httpPort, '/metrics')).body;
  t.equal(metricValue(m, 'mirrorcap_write_errors_total', { session: 'vni-21', code: 'EACCES' }), 1, 'counted as a write error with its code');
  t.equal(metricValue(m, 'mirrorcap_files_rotated_total', { session: 'vni-21' }), 0, 'not counted as rotated');
  t.same(JSON.parse((await httpGet(app.httpPort, '/api/files')).body), [], 'not listed as a finished file');
  // At shutdown: the last file of another session.
  await sendDatagrams(app.udpPort, traffic(22, 5));
  const dir22 = await readOnly(22);
  t.equal(await app.stop(), 0, 'a clean stop all the same');
  t.equal(events(app.logs, 'write_error').length, 2);
  const shutdown = events(app.logs, 'shutdown')[0]!;
  t.match(shutdown, { filesLeftPart: 2, filesClosed: 0, level: 'warn', msg: /2 files left as \.part/ }, 'the shutdown line says so');

  for (const dir of [dir21, dir22]) {
    await chmod(dir, 0o750);
    t.match(await readdir(dir), [/\.pcap\.part$/], `${dir}: left as .part`);
  }
  const again = await startAppliance(['--out', out]);
  t.teardown(() => again.proc.kill('SIGKILL'));
  const recovered = events(again.logs, 'recovered');
  t.same(recovered.map((l) => l.action), ['recovered', 'recovered'], 'the next start recovers both');
  for (const dir of [dir21, dir22]) {
    const files = await readdir(dir);
    t.match(files, [/\.pcap$/]);
    t.equal((await capinfos(join(dir, files[0]!))).packets, 5, `${dir}: every packet`);
  }
  t.equal(JSON.parse((await httpGet(again.httpPort, '/api/files')).body).length, 2, 'and lists them as finished');
  t.equal(await again.stop(), 0);
});
