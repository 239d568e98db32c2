/**
 * Flow-log files as AWS delivers them to S3, read back with the test's own reader of AWS's
 * documentation (test/lib/vpcflow.ts) and `gzip -t`: layout and names, header, field counts,
 * `-` placement; OK, NODATA and SKIPDATA files; names the same for the same records and never
 * reused; the recent-records ring; recovery of `.part` files, including one whose writer was
 * killed with SIGKILL in the middle of a file.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import t from 'tap';
import { Catalog, flowLogKey } from '../../src/capture/catalog.js';
import { DEFAULT_FLOW_FORMAT, parseFlowFormat, resolveFlowSessionInfo } from '../../src/flowformat.js';
import { flowLogId, recoverFlowLogs, SessionFlowLog, type FlowFile, type FlowLogWriter } from '../../src/capture/flowlog.js';
import { FlowRing } from '../../src/capture/flowring.js';
import { Decoder } from '../../src/decode/packet.js';
import { FlowBudget, type FlowTable } from '../../src/session/flows.js';
import { ether, ipv4, ipv6, tcp, udp } from '../lib/frames.js';
import { parseFlowLogPath, readFlowLog } from '../lib/vpcflow.js';
import { addAt } from '../lib/flows.js';

const here = dirname(fileURLToPath(import.meta.url));
const d = new Decoder();
const MIN0 = 1_700_000_040 - (1_700_000_040 % 60);

function tmp(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'mirrorcap-flowlog-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Every file under root, relative, sorted. */
function files(root: string): string[] {
  return existsSync(root) ? (readdirSync(root, { recursive: true }) as string[]).filter((f) => /\.(gz|part|corrupt)$/.test(f)).sort() : [];
}

interface Rig {
  log: SessionFlowLog;
  table: FlowTable;
  writer: FlowLogWriter;
  written: FlowFile[];
  errors: NodeJS.ErrnoException[];
  budget: FlowBudget;
  feed: (frame: Buffer, sec: number) => void;
}

function rig(root: string, o: { session?: string; node?: string; max?: number; fields?: Record<string, unknown>; format?: string; ring?: FlowRing; interval?: number } = {}): Rig {
  const budget = new FlowBudget(o.max ?? 1000);
  const written: FlowFile[] = [];
  const errors: NodeJS.ErrnoException[] = [];
  const log = new SessionFlowLog({
    root,
    session: o.session ?? 'web',
    node: o.node ?? 'node-a',
    format: parseFlowFormat(o.format ?? DEFAULT_FLOW_FORMAT),
    settings: { flows: true, flowFields: resolveFlowSessionInfo(o.fields, 'flow-fields') },
    ring: o.ring ?? null,
    intervalSec: o.interval ?? 60,
    budget,
    graceSec: 0,
    fileClosed: (f) => written.push(f),
    writeError: (err) => errors.push(err),
  });
  return {
    log,
    table: log.table,
    writer: log.writer,
    written,
    errors,
    budget,
    feed: (frame, sec) => {
      d.decode(frame, 0, frame.length);
      addAt(log.table, d, sec);
    },
  };
}

const seg = (src: string, dst: string, sport: number, dport: number, payload = 0): Buffer =>
  ether(0x0800, ipv4(6, tcp({ sport, dport, flags: 0x18 }, Buffer.alloc(payload)), { src, dst }));

const FIELDS = { 'account-id': '123456789012', 'interface-id': 'eni-0a1b2c3d4e5f60718', region: 'eu-west-1', 'vpc-id': 'vpc-0123' };

