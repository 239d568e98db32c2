/**
 * Flow records end to end: real captures through `mirrorcap decap` and through the live appliance
 * (replayed as VXLAN over loopback) with --flows. The flow-log files are read with the test's own
 * parser of AWS's documentation (test/lib/vpcflow.ts) and checked against tshark's per-packet
 * fields over the pcap files the same run wrote (test/lib/flowtshark.ts): packets, bytes, first
 * and last second and tcp-flags of every flow in every interval. Live, the quiet intervals give
 * NODATA records, /api/flows answers with the filter language, and SIGTERM writes the open
 * interval as partial.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import t, { type Test } from 'tap';
import { buildPcap, readRecords, REAL_DIR, realCaptures } from '../lib/captures.js';
import { ether, ipv4, udp, vxlan } from '../lib/frames.js';
import { aggregate, QUIRKS, tsharkPackets, type Agg } from '../lib/flowtshark.js';
import { httpGet, MAIN, metricSum, startAppliance, waitFor } from '../lib/appliance.js';
import { parseFlowLogPath, readFlowLog } from '../lib/vpcflow.js';

t.setTimeout(240_000);

/** Real captures whose every packet tshark and a flow record see alike (no QUIRKS: checked below). */
const CLEAN = [
  'plain-suricata-verify-mixed-lan-ftp-http.pcap',
  'plain-tcpdump-dns-tcp.pcap',
  'plain-tcpdump-dns-udp.pcap',
  'plain-zeek-icmp6-ping.pcap',
  'plain-zeek-http-vlan-802.1q.pcap',
  'plain-tcpdump-mptcp-v1.pcap',
];
const FORMAT = '${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} ${packets} ${bytes} ${start} ${end} ${action} ${log-status} ${tcp-flags} ${type}';
const ACCOUNT = '123456789012';
const REGION = 'eu-west-1';
const ENI = 'eni-0123456789abcdef0';
const FIELDS = `account-id=${ACCOUNT},region=${REGION},interface-id=${ENI}`;
const VNI = 123;
/** Each capture gets a window of its own (its own offsets kept), so flows of two captures never meet. */
const BASE = 1_700_000_000;
const WINDOW = 1_000_000;

interface Inner {
  readonly data: Buffer;
  readonly orig: number;
  readonly sec: number;
  readonly nsec: number;
}

const { skip } = realCaptures();

async function cleanFrames(t: Test): Promise<Inner[]> {
  const frames: Inner[] = [];
  for (const [k, name] of CLEAN.entries()) {
    const { recs, err } = await readRecords(join(REAL_DIR, name));
    t.equal(err, null, `${name} reads`);
    const secs = recs.map((r) => Number(r.ts.split('.')[0]));
    const first = Math.min(...secs);
    t.ok(Math.max(...secs) - first < WINDOW, `${name} fits its window`);
    recs.forEach((r, i) => frames.push({ data: r.data, orig: r.origLen, sec: BASE + k * WINDOW + secs[i]! - first, nsec: Number(r.ts.split('.')[1]) }));
  }
  return frames;
}

/** Every flow-log file under <out>/flows: its path relative to it, parsed by the AWS-documentation reader. */
function flowFiles(t: Test, out: string): Array<{ rel: string; records: Record<string, string>[] }> {
  const root = join(out, 'flows');
  const rels = (readdirSync(root, { recursive: true }) as string[]).filter((f) => f.endsWith('.log.gz') || f.endsWith('.part')).sort();
  return rels.map((rel) => {
    const p = parseFlowLogPath(rel);
    t.ok(p, `${rel}: AWS's S3 layout`);
    t.match(p, { account: ACCOUNT, region: REGION }, `${rel}: account and region from --flow-fields`);
    const log = readFlowLog(join(root, rel));
    t.equal(log.fields.join(' '), FORMAT.replace(/\$\{([^}]+)\}/g, '$1'), `${rel}: header line`);
    return { rel, records: log.records };
  });
}

