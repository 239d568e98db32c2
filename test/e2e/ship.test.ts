/**
 * Files that travel, end to end through `mirrorcap run`: --compress and --s3 against a real
 * S3-protocol server (s3rver) behind a recording proxy (test/lib/s3.ts). Oracles: the store's
 * own objects (GET, HEAD, LIST), the requests on the wire, tshark and capinfos reading the
 * compressed objects, and the folder itself (readdir/stat). Unhappy paths: the store down
 * (retried, counted, files kept and /readyz ready, then everything arrives once), a SIGTERM
 * in the middle of an upload (uploaded at the next start), and the disk budget reaching
 * files still waiting for their upload (deleted, logged as an error, counted).
 */
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import t from 'tap';
import { httpGet, MAIN, metricSum, metricValue, sendDatagrams, startAppliance, waitFor, type Appliance } from '../lib/appliance.js';
import { udpFrame, vxlan } from '../lib/frames.js';
import { REPO_ROOT } from '../lib/captures.js';
import { listKeys, objectBytes, objectHead, startS3Rig } from '../lib/s3.js';
import { parseFlowLogPath, readFlowLog } from '../lib/vpcflow.js';
import { haveTool, run } from '../lib/tools.js';
import { capinfos, tsharkFrames } from '../lib/tshark.js';

const BUCKET = 'captures';
const HOST = 'probe-1';
const FLOW_ACCOUNT = '123456789012';
const FLOW_REGION = 'eu-west-1';

const { root, server, proxy, direct, close } = await startS3Rig(BUCKET, 'ship');
t.teardown(close);

let runs = 0;
const frames = (vni: number, n: number, from = 0, size = 300): Buffer[] => Array.from({ length: n }, (_, i) => udpFrame(size, vni, from + i));
const metrics = async (app: Appliance): Promise<string> => (await httpGet(app.httpPort, '/metrics')).body;
interface ApiFile {
  path: string;
  artefacts: string[];
  pending: string[];
  compression: string | null;
  upload: string | null;
}
const apiFiles = async (app: Appliance): Promise<ApiFile[]> => JSON.parse((await httpGet(app.httpPort, '/api/files')).body) as ApiFile[];
/** Names in a session folder, sorted. */
const names = async (dir: string): Promise<string[]> => (await readdir(dir).catch(() => [] as string[])).sort();
/** A fresh output folder and the flags every run here takes. */
/** The appliance's arguments; without `index`, files travel alone (no X.pcap.idx beside them). */
function setup(prefix: string, index = false): { out: string; args: string[] } {
  const out = join(root, `out-${runs++}`);
  return { out, args: ['--out', out, '--flush-interval', '100ms', '--s3', `s3://${BUCKET}/${prefix}`, '--s3-endpoint', proxy.endpoint, '--s3-host', HOST, ...(index ? [] : ['--no-index'])] };
}
const day = (): string => new Date().toISOString().slice(0, 10).replace(/-/g, '/');

