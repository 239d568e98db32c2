/**
 * Live streams read as a user reads them: `curl -sN …/stream | tshark -r -` and tshark's
 * PCAP-over-IP interface (`-i TCP@host:port`), while traffic flows. What they got is compared
 * with what the files got, record for record, as tcpdump prints both (libpcap reads the
 * streams' files and ours). Then the limits: max-streams, the token, bad filters, unknown
 * sessions, and a client that stops reading (dropped and counted for it alone, then
 * disconnected; the files lose nothing).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { httpGet, metricSum, metricValue, sendDatagrams, startAppliance, waitFor, type Appliance } from '../lib/appliance.js';
import { ether, ipv4, tcp, udp, udpFrame, vxlan } from '../lib/frames.js';
import { haveTool, run } from '../lib/tools.js';

const temp = (): Promise<string> => mkdtemp(join(tmpdir(), 'mirrorcap-streams-'));
const skip = ['tshark', 'tcpdump', 'curl'].find((x) => !haveTool(x));
const metrics = async (app: Appliance): Promise<string> => (await httpGet(app.httpPort, '/metrics')).body;

/** The records of capture files as tcpdump prints them, one string per record; with `expr` the ones it selects. */
async function records(paths: string[], expr: string | null, precision: 'nano' | 'micro'): Promise<string[]> {
  const out: string[] = [];
  for (const p of paths) {
    const r = await run('tcpdump', ['-r', p, '-n', '-tt', `--time-stamp-precision=${precision}`, '-xx', ...(expr === null ? [] : [expr])]);
    if (r.code !== 0) throw new Error(`tcpdump -r ${p}: ${r.stderr}`);
    for (const line of r.stdout.split('\n')) {
      if (/^\d/.test(line)) out.push(line);
      else if (line !== '') out[out.length - 1] += `\n${line}`;
    }
  }
  return out;
}

const sessionFiles = async (dir: string): Promise<string[]> => (await readdir(dir)).filter((f) => f.endsWith('.pcap')).sort().map((f) => join(dir, f));