t.test('one file per interval, in the S3 layout, readable as AWS documents the format', async (t) => {
  const root = tmp(t);
  const r = rig(root, { fields: FIELDS });
  r.feed(seg('10.0.0.1', '10.0.0.2', 1000, 443, 100), MIN0 + 5);
  r.feed(seg('10.0.0.2', '10.0.0.1', 443, 1000, 1000), MIN0 + 6);
  r.feed(seg('10.0.0.1', '10.0.0.2', 1000, 443), MIN0 + 59);
  r.feed(ether(0x86dd, ipv6(17, udp(5353, 53, Buffer.alloc(12)), { src: '2001:db8::5', dst: '2001:db8::53' })), MIN0 + 60);
  r.table.tick(MIN0 + 120); // seals the second interval
  r.table.tick(MIN0 + 180); // the third saw nothing: NODATA
  await r.log.idle();
  t.equal(r.written.length, 3);
  const rel = files(root);
  t.equal(rel.length, 3);
  const id = flowLogId('node-a', 'web');
  t.match(id, /^fl-[0-9a-f]{17}$/);
  for (const f of rel) {
    const p = parseFlowLogPath(f);
    t.ok(p, `${f} is in AWS's layout`);
    t.match(p, { account: '123456789012', region: 'eu-west-1', id });
  }
  t.same(
    rel.map((f) => parseFlowLogPath(f)!.stamp),
    ['20231114T2214Z', '20231114T2215Z', '20231114T2216Z'],
    'named by interval start',
  );
  const [a, b, c] = r.written.map((w) => readFlowLog(w.path));
  t.equal(a!.fields.join(' '), 'version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status');
  t.same(a!.records, [
    { version: '2', 'account-id': '123456789012', 'interface-id': 'eni-0a1b2c3d4e5f60718', srcaddr: '10.0.0.1', dstaddr: '10.0.0.2', srcport: '1000', dstport: '443', protocol: '6', packets: '2', bytes: '180', start: String(MIN0 + 5), end: String(MIN0 + 59), action: 'ACCEPT', 'log-status': 'OK' },
    { version: '2', 'account-id': '123456789012', 'interface-id': 'eni-0a1b2c3d4e5f60718', srcaddr: '10.0.0.2', dstaddr: '10.0.0.1', srcport: '443', dstport: '1000', protocol: '6', packets: '1', bytes: '1040', start: String(MIN0 + 6), end: String(MIN0 + 6), action: 'ACCEPT', 'log-status': 'OK' },
  ]);
  t.match(b!.records, [{ srcaddr: '2001:db8::5', dstaddr: '2001:db8::53', srcport: '5353', dstport: '53', protocol: '17', packets: '1', bytes: '60' }]);
  t.same(c!.records, [{ version: '2', 'account-id': '123456789012', 'interface-id': 'eni-0a1b2c3d4e5f60718', srcaddr: '-', dstaddr: '-', srcport: '-', dstport: '-', protocol: '-', packets: '-', bytes: '-', start: String(MIN0 + 120), end: String(MIN0 + 180), action: '-', 'log-status': 'NODATA' }]);
  t.match(r.written[2], { noData: true, skipData: false, flows: 0, start: MIN0 + 120, partial: false });
  t.equal(r.writer.filesWritten, 3);
  t.equal(r.writer.recordsWritten, 4);
  t.equal(r.budget.used, 0, 'written intervals give their flows back');
});

t.test('SKIPDATA next to the flows that were counted; a flushed interval is partial', async (t) => {
  const root = tmp(t);
  const r = rig(root, { max: 2, format: '${version} ${srcport} ${packets} ${start} ${end} ${tcp-flags} ${type} ${log-status}' });
  for (let p = 1; p <= 4; p++) r.feed(seg('10.0.0.1', '10.0.0.2', p, 80), MIN0 + p);
  r.table.flush(MIN0 + 30);
  await r.log.idle();
  const f = readFlowLog(r.written[0]!.path);
  t.same(f.records, [
    { version: '3', srcport: '1', packets: '1', start: String(MIN0 + 1), end: String(MIN0 + 1), 'tcp-flags': '0', type: 'IPv4', 'log-status': 'OK' },
    { version: '3', srcport: '2', packets: '1', start: String(MIN0 + 2), end: String(MIN0 + 2), 'tcp-flags': '0', type: 'IPv4', 'log-status': 'OK' },
    { version: '3', srcport: '-', packets: '-', start: String(MIN0), end: String(MIN0 + 30), 'tcp-flags': '-', type: '-', 'log-status': 'SKIPDATA' },
  ]);
  t.match(r.written[0], { partial: true, closedAt: MIN0 + 30, skipData: true, noData: false, flows: 2 });
  t.equal(r.table.fullPackets, 2);
  t.match(parseFlowLogPath(files(root)[0]!), { account: 'unknown', region: 'unknown' }, 'no account or region configured');
});