/** OK records by interval + 5-tuple, as the oracle keys them. */
function ourFlows(t: Test, files: ReturnType<typeof flowFiles>, interval: number): Map<string, Agg> {
  const flows = new Map<string, Agg>();
  for (const { records } of files) {
    for (const r of records) {
      t.equal(r['account-id'], ACCOUNT);
      t.equal(r['interface-id'], ENI);
      if (r['log-status'] !== 'OK') continue;
      t.equal(r.action, 'ACCEPT');
      const start = Number(r.start);
      const key = `${Math.floor(start / interval) * interval} ${r.srcaddr} ${r.dstaddr} ${r.srcport} ${r.dstport} ${r.protocol}`;
      t.notOk(flows.has(key), `one record for ${key}`);
      flows.set(key, { packets: Number(r.packets), bytes: Number(r.bytes), start, end: Number(r.end), flags: Number(r['tcp-flags']) });
    }
  }
  return flows;
}

/** tshark's flows over the session's pcap files (merged), with the packets QUIRKS would excuse: there must be none. */
function tsharkFlows(t: Test, work: string, dir: string, interval: number): Map<string, Agg> {
  const pcaps = readdirSync(dir).filter((f) => f.endsWith('.pcap')).map((f) => join(dir, f));
  t.ok(pcaps.length > 0, `${pcaps.length} pcap files written`);
  const merged = join(work, `merged-${interval}.pcap`);
  const m = spawnSync('mergecap', ['-F', 'pcap', '-w', merged, ...pcaps], { encoding: 'utf8' });
  t.equal(m.status, 0, m.stderr);
  const packets = tsharkPackets(merged);
  const excused = packets.filter((p) => QUIRKS.some((q) => q.applies(p))).length;
  t.equal(excused, 0, 'no packet of the clean captures is one tshark and a flow record see differently');
  return aggregate(packets, interval);
}

function compare(t: Test, ours: Map<string, Agg>, want: Map<string, Agg>): void {
  const diff: string[] = [];
  for (const key of new Set([...ours.keys(), ...want.keys()])) {
    const o = ours.get(key);
    const w = want.get(key);
    if (o === undefined || w === undefined || o.packets !== w.packets || o.bytes !== w.bytes || o.start !== w.start || o.end !== w.end || o.flags !== w.flags) {
      diff.push(`${key}: ours ${JSON.stringify(o)}, tshark ${JSON.stringify(w)}`);
    }
  }
  t.same(diff, [], `${ours.size} flow records equal tshark's aggregation`);
  t.ok(want.size > 50, `${want.size} flows: enough to mean something`);
}