t.test('--compress gzip --s3: every file compressed, stored byte for byte under its key with SSE and storage class, read back by tshark', async (t) => {
  const { out, args } = setup('gz');
  const app = await startAppliance([...args, '--compress', 'gzip', '--rotate-packets', '10', '--s3-sse', 'AES256', '--s3-storage-class', 'STANDARD_IA']);
  t.teardown(() => app.proc.kill('SIGKILL'));
  const sent = frames(7, 30);
  await sendDatagrams(app.udpPort, sent.map((f) => vxlan(7, f)));
  await waitFor(async () => metricValue(await metrics(app), 'mirrorcap_s3_uploaded_files_total') === 2, 20_000, 'two files uploaded');
  app.proc.kill('SIGUSR1'); // the third file is closed by the next packet, or by this
  await waitFor(async () => metricValue(await metrics(app), 'mirrorcap_s3_uploaded_files_total') === 3, 20_000, 'three files uploaded');
  const m = await metrics(app);
  t.equal(metricValue(m, 'mirrorcap_compressed_files_total', { format: 'gzip' }), 3);
  t.ok(metricValue(m, 'mirrorcap_compress_output_bytes_total')! < metricValue(m, 'mirrorcap_compress_input_bytes_total')!, 'smaller after compression');
  t.equal(metricValue(m, 'mirrorcap_s3_pending_files'), 0);
  t.equal(metricValue(m, 'mirrorcap_s3_oldest_pending_seconds'), 0);
  const listed = await apiFiles(app);
  t.equal(listed.length, 3);
  for (const f of listed) {
    t.match(f, { compression: 'gzip', upload: 'uploaded', pending: [] }, `/api/files: ${basename(f.path)}`);
    t.same(f.artefacts, [f.path, `${f.path}.s3`], 'the .gz and its upload marker; the plain file is gone');
  }
  t.equal(await app.stop(), 0);

  const dir = join(out, 'vni-7');
  const gz = (await names(dir)).filter((n) => n.endsWith('.pcap.gz'));
  t.equal(gz.length, 3);
  const keys = await listKeys(direct, BUCKET);
  t.same(keys, gz.map((n) => `gz/${HOST}/vni-7/${day()}/${n}`), 'keys follow the default template: prefix/host/session/yyyy/mm/dd/file');
  const tsharkOk = haveTool('tshark');
  let packets = 0;
  const stored: Buffer[] = [];
  for (const [i, key] of keys.entries()) {
    const local = join(dir, gz[i]!);
    const object = await objectBytes(direct, BUCKET, key);
    t.ok(object.equals(await readFile(local)), `${key}: the object is the file, byte for byte`);
    t.equal((await objectHead(direct, BUCKET, key))?.storageClass, 'STANDARD_IA', 'storage class stored');
    const marker = JSON.parse(await readFile(`${local}.s3`, 'utf8')) as { key: string; bytes: number };
    t.match(marker, { key, bytes: object.length }, 'the marker names the object');
    if (tsharkOk) {
      const got = await tsharkFrames(local);
      packets += got.length;
      stored.push(...got.map((f) => f.data));
      t.equal((await capinfos(local)).packets, 10, 'capinfos reads the .gz');
    }
  }
  if (tsharkOk) {
    t.equal(packets, sent.length);
    t.ok(stored.every((d, i) => d.equals(sent[i]!)), 'tshark reads from the compressed files exactly the frames sent, in order');
  } else t.comment('SKIP tshark not installed: the compressed files were not read back');
  const puts = proxy.uploads().filter((r) => r.url.includes('/gz/'));
  t.equal(puts.length, 3, 'one PUT per file (none twice)');
  for (const r of puts) {
    t.equal(r.headers['x-amz-server-side-encryption'], 'AES256', 'SSE asked for');
    t.equal(r.headers['x-amz-storage-class'], 'STANDARD_IA');
    t.ok(typeof r.headers['content-md5'] === 'string' && r.headers['x-amz-content-sha256'] === r.sha256, 'integrity checksums the store verifies');
  }
});

t.test('--compress zstd: tshark reads the .pcap.zst as the frames sent', { skip: haveTool('tshark') ? false : 'tshark not installed' }, async (t) => {
  const out = join(root, `out-${runs++}`);
  const app = await startAppliance(['--out', out, '--flush-interval', '100ms', '--compress', 'zstd', '--compress-level', '19']);
  t.teardown(() => app.proc.kill('SIGKILL'));
  const sent = frames(8, 20);
  await sendDatagrams(app.udpPort, sent.map((f) => vxlan(8, f)));
  await waitFor(async () => metricValue(await metrics(app), 'mirrorcap_packets_total', { session: 'vni-8' }) === 20, 5000, 'received');
  t.equal(await app.stop(), 0, 'the file is compressed at shutdown');
  const [idx, zst, ...rest] = await names(join(out, 'vni-8'));
  t.same(rest, []);
  t.match(zst, /\.pcap\.zst$/);
  t.equal(idx, zst!.replace(/\.zst$/, '.idx'), 'with its index sidecar, rebound to the .zst');
  const got = await tsharkFrames(join(out, 'vni-8', zst!));
  t.equal(got.length, 20);
  t.ok(got.every((f, i) => f.data.equals(sent[i]!)), 'same frames');
  const q = join(out, 'q.pcap');
  const r = await run(process.execPath, [MAIN, 'query', '--out', out, '-w', q, 'udp']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stderr, /1 files: 1 through their index/, 'the query reads the .zst through its index');
  const answer = await tsharkFrames(q);
  t.ok(answer.length === 20 && answer.every((f, i) => f.data.equals(sent[i]!)), 'and answers the frames sent');
});

