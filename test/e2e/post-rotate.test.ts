/**
 * --post-rotate with a ring: the README's own `--ring 1 --post-rotate gzip`. Every command
 * finds its file, what gzip makes (X.pcap.gz) stays under the ring, /api/files and
 * disk_used_bytes say what is on disk, and after a restart the .gz files still count.
 * The folder is the oracle (readdir/stat), and capinfos reads the compressed file.
 */
import { mkdtemp, readdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { httpGet, metricValue, sendDatagrams, startAppliance, waitFor, type Appliance } from '../lib/appliance.js';
import { udpFrame, vxlan } from '../lib/frames.js';
import { capinfos } from '../lib/tshark.js';

const traffic = (vni: number, n: number, from = 0): Buffer[] => Array.from({ length: n }, (_, i) => vxlan(vni, udpFrame(300, vni, from + i)));
const metrics = async (app: Appliance): Promise<string> => (await httpGet(app.httpPort, '/metrics')).body;
const apiFiles = async (app: Appliance): Promise<Array<{ path: string; bytes: number; pending: string[]; artefacts: string[] }>> => JSON.parse((await httpGet(app.httpPort, '/api/files')).body);
/** name → size of everything in the folder (with the captures' index sidecars X.pcap.idx when `sidecars`). */
const onDisk = async (dir: string, sidecars = false): Promise<Map<string, number>> => {
  const m = new Map<string, number>();
  for (const n of await readdir(dir).catch(() => [])) if (sidecars || !/\.idx(\.tmp)?$/.test(n)) m.set(join(dir, n), (await stat(join(dir, n))).size);
  return m;
};
const sum = (m: Map<string, number>): number => [...m.values()].reduce((a, b) => a + b, 0);

t.test('--rotate-packets 5 --ring 1 --post-rotate gzip: the ring bounds the .gz files, the catalog says what exists', async (t) => {
  const out = await mkdtemp(join(tmpdir(), 'mirrorcap-postrotate-'));
  const dir = join(out, 'vni-4');
  const args = ['--out', out, '--rotate-packets', '5', '--ring', '1', '--post-rotate', 'gzip', '--flush-interval', '100ms'];
  const app = await startAppliance(args);
  t.teardown(() => app.proc.kill('SIGKILL'));
  await sendDatagrams(app.udpPort, traffic(4, 25));
  await waitFor(async () => metricValue(await metrics(app), 'mirrorcap_post_rotate_total', { result: 'ok' }) === 4, 10_000, 'four files compressed');
  // The ring trims once the commands are done: wait for what is listed to be the newest .gz alone.
  await waitFor(async () => (await apiFiles(app)).length === 1 && (await onDisk(dir)).size === 2, 10_000, 'ring settled');
  t.same(app.logs.filter((l) => l.event === 'post_rotate_failed'), [], 'no command found its file deleted');
  const [listed] = await apiFiles(app);
  t.match(listed!.path, /-000003\.pcap\.gz$/, '/api/files names the file as it is now');
  let onDiskBytes = 0;
  for (const f of listed!.artefacts) onDiskBytes += (await stat(f)).size;
  t.equal(listed!.bytes, onDiskBytes, 'with the size on disk of all its names (the .gz and its index sidecar)');
  t.same(listed!.pending, []);
  await waitFor(async () => metricValue(await metrics(app), 'mirrorcap_disk_used_bytes') === sum(await onDisk(dir, true)), 5000, 'disk_used_bytes = the folder (the .gz, its index and the open .part)');

  t.equal(await app.stop(), 0);
  const left = [...(await onDisk(dir)).keys()];
  t.equal(left.length, 1, `one file after shutdown: ${left.join(', ')}`);
  t.match(left[0], /-000004\.pcap\.gz$/, 'the last file, compressed at shutdown');
  t.equal((await capinfos(left[0]!)).packets, 5);

  const again = await startAppliance(args);
  t.teardown(() => again.proc.kill('SIGKILL'));
  t.same((await apiFiles(again)).map((f) => f.path), left, 'found at start: the .gz counts');
  await sendDatagrams(again.udpPort, traffic(4, 3, 100));
  await waitFor(async () => metricValue(await metrics(again), 'mirrorcap_packets_total', { session: 'vni-4' }) === 3, 5000, 'counted');
  again.proc.kill('SIGUSR1');
  await waitFor(async () => metricValue(await metrics(again), 'mirrorcap_post_rotate_total', { result: 'ok' }) === 1, 10_000, 'compressed');
  await waitFor(async () => (await onDisk(dir)).size === 1, 10_000, 'the ring trimmed the old .gz');
  const now = await apiFiles(again);
  t.same(now.map((f) => f.path), [...(await onDisk(dir)).keys()], '/api/files lists what exists');
  t.match(now[0]!.path, /-000005\.pcap\.gz$/);
  t.equal(await again.stop(), 0);
  t.equal((await capinfos(now[0]!.path)).packets, 3);
});
