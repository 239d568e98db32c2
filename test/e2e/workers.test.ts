/**
 * --workers N: several receive threads on one port (SO_REUSEPORT), merged by kernel
 * timestamp on the main thread. The same traffic (16 senders, each its own source port, over
 * 4 sessions) goes to --workers 1 and --workers 2: every frame sent is in the files (counted
 * exactly), each file's records are in time order (tshark's frame.time_epoch), each sender's
 * frames keep their order, and the files hold the same records byte for byte as with one
 * receiver (only the timestamps and how the senders interleave differ between two runs).
 * Half the traffic is sent right before SIGTERM: stopping drains every worker's socket.
 */
import { readdir, stat, readFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { httpGet, metricSum, metricValue, sendDatagrams, startAppliance, waitFor } from '../lib/appliance.js';
import { udpFrame, vxlan } from '../lib/frames.js';
import { tsharkFrames, type Frame } from '../lib/tshark.js';
import { tool } from '../lib/tools.js';
import { loadNative } from '../../src/native/addon.js';

const SENDERS = 16;
const PER_SENDER = 200;
const SESSIONS = 4;

/** Sender s sends frames seq s*10000 + i, i < PER_SENDER, all to session 1 + s % SESSIONS. */
function half(first: boolean): Promise<void[]> {
  const jobs: Promise<void>[] = [];
  for (let s = 0; s < SENDERS; s++) {
    const vni = 1 + (s % SESSIONS);
    const from = first ? 0 : PER_SENDER / 2;
    const frames = Array.from({ length: PER_SENDER / 2 }, (_, i) => vxlan(vni, udpFrame(200, vni, s * 10_000 + from + i)));
    jobs.push(sendDatagrams(port, frames));
  }
  return Promise.all(jobs);
}
let port = 0;

interface Run {
  /** Per session: its one file's frames (tshark) and the file's bytes. */
  readonly sessions: Map<string, { frames: Frame[]; size: number; header: Buffer }>;
  readonly perWorker: number[];
  /** mirrorcap_receive_buffer_bytes: what the kernel granted the socket(s). */
  readonly recvBuffer: number;
}

async function capture(t: Test, workers: number): Promise<Run> {
  const out = await mkdtemp(join(tmpdir(), `mirrorcap-workers-${workers}-`));
  const app = await startAppliance(['--out', out, '--workers', String(workers), '--recv-buffer', '16MiB', '--no-index']);
  t.teardown(() => app.proc.kill('SIGKILL'));
  port = app.udpPort;
  t.match(app.logs.find((l) => l.event === 'start'), { source: workers === 1 ? 'native' : `native x${workers}` });
  await half(true);
  const total = SENDERS * PER_SENDER;
  let m = '';
  await waitFor(async () => {
    m = (await httpGet(app.httpPort, '/metrics')).body;
    return metricValue(m, 'mirrorcap_datagrams_total') === total / 2;
  }, 10_000, 'the first half received');
  const perWorker = Array.from({ length: workers > 1 ? workers : 0 }, (_, w) => metricValue(m, 'mirrorcap_worker_received_packets_total', { worker: String(w) }) ?? -1);
  if (workers > 1) {
    t.equal(metricSum(m, 'mirrorcap_worker_received_packets_total'), total / 2, 'the workers\' counts add up to what the pipeline got');
    t.equal(metricValue(m, 'mirrorcap_worker_deaths_total'), 0);
    t.equal((await httpGet(app.httpPort, '/readyz')).status, 200, 'ready with every worker alive');
  }
  // The second half goes straight into the sockets, and SIGTERM follows at once.
  await half(false);
  t.equal(await app.stop(), 0, 'clean exit');
  t.equal(metricValue(m, 'mirrorcap_socket_drops_total'), 0, 'no kernel drops');
  // One tshark run reads every session's file (mergecap -a: one after the other); each frame
  // carries its session's VNI at payload offset 0 (byte 42 of the frame).
  const dirs = (await readdir(out)).sort();
  const paths: string[] = [];
  const sessions: Run['sessions'] = new Map();
  for (const dir of dirs) {
    const files = (await readdir(join(out, dir))).filter((f) => f.endsWith('.pcap'));
    t.equal(files.length, 1, `${dir}: one file`);
    const path = join(out, dir, files[0]!);
    paths.push(path);
    sessions.set(dir, { frames: [], size: (await stat(path)).size, header: (await readFile(path)).subarray(0, 24) });
  }
  const all = join(out, 'all.pcap');
  await tool('mergecap', ['-a', '-w', all, ...paths]);
  for (const f of await tsharkFrames(all)) sessions.get(`vni-${f.data.readUInt32BE(42)}`)?.frames.push(f);
  return { sessions, perWorker, recvBuffer: metricSum(m, 'mirrorcap_receive_buffer_bytes') };
}

/** tshark's "sec.nsec" as a bigint of nanoseconds. */
const ns = (ts: string): bigint => {
  const [s, f] = ts.split('.');
  return BigInt(s!) * 1_000_000_000n + BigInt(f!.padEnd(9, '0'));
};

t.test('--workers 2 on SO_REUSEPORT sockets: nothing lost, time order kept, the same records as one receiver', async (t) => {
  if (!loadNative().ok) {
    t.pass('skipped: the native addon is not built (receive threads need it)');
    return;
  }
  const one = await capture(t, 1);
  const two = await capture(t, 2);
  t.ok(two.perWorker.every((n) => n > 0), `both workers received (${two.perWorker.join(', ')}): the kernel spread the senders`);
  t.ok(one.recvBuffer > 0, `one receiver's buffer is reported (${one.recvBuffer} bytes)`);
  t.equal(two.recvBuffer, 2 * one.recvBuffer, 'two receive threads: both sockets\' buffers together');
  let written = 0;
  for (const [session, { frames }] of two.sessions) {
    written += frames.length;
    const out = frames.findIndex((f, i) => i > 0 && ns(f.ts) < ns(frames[i - 1]!.ts));
    t.equal(out, -1, `${session}: records in time order (frame.time_epoch never goes back)`);
    // Each sender's frames, in the order it sent them (its seq, at payload offset 42 + 4).
    const last = new Map<number, number>();
    let reordered = 0;
    for (const f of frames) {
      const seq = f.data.readUInt32BE(46);
      const sender = Math.floor(seq / 10_000);
      if ((last.get(sender) ?? -1) > seq) reordered++;
      last.set(sender, seq);
    }
    t.equal(reordered, 0, `${session}: every sender's frames in the order sent`);
  }
  t.equal(written, SENDERS * PER_SENDER, `every frame sent is in the files (${written})`);
  t.same([...two.sessions.keys()], [...one.sessions.keys()], 'the same sessions');
  for (const [session, a] of one.sessions) {
    const b = two.sessions.get(session)!;
    const records = (r: { frames: Frame[] }): string[] => r.frames.map((f) => `${f.capLen}/${f.origLen}/${f.linkType}/${f.data.toString('hex')}`).sort();
    t.ok(a.header.equals(b.header), `${session}: the same file header`);
    t.equal(b.size, a.size, `${session}: the same size`);
    t.same(records(b), records(a), `${session}: the same records, byte for byte (but for their timestamps)`);
  }
});