t.test('S3 down: capture goes on, /readyz ready, uploads retried and counted, files kept; back up: each arrives once, then deleted (delete-after-upload)', async (t) => {
  const { out, args } = setup('down', true);
  await server.stop();
  let serverUp = false;
  t.teardown(async () => {
    if (!serverUp) await server.start();
  });
  const app = await startAppliance([...args, '--rotate-packets', '5', '--s3-delete-after-upload']);
  t.teardown(() => app.proc.kill('SIGKILL'));
  await sendDatagrams(app.udpPort, frames(9, 15).map((f) => vxlan(9, f)));
  await waitFor(async () => metricValue(await metrics(app), 'mirrorcap_packets_total', { session: 'vni-9' }) === 15, 5000, 'received');
  app.proc.kill('SIGUSR1');
  await waitFor(async () => metricSum(await metrics(app), 'mirrorcap_s3_failures_total') >= 2, 15_000, 'attempts failed and were retried');
  const m = await metrics(app);
  // Each capture travels with its index sidecar: 3 captures, 6 objects.
  t.equal(metricValue(m, 'mirrorcap_s3_pending_files'), 6, 'three files and their indexes wait');
  t.equal(metricValue(m, 'mirrorcap_s3_uploaded_files_total'), 0);
  t.equal((await httpGet(app.httpPort, '/readyz')).status, 200, 'still ready: capture goes on');
  t.ok(app.logs.some((l) => l.event === 's3_retrying'), 'the first failure is logged (then quietly retried)');
  const dir = join(out, 'vni-9');
  const files = (await names(dir)).filter((n) => n.endsWith('.pcap') || n.endsWith('.pcap.idx')).sort();
  t.equal(files.length, 6, 'delete-after-upload deletes nothing early');
  t.same((await apiFiles(app)).map((f) => f.upload), ['pending', 'pending', 'pending']);
  const bytes = await Promise.all(files.map((n) => readFile(join(dir, n))));

  await server.start();
  serverUp = true;
  await waitFor(async () => metricValue(await metrics(app), 'mirrorcap_s3_uploaded_files_total') === 6, 70_000, 'uploaded once the store is back');
  await waitFor(async () => (await names(dir)).filter((n) => !n.endsWith('.part')).length === 0, 5000, 'deleted after upload');
  t.equal(metricValue(await metrics(app), 'mirrorcap_files_deleted_total', { reason: 'uploaded' }), 3);
  const keys = (await listKeys(direct, BUCKET)).filter((k) => k.startsWith('down/'));
  t.same(keys, files.map((n) => `down/${HOST}/vni-9/${day()}/${n}`), 'each file stored once, under its key');
  for (const [i, key] of keys.entries()) t.ok((await objectBytes(direct, BUCKET, key)).equals(bytes[i]!), `${key} whole`);
  t.same(await apiFiles(app), [], 'nothing left to list');
  t.equal(await app.stop(), 0);
});

