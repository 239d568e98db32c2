/**
 * What a clean stop (SIGTERM) owes the files: every finished file gets its --post-rotate
 * command or is logged and counted as skipped; ring deletions made while stopping are
 * logged; a file that cannot be renamed is logged, counted, named in the shutdown line and
 * recovered at the next start. Each test drives the built CLI and reads its log lines.
 */
import { chmod, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { sendDatagrams, startAppliance, waitFor, type LogLine } from '../lib/appliance.js';
import { udpFrame, vxlanDatagram } from '../lib/frames.js';

const temp = (): Promise<string> => mkdtemp(join(tmpdir(), 'mirrorcap-shutdown-'));
const traffic = (vni: number, n: number, from = 0): Buffer[] => Array.from({ length: n }, (_, i) => vxlanDatagram(vni, udpFrame(120, vni, from + i)));
const events = (logs: readonly LogLine[], event: string): LogLine[] => logs.filter((l) => l.event === event);

t.test('queued --post-rotate commands at shutdown: each file runs its command or is logged and counted as skipped', async (t) => {
  const dir = await temp();
  const started = join(dir, 'started.log');
  const pids = join(dir, 'pids');
  const slow = join(dir, 'slow.sh');
  await writeFile(slow, `#!/bin/sh\necho "$1" >> ${started}\necho $$ >> ${pids}\nexec sleep 30\n`);
  await chmod(slow, 0o755);
  t.teardown(async () => {
    // The two commands still running at exit go on by themselves: they are ours, end them.
    for (const pid of (await readFile(pids, 'utf8').catch(() => '')).split('\n').filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
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
      const left = await readdir(join(out, `vni-${vni}`));
      t.equal(left.length, 1, `${label}: vni-${vni} keeps its newest file only (${left.join(', ')})`);
      t.notOk(deleted.some((d) => d.path.endsWith(left[0]!)), `${label}: the file kept is not the one logged as deleted`);
    }
  }
});
