/**
 * The stream hub on its own, with a sink whose writes complete only when the test says: what a
 * client receives is a pcap tshark reads (ns for HTTP, µs for PCAP-over-IP), each client gets
 * its session and its filter's packets, a full buffer drops for that client alone and is counted,
 * chunks are reused once written, and a client full without progress for 10 s is disconnected.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { FLUSH_MS, STALL_MS, StreamHub, type StreamSink } from '../../src/control/streams.js';
import { compileFilter } from '../../src/filter/index.js';
import { createLogger } from '../../src/log.js';
import type { Session } from '../../src/session/session.js';
import { ether, ipv4, tcp, udp } from '../lib/frames.js';
import { tsharkFrames } from '../lib/tshark.js';
import { withTempDir } from '../lib/tools.js';

class TestSink implements StreamSink {
  readonly chunks: Buffer[] = [];
  readonly callbacks: Array<(err?: Error | null) => void> = [];
  /** Complete writes at once (a fast client) or hold them (a client that does not read). */
  constructor(private readonly fast: boolean) {}
  private onClose: Array<() => void> = [];
  closed = false;
  write(chunk: Uint8Array, cb: (err?: Error | null) => void): boolean {
    this.chunks.push(Buffer.from(chunk));
    if (this.fast) cb();
    else this.callbacks.push(cb);
    return true;
  }
  completeAll(): void {
    for (const cb of this.callbacks.splice(0)) cb();
  }
  end(): void {
    this.destroy();
  }
  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    for (const l of this.onClose) l();
  }
  once(_event: 'close', listener: () => void): unknown {
    this.onClose.push(listener);
    return this;
  }
  get bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

const session = (name: string): Session => ({ name }) as Session;
const hubOf = (bufferBytes = 8 << 20) => new StreamHub({ maxStreams: 4, bufferBytes, log: createLogger('silent'), hasSession: () => true });
const tcpFrame = (port: number): Buffer => ether(0x0800, ipv4(6, tcp({ dport: port })));
const udpFrame = (len: number): Buffer => ether(0x0800, ipv4(17, udp(1000, 53, Buffer.alloc(len))));

t.test('clients get their session and filter; tshark reads ns and µs streams with the records as given', async (t) => {
  const hub = hubOf();
  const all = new TestSink(true);
  const web = new TestSink(true);
  const pip = new TestSink(true);
  hub.attach(all, { session: null, filter: null, nanoseconds: true, transport: 'http', peer: 'a' });
  hub.attach(web, { session: 'web', filter: compileFilter('tcp port 443'), nanoseconds: true, transport: 'http', peer: 'b' });
  hub.attach(pip, { session: null, filter: null, nanoseconds: false, transport: 'pcap-over-ip', peer: 'c' });
  t.equal(hub.connected('http'), 2);
  const frames = [tcpFrame(443), tcpFrame(80), udpFrame(100), tcpFrame(443)];
  const sessions = ['web', 'web', 'dns', 'dns'];
  frames.forEach((f, i) => hub.packet(session(sessions[i]!), f, 0, f.length, f.length + 10, 1_700_000_000 + i, 123_456_789));
  hub.flush();
  await withTempDir(async (dir) => {
    const read = async (name: string, sink: TestSink) => {
      await writeFile(join(dir, name), sink.bytes);
      return tsharkFrames(join(dir, name));
    };
    const got = await read('all.pcap', all);
    t.equal(got.length, 4);
    t.same(got.map((f) => f.data), frames);
    t.same(got.map((f) => f.origLen), frames.map((f) => f.length + 10), 'orig_len as given');
    t.equal(got[1]!.ts, '1700000001.123456789', 'nanoseconds');
    const w = await read('web.pcap', web);
    t.same(w.map((f) => f.data), [frames[0]], "web's stream: its session, its filter");
    const p = await read('pip.pcap', pip);
    t.equal(p.length, 4);
    t.equal(p[2]!.ts, '1700000002.123456000', 'microseconds');
  });
  t.equal(hub.packets, 4 + 1 + 4);
  t.equal(hub.dropped, 0);
});