t.test('decap --flows: the records of a VXLAN capture equal tshark over the pcaps it wrote', { skip }, async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'mirrorcap-flows-e2e-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const frames = await cleanFrames(t);
  // As AWS sends them: Ethernet / IPv4 / UDP 4789 / VXLAN / the mirrored frame (as captured).
  const records = frames.map((f) => {
    const data = ether(0x0800, ipv4(17, udp(40000, 4789, vxlan(VNI, f.data)), { src: '10.9.0.1', dst: '10.9.0.2' }));
    return { sec: f.sec, frac: f.nsec, data, origLen: data.length + f.orig - f.data.length };
  });
  const input = join(work, 'vxlan.pcap');
  writeFileSync(input, buildPcap({ ns: true, records }));
  const out = join(work, 'out');
  // A configured session with flows on and its interface; account and region for every session from the flag.
  const config = join(work, 'config.yaml');
  writeFileSync(config, `sessions:\n  - { vni: ${VNI}, name: web, flows: true, flow-fields: { interface-id: ${ENI} } }\n`);
  const args = [MAIN, 'decap', input, '--out', out, '--config', config, '--flow-interval', '60', '--flow-fields', `account-id=${ACCOUNT},region=${REGION}`, '--flow-format', FORMAT, '--node-name', 'test'];
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 120_000 });
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /flow records\s+\d+ in \d+ files/, 'decap says what it wrote');
  const files = flowFiles(t, out);
  t.notOk(files.some((f) => f.rel.endsWith('.part')), 'no .part left');
  t.ok(files.every((f) => f.rel.includes(`_vpcflowlogs_${REGION}_fl-`)), 'one flow log id');
  compare(t, ourFlows(t, files, 60), tsharkFlows(t, work, join(out, 'web'), 60));

  // query --flows: a window over the first three captures (HTTP and FTP, DNS over TCP and UDP) and
  // an expression, against the records the AWS-documentation reader found in the files.
  const since = BASE;
  const until = BASE + 3 * WINDOW - 1;
  const port = (r: Record<string, string>, p: string): boolean => r.srcport === p || r.dstport === p;
  const want = files
    .flatMap((f) => f.records)
    .filter((r) => r['log-status'] === 'OK' && Number(r.start) <= until && Number(r.end) >= since && ((r.protocol === '6' && port(r, '80')) || (r.protocol === '17' && port(r, '53'))))
    .map((r) => Object.values(r).join(' '));
  t.ok(want.length > 10, `${want.length} records in the window: tcp port 80 or udp port 53`);
  const query = (...extra: string[]): ReturnType<typeof spawnSync> =>
    spawnSync(process.execPath, [MAIN, 'query', '--flows', 'tcp port 80 or udp port 53', '--out', out, '--node-name', 'test', '--since', String(since), '--until', String(until), ...extra], { encoding: 'utf8', timeout: 60_000 });
  const q = query('--session', 'web');
  t.equal(q.status, 0, String(q.stderr));
  const [header, ...lines] = String(q.stdout).trimEnd().split('\n');
  t.equal(header, FORMAT.replace(/\$\{([^}]+)\}/g, '$1'), 'query --flows: the header line of the files');
  t.same([...lines].sort(), [...want].sort(), 'query --flows: exactly the records of the window the expression selects');
  const starts = lines.map((l) => Number(l.split(' ')[FORMAT.split(' ').indexOf('${start}')]));
  t.ok(starts.every((s, i) => i === 0 || starts[i - 1]! <= s), 'by start time');
  const json = String(query('--json').stdout).trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  t.equal(json.length, want.length, '--json: as many records');
  t.ok(json.every((r) => r.session === 'web' && typeof r.packets === 'number'), '--json: the session by name (from --node-name), numbers as numbers');
  t.same(String(query('--session', 'other').stdout).trimEnd().split('\n').length, 1, 'another session: the header line alone');
  // The same capture again gives byte-identical files under the same names (offline is deterministic).
  const again = join(work, 'again');
  t.equal(spawnSync(process.execPath, [...args.slice(0, 4), again, ...args.slice(5)], { encoding: 'utf8', timeout: 120_000 }).status, 0);
  t.same(
    (readdirSync(join(again, 'flows'), { recursive: true }) as string[]).sort(),
    (readdirSync(join(out, 'flows'), { recursive: true }) as string[]).sort(),
    'the same names: the hash is of the records',
  );
});

