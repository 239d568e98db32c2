/**
 * PostRotate's accounting: each file's command runs, or the file is reported skipped; each
 * file's `done` comes once, when its command has ended or will not run; finish() waits up
 * to its deadline (forever for decap) and names the commands still running.
 */
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { PostRotate } from '../../src/finish/post-rotate.js';
import { killOwnDescendants } from '../lib/appliance.js';

async function script(t: Test, body: string): Promise<{ path: string; log: string; pids: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'mirrorcap-postrotate-'));
  const log = join(dir, 'ran.log');
  const pids = join(dir, 'pids');
  const path = join(dir, 'cmd.sh');
  await writeFile(path, `#!/bin/sh\necho "$1" >> ${log}\necho $$ >> ${pids}\n${body}\n`);
  await chmod(path, 0o755);
  t.teardown(async () => {
    await killOwnDescendants(pids);
    await rm(dir, { recursive: true, force: true });
  });
  return { path, log, pids };
}

const lines = async (path: string): Promise<string[]> => (await readFile(path, 'utf8').catch(() => '')).split('\n').filter(Boolean).sort();

t.test('finish(Infinity) waits for every queued command (decap)', async (t) => {
  const cmd = await script(t, 'sleep 0.1');
  const skipped: string[] = [];
  const p = new PostRotate(cmd.path, { failed: (path, why) => t.fail(`${path}: ${why}`), skipped: (path) => skipped.push(path), stillRunning: () => undefined });
  const done: string[] = [];
  const files = ['a', 'b', 'c', 'd', 'e'];
  for (const f of files) p.enqueue(f, () => done.push(f));
  t.same(await p.finish(Infinity), [], 'nothing left running');
  t.same(await lines(cmd.log), files, 'every command ran');
  t.same(done.sort(), files, 'done once per file');
  t.same(skipped, []);
  t.equal(p.ok, 5);
});

t.test('finish(deadline): what has not started is skipped for the shutdown, what runs is named', async (t) => {
  const cmd = await script(t, 'exec sleep 30');
  const skipped: string[] = [];
  const failed: string[] = []; // the teardown kills the two still running: they fail after the test
  const p = new PostRotate(cmd.path, { failed: (path) => failed.push(path), skipped: (path, reason) => skipped.push(`${path}:${reason}`), stillRunning: () => undefined });
  const done: string[] = [];
  for (const f of ['a', 'b', 'c', 'd', 'e']) p.enqueue(f, () => done.push(f));
  const running = await p.finish(Date.now() + 300);
  t.same(running.sort(), ['a', 'b'], 'two at a time: the first two run on');
  t.same(skipped, ['c:shutdown', 'd:shutdown', 'e:shutdown']);
  t.same(done.sort(), ['c', 'd', 'e'], 'skipped files are done (free for the ring); running ones are not');
  t.same(failed, []);
  t.same({ ok: p.ok, failed: p.failed, skipped: p.skipped, running: p.runningCount }, { ok: 0, failed: 0, skipped: 3, running: 2 });
});