t.test('a client that does not read: bounded memory, its drops counted, chunks reused once written, then disconnected', async (t) => {
  const hub = hubOf(1 << 20);
  const slow = new TestSink(false);
  const fast = new TestSink(true);
  hub.attach(slow, { session: null, filter: null, nanoseconds: true, transport: 'pcap-over-ip', peer: 'slow' });
  hub.attach(fast, { session: null, filter: null, nanoseconds: true, transport: 'http', peer: 'fast' });
  const f = udpFrame(1400);
  const s = session('s');
  const n = 2000;
  for (let i = 0; i < n; i++) {
    hub.packet(s, f, 0, f.length, f.length, i, 0);
    if (i % 16 === 15) hub.flush();
  }
  hub.flush();
  await sleep(FLUSH_MS + 20);
  const held = slow.chunks.reduce((sum, c) => sum + c.length, 0);
  t.ok(held <= (1 << 20) + 24, `the slow client holds ${held} bytes, within its 1 MiB`);
  const taken = Math.floor(held / (16 + f.length));
  t.equal(hub.dropped, n - taken, 'what it could not take is dropped and counted');
  t.equal(fast.bytes.length, 24 + n * (16 + f.length), 'the fast client got everything');
  // Written at last: its chunks are free again.
  slow.completeAll();
  hub.packet(s, f, 0, f.length, f.length, 0, 0);
  t.equal(hub.dropped, n - taken, 'room again once the writes completed');
  // Full again, and no progress for STALL_MS: disconnected; the fast one is not.
  for (let i = 0; i < n; i++) hub.packet(s, f, 0, f.length, f.length, i, 0);
  hub.tick(Date.now() + STALL_MS - 1000);
  t.notOk(slow.closed, 'not yet');
  hub.tick(Date.now() + STALL_MS + 1);
  t.ok(slow.closed, 'stalled: disconnected');
  t.notOk(fast.closed);
  t.equal(hub.stalled, 1);
  t.equal(hub.connected('pcap-over-ip'), 0, 'and freed');
  t.equal(hub.connected('http'), 1);
});

t.test('writes are paced: one per client per FLUSH_MS however many batches, the last by a timer', async (t) => {
  const hub = hubOf();
  const sink = new TestSink(true);
  hub.attach(sink, { session: null, filter: null, nanoseconds: true, transport: 'http', peer: 'a' });
  const f = udpFrame(100);
  const s = session('s');
  hub.packet(s, f, 0, f.length, f.length, 1, 0);
  hub.flush();
  t.equal(sink.chunks.length, 1, 'the first batch is written at once');
  for (let i = 0; i < 50; i++) {
    hub.packet(s, f, 0, f.length, f.length, 2 + i, 0);
    hub.flush();
  }
  t.equal(sink.chunks.length, 1, `50 batches within ${FLUSH_MS} ms: no write yet`);
  await sleep(FLUSH_MS + 20);
  t.equal(sink.chunks.length, 2, 'then one write, by the timer, with no batch to trigger it');
  t.equal(sink.bytes.length, 24 + 51 * (16 + f.length), 'every record, once');
  await hub.close();
});

t.test('max-streams bounds clients; one leaving frees its slot', async (t) => {
  const hub = new StreamHub({ maxStreams: 1, bufferBytes: 1 << 20, log: createLogger('silent'), hasSession: () => true });
  const a = new TestSink(true);
  t.ok(hub.attach(a, { session: null, filter: null, nanoseconds: true, transport: 'http', peer: 'a' }));
  t.equal(hub.attach(new TestSink(true), { session: null, filter: null, nanoseconds: true, transport: 'http', peer: 'b' }), null);
  t.equal(hub.refused, 1);
  a.destroy();
  t.notOk(hub.active);
  t.ok(hub.attach(new TestSink(true), { session: null, filter: null, nanoseconds: true, transport: 'http', peer: 'c' }));
});
