/**
 * The receive threads' source (source/workers.ts) in process, for what the appliance tests
 * cannot provoke: a worker that dies. Its death is logged and counted, the source stops being
 * ready (/readyz), what the other worker receives is still delivered in time order, and
 * stop() neither waits for the dead one nor loses the living one's last datagrams.
 */
import { createSocket } from 'node:dgram';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import t from 'tap';
import { loadNative } from '../../src/native/addon.js';
import { slotBytesFor } from '../../src/source/native.js';
import { WorkerSource } from '../../src/source/workers.js';
import { udpFrame, vxlan } from '../lib/frames.js';

const native = loadNative();

/** n datagrams to port from each of `senders` sockets (their own source ports), awaited. */
async function send(port: number, senders: number, n: number, seq: { next: number }): Promise<void> {
  for (let s = 0; s < senders; s++) {
    const sock = createSocket('udp4');
    for (let i = 0; i < n; i++) {
      const d = vxlan(7, udpFrame(80, 7, seq.next++));
      await new Promise<void>((resolve, reject) => sock.send(d, port, '127.0.0.1', (e) => (e ? reject(e) : resolve())));
    }
    sock.close();
  }
}

t.test('a receive thread that dies: logged, counted, not ready; the other goes on and drains at stop', { skip: native.ok ? false : 'needs the native addon' }, async (t) => {
  if (!native.ok) return;
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, new Writable({ write: (c: Buffer, _e, cb) => (lines.push(JSON.parse(c.toString()) as Record<string, unknown>), cb()) }));
  const src = new WorkerSource({ workers: 2, kind: 'native', host: '127.0.0.1', port: 0, recvBufferBytes: 4 << 20, slotBytes: slotBytesFor(256), batchSize: 64, holdMs: 0, binding: native.binding, log });
  const got: bigint[] = [];
  let outOfOrder = 0;
  await src.start((b) => {
    for (let i = 0; i < b.count; i++) {
      const ts = BigInt(b.tsSec[i]!) * 1_000_000_000n + BigInt(b.tsNsec[i]!);
      if (got.length > 0 && ts < got[got.length - 1]!) outOfOrder++;
      got.push(ts);
    }
    return false;
  });
  t.teardown(() => src.stop());
  t.ok(src.port > 0, `both threads bound one port (${src.port})`);
  t.equal(src.ready, true);
  t.match(lines.find((l) => l.event === 'workers_started'), { workers: 2, tids: [Number, Number] });

  const seq = { next: 0 };
  await send(src.port, 12, 50, seq);
  await t.resolves(waitUntil(() => got.length === 600), 'all 600 delivered by two workers');
  const before = src.workerStats();
  t.ok(before.every((w) => w.datagrams > 0), `the kernel spread 12 senders over both (${before.map((w) => w.datagrams).join(', ')})`);

  // A worker thread ends without being asked (in life: a crash in it); reached past the API on purpose.
  const lanes = (src as unknown as { lanes: Array<{ worker: { terminate(): Promise<number> } }> }).lanes;
  await lanes[0]!.worker.terminate();
  await t.resolves(waitUntil(() => !src.ready), 'no longer ready');
  t.match(lines.find((l) => l.event === 'worker_died'), { level: 50, worker: 0, reason: /exited with code/ }, 'logged as an error');
  t.same(src.workerStats().map((w) => w.died), [true, false], 'counted as dead (mirrorcap_worker_deaths_total)');

  // The kernel now gives the living socket every datagram; the last ones are still queued at stop().
  const had = got.length;
  await send(src.port, 4, 50, seq);
  await src.stop();
  t.equal(got.length, had + 200, 'everything sent after the death was received by the other thread and delivered by stop()');
  t.equal(outOfOrder, 0, 'delivered in time order throughout');
});

async function waitUntil(check: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}
