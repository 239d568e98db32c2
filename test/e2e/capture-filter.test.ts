/**
 * Capture filters (--filter, a session's filter:) on decap and on the live appliance. The
 * oracle is libpcap: the files written with a filter hold exactly what `tcpdump -r` selects
 * with the same expression from the files written without one (records compared as tcpdump
 * prints them: nanosecond time, lengths, every byte).
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import t from 'tap';
import { decap } from '../../src/commands/decap.js';
import { parseFlags, resolveConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { httpGet, MAIN, metricValue, sendDatagrams, startAppliance, waitFor } from '../lib/appliance.js';
import { realCaptures } from '../lib/captures.js';
import { ether, ipv4, tcp, udp, vxlan } from '../lib/frames.js';
import { haveTool, mapLimit, run } from '../lib/tools.js';

const temp = (): Promise<string> => mkdtemp(join(tmpdir(), 'mirrorcap-filter-'));
const skip = haveTool('tcpdump') ? false : 'tcpdump is not installed';
const real = realCaptures();
const skipReal = skip || real.skip;

/** Every record of a session folder's files as tcpdump prints it (with `expr`, the ones it selects). */
async function tcpdumpRecords(dir: string, expr: string | null): Promise<string> {
  const files = (await readdir(dir)).filter((f) => /\.pcap(\.part)?$/.test(f)).sort();
  let out = '';
  for (const f of files) {
    const r = await run('tcpdump', ['-r', join(dir, f), '-n', '-tt', '--time-stamp-precision=nano', '-xx', ...(expr === null ? [] : [expr])]);
    if (r.code !== 0) throw new Error(`tcpdump -r ${f} ${expr}: ${r.stderr}`);
    out += r.stdout;
  }
  return out;
}

async function decapInto(capture: string, out: string, args: string[] = []): Promise<Awaited<ReturnType<typeof decap>>> {
  const config = resolveConfig(parseFlags(['--out', out, ...args]).flags, {}, { 'log-level': 'silent' });
  return decap(capture, 4789, config, createLogger('silent'));
}

const EXPRESSIONS = [
  'tcp',
  'udp port 53',
  'not tcp',
  'ip6 or arp',
  'tcp[tcpflags] & (tcp-syn|tcp-fin) != 0',
  'host 10.0.0.1 or net 192.168.0.0/16',
  'greater 200 and ip',
  'icmp or icmp6 or vlan',
];

t.test('decap --filter writes exactly what tcpdump -r selects from the unfiltered files', { skip: skipReal }, async (t) => {
  const captures = real.files.filter((f) => /vxlan/.test(basename(f)));
  let compared = 0;
  let kept = 0;
  for (const capture of captures) {
    const base = await temp();
    const plain = await decapInto(capture, join(base, 'plain'));
    if (plain.sessions.length === 0) continue;
    await mapLimit(EXPRESSIONS, 2, async (expr) => {
      const out = join(base, `f${EXPRESSIONS.indexOf(expr)}`);
      const filtered = await decapInto(capture, out, ['--filter', expr]);
      for (const s of plain.sessions) {
        const want = await tcpdumpRecords(join(base, 'plain', s.name), expr);
        const session = filtered.sessions.find((x) => x.name === s.name)!;
        const got = session.written === 0 ? '' : await tcpdumpRecords(join(out, s.name), null);
        t.equal(got, want, `${basename(capture)} ${s.name}: ${expr}`);
        t.equal(filtered.summary.dropped.queue_full ?? 0, 0);
        kept += session.written;
        compared++;
      }
      const total = plain.summary.writtenPackets;
      t.equal(filtered.summary.writtenPackets + filtered.summary.filtered, total, `${basename(capture)} ${expr}: written + filtered = all`);
    });
  }
  t.ok(compared >= 20, `${compared} session/expression pairs compared`);
  t.ok(kept > 0, `${kept} packets kept by some filter`);
});

const TWO_VNIS = real.files.find((f) => basename(f) === 'zeek-vxlan-overlapping-http-get-2vni.pcap');
t.test('decap: a session filter in the config file, --filter for the sessions without one', { skip: skipReal || (TWO_VNIS === undefined && 'zeek-vxlan-overlapping-http-get-2vni.pcap is not among the real captures') }, async (t) => {
  const capture = TWO_VNIS!;
  const base = await temp();
  const plain = await decapInto(capture, join(base, 'plain'));
  t.equal(plain.sessions.length, 2, 'two VNIs');
  const [a, b] = plain.sessions as [(typeof plain.sessions)[0], (typeof plain.sessions)[0]];
  const cfg = join(base, 'c.yaml');
  await writeFile(cfg, `sessions:\n  - { vni: ${a.vni}, name: own, filter: "tcp dst port 80" }\n`);
  const filtered = await decapInto(capture, join(base, 'f'), ['--config', cfg, '--filter', 'tcp src port 80']);
  t.equal(await tcpdumpRecords(join(base, 'f', 'own'), null), await tcpdumpRecords(join(base, 'plain', a.name), 'tcp dst port 80'), 'own filter');
  t.equal(await tcpdumpRecords(join(base, 'f', b.name), null), await tcpdumpRecords(join(base, 'plain', b.name), 'tcp src port 80'), '--filter for the other');
  t.ok(filtered.summary.filtered > 0);
});