t.test('names: the same records give the same name; sessions and nodes never share one; nothing is replaced', async (t) => {
  const runs: string[][] = [];
  for (const [node, session] of [
    ['node-a', 'web'],
    ['node-a', 'web'],
    ['node-b', 'web'],
    ['node-a', 'db'],
  ] as const) {
    const root = tmp(t);
    const r = rig(root, { node, session, fields: FIELDS });
    r.feed(seg('10.0.0.1', '10.0.0.2', 1000, 443), MIN0 + 5);
    r.table.flush(MIN0 + 60);
    await r.log.idle();
    runs.push(files(root));
  }
  t.same(runs[0], runs[1], 'deterministic');
  t.not(runs[0]![0], runs[2]![0]);
  t.not(parseFlowLogPath(runs[0]![0]!)!.id, parseFlowLogPath(runs[2]![0]!)!.id, 'another node, another id');
  t.not(parseFlowLogPath(runs[0]![0]!)!.id, parseFlowLogPath(runs[3]![0]!)!.id, 'another session, another id');
  // The same interval written twice (a restart within the interval): two files, both kept.
  const root = tmp(t);
  const r = rig(root, { fields: FIELDS });
  for (let i = 0; i < 2; i++) {
    r.feed(seg('10.0.0.1', '10.0.0.2', 1000, 443), MIN0 + 5);
    r.table.flush(MIN0 + 60);
  }
  await r.log.idle();
  const both = files(root);
  t.equal(both.length, 2);
  t.equal(parseFlowLogPath(both[0]!)!.stamp, parseFlowLogPath(both[1]!)!.stamp);
  for (const f of both) t.equal(readFlowLog(join(root, f)).records.length, 1);
});

t.test('recent records for the JSON view', async (t) => {
  const root = tmp(t);
  const ring = new FlowRing(3);
  const r = rig(root, { ring, fields: FIELDS });
  r.feed(seg('10.0.0.1', '10.0.0.2', 1, 80), MIN0 + 1);
  r.feed(seg('10.0.0.1', '10.0.0.2', 2, 80), MIN0 + 2);
  r.table.tick(MIN0 + 60);
  r.table.tick(MIN0 + 120);
  await r.log.idle();
  const all = ring.query();
  t.equal(all.complete, true);
  t.same(
    all.records.map((x) => [x.srcport ?? '-', x['log-status'], x.start]),
    [
      [1, 'OK', MIN0 + 1],
      [2, 'OK', MIN0 + 2],
      ['-', 'NODATA', MIN0 + 60],
    ],
  );
  t.match(all.records[0], { session: 'web', 'account-id': '123456789012', srcaddr: '10.0.0.1', packets: 1, bytes: 40, type: 'IPv4' });
  t.same(ring.query(MIN0 + 2, MIN0 + 59).records.map((x) => x.srcport), [2]);
  for (let p = 3; p <= 6; p++) r.feed(seg('10.0.0.1', '10.0.0.2', p, 80), MIN0 + 120 + p);
  r.table.flush(MIN0 + 130);
  await r.log.idle();
  t.same(ring.query().records.map((x) => x.srcport), [4, 5, 6], 'the newest records of a big interval');
  t.equal(ring.query(MIN0).complete, false, 'a window reaching back past what was overwritten');
  t.equal(ring.query(MIN0 + 124).complete, true);
  t.throws(() => new FlowRing(0));
});

t.test('an account or region that cannot be a folder name is refused', async (t) => {
  const settings = { flows: true, flowFields: { values: { region: '../../etc' }, addresses: [] } };
  const format = parseFlowFormat(DEFAULT_FLOW_FORMAT);
  t.throws(() => new SessionFlowLog({ root: '/nonexistent', session: 's', node: 'n', format, settings, intervalSec: 60, budget: new FlowBudget() }), { code: 'ERR_MIRRORCAP_FLOW_FORMAT' });
});

t.test('a write that fails rejects, and the next interval is written', async (t) => {
  const root = tmp(t);
  writeFileSync(join(root, 'AWSLogs'), 'a file where a folder should be');
  const r = rig(root, { fields: FIELDS });
  r.feed(seg('10.0.0.1', '10.0.0.2', 1, 80), MIN0 + 1);
  await r.log.close(MIN0 + 2);
  t.match(r.errors, [{ code: 'ENOTDIR' }]);
  t.equal(r.log.writeErrors, 1);
  t.equal(r.written.length, 0);
  t.equal(r.budget.used, 0, 'the flows were given back all the same');
  rmSync(join(root, 'AWSLogs'));
  r.feed(seg('10.0.0.1', '10.0.0.2', 1, 80), MIN0 + 61);
  await r.log.close(MIN0 + 62);
  t.equal(files(root).length, 1);
  t.equal(r.written.length, 1);
});