t.test('SIGTERM in the middle of an upload: the process ends in time, the files keep no marker, the next start uploads them (flow logs to their AWS-layout keys), then deletes them (delete-after-upload)', async (t) => {
  const { out, args } = setup('term');
  const flowArgs = ['--flows', '--flow-fields', `account-id=${FLOW_ACCOUNT},region=${FLOW_REGION}`];
  proxy.fault = (r) => (r.method === 'PUT' && r.url.includes('/term/') ? 'stall' : undefined);
  t.teardown(() => (proxy.fault = null));
  const app = await startAppliance([...args, ...flowArgs, '--rotate-packets', '5']);
  t.teardown(() => app.proc.kill('SIGKILL'));
  await sendDatagrams(app.udpPort, frames(10, 5).map((f) => vxlan(10, f)));
  await waitFor(async () => metricValue(await metrics(app), 'mirrorcap_packets_total', { session: 'vni-10' }) === 5, 5000, 'received');
  app.proc.kill('SIGUSR1');
  await waitFor(() => proxy.requests.some((r) => r.method === 'PUT' && r.url.includes('/term/')), 10_000, 'the upload is under way (stalled)');
  const began = Date.now();
  t.equal(await app.stop(), 0);
  t.ok(Date.now() - began < 10_000, `stopped within 10 s (${Date.now() - began} ms)`);
  t.ok(app.logs.some((l) => l.event === 's3_stopped'), 'the unfinished upload is logged');
  const dir = join(out, 'vni-10');
  const [file, ...rest] = await names(dir);
  t.same(rest, [], 'the file alone: no marker');
  // The open flow interval is written at SIGTERM; its upload waits like the capture's.
  const flowsDir = join(out, 'flows');
  const flowFiles = (await readdir(flowsDir, { recursive: true })).filter((n) => n.endsWith('.log.gz')).sort();
  t.ok(flowFiles.length >= 1, `the open flow interval written at SIGTERM (${flowFiles.length} file(s))`);
  t.same((await readdir(flowsDir, { recursive: true })).filter((n) => n.endsWith('.s3')), [], 'no flow-log file has a marker');
  t.same((await listKeys(direct, BUCKET)).filter((k) => k.startsWith('term/')), [], 'nothing stored under a final key');
  const local = new Map<string, Buffer>([[join(dir, file!), await readFile(join(dir, file!))]]);
  let flowPackets = 0;
  for (const rel of flowFiles) {
    t.ok(parseFlowLogPath(rel) !== null, `${rel}: AWS's delivery layout`);
    // The test's own reader of AWS's format (gzip, header, fields) throws on anything else.
    for (const r of readFlowLog(join(flowsDir, rel)).records) if (r['log-status'] === 'OK') flowPackets += Number(r.packets);
    local.set(join(flowsDir, rel), await readFile(join(flowsDir, rel)));
  }
  t.equal(flowPackets, 5, 'the flow records count the 5 packets');

  proxy.fault = null;
  const again = await startAppliance([...args, ...flowArgs, '--s3-delete-after-upload']);
  t.teardown(() => again.proc.kill('SIGKILL'));
  await waitFor(async () => metricValue(await metrics(again), 'mirrorcap_s3_uploaded_files_total') === 1 + flowFiles.length, 15_000, 'uploaded at the next start');
  await waitFor(async () => !existsSync(join(dir, file!)) && flowFiles.every((rel) => !existsSync(join(flowsDir, rel))), 5000, 'deleted once uploaded');
  const keys = (await listKeys(direct, BUCKET)).filter((k) => k.startsWith('term/'));
  const want = [`term/${HOST}/vni-10/${day()}/${file}`, ...flowFiles.map((rel) => `term/${rel}`)];
  t.same(keys, [...want].sort(), 'the capture under the key template; each flow log under the prefix at its path below <out>/flows (AWS layout)');
  for (const [i, path] of [...local.keys()].entries()) t.ok((await objectBytes(direct, BUCKET, want[i]!)).equals(local.get(path)!), `${want[i]}: the object is the file, byte for byte`);
  t.equal(metricValue(await metrics(again), 'mirrorcap_files_deleted_total', { reason: 'uploaded' }), 1 + flowFiles.length, 'each deleted after its upload');
  t.same((await readdir(flowsDir, { recursive: true })).filter((n) => /\.log\.gz(\.s3)?$/.test(n)), [], 'no flow-log file or marker left');
  t.equal(await again.stop(), 0);
});

t.test('the disk budget reaches files still waiting for S3: the oldest deleted, logged as an error, counted; the rest arrive', async (t) => {
  const { out, args } = setup('budget');
  await server.stop();
  let serverUp = false;
  t.teardown(async () => {
    if (!serverUp) await server.start();
  });
  // Files of about 300 KiB; a 1 MiB budget holds three of them.
  const app = await startAppliance([...args, '--rotate-packets', '300', '--max-total-bytes', '1MiB']);
  t.teardown(() => app.proc.kill('SIGKILL'));
  await sendDatagrams(app.udpPort, frames(11, 1800, 0, 1000).map((f) => vxlan(11, f)));
  await waitFor(async () => metricValue(await metrics(app), 'mirrorcap_files_rotated_total', { session: 'vni-11' }) === 5, 10_000, 'five files finished');
  await waitFor(async () => (metricValue(await metrics(app), 'mirrorcap_s3_deleted_before_upload_total') ?? 0) >= 2, 10_000, 'the budget took the oldest');
  const m = await metrics(app);
  const deleted = metricValue(m, 'mirrorcap_s3_deleted_before_upload_total')!;
  t.equal(metricValue(m, 'mirrorcap_files_deleted_total', { reason: 'budget' }), deleted);
  const errors = app.logs.filter((l) => l.event === 'file_deleted' && l.uploaded === false && l.level === 'error');
  t.equal(errors.length, deleted, 'each logged as an error');
  const dir = join(out, 'vni-11');
  const left = (await names(dir)).filter((n) => n.endsWith('.pcap'));
  t.equal(left.length, 5 - deleted);
  t.ok(metricValue(m, 'mirrorcap_disk_used_bytes')! - metricValue(m, 'mirrorcap_current_file_bytes', { session: 'vni-11' })! <= 1 << 20, 'finished files within the budget');

  await server.start();
  serverUp = true;
  await waitFor(async () => metricValue(await metrics(app), 'mirrorcap_s3_pending_files') === 0, 70_000, 'the queue empties once the store is back');
  const keys = (await listKeys(direct, BUCKET)).filter((k) => k.startsWith('budget/'));
  t.same(keys, left.map((n) => `budget/${HOST}/vni-11/${day()}/${n}`), 'the files kept arrive; the deleted ones are not invented');
  t.equal(await app.stop(), 0);
});