/** A shell pipeline, as the README shows it; resolves with its exit code. */
function shell(command: string): { proc: ChildProcess; done: Promise<number | null>; stderr: () => string } {
  const proc = spawn('/bin/sh', ['-c', command], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return { proc, done: new Promise((r) => proc.on('close', r)), stderr: () => err };
}

const frame = (proto: 'tcp' | 'udp', seq: number): Buffer =>
  ether(0x0800, ipv4(proto === 'tcp' ? 6 : 17, proto === 'tcp' ? tcp({ sport: 1024 + (seq % 60000), dport: 443, seq }) : udp(1024 + (seq % 60000), 53, Buffer.alloc(seq % 200)), { src: '10.0.0.1', dst: '10.0.0.2' }));

t.test('HTTP and PCAP-over-IP streams read by tshark while traffic flows hold what the files got', { skip: skip && `${skip} is not installed` }, async (t) => {
  const base = await temp();
  const cfg = join(base, 'c.yaml');
  await writeFile(cfg, 'sessions:\n  - { vni: 7, name: web, snaplen: 100 }\n  - { vni: 8, name: dns }\n');
  const app = await startAppliance(['--out', join(base, 'cap'), '--config', cfg, '--pcap-over-ip', '127.0.0.1:0']);
  t.teardown(() => app.proc.kill('SIGKILL'));
  const pip = app.logs.find((l) => l.event === 'start')!.pcapOverIpPort as number;
  const url = `http://127.0.0.1:${app.httpPort}`;
  const s = (name: string) => join(base, name);
  const pipes = [
    shell(`curl -sN ${url}/api/stream | tshark -r - -F nsecpcap -w ${s('all.pcap')}`),
    shell(`curl -sN -G --data-urlencode 'filter=udp or tcp src portrange 1024-1500' ${url}/api/stream | tshark -r - -F nsecpcap -w ${s('filtered.pcap')}`),
    shell(`curl -sN ${url}/api/sessions/web/stream | tshark -r - -F nsecpcap -w ${s('web.pcap')}`),
    shell(`tshark -i TCP@127.0.0.1:${pip} -F pcap -w ${s('pip.pcap')}`),
  ];
  t.teardown(() => pipes.forEach((p) => p.proc.kill('SIGKILL')));
  // tshark takes seconds to start, many more on a loaded machine.
  await waitFor(async () => metricSum(await metrics(app), 'mirrorcap_streams') === 4, 120_000, 'four stream clients').catch((e: Error) => {
    throw new Error(`${e.message}: ${pipes.map((p) => p.stderr()).join(' | ')}`);
  });

  const n = 1500;
  const traffic = Array.from({ length: n }, (_, i) => vxlan(7 + (i % 2), frame(i % 3 === 0 ? 'udp' : 'tcp', i)));
  await sendDatagrams(app.udpPort, traffic);
  await waitFor(async () => metricSum(await metrics(app), 'mirrorcap_written_packets_total') === n, 10_000, 'written');
  // The streams have the packets before the files close: the records arrive as they come.
  await waitFor(async () => metricValue(await metrics(app), 'mirrorcap_stream_packets_total')! >= 3 * n, 5000, 'queued for the streams');
  const m = await metrics(app);
  t.equal(metricValue(m, 'mirrorcap_stream_dropped_packets_total'), 0);
  t.equal(await app.stop(), 0);
  for (const p of pipes.slice(0, 3)) t.equal(await p.done, 0, p.stderr());
  await pipes[3]!.done;

  const web = await sessionFiles(join(base, 'cap', 'web'));
  const dns = await sessionFiles(join(base, 'cap', 'dns'));
  const files = await records([...web, ...dns], null, 'nano');
  t.equal(files.length, n);
  const sorted = (x: string[]): string[] => [...x].sort();
  t.same(sorted(await records([s('all.pcap')], null, 'nano')), sorted(files), '/api/stream: every record of every file (snaplen cut included)');
  const want = await records([...web, ...dns], 'udp or tcp src portrange 1024-1500', 'nano');
  t.ok(want.length > 0 && want.length < n);
  t.same(sorted(await records([s('filtered.pcap')], null, 'nano')), sorted(want), '?filter=: what tcpdump selects from the files');
  t.same(await records([s('web.pcap')], null, 'nano'), await records(web, null, 'nano'), "a session's stream: its file, in order");
  t.same(sorted(await records([s('pip.pcap')], null, 'micro')), sorted(await records([...web, ...dns], null, 'micro')), 'PCAP-over-IP (µs): every record');
  const opened = app.logs.filter((l) => l.event === 'stream_opened').map((l) => l.transport);
  t.same(opened.sort(), ['http', 'http', 'http', 'pcap-over-ip']);
});

t.test('stream limits: 400 for a bad filter, 404 for an unknown session, 503 beyond max-streams, the token', { skip: skip && `${skip} is not installed` }, async (t) => {
  const app = await startAppliance(['--out', await temp(), '--max-streams', '1', '--pcap-over-ip', '127.0.0.1:0'], { MIRRORCAP_HTTP_TOKEN: 'tok' });
  t.teardown(() => app.proc.kill('SIGKILL'));
  const auth = { Authorization: 'Bearer tok' };
  t.equal((await httpGet(app.httpPort, '/api/stream')).status, 401, 'the token guards the streams');
  t.equal((await httpGet(app.httpPort, '/api/sessions/x/stream')).status, 401);
  const bad = await httpGet(app.httpPort, `/api/stream?filter=${encodeURIComponent('tcp prot 80')}`, auth);
  t.equal(bad.status, 400);
  t.match(JSON.parse(bad.body), { reason: 'syntax', position: 4, word: 'prot' });
  t.equal((await httpGet(app.httpPort, '/api/sessions/nope/stream', auth)).status, 404);
  const head = await new Promise<{ status: number; type: string }>((resolve, reject) => {
    const c = connect(app.httpPort, '127.0.0.1', () => c.write('HEAD /api/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\nConnection: close\r\n\r\n'));
    let got = '';
    c.on('data', (d) => (got += d.toString()));
    c.on('end', () => resolve({ status: Number(got.split(' ')[1]), type: /content-type: (.*)\r/i.exec(got)?.[1] ?? '' }));
    c.on('error', reject);
  });
  t.same(head, { status: 200, type: 'application/vnd.tcpdump.pcap' });
  // One client holds the only slot: the next HTTP one gets 503, the next TCP one is closed.
  const holder = connect(app.httpPort, '127.0.0.1', () => holder.write('GET /api/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\n\r\n'));
  t.teardown(() => holder.destroy());
  await waitFor(async () => metricSum(await metrics(app), 'mirrorcap_streams') === 1, 5000, 'one client');
  t.equal((await httpGet(app.httpPort, '/api/stream', auth)).status, 503);
  const pip = app.logs.find((l) => l.event === 'start')!.pcapOverIpPort as number;
  const closed = await new Promise<number>((resolve) => {
    let bytes = 0;
    const c = connect(pip, '127.0.0.1');
    c.on('data', (d) => (bytes += d.length));
    c.on('close', () => resolve(bytes));
  });
  t.equal(closed, 0, 'a PCAP-over-IP client beyond max-streams is closed with nothing sent');
  t.equal(metricValue(await metrics(app), 'mirrorcap_stream_refused_total'), 2);
  holder.destroy();
  await waitFor(async () => metricSum(await metrics(app), 'mirrorcap_streams') === 0, 5000, 'the client gone frees its slot');
  t.equal(await app.stop(), 0);
});

t.test('a client that stops reading: its packets drop and are counted, it is disconnected after 10 s, the files lose nothing', async (t) => {
  const base = await temp();
  const app = await startAppliance(['--out', base, '--stream-buffer', '1MiB', '--pcap-over-ip', '127.0.0.1:0']);
  t.teardown(() => app.proc.kill('SIGKILL'));
  const pip = app.logs.find((l) => l.event === 'start')!.pcapOverIpPort as number;
  // Connected, never read: the kernel's socket buffers fill, then our 1 MiB.
  const stalled = connect(pip, '127.0.0.1');
  stalled.pause();
  t.teardown(() => stalled.destroy());
  await waitFor(async () => metricSum(await metrics(app), 'mirrorcap_streams') === 1, 5000, 'client attached');
  const n = 20_000;
  const traffic = Array.from({ length: n }, (_, i) => vxlan(9, udpFrame(1400, 9, i)));
  await sendDatagrams(app.udpPort, traffic);
  await waitFor(async () => metricValue(await metrics(app), 'mirrorcap_packets_total', { session: 'vni-9' }) === metricValue(await metrics(app), 'mirrorcap_datagrams_total'), 10_000, 'routed');
  let m = await metrics(app);
  const accepted = metricValue(m, 'mirrorcap_packets_total', { session: 'vni-9' })!;
  t.ok(accepted > n * 0.9, `${accepted} of ${n} datagrams received`);
  const dropped = metricValue(m, 'mirrorcap_stream_dropped_packets_total')!;
  t.ok(dropped > 0, `${dropped} packets dropped for the stalled client`);
  t.equal(metricValue(m, 'mirrorcap_stream_packets_total')! + dropped, accepted, 'every packet either queued for the client or dropped for it');
  await waitFor(() => app.logs.some((l) => l.event === 'stream_stalled'), 15_000, 'stalled client disconnected');
  m = await metrics(app);
  t.equal(metricValue(m, 'mirrorcap_stream_stalled_total'), 1);
  t.equal(metricSum(m, 'mirrorcap_streams'), 0);
  t.equal(await app.stop(), 0);
  t.equal(metricSum(m, 'mirrorcap_dropped_packets_total', { session: 'vni-9' }), 0, 'no drop of the files');
  const written = (await records(await sessionFiles(join(base, 'vni-9')), null, 'nano')).length;
  t.equal(written, accepted, 'the files hold every packet received');
});