/** A gzip member of `text` cut after `keep` bytes, as a killed writer leaves it. */
function partFile(root: string, name: string, text: string, keep?: number): string {
  const dir = join(root, 'AWSLogs/123456789012/vpcflowlogs/eu-west-1/2023/11/14');
  mkdirSync(dir, { recursive: true });
  const gz = gzipSync(text);
  const path = join(dir, name);
  writeFileSync(path, keep === undefined ? gz : gz.subarray(0, keep));
  return path;
}

t.test('recovery of .part files left by a killed writer', async (t) => {
  const root = tmp(t);
  const id = flowLogId('node-a', 'web');
  const prefix = `123456789012_vpcflowlogs_eu-west-1_${id}_20231114T2213Z`;
  const header = 'version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status';
  const lines = Array.from({ length: 3000 }, (_, i) => `2 123456789012 eni-1 10.0.${i >> 8}.${i & 255} 10.1.0.1 ${1000 + i} 443 6 ${i + 1} ${40 * (i + 1)} ${MIN0} ${MIN0 + 1} ACCEPT OK`);
  const text = `${header}\n${lines.join('\n')}\n`;
  const torn = partFile(root, `${prefix}_p1-0.log.gz.part`, text, Math.floor(gzipSync(text).length * 0.6));
  const whole = partFile(root, `${prefix}_p1-1.log.gz.part`, text);
  const headerOnly = partFile(root, `${prefix}_p1-2.log.gz.part`, `${header}\n2 123`, undefined);
  const junk = join(dirname(torn), `${prefix}_p1-3.log.gz.part`);
  writeFileSync(junk, 'this is not gzip at all');
  const results = await recoverFlowLogs(root);
  t.same(
    results.map((x) => [relative(root, x.path), x.action]),
    [
      [relative(root, torn), 'recovered'],
      [relative(root, whole), 'recovered'],
      [relative(root, headerOnly), 'deleted'],
      [relative(root, junk), 'quarantined'],
    ],
  );
  const tornResult = results[0]!;
  t.ok(tornResult.records > 0 && tornResult.records < 3000, `torn: ${tornResult.records} whole records kept`);
  t.equal(results[1]!.records, 3000);
  const left = files(root);
  t.equal(left.filter((f) => f.endsWith('.part')).length, 0, 'no .part left');
  t.same(left.filter((f) => f.endsWith('.corrupt')), [relative(root, junk).replace(/\.log\.gz\.part$/, '.corrupt')]);
  const recovered = left.filter((f) => f.endsWith('.log.gz'));
  t.equal(recovered.length, 2);
  for (const f of recovered) {
    t.ok(parseFlowLogPath(f), `${f} in the layout`);
    const parsed = readFlowLog(join(root, f));
    t.same(parsed.records, lines.slice(0, parsed.records.length).map((l) => Object.fromEntries(header.split(' ').map((h, k) => [h, l.split(' ')[k]!]))), 'whole records, in order');
  }
  t.same(await recoverFlowLogs(root), [], 'nothing to do the second time');
  t.same(await recoverFlowLogs(join(root, 'absent')), []);
});