t.test('bad s3 options stop the start with one line naming them', async (t) => {
  const cases = [
    [['--s3-endpoint', 'http://127.0.0.1:1'], /--s3-endpoint set, but --s3 is not/],
    [['--s3', 's3://x'], /invalid s3 bucket/],
    [['--s3', `s3://${BUCKET}/p`, '--s3-key', '{prefix}/{session}/{file}'], /must hold \{host\}/],
    [['--s3', `s3://${BUCKET}`, '--s3-kms-key-id', 'k', '--s3-endpoint', proxy.endpoint], /s3-kms-key-id needs --s3-sse aws:kms/],
    [['--compress-level', '3'], /compress-level needs --compress/],
  ] as const;
  // They never start: each exits 2 with its message (the appliance's usage error).
  const outcomes = await Promise.all(cases.map(([argv]) => run(process.execPath, [MAIN, 'run', ...argv, '--out', join(root, 'never'), '--listen', '127.0.0.1:0', '--http', '127.0.0.1:0'])));
  cases.forEach(([argv, pattern], i) => {
    t.equal(outcomes[i]!.code, 2, `${argv.join(' ')}: exit 2`);
    t.match(outcomes[i]!.stderr, pattern);
  });
});

t.test('decap --compress gzip writes what decap writes plain, compressed (tshark reads both the same); queries answer the same from both', { skip: haveTool('tshark') ? false : 'tshark not installed' }, async (t) => {
  const input = join(REPO_ROOT, 'pcaps', 'vxlan-outer.pcap');
  const outs = [join(root, `out-${runs++}`), join(root, `out-${runs++}`)];
  for (const [i, extra] of [[], ['--compress', 'gzip']].entries()) {
    const r = await run(process.execPath, [MAIN, 'decap', input, '--out', outs[i]!, ...extra]);
    t.equal(r.code, 0, r.stderr);
  }
  for (const session of await names(outs[0]!)) {
    // Both stores have an index beside each capture: the compressed one's rebound to the .gz.
    const plain = (await names(join(outs[0]!, session))).filter((n) => n.endsWith('.pcap'));
    t.same(await names(join(outs[1]!, session)), plain.flatMap((n) => [`${n}.gz`, `${n}.idx`]).sort(), `${session}: each file compressed, with its index`);
    for (const n of plain) t.same(await tsharkFrames(join(outs[1]!, session, `${n}.gz`)), await tsharkFrames(join(outs[0]!, session, n)), `${n}.gz reads as ${n}`);
  }
  for (const e of ['', 'tcp', 'udp and not port 53', 'len > 200']) {
    const answers: Buffer[] = [];
    for (const out of outs) {
      const w = join(root, `q-${runs++}.pcap`);
      const r = await run(process.execPath, [MAIN, 'query', '--out', out, '-w', w, ...(e === '' ? [] : [e])]);
      t.equal(r.code, 0, r.stderr);
      if (out === outs[1]) t.match(r.stderr, /0 scanned/, `"${e}": the compressed store is read through its index`);
      answers.push(await readFile(w));
    }
    if (e === '') t.ok(answers[0]!.length > 24, 'the store is not empty');
    t.ok(answers[1]!.equals(answers[0]!), `"${e}": the compressed store answers byte for byte as the plain one`);
  }
});
