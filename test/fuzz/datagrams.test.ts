/**
 * Hostile input over the wire: a million datagrams of random bytes (0 to 9216 long), valid
 * VXLAN with random inner bytes, valid frames with bits flipped, and every truncation of a
 * valid datagram. The appliance must stay up, and its books must balance exactly:
 *   sent = datagrams_total + kernel drops
 *   datagrams_total = Σ packets_total + drops before a session (by reason)
 *   Σ packets_total = Σ written_packets_total + session drops (by reason)
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { writeVxlanHeader } from '../../src/decode/vxlan.js';
import { loadNative } from '../../src/native/addon.js';
import { httpGet, metricSum, startAppliance, waitFor } from '../lib/appliance.js';
import { udpFrame, vxlan } from '../lib/frames.js';
import { Random } from '../lib/random.js';

const TOTAL = 1_000_000;
const BATCH = 512;
const SLOT = 9216;
const DROP_REASONS = ['short', 'bad_vxlan', 'unknown_vni', 'session_limit', 'source_denied'];
const SESSION_REASONS = ['queue_full', 'disk_full', 'write_error'];

const native = loadNative();

t.test('a million hostile datagrams: no crash, every datagram accounted for', { skip: native.ok ? false : `needs the native sender: ${!native.ok && native.reason}` }, async (t) => {
  if (!native.ok) return;
  const out = await mkdtemp(join(tmpdir(), 'mirrorcap-fuzz-'));
  t.teardown(() => rm(out, { recursive: true, force: true }));
  const app = await startAppliance(['--out', out, '--max-sessions', '64', '--rotate-size', '16MiB', '--ring', '2']);
  t.teardown(() => app.proc.kill('SIGKILL'));
  const sender = new native.binding.Sender('127.0.0.1', app.udpPort);
  t.teardown(() => sender.close());
  sender.setSendBuffer(4 << 20);

  // Seeded, noise included, so a failure replays.
  const random = new Random(0x9e3779b9);
  const noise = random.bytes(4 << 20);
  const templates = [60, 64, 200, 1400, 1514, 9000].map((size, i) => vxlan(10 + i, udpFrame(size, 10 + i, i)));
  const slab = Buffer.allocUnsafe(BATCH * SLOT);
  const offsets = new Uint32Array(BATCH).map((_, i) => i * SLOT);
  const lengths = new Uint32Array(BATCH);
  let cut = 0; // walks every truncation of every template, in turn

  let sent = 0;
  const started = Date.now();
  while (sent < TOTAL && Date.now() - started < 120_000) {
    const n = Math.min(BATCH, TOTAL - sent);
    for (let i = 0; i < n; i++) {
      const at = i * SLOT;
      switch ((sent + i) % 4) {
        case 0: { // random bytes, random length 0..9216
          const len = random.below(SLOT + 1);
          const from = random.below(noise.length - SLOT);
          noise.copy(slab, at, from, from + len);
          lengths[i] = len;
          break;
        }
        case 1: { // a valid VXLAN header (one of 16 VNIs) and random inner bytes
          const len = 8 + random.below(SLOT - 7);
          const from = random.below(noise.length - SLOT);
          noise.copy(slab, at + 8, from, from + len - 8);
          writeVxlanHeader(slab, at, 100 + random.below(16));
          lengths[i] = len;
          break;
        }
        case 2: { // a valid datagram with 1 to 8 bits flipped anywhere
          const tpl = templates[random.below(templates.length)]!;
          tpl.copy(slab, at);
          for (let k = 1 + random.below(8); k > 0; k--) slab[at + random.below(tpl.length)]! ^= 1 << random.below(8);
          lengths[i] = tpl.length;
          break;
        }
        default: { // every truncation of every template, in turn
          let tpl = 0;
          let c = cut;
          while (c > templates[tpl]!.length) c -= templates[tpl]!.length + 1, tpl = (tpl + 1) % templates.length;
          templates[tpl]!.copy(slab, at, 0, c);
          lengths[i] = c;
          cut = (cut + 1) % templates.reduce((s, d) => s + d.length + 1, 0);
        }
      }
    }
    let done = 0;
    while (done < n) {
      const r = sender.send(slab, offsets, lengths, done, n - done);
      if (r < 0) throw new Error(`send failed: errno ${-r}`);
      done += r;
      if (r === 0) await sleep(1);
    }
    sent += n;
    // Pace a little, so the test measures the appliance, not the socket buffer.
    if ((sent / BATCH) % 8 === 0) await sleep(5);
  }
  t.equal(sent, TOTAL, `${TOTAL} datagrams sent in ${((Date.now() - started) / 1000).toFixed(1)} s`);

  const metrics = async (): Promise<string> => (await httpGet(app.httpPort, '/metrics')).body;
  const kernelDrops = async (): Promise<number> => metricSum(await metrics(), 'mirrorcap_socket_drops_total');
  await waitFor(async () => {
    const m = await metrics();
    return metricSum(m, 'mirrorcap_datagrams_total') + metricSum(m, 'mirrorcap_socket_drops_total') === TOTAL;
  }, 30_000, 'every datagram received or dropped by the kernel');
  // Let the last buffers reach the disk so the per-session books close too.
  await waitFor(async () => {
    const m = await metrics();
    return metricSum(m, 'mirrorcap_packets_total') === metricSum(m, 'mirrorcap_written_packets_total') + SESSION_REASONS.reduce((s, r) => s + metricSum(m, 'mirrorcap_dropped_packets_total', { reason: r }), 0);
  }, 10_000, 'written + dropped = accepted');

  const m = await metrics();
  const datagrams = metricSum(m, 'mirrorcap_datagrams_total');
  const packets = metricSum(m, 'mirrorcap_packets_total');
  const before = Object.fromEntries(DROP_REASONS.map((r) => [r, metricSum(m, 'mirrorcap_dropped_packets_total', { reason: r })]));
  const after = Object.fromEntries(SESSION_REASONS.map((r) => [r, metricSum(m, 'mirrorcap_dropped_packets_total', { reason: r })]));
  t.comment(`datagrams ${datagrams}, kernel drops ${await kernelDrops()}, packets ${packets}, dropped before a session ${JSON.stringify(before)}, after ${JSON.stringify(after)}`);
  t.equal(datagrams + (await kernelDrops()), TOTAL, 'sent = datagrams_total + kernel drops');
  t.equal(datagrams, packets + Object.values(before).reduce((s, n) => s + n, 0), 'datagrams_total = packets + drops before a session');
  t.equal(packets, metricSum(m, 'mirrorcap_written_packets_total') + Object.values(after).reduce((s, n) => s + n, 0), 'packets = written + session drops');
  t.ok(before.short! > 0 && before.bad_vxlan! > 0 && before.session_limit! > 0, 'the hostile kinds hit their reasons');
  t.equal(metricSum(m, 'mirrorcap_sessions'), 64, 'sessions capped at --max-sessions');
  t.equal((await httpGet(app.httpPort, '/healthz')).status, 200, 'alive');
  t.equal(await app.stop(), 0, 'and stops cleanly');
});