t.test('a filter that does not compile: exit 2 naming the word and its position (flag, config file, decap)', async (t) => {
  const base = await temp();
  const cli = (args: string[]) => spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 30_000 });
  let r = cli(['run', '--out', base, '--listen', '127.0.0.1:0', '--http', '127.0.0.1:0', '--filter', 'tcp prot 80']);
  t.equal(r.status, 2);
  t.match(r.stderr, /invalid --filter "tcp prot 80": .*'prot', position 4/);
  const cfg = join(base, 'c.yaml');
  await writeFile(cfg, 'sessions:\n  - { vni: 5, name: web, filter: "port 80 and frobnicate" }\n');
  r = cli(['run', '--out', base, '--listen', '127.0.0.1:0', '--http', '127.0.0.1:0', '--config', cfg]);
  t.equal(r.status, 2);
  t.match(r.stderr, /invalid the filter of session web "port 80 and frobnicate": .*'frobnicate', position 12/);
  r = cli(['decap', join(base, 'c.yaml'), '--out', base, '--filter', 'ether proto']);
  t.equal(r.status, 2);
  t.match(r.stderr, /invalid --filter "ether proto": .*position 11/);
});

/** An inner TCP or UDP frame from 10.0.0.<host> to port `port`, numbered by `seq` in its source port. */
const frame = (proto: 'tcp' | 'udp', port: number, seq: number): Buffer =>
  ether(0x0800, ipv4(proto === 'tcp' ? 6 : 17, proto === 'tcp' ? tcp({ sport: 1024 + seq, dport: port }) : udp(1024 + seq, port, Buffer.alloc(20)), { src: '10.0.0.1', dst: '10.0.0.2' }));

t.test('run: session filters count filtered packets, show in /api/sessions and reload on SIGHUP (a bad one refused)', { skip }, async (t) => {
  const base = await temp();
  const cfg = join(base, 'c.yaml');
  await writeFile(cfg, 'sessions:\n  - { vni: 5, name: web, filter: "tcp port 443" }\n');
  const app = await startAppliance(['--out', join(base, 'cap'), '--config', cfg, '--filter', 'udp']);
  t.teardown(() => app.proc.kill('SIGKILL'));
  const mixed = (vni: number, from: number): Buffer[] =>
    Array.from({ length: 40 }, (_, i) => vxlan(vni, frame(i % 2 === 0 ? 'tcp' : 'udp', i % 4 === 0 ? 443 : 80, from + i)));
  await sendDatagrams(app.udpPort, [...mixed(5, 0), ...mixed(6, 0)]);
  const metrics = async (): Promise<string> => (await httpGet(app.httpPort, '/metrics')).body;
  await waitFor(async () => metricValue(await metrics(), 'mirrorcap_datagrams_total') === 80, 5000, 'datagrams');
  let m = await metrics();
  t.equal(metricValue(m, 'mirrorcap_filtered_packets_total', { session: 'web', vni: '5' }), 30, 'web keeps tcp port 443 only: 10 of 40');
  t.equal(metricValue(m, 'mirrorcap_filtered_packets_total', { session: 'vni-6', vni: '6' }), 20, '--filter udp: 20 of 40');
  t.equal(metricValue(m, 'mirrorcap_dropped_packets_total', { reason: 'queue_full', session: 'web' }), 0, 'filtered is not a drop');
  const sessions = JSON.parse((await httpGet(app.httpPort, '/api/sessions')).body) as Array<{ name: string; filter: string | null; filteredPackets: number }>;
  t.match(sessions.find((s) => s.name === 'web'), { filter: 'tcp port 443', filteredPackets: 30 });
  t.match(sessions.find((s) => s.name === 'vni-6'), { filter: 'udp', filteredPackets: 20 });

  // A bad filter at reload: refused, logged with the word, the old one kept.
  await writeFile(cfg, 'sessions:\n  - { vni: 5, name: web, filter: "tcp port 443 or" }\n');
  app.proc.kill('SIGHUP');
  await waitFor(() => app.logs.some((l) => l.event === 'reload_failed'), 5000, 'reload_failed');
  t.match(app.logs.find((l) => l.event === 'reload_failed')!.err, /filter of session web "tcp port 443 or".*the expression ends too early/);
  await sendDatagrams(app.udpPort, mixed(5, 40));
  await waitFor(async () => metricValue(await metrics(), 'mirrorcap_datagrams_total') === 120, 5000, 'datagrams');
  t.equal(metricValue(await metrics(), 'mirrorcap_filtered_packets_total', { session: 'web' }), 60, 'the old filter still applies');

  // A good one: applied between two batches.
  await writeFile(cfg, 'sessions:\n  - { vni: 5, name: web, filter: "udp" }\n');
  app.proc.kill('SIGHUP');
  await waitFor(() => app.logs.some((l) => l.event === 'reload'), 5000, 'reload');
  await sendDatagrams(app.udpPort, mixed(5, 80));
  await waitFor(async () => metricValue(await metrics(), 'mirrorcap_datagrams_total') === 160, 5000, 'datagrams');
  m = await metrics();
  t.equal(metricValue(m, 'mirrorcap_filtered_packets_total', { session: 'web' }), 80, 'the new filter keeps the 20 udp of 40');
  t.equal(await app.stop(), 0);
  const web = await tcpdumpRecords(join(base, 'cap', 'web'), null);
  t.equal(web.split('\n').filter((l) => /^\d/.test(l)).length, 10 + 10 + 20, 'web wrote 40 packets');
  t.equal(await tcpdumpRecords(join(base, 'cap', 'web'), 'not (tcp port 443 or udp)'), '', 'nothing the filters refused reached the file');
});