t.test('SIGKILL while a big interval is written: nothing half-written under a final name', async (t) => {
  const root = tmp(t);
  const child = spawn(process.execPath, [join(here, 'flowlog-child.js'), root], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const deadline = Date.now() + 60_000;
  // Kill once the .part has some of the file in it, not before.
  const partSize = (): number => {
    const part = files(root).find((f) => f.endsWith('.part'));
    return part === undefined ? 0 : (statSync(join(root, part), { throwIfNoEntry: false })?.size ?? 0);
  };
  while (Date.now() < deadline && !/written/.test(out) && partSize() < 20_000) await new Promise((r) => setTimeout(r, 2));
  child.kill('SIGKILL');
  await exited;
  if (/written/.test(out)) {
    t.comment('the child finished before it could be killed: the file is whole');
  }
  const before = files(root);
  for (const f of before.filter((x) => x.endsWith('.log.gz'))) t.doesNotThrow(() => readFlowLog(join(root, f)), `${f} is whole`);
  const results = await recoverFlowLogs(root);
  const after = files(root);
  t.equal(after.filter((f) => f.endsWith('.part')).length, 0);
  for (const f of after) {
    const parsed = readFlowLog(join(root, f));
    t.ok(parsed.records.length > 0, `${f}: ${parsed.records.length} records`);
    t.match(parseFlowLogPath(f), { account: 'unknown', id: flowLogId('test-node', 'killed') });
  }
  if (before.some((f) => f.endsWith('.part'))) t.match(results, [{ action: 'recovered' }], 'the torn file was recovered');
});

t.test('a reload: new flow fields end the open interval under the old ones; flows off stops the ticks', async (t) => {
  const root = tmp(t);
  const r = rig(root, { fields: FIELDS });
  r.feed(seg('10.0.0.1', '10.0.0.2', 1000, 443), MIN0 + 5);
  const moved = { ...FIELDS, region: 'us-east-1' };
  r.log.configure({ flows: true, flowFields: resolveFlowSessionInfo(moved, 'flow-fields') });
  await r.log.idle();
  t.equal(r.written.length, 1, 'the open interval is written at once');
  t.match(r.written[0]!.path, /\/vpcflowlogs\/eu-west-1\//, 'under the values its packets were counted with');
  r.log.configure({ flows: true, flowFields: resolveFlowSessionInfo(moved, 'flow-fields') });
  t.equal(r.table.intervals, 1, 'the same settings again change nothing');
  r.feed(seg('10.0.0.1', '10.0.0.2', 1000, 443), MIN0 + 6);
  r.log.configure({ flows: false, flowFields: resolveFlowSessionInfo(moved, 'flow-fields') });
  await r.log.idle();
  t.equal(r.written.length, 2);
  t.match(r.written[1]!.path, /\/vpcflowlogs\/us-east-1\//, 'the next interval under the new values');
  r.log.tick(MIN0 + 600);
  await r.log.idle();
  t.equal(r.written.length, 2, 'flows off: no NODATA records for the quiet time');
  t.throws(() => r.log.configure({ flows: true, flowFields: { values: { region: '../x' }, addresses: [] } }), { code: 'ERR_MIRRORCAP_FLOW_FORMAT' });
});

t.test('flow-log files are under the budget: listed at start and as written, the oldest deleted first', async (t) => {
  const out = tmp(t);
  const r = rig(join(out, 'flows'), { fields: FIELDS });
  for (let i = 0; i < 4; i++) {
    r.feed(seg('10.0.0.1', '10.0.0.2', 1000 + i, 443), MIN0 + 60 * i);
    r.table.tick(MIN0 + 60 * i + 60);
  }
  await r.log.idle();
  t.equal(r.written.length, 4);
  const sizes = r.written.map((f) => f.bytes);
  const deleted: string[] = [];
  // A budget that holds the three newest files and not the fourth.
  const budget = sizes.slice(1).reduce((a, b) => a + b, 0);
  const catalog = new Catalog(out, budget + sizes[0]!, { deleted: (f) => deleted.push(f.path), deleteFailed: () => undefined });
  await catalog.scan();
  const key = flowLogKey(r.writer.id);
  t.same(catalog.filesOf(key).map((f) => f.path), r.written.map((f) => f.path), 'every file, oldest first, under flows/<id>');
  t.same(catalog.filesOf(key).map((f) => f.start), [0, 1, 2, 3].map((i) => MIN0 + 60 * i), 'the interval start from the name');
  t.equal(catalog.totalBytes, budget + sizes[0]!);
  r.feed(seg('10.0.0.1', '10.0.0.2', 2000, 443), MIN0 + 240);
  await r.log.close(MIN0 + 300);
  const last = r.written.at(-1)!;
  catalog.addFlowLog(r.writer.id, last.path, last.start, last.bytes);
  await catalog.idle();
  t.ok(deleted.includes(r.written[0]!.path), 'over the budget: the oldest file goes');
  t.notOk(existsSync(r.written[0]!.path));
  t.ok(catalog.totalBytes <= budget + sizes[0]!, 'within the budget again');
});