t.test('live --flows: replayed traffic, NODATA for quiet intervals, /api/flows, SIGTERM writes the open interval', { skip }, async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'mirrorcap-flows-live-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const frames = await cleanFrames(t);
  const input = join(work, 'inner.pcap');
  writeFileSync(input, buildPcap({ ns: true, records: frames.map((f) => ({ sec: f.sec, frac: f.nsec, data: f.data, origLen: f.orig })) }));
  const out = join(work, 'out');
  const INTERVAL = 2;
  const app = await startAppliance(['--out', out, '--flows', '--flow-interval', String(INTERVAL), '--flow-fields', FIELDS, '--flow-format', FORMAT, '--node-name', 'test']);
  t.teardown(() => app.proc.kill('SIGKILL'));
  const replay = spawnSync(process.execPath, [MAIN, 'replay', input, '--target', `127.0.0.1:${app.udpPort}`, '--vni', String(VNI), '--flat-out'], { encoding: 'utf8', timeout: 60_000 });
  t.equal(replay.status, 0, replay.stderr);
  const metrics = async (): Promise<string> => (await httpGet(app.httpPort, '/metrics')).body;
  await waitFor(async () => metricSum(await metrics(), 'mirrorcap_packets_total') === frames.length, 10_000, 'every frame received');
  // The traffic's interval is written once it has ended (and the grace second passed).
  await waitFor(() => app.logs.some((l) => l.event === 'flow_log_written' && typeof l.flows === 'number' && l.flows > 0), 10_000, 'a file with flows');
  // Then quiet: the session's intervals without a packet are NODATA.
  await waitFor(() => app.logs.some((l) => l.event === 'flow_log_written' && l.noData === true), 3 * INTERVAL * 1000 + 2000, 'a NODATA file');

  const all = await httpGet(app.httpPort, '/api/flows');
  t.equal(all.status, 200);
  t.match(String(all.headers['content-type']), /application\/x-ndjson/);
  const lines = all.body.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
  t.ok(lines.some((r) => r['log-status'] === 'OK' && r.session === `vni-${VNI}`), 'flow records as JSON lines');
  const dns = await httpGet(app.httpPort, `/api/flows?filter=${encodeURIComponent('udp port 53')}`);
  const dnsLines = dns.body.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
  t.ok(dnsLines.length > 0, `${dnsLines.length} records match udp port 53`);
  t.ok(dnsLines.every((r) => r.protocol === 17 && (r.srcport === 53 || r.dstport === 53)), 'only UDP flows to or from port 53');
  t.equal(
    dnsLines.length,
    lines.filter((r) => r.protocol === 17 && (r.srcport === 53 || r.dstport === 53)).length,
    'every UDP flow of port 53',
  );
  const none = await httpGet(app.httpPort, `/api/flows?since=${BASE}&until=${BASE + 1}`);
  t.equal(none.body, '', 'a window before the traffic holds nothing');
  t.equal((await httpGet(app.httpPort, '/api/flows?filter=port%20nonsense')).status, 400, 'a bad filter is a 400');
  t.equal((await httpGet(app.httpPort, '/api/flows?since=yesterday')).status, 400, 'a bad time is a 400');
  // query --flows --from: this appliance and one that is not there; the failure reported, the rest answered by start time.
  const url = `http://127.0.0.1:${app.httpPort}`;
  const remote = spawnSync(process.execPath, [MAIN, 'query', '--flows', 'udp port 53', '--json', '--from', `${url},http://127.0.0.1:9`, '--session', `vni-${VNI}`], { encoding: 'utf8', timeout: 30_000 });
  t.equal(remote.status, 1, 'one appliance failed: exit 1');
  t.match(remote.stderr, /127\.0\.0\.1:9: error: /, 'the failure reported');
  t.match(remote.stderr, `${url}: ${dnsLines.length} flow records`, 'the answer counted');
  const merged = remote.stdout.split('\n').filter((l) => l !== '');
  t.same([...merged].sort(), dnsLines.map((r) => JSON.stringify(r)).sort(), 'query --flows --from: the records /api/flows gives');
  const starts = merged.map((l) => Number((JSON.parse(l) as { start: number }).start));
  t.ok(starts.every((v, i) => i === 0 || starts[i - 1]! <= v), 'by start time');

  const m = await metrics();
  t.equal(metricSum(m, 'mirrorcap_flow_table_full_total'), 0);
  t.ok(metricSum(m, 'mirrorcap_flows_max') === 1_000_000, '--max-flows default');
  const stopAt = Date.now() / 1000;
  t.equal(await app.stop(), 0, 'SIGTERM: exit 0');
  const written = app.logs.filter((l) => l.event === 'flow_log_written');
  // The open interval is written at SIGTERM: partial, unless the stop fell within the first second of an
  // interval (whole seconds: then the one that just ended is the last, whole).
  const last = written.at(-1)!;
  t.ok(last.partial === true ? Number(last.closedAt) <= stopAt + 1 : Math.abs(Number(last.end) - stopAt) <= 1.5, 'the open interval is written at SIGTERM', { last, stopAt });
  const files = flowFiles(t, out);
  t.notOk(files.some((f) => f.rel.endsWith('.part')), 'no .part left');
  const records = files.flatMap((f) => f.records);
  const noData = records.filter((r) => r['log-status'] === 'NODATA');
  t.ok(noData.length > 0, `${noData.length} NODATA records`);
  t.ok(noData.every((r) => r.srcaddr === '-' && r.packets === '-' && r.action === '-'), 'NODATA records as AWS writes them');
  t.equal(records.length, written.reduce((n, l) => n + Number(l.flows) + (l.noData ? 1 : 0) + (l.skipData ? 1 : 0), 0), 'every logged record is in a file');
  compare(t, ourFlows(t, files, INTERVAL), tsharkFlows(t, work, join(out, `vni-${VNI}`), INTERVAL));
  t.comment(`${files.length} files, ${records.length} records; ${relative(out, join(out, 'flows'))}/ holds them`);
});
