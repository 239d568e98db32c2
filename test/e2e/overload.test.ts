/**
 * Overload: twice what the appliance can write, for 20 s. Memory stays bounded, the control
 * plane keeps answering, every lost packet is counted under a reason, and once the burst
 * is over the appliance captures without loss again.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { checkSequences } from '../bench/seqcheck.js';
import { httpGet, metricSum, startAppliance, waitFor } from '../lib/appliance.js';

const GENERATOR = fileURLToPath(new URL('../bench/generator.js', import.meta.url));
const MiB = 1024 * 1024;

interface GeneratorSummary {
  sent: number;
  pps: number;
  sentPerVni: Record<string, number>;
}

function generate(args: string[]): Promise<GeneratorSummary> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [GENERATOR, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('close', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop()!) as GeneratorSummary) : reject(new Error(`generator exited ${code}`))));
  });
}


async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

t.test('twice the write rate for 20 s: bounded memory, answering, every drop counted, then no loss', async (t) => {
  const out = await mkdtemp(join(tmpdir(), 'mirrorcap-overload-'));
  t.teardown(() => rm(out, { recursive: true, force: true }));
  // A disk budget keeps the test from filling the machine: GBs are written per run.
  const app = await startAppliance(['--out', out, '--rotate-size', '128MiB', '--max-total-bytes', '768MiB']);
  t.teardown(() => app.proc.kill('SIGKILL'));
  const metrics = async (): Promise<string> => (await httpGet(app.httpPort, '/metrics')).body;
  const target = `127.0.0.1:${app.udpPort}`;

  // 1. What the appliance can write: large frames flat out for 3 s, measured on its own counters.
  const w0 = metricSum(await metrics(), 'mirrorcap_written_packets_total');
  const t0 = Date.now();
  const probe = await generate(['--target', target, '--vnis', '3', '--size', '8000', '--flat-out', '--duration', '3']);
  await waitFor(async () => metricSum(await metrics(), 'mirrorcap_datagrams_total') + metricSum(await metrics(), 'mirrorcap_socket_drops_total') >= probe.sent, 10_000, 'probe settled');
  const capacity = (metricSum(await metrics(), 'mirrorcap_written_packets_total') - w0) / ((Date.now() - t0) / 1000);
  const rate = Math.round(2 * capacity);
  t.comment(`write capacity ≈ ${Math.round(capacity)} packets/s of 8000 bytes (${((capacity * 8016) / MiB).toFixed(0)} MiB/s); the generator did ${Math.round(probe.pps)}/s flat out; overload at ${rate}/s`);

  // 2. The overload, with the control plane and memory watched every 250 ms.
  let maxLatency = 0;
  let maxRss = 0;
  let watching = true;
  const watcher = (async () => {
    while (watching) {
      for (const path of ['/metrics', '/readyz']) {
        const s = Date.now();
        await httpGet(app.httpPort, path);
        maxLatency = Math.max(maxLatency, Date.now() - s);
      }
      maxRss = Math.max(maxRss, await rssBytes(app.proc.pid!));
      await new Promise((r) => setTimeout(r, 250));
    }
  })();
  const burst = await generate(['--target', target, '--vnis', '3', '--vni-base', '11', '--size', '8000', '--rate', String(rate), '--duration', '20']);
  watching = false;
  await watcher;
  t.comment(`sent ${burst.sent} at ${Math.round(burst.pps)}/s; peak RSS ${(maxRss / MiB).toFixed(0)} MiB; slowest /metrics or /readyz ${maxLatency} ms`);
  t.ok(burst.pps > capacity * 1.3, `the offered load exceeded what can be written (${Math.round(burst.pps)} > ${Math.round(capacity)}/s)`);
  t.ok(maxRss < 300 * MiB, `RSS stayed under 300 MiB (peak ${(maxRss / MiB).toFixed(0)} MiB)`);
  t.ok(maxLatency < 1000, `/metrics and /readyz answered within 1 s (slowest ${maxLatency} ms)`);

  // 3. The books: every datagram sent is received or a kernel drop; every one received is written or dropped under a reason.
  const sentTotal = probe.sent + burst.sent;
  await waitFor(async () => {
    const m = await metrics();
    return metricSum(m, 'mirrorcap_datagrams_total') + metricSum(m, 'mirrorcap_socket_drops_total') === sentTotal;
  }, 15_000, 'every datagram received or dropped by the kernel');
  await waitFor(async () => {
    const m = await metrics();
    return metricSum(m, 'mirrorcap_packets_total') === metricSum(m, 'mirrorcap_written_packets_total') + metricSum(m, 'mirrorcap_dropped_packets_total', { reason: 'queue_full' }) + metricSum(m, 'mirrorcap_dropped_packets_total', { reason: 'write_error' }) + metricSum(m, 'mirrorcap_dropped_packets_total', { reason: 'disk_full' });
  }, 30_000, 'every accepted packet written or counted as dropped');
  const m = await metrics();
  const dropped = metricSum(m, 'mirrorcap_dropped_packets_total') + metricSum(m, 'mirrorcap_socket_drops_total');
  t.ok(dropped > 0, `overload drops happened and were counted (${dropped}: queue_full ${metricSum(m, 'mirrorcap_dropped_packets_total', { reason: 'queue_full' })}, kernel ${metricSum(m, 'mirrorcap_socket_drops_total')})`);
  t.equal(metricSum(m, 'mirrorcap_datagrams_total'), metricSum(m, 'mirrorcap_packets_total') + metricSum(m, 'mirrorcap_dropped_packets_total') - metricSum(m, 'mirrorcap_dropped_packets_total', { reason: 'queue_full' }) - metricSum(m, 'mirrorcap_dropped_packets_total', { reason: 'disk_full' }) - metricSum(m, 'mirrorcap_dropped_packets_total', { reason: 'write_error' }), 'datagrams = packets + drops before a session');

  // 4. After the burst: a calm stream on a new VNI is captured without loss (counted from the file).
  const calm = await generate(['--target', target, '--vnis', '1', '--vni-base', '50', '--size', '1400', '--rate', '10000', '--count', '20000', '--duration', '10']);
  t.equal(await app.stop(), 0);
  const dir = join(out, 'vni-50');
  const report = await checkSequences((await readdir(dir)).filter((f) => !/\.idx(\.tmp)?$/.test(f)).map((f) => join(dir, f)), calm.sentPerVni); // not the index sidecars
  const r = report.perVni.find((x) => x.vni === 50)!;
  t.same({ received: r.received, lost: r.lost, duplicated: r.duplicated }, { received: calm.sent, lost: 0, duplicated: 0 }, 'zero loss after the burst');
});
