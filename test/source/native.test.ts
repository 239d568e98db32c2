import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import type { Batch } from '../../src/source/batch.js';
import { BATCH_SIZE_BUCKETS } from '../../src/source/source.js';
import { COUNTER_READS, COUNTER_RXQ_OVFL, COUNTER_TRUNCATED, loadNative, type NativeBinding, type NativeSender } from '../../src/native/addon.js';
import { DEFAULT_SLOT_BYTES, MAX_SLAB_BYTES, MAX_SLOT_BYTES, NativeSource, SLOT_HEADROOM, slotBytesFor, type NativeSourceOptions } from '../../src/source/native.js';

const load = loadNative();
// On Linux npm ci builds the addon, so a missing one is a failure, not a skip.
if (process.platform === 'linux') t.ok(load.ok, `the addon loads here (${load.ok ? load.path : load.reason})`);
if (!load.ok) {
  t.comment(`skipping every native test: ${load.reason}`);
} else {
  suite(load.binding);
}

/** One received datagram, copied out of the batch. */
interface Got {
  bytes: Buffer;
  wire: number;
  sec: number;
  nsec: number;
  addr: Buffer;
  port: number;
}

function suite(binding: NativeBinding): void {
  /** A started source collecting copies of what it receives, and the batch sizes it saw. */
  async function receiver(opts: Partial<NativeSourceOptions> = {}, onBatch?: () => void) {
    const src = new NativeSource({ host: '127.0.0.1', port: 0, recvBufferBytes: 4 << 20, ...opts });
    const got: Got[] = [];
    const batches: number[] = [];
    let waiter: { n: number; resolve: () => void } | undefined;
    await src.start((b: Batch) => {
      onBatch?.();
      batches.push(b.count);
      for (let i = 0; i < b.count; i++) {
        const o = b.offsets[i]!;
        got.push({
          bytes: Buffer.from(b.slab.subarray(o, o + b.lengths[i]!)),
          wire: b.wireLengths[i]!,
          sec: b.tsSec[i]!,
          nsec: b.tsNsec[i]!,
          addr: Buffer.from(b.srcAddr.subarray(16 * i, 16 * i + 16)),
          port: b.srcPort[i]!,
        });
      }
      if (waiter !== undefined && got.length >= waiter.n) waiter.resolve();
    });
    const until = (n: number, ms = 3000) =>
      got.length >= n
        ? Promise.resolve()
        : Promise.race([
            new Promise<void>((resolve) => (waiter = { n, resolve })),
            sleep(ms).then(() => {
              throw new Error(`timed out with ${got.length} of ${n} datagrams`);
            }),
          ]);
    return { src, got, batches, until, port: src.address()!.port };
  }

  /** Datagrams of the given sizes, each starting with its index so payloads can be checked. */
  function burst(sender: NativeSender, sizes: number[]): number {
    const offsets = new Uint32Array(sizes.length);
    const lengths = Uint32Array.from(sizes);
    let total = 0;
    for (const [i, s] of sizes.entries()) {
      offsets[i] = total;
      total += s;
    }
    const slab = Buffer.alloc(total, 0xa5);
    sizes.forEach((s, i) => s >= 4 && slab.writeUInt32BE(i, offsets[i]!));
    let sent = 0;
    while (sent < sizes.length) {
      const n = sender.send(slab, offsets, lengths, sent, Math.min(1024, sizes.length - sent));
      if (n < 0) throw new Error(`send failed: errno ${-n}`);
      sent += n;
    }
    return sent;
  }

  const v4mapped = (a: number, b: number, c: number, d: number) =>
    Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d]);

  t.test('receive buffer: the granted size is read back from the kernel', async (t) => {
    const r = await receiver({ recvBufferBytes: 4 << 20 });
    t.teardown(() => r.src.stop());
    if (r.src.recvBufferForced) {
      t.equal(r.src.grantedRecvBuffer, 8 << 20, 'SO_RCVBUFFORCE: Linux reports twice the request');
    } else {
      t.ok(r.src.grantedRecvBuffer > 0, `SO_RCVBUF capped by rmem_max: ${r.src.grantedRecvBuffer}`);
    }
    const d = await receiver({ recvBufferBytes: 0 });
    t.teardown(() => d.src.stop());
    t.ok(d.src.grantedRecvBuffer > 0, `0 keeps the kernel default (${d.src.grantedRecvBuffer})`);
    t.equal(d.src.recvBufferForced, false);
  });

  t.test('kernel timestamps, payloads, IPv4 source as ::ffff:a.b.c.d', async (t) => {
    const r = await receiver();
    t.teardown(() => r.src.stop());
    const sender = new binding.Sender('127.0.0.1', r.port);
    t.teardown(() => sender.close());
    const before = Date.now();
    burst(sender, Array.from({ length: 50 }, (_, i) => 20 + i));
    await r.until(50);
    const after = Date.now();
    t.equal(r.got.length, 50);
    let prev = 0;
    let backwards = 0;
    for (const [i, g] of r.got.entries()) {
      const ms = g.sec * 1e3 + g.nsec / 1e6;
      if (g.nsec >= 1e9 || ms < before - 1000 || ms > after + 1000) t.fail(`datagram ${i}: ${g.sec}.${g.nsec} not within a second of now`);
      if (ms < prev - 1) backwards++;
      prev = Math.max(prev, ms);
      t.equal(g.wire, 20 + i, 'wire length');
      t.equal(g.bytes.length, 20 + i, 'length');
      t.equal(g.bytes.readUInt32BE(0), i, 'payload in order');
      t.same(g.addr, v4mapped(127, 0, 0, 1), 'source address');
      t.equal(g.port, sender.address().port, 'source port');
    }
    t.equal(backwards, 0, 'timestamps do not go backwards by more than 1 ms');
  });

  t.test('a burst queued before the loop reads comes back in full batches', async (t) => {
    const r = await receiver({ batchSize: 256 });
    t.teardown(() => r.src.stop());
    const sender = new binding.Sender('127.0.0.1', r.port);
    t.teardown(() => sender.close());
    burst(sender, new Array(600).fill(64));
    await r.until(600);
    // Loopback delivers inside sendmmsg unless ksoftirqd takes over, so normally [256, 256, 88].
    t.equal(Math.max(...r.batches), 256, `full batches (${r.batches.join(' ')})`);
    t.ok(r.batches.length <= 6, 'far fewer calls than datagrams');
    t.equal(r.src.stats.batches, r.batches.length);
    t.equal(r.src.stats.datagrams, 600);
    const expected = new Array(BATCH_SIZE_BUCKETS.length).fill(0);
    for (const n of r.batches) expected[BATCH_SIZE_BUCKETS.findIndex((le) => n <= le)]++;
    t.same([...r.src.batchSizeCounts], expected, 'batch-size histogram buckets');
  });

  t.test('maxBatchesPerTurn bounds a wake-up; the rest is read on later turns', async (t) => {
    const events: string[] = [];
    const r = await receiver({ batchSize: 16, maxBatchesPerTurn: 2 }, () => events.push('batch'));
    t.teardown(() => r.src.stop());
    const sender = new binding.Sender('127.0.0.1', r.port);
    t.teardown(() => sender.close());
    let spinning = true;
    const spin = () => {
      events.push('immediate');
      if (spinning) setImmediate(spin);
    };
    setImmediate(spin);
    burst(sender, new Array(160).fill(64));
    await r.until(160);
    spinning = false;
    t.equal(Math.max(...r.batches), 16);
    const runs = events
      .join(' ')
      .split('immediate')
      .map((s) => s.trim().split(' ').filter(Boolean).length)
      .filter((n) => n > 0);
    t.equal(Math.max(...runs), 2, `at most two batches per loop turn (${runs.join(' ')})`);
    t.ok(runs.length >= 5, 'other callbacks ran in between');
  });

  t.test('IPv6: bind ::1, source address and port', async (t) => {
    const r = await receiver({ host: '::1' });
    t.teardown(() => r.src.stop());
    t.equal(r.src.address()?.family, 'IPv6');
    const sender = new binding.Sender('::1', r.port);
    t.teardown(() => sender.close());
    burst(sender, [100, 200]);
    await r.until(2);
    const loopback6 = Buffer.alloc(16);
    loopback6[15] = 1;
    for (const g of r.got) {
      t.same(g.addr, loopback6, 'srcAddr is ::1');
      t.equal(g.port, sender.address().port);
      t.ok(g.sec > 0 && g.nsec < 1e9, 'timestamped');
    }
    t.same(
      r.got.map((g) => g.wire),
      [100, 200],
    );
  });

  t.test('[::] is dual-stack: IPv4 senders arrive as ::ffff:a.b.c.d', async (t) => {
    const r = await receiver({ host: '[::]' });
    t.teardown(() => r.src.stop());
    const v4 = new binding.Sender('127.0.0.1', r.port);
    const v6 = new binding.Sender('::1', r.port);
    t.teardown(() => (v4.close(), v6.close()));
    burst(v4, [10]);
    burst(v6, [11]);
    await r.until(2);
    const byLen = new Map(r.got.map((g) => [g.wire, g]));
    t.same(byLen.get(10)?.addr, v4mapped(127, 0, 0, 1));
    t.equal(byLen.get(10)?.port, v4.address().port);
    t.equal(byLen.get(11)?.addr[15], 1);
    t.equal(byLen.get(11)?.port, v6.address().port);
  });

  t.test('a name resolves once at start', async (t) => {
    const r = await receiver({ host: 'localhost' });
    t.teardown(() => r.src.stop());
    t.ok(['127.0.0.1', '::1'].includes(r.src.address()!.address), r.src.address()!.address);
  });

  t.test('datagrams larger than a slot are kept truncated, with their real size', async (t) => {
    const r = await receiver({ slotBytes: 1024 });
    t.teardown(() => r.src.stop());
    const sender = new binding.Sender('127.0.0.1', r.port);
    t.teardown(() => sender.close());
    burst(sender, [3000, 500, 1024, 1025]);
    await r.until(4);
    t.same(
      r.got.map((g) => [g.bytes.length, g.wire]),
      [
        [1024, 3000],
        [500, 500],
        [1024, 1024],
        [1024, 1025],
      ],
    );
    t.equal(r.got[0]!.bytes.readUInt32BE(0), 0, 'the kept part is the start of the datagram');
    t.equal(r.got[0]!.bytes[1023], 0xa5);
    t.equal(r.src.counters[COUNTER_TRUNCATED], 2, 'truncations counted');

    const big = await receiver();
    t.teardown(() => big.src.stop());
    const s2 = new binding.Sender('127.0.0.1', big.port);
    t.teardown(() => s2.close());
    burst(s2, [65507]);
    await big.until(1);
    t.same([big.got[0]!.bytes.length, big.got[0]!.wire], [65507, 65507], 'the default slots (snaplen 65535) hold the largest IPv4 datagram whole');
    t.equal(big.src.counters[COUNTER_TRUNCATED], 0);
  });

  t.test('slots are sized from the snaplen, with GENEVE headroom; the slab stays bounded', async (t) => {
    const sized = (opts: Partial<NativeSourceOptions>) => new NativeSource({ host: '127.0.0.1', port: 0, recvBufferBytes: 0, ...opts });
    t.equal(DEFAULT_SLOT_BYTES, MAX_SLOT_BYTES, 'the default snaplen (65535) takes any datagram whole');
    for (const [snaplen, slot] of [[64, 1024], [256, 1024], [1000, 2048], [1500, 2048], [9000, 10240], [65535, 65536], [262144, 65536]] as const) {
      t.equal(slotBytesFor(snaplen), slot, `snaplen ${snaplen}: ${slot}-byte slots`);
      t.ok(slot >= 8 + snaplen + SLOT_HEADROOM || slot === MAX_SLOT_BYTES, `snaplen ${snaplen}: VXLAN header, frame and headroom fit`);
      const src = sized({ snaplen });
      t.ok(src.batch.slab.length <= MAX_SLAB_BYTES, `snaplen ${snaplen}: slab ${src.batch.slab.length} bytes <= ${MAX_SLAB_BYTES}`);
      t.equal(src.batch.capacity, Math.min(256, MAX_SLAB_BYTES / slot), `snaplen ${snaplen}: ${src.batch.capacity} datagrams per recvmmsg`);
      t.equal(src.maxDatagram, slot === MAX_SLOT_BYTES ? undefined : slot, 'maxDatagram: what a slot holds, undefined when any datagram fits');
    }
    t.equal(sized({ snaplen: 1000, batchSize: 1024, slotBytes: 65536 }).batch.slab.length, 1024 * 65536, 'explicit sizes are taken as given');
  });

  t.test('kernel drops: a tiny buffer overflowed while nobody reads', async (t) => {
    const r = await receiver({ recvBufferBytes: 4096, batchSize: 8 });
    t.teardown(() => r.src.stop());
    const sender = new binding.Sender('127.0.0.1', r.port);
    t.teardown(() => sender.close());
    t.equal(r.src.stats.kernelDrops, 0, 'nothing dropped yet');
    burst(sender, new Array(200).fill(1000)); // synchronous: the loop cannot read meanwhile
    await sleep(50);
    const drops = r.src.stats.kernelDrops;
    t.ok(drops > 100, `SO_MEMINFO sees the drops before any datagram carries them (${drops})`);
    const queued = r.got.length;
    t.ok(queued > 0 && queued < 200, `some were queued (${queued})`);
    t.equal(queued + drops, 200, 'every datagram was either queued or counted as dropped');
    t.equal(r.src.counters[COUNTER_RXQ_OVFL], 0, 'SO_RXQ_OVFL has not been carried yet');
    burst(sender, [10]);
    await r.until(queued + 1);
    t.equal(r.src.counters[COUNTER_RXQ_OVFL], drops, 'the next datagram carries SO_RXQ_OVFL');
    t.equal(r.src.stats.kernelDrops, drops);
    await r.src.stop();
    t.equal(r.src.stats.kernelDrops, drops, 'still readable after close');
  });

  t.test('coalescing: after the socket runs dry the receiver rests, then takes what queued in full batches; drain() reads it at once', async (t) => {
    const r = await receiver({ coalesceMs: 200 });
    t.teardown(() => r.src.stop());
    const sender = new binding.Sender('127.0.0.1', r.port);
    t.teardown(() => sender.close());
    burst(sender, [64]);
    await r.until(1);
    burst(sender, new Array(300).fill(64)); // arrives while the receiver rests
    await sleep(50);
    t.equal(r.got.length, 1, 'nothing read during the rest');
    r.src.drain();
    t.equal(r.got.length, 301, 'drain() delivered the queue synchronously');
    t.same(r.batches.slice(1), [256, 44], 'in full batches');
    burst(sender, new Array(10).fill(64));
    await r.until(311, 3000);
    t.pass('after the rest, reading resumes by itself');
  });

  t.test('an idle receiver sleeps: a rest that ends on an empty socket waits for the next datagram, not for the next rest', async (t) => {
    const r = await receiver({ coalesceMs: 1 });
    t.teardown(() => r.src.stop());
    const sender = new binding.Sender('127.0.0.1', r.port);
    t.teardown(() => sender.close());
    burst(sender, new Array(20).fill(64));
    await r.until(20);
    await sleep(50);
    const before = r.src.counters[COUNTER_READS]!;
    await sleep(300);
    // Polling every 1 ms would have read about 300 times by now.
    t.equal(r.src.counters[COUNTER_READS]! - before, 0, 'no read in 300 ms without traffic');
    burst(sender, new Array(5).fill(64));
    await r.until(25);
    t.pass('the next datagram wakes it');
  });

  t.test('a sink that says it is saturated makes the receiver rest before reading on', async (t) => {
    let saturated = true;
    const src = new NativeSource({ host: '127.0.0.1', port: 0, recvBufferBytes: 4 << 20, batchSize: 16, coalesceMs: 200, saturatedRestMs: 200 });
    const sizes: number[] = [];
    await src.start((b) => {
      sizes.push(b.count);
      return saturated;
    });
    t.teardown(() => src.stop());
    const sender = new binding.Sender('127.0.0.1', src.address()!.port);
    t.teardown(() => sender.close());
    burst(sender, new Array(100).fill(64));
    await sleep(100);
    t.same(sizes, [16], 'one batch, then a rest although more is queued');
    saturated = false;
    await sleep(300);
    t.equal(sizes.reduce((a, b) => a + b, 0), 100, 'after the rest it reads the rest');
  });

  t.test('close(): idempotent, stops delivery at once, frees the port', async (t) => {
    const r = await receiver({ batchSize: 4 });
    const sender = new binding.Sender('127.0.0.1', r.port);
    t.teardown(() => sender.close());
    // Close from inside the first batch: nothing more may be delivered.
    const seen: number[] = [];
    const src = new NativeSource({ host: '127.0.0.1', port: 0, recvBufferBytes: 0, batchSize: 4 });
    await src.start((b) => {
      seen.push(b.count);
      void src.stop();
    });
    const s2 = new binding.Sender('127.0.0.1', src.address()!.port);
    t.teardown(() => s2.close());
    const port = src.address()!.port;
    burst(s2, new Array(20).fill(30));
    await sleep(50);
    t.same(seen, [4], 'one batch, then closed inside the callback');
    t.equal(src.ready, false);
    await src.stop();

    await r.src.stop();
    await r.src.stop();
    t.equal(r.src.ready, false);
    t.equal(r.src.address(), undefined);
    await t.rejects(r.src.start(() => {}), /closed/, 'no restart after close');

    const again = new NativeSource({ host: '127.0.0.1', port, recvBufferBytes: 0 });
    await again.start(() => {});
    t.equal(again.address()?.port, port, 'the port is free as soon as close() resolves');
    await again.stop();

    const never = new NativeSource({ host: '127.0.0.1', port: 0, recvBufferBytes: 0 });
    await never.stop();
    await never.stop();
    await t.rejects(never.start(() => {}), /closed/);
  });

  t.test('bind errors reject start() with the errno code', async (t) => {
    const r = await receiver();
    t.teardown(() => r.src.stop());
    const clash = new NativeSource({ host: '127.0.0.1', port: r.port, recvBufferBytes: 0 });
    await t.rejects(clash.start(() => {}), { code: 'EADDRINUSE', syscall: 'bind' });
    t.equal(clash.ready, false);
    const bad = new NativeSource({ host: '127.0.0.1', port: 70000, recvBufferBytes: 0 });
    await t.rejects(bad.start(() => {}), TypeError);
    t.throws(() => new NativeSource({ host: '::1', port: 0, recvBufferBytes: 0, batchSize: 2000 }), RangeError);
  });

  t.test('SO_REUSEPORT lets several receivers share a port', async (t) => {
    const a = await receiver({ reusePort: true });
    t.teardown(() => a.src.stop());
    const b = await receiver({ reusePort: true, port: a.port });
    t.teardown(() => b.src.stop());
    t.equal(b.port, a.port);
  });

  t.test('sender: -errno for a refused destination, range checks', async (t) => {
    const r = await receiver();
    const port = r.port;
    await r.src.stop();
    const sender = new binding.Sender('127.0.0.1', port);
    t.teardown(() => sender.close());
    const slab = Buffer.alloc(64);
    const offsets = new Uint32Array([0]);
    const lengths = new Uint32Array([64]);
    t.equal(sender.send(slab, offsets, lengths, 0, 1), 1, 'the first datagram leaves');
    await sleep(20); // the ICMP port unreachable comes back
    t.equal(sender.send(slab, offsets, lengths, 0, 1), -111, '-ECONNREFUSED');
    t.throws(() => sender.send(slab, offsets, new Uint32Array([65]), 0, 1), RangeError, 'beyond the slab');
    t.throws(() => sender.send(slab, offsets, lengths, 0, 2), RangeError, 'beyond the arrays');
    t.ok(sender.setSendBuffer(1 << 20).granted >= 1 << 20);
    sender.close();
    sender.close();
    t.equal(sender.send(slab, offsets, lengths, 0, 1), -9, '-EBADF once closed');
  });

  t.test('loader: a missing or broken addon is reported, never thrown', async (t) => {
    const missing = loadNative('/nonexistent/mirrorcap_native.node');
    t.equal(missing.ok, false);
    t.match(!missing.ok && missing.reason, /not built: \/nonexistent\/mirrorcap_native\.node is missing/);
    const dir = mkdtempSync(join(tmpdir(), 'mirrorcap-native-'));
    const broken = join(dir, 'broken.node');
    writeFileSync(broken, 'not an ELF file');
    const bad = loadNative(broken);
    t.equal(bad.ok, false);
    t.match(!bad.ok && bad.reason, /failed to load: .*(invalid ELF|too short)/);
  });

  t.test('runs in worker threads; a worker that ends releases its socket', async (t) => {
    const url = new URL('../../src/source/native.js', import.meta.url).href;
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      import(${JSON.stringify(url)}).then(async ({ NativeSource }) => {
        const src = new NativeSource({ host: '127.0.0.1', port: 0, recvBufferBytes: 0 });
        await src.start((b) => {
          parentPort.postMessage({ got: b.count });
          if (workerData === 'terminate inside the batch callback') for (;;);
        });
        parentPort.postMessage({ port: src.address().port });
        if (workerData === 'process.exit') setTimeout(() => process.exit(0), 200);
      });`;
    for (const ending of ['terminate', 'process.exit', 'terminate inside the batch callback']) {
      const w = new Worker(code, { eval: true, workerData: ending });
      const msgs: Array<{ port?: number; got?: number }> = [];
      const port = await new Promise<number>((resolve, reject) => {
        w.on('message', (m: { port?: number; got?: number }) => (msgs.push(m), m.got === undefined && resolve(m.port!)));
        w.on('error', reject);
      });
      const sender = new binding.Sender('127.0.0.1', port);
      burst(sender, [42, 42, 42]);
      const received = (): number => msgs.filter((m) => m.got !== undefined).reduce((a, m) => a + m.got!, 0);
      // Poll rather than sleep a fixed time: the worker may be slow to run on a busy machine.
      // A worker stuck inside its first callback sees only that batch, which may hold 1 to 3.
      const want = ending === 'terminate inside the batch callback' ? 1 : 3;
      for (let waited = 0; received() < want && waited < 3000; waited += 20) await sleep(20);
      t.ok(received() >= want && received() <= 3, `${ending}: the worker received (${received()})`);
      const exit = ending === 'process.exit' ? new Promise((r) => w.on('exit', r)) : w.terminate();
      t.equal(await exit, ending === 'process.exit' ? 0 : 1, `${ending}: the worker ended without aborting`);
      sender.close();
      const again = new NativeSource({ host: '127.0.0.1', port, recvBufferBytes: 0 });
      await again.start(() => {});
      t.equal(again.address()?.port, port, `${ending}: the worker's port was released`);
      await again.stop();
    }
  });

  t.test('catchStderr: what is written on fd 2 during the call is handed over, not printed (child process)', async (t) => {
    const url = new URL('../../src/native/addon.js', import.meta.url).href;
    const script = `
      import { writeSync } from 'node:fs';
      import { catchStderr } from ${JSON.stringify(url)};
      writeSync(2, 'before\\n');
      const caught = [];
      const value = catchStderr(() => (writeSync(2, 'Warning: from a C library\\n'), 42), (text) => caught.push(text));
      try {
        catchStderr(() => { writeSync(2, 'then it threw\\n'); throw new Error('open failed'); }, (text) => caught.push(text));
      } catch (err) {
        caught.push(err.message);
      }
      writeSync(2, 'after\\n');
      console.log(JSON.stringify({ value, caught }));
    `;
    const dir = mkdtempSync(join(tmpdir(), 'mirrorcap-native-'));
    const file = join(dir, 'stderr.mjs');
    writeFileSync(file, script);
    const run = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 10000 });
    t.equal(run.status, 0, run.stderr);
    t.equal(run.stderr, 'before\nafter\n', 'fd 2 is back after each call; nothing caught leaked');
    t.same(JSON.parse(run.stdout), { value: 42, caught: ['Warning: from a C library\n', 'then it threw\n', 'open failed'] }, 'the text, also when the call throws');
  });

  t.test('garbage collection and a throwing sink (child process)', async (t) => {
    const url = new URL('../../src/source/native.js', import.meta.url).href;
    const addonUrl = new URL('../../src/native/addon.js', import.meta.url).href;
    const script = `
      import { NativeSource } from ${JSON.stringify(url)};
      import { loadNative } from ${JSON.stringify(addonUrl)};
      const { Receiver, Sender } = loadNative().binding;
      const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
      // Never started, then dropped: the finalizer closes the socket.
      const port = (() => new Receiver('127.0.0.1', 0, false).address().port)();
      // Started and dropped without close(): it must keep receiving.
      let got = 0;
      let thrown = 0;
      process.on('uncaughtException', (e) => { thrown++; console.log('uncaught:', e.message); });
      await (async () => {
        const src = new NativeSource({ host: '127.0.0.1', port: 0, recvBufferBytes: 0 });
        await src.start((b) => { got += b.count; if (got === 1) throw new Error('sink bug'); });
        globalThis.port2 = src.address().port;
      })();
      for (let i = 0; i < 5; i++) { gc(); await sleep(10); }
      const again = new Receiver('127.0.0.1', port, false);
      again.close();
      const s = new Sender('127.0.0.1', globalThis.port2);
      const slab = Buffer.alloc(10);
      s.send(slab, new Uint32Array([0]), new Uint32Array([10]), 0, 1);
      await sleep(30);
      s.send(slab, new Uint32Array([0]), new Uint32Array([10]), 0, 1);
      await sleep(30);
      gc();
      console.log(JSON.stringify({ got, thrown, rebound: true }));
      process.exit(0);
    `;
    const dir = mkdtempSync(join(tmpdir(), 'mirrorcap-native-'));
    const file = join(dir, 'gc.mjs');
    writeFileSync(file, script);
    const run = spawnSync(process.execPath, ['--expose-gc', file], { encoding: 'utf8', timeout: 10000 });
    t.equal(run.status, 0, run.stderr);
    t.match(run.stdout, /uncaught: sink bug/, 'a throwing sink surfaces as an uncaught exception');
    t.match(run.stdout, /\{"got":2,"thrown":1,"rebound":true\}/, 'collected sockets close; live ones keep receiving');
  });
}
