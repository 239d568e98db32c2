/**
 * Queries end to end: two appliances on loopback, each with its own store (two sessions,
 * rotated files, an open .part), answer GET /api/query as a streamed pcap; the oracle is
 * `tcpdump -r` on every file of the store, merged by `mergecap` in the query's order. Then the
 * token, 429 beyond --max-queries, a client that goes away mid-answer, `mirrorcap query`
 * over the folder, and `mirrorcap query --from A,B` (plus one appliance that is down) against
 * the union of both stores. Last, `mirrorcap index` killed with SIGKILL mid-build leaves
 * nothing a query would trust half-made.
 */
import { spawn } from 'node:child_process';
import { request, type IncomingMessage } from 'node:http';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { httpGet, MAIN, metricValue, sendDatagrams, startAppliance, waitFor, type Appliance } from '../lib/appliance.js';
import { buildPcap } from '../lib/captures.js';
import { ether, ipv4, tcp, udp, vxlan } from '../lib/frames.js';
import { freePort } from '../lib/ports.js';
import { haveTool, run, tool } from '../lib/tools.js';
import { loadIndex } from '../../src/finish/index-build.js';

const TOKEN = 'query-secret';
const AUTH = { Authorization: `Bearer ${TOKEN}` };
const skip = haveTool('tcpdump') && haveTool('mergecap') ? false : 'tcpdump or mergecap is not installed';

/** Packet i of an appliance: TCP or UDP between a few hosts, sizes from 60 to ~1400 bytes. */
function frame(app: number, i: number): Buffer {
  const src = `10.${app}.0.${1 + (i % 7)}`;
  const dst = `172.16.${i % 3}.${1 + (i % 11)}`;
  const payload = Buffer.alloc([18, 500, 1300][i % 3]!, i & 0xff);
  const l4 = i % 4 === 0 ? ipv4(17, udp(5000 + (i % 5), 53, payload), { src, dst, id: i & 0xffff }) : ipv4(6, tcp({ sport: 40000 + (i % 50), dport: [443, 80, 22][i % 3]!, seq: i }, payload), { src, dst, id: i & 0xffff });
  return ether(0x0800, l4);
}

const metrics = async (app: Appliance): Promise<string> => (await httpGet(app.httpPort, '/metrics')).body;

/** The store's capture files (finished and open) in the query's order: session, then file. */
async function storeFiles(out: string): Promise<string[]> {
  const files: string[] = [];
  for (const s of (await readdir(out)).sort()) for (const f of (await readdir(join(out, s))).filter((n) => /\.pcap(\.part)?$/.test(n)).sort()) files.push(join(out, s, f));
  return files;
}

/** The oracle: tcpdump on each file, merged by mergecap in that order; the records after the header. */
async function oracle(dir: string, files: readonly string[], filter: string): Promise<Buffer> {
  const parts: string[] = [];
  for (const [i, f] of files.entries()) {
    const p = join(dir, `oracle-${i}.pcap`);
    await tool('tcpdump', ['--time-stamp-precision=nano', '-r', f, '-w', p, ...(filter === '' ? [] : ['--', filter])]);
    parts.push(p);
  }
  const merged = join(dir, 'oracle.pcap');
  await tool('mergecap', ['-F', 'nsecpcap', '-w', merged, ...parts]);
  return (await readFile(merged)).subarray(24);
}

function get(port: number, path: string, headers: Record<string, string> = AUTH): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => request({ host: '127.0.0.1', port, path, headers }, resolve).on('error', reject).end());
}

async function body(res: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

t.test('two appliances answer queries over HTTP and the CLI merges them', { skip }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mirrorcap-query-e2e-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const apps: Appliance[] = [];
  const outs: string[] = [];
  for (const a of [1, 2]) {
    const out = join(dir, `out${a}`);
    outs.push(out);
    const app = await startAppliance(['--out', out, '--http-token', TOKEN, '--max-queries', '1', '--rotate-packets', '1500', '--flush-interval', '100ms'], {}, 30_000);
    t.teardown(() => app.proc.kill('SIGKILL'));
    apps.push(app);
  }
  const counts = [5200, 3100];
  for (const [k, app] of apps.entries()) {
    const n = counts[k]!;
    await sendDatagrams(app.udpPort, Array.from({ length: n }, (_, i) => vxlan(100 + (i % 2), frame(k + 1, i))));
    await waitFor(async () => metricValue(await metrics(app), 'mirrorcap_packets_total', { session: 'vni-100' }) === Math.ceil(n / 2), 20_000, 'every packet counted');
  }
  // Every finished file indexed (the open .part files hold the rest, flushed).
  for (const app of apps) {
    await waitFor(async () => {
      const files = JSON.parse((await httpGet(app.httpPort, '/api/files', AUTH)).body) as Array<{ index: string | null; pending: string[] }>;
      return files.length > 0 && files.every((f) => f.index !== null && f.pending.length === 0);
    }, 20_000, 'indexes written and listed by /api/files');
  }
  await new Promise((r) => setTimeout(r, 300)); // the .part files' last records flushed

  t.test('GET /api/query streams what tcpdump + mergecap select', async (t) => {
    const files = await storeFiles(outs[0]!);
    t.ok(files.some((f) => f.endsWith('.part')), 'an open .part is part of the store');
    for (const filter of ['', 'udp', 'tcp port 443 and host 10.1.0.3', 'net 172.16.1.0/24 or port 22', 'tcp[tcpflags] & tcp-syn != 0 and len > 1000']) {
      const res = await get(apps[0]!.httpPort, `/api/query?filter=${encodeURIComponent(filter)}`);
      t.equal(res.statusCode, 200, `"${filter}": 200`);
      t.equal(res.headers['content-type'], 'application/vnd.tcpdump.pcap');
      t.equal(res.headers['transfer-encoding'], 'chunked', 'streamed');
      const got = await body(res);
      t.ok(got.subarray(24).equals(await oracle(dir, files, filter)), `"${filter}": byte for byte what tcpdump -r and mergecap give (${got.length} bytes)`);
      const stats = JSON.parse(res.trailers['x-mirrorcap-query'] ?? '{}') as { indexed?: number; scanned?: { part: number } };
      t.ok((stats.indexed ?? 0) > 0 && stats.scanned?.part === 2, 'the trailer: files through their index, the two .part files scanned');
    }
    const one = await body(await get(apps[0]!.httpPort, '/api/query?filter=udp&session=vni-101&limit=5'));
    const first5 = (await oracle(dir, files.filter((f) => f.includes('vni-101')), 'udp')).subarray(0, one.length - 24);
    t.ok(one.subarray(24).equals(first5), 'session and limit: the first 5 of that session');
    t.equal((await get(apps[0]!.httpPort, '/api/query?filter=udp', {})).statusCode, 401, 'no token: 401');
    t.equal((await get(apps[0]!.httpPort, '/api/query?filter=tcp%20port')).statusCode, 400, 'a bad filter: 400');
    t.equal((await get(apps[0]!.httpPort, '/api/query?since=yesterday')).statusCode, 400, 'a bad time: 400');
    t.equal((await get(apps[0]!.httpPort, '/api/query?session=nosuch')).statusCode, 400, 'an unknown session: 400');
  });

  t.test('429 beyond --max-queries; a client that goes away stops its query', async (t) => {
    const app = apps[0]!;
    // An answer larger than both sockets' buffers, so a client that does not read holds the query.
    const bulk = join(outs[0]!, 'bulk');
    await mkdir(bulk);
    t.teardown(() => rm(bulk, { recursive: true, force: true }));
    const records = Array.from({ length: 30_000 }, (_, i) => ({ sec: 1_790_000_000 + i, frac: 0, data: frame(9, i) }));
    await writeFile(join(bulk, 'bulk-20260922T000000Z-000000.pcap'), buildPcap({ ns: true, records }));
    const slow = await get(app.httpPort, '/api/query?session=bulk');
    slow.pause(); // backpressure holds the query open
    await waitFor(async () => metricValue(await metrics(app), 'mirrorcap_queries_running') === 1, 5000, 'one query running');
    const refused = await get(app.httpPort, '/api/query?filter=udp');
    t.equal(refused.statusCode, 429, 'a second query: 429');
    t.ok(refused.headers['retry-after'] !== undefined, 'with Retry-After');
    await body(refused);
    slow.destroy();
    await waitFor(async () => metricValue(await metrics(app), 'mirrorcap_queries_total', { result: 'aborted' }) === 1, 5000, 'the query stopped, counted as aborted');
    t.equal(metricValue(await metrics(app), 'mirrorcap_queries_running'), 0);
    t.equal(metricValue(await metrics(app), 'mirrorcap_queries_total', { result: 'refused' }), 1);
    const again = await get(app.httpPort, '/api/query?filter=udp');
    t.equal(again.statusCode, 200, 'a new query is answered');
    await body(again); // read whole, so it leaves its slot (--max-queries 1) to the next test
    await rm(bulk, { recursive: true, force: true });
  });

  t.test('mirrorcap query over the folder, and --from both appliances', async (t) => {
    const filter = 'tcp and (port 80 or host 172.16.2.5)';
    const local = join(dir, 'local.pcap');
    const r = await run(process.execPath, [MAIN, 'query', '--out', outs[0]!, '-w', local, filter]);
    t.equal(r.code, 0, r.stderr);
    t.match(r.stderr, /through their index/, 'a summary on stderr');
    t.ok((await readFile(local)).subarray(24).equals(await oracle(dir, await storeFiles(outs[0]!), filter)), 'the CLI answer equals the oracle');

    const both = [...(await storeFiles(outs[0]!)), ...(await storeFiles(outs[1]!))];
    const merged = join(dir, 'merged.pcap');
    const urls = apps.map((a) => `http://127.0.0.1:${a.httpPort}`).join(',');
    const m = await run(process.execPath, [MAIN, 'query', '--from', urls, '--http-token', TOKEN, '-w', merged, filter]);
    t.equal(m.code, 0, m.stderr);
    t.ok((await readFile(merged)).subarray(24).equals(await oracle(dir, both, filter)), '--from A,B: the union of both stores, merged by time');

    const down = await freePort();
    const partial = join(dir, 'partial.pcap');
    const d = await run(process.execPath, [MAIN, 'query', '--from', `${urls},http://127.0.0.1:${down}`, '--http-token', TOKEN, '-w', partial, filter]);
    t.equal(d.code, 1, 'an appliance down: exit 1');
    t.match(d.stderr, new RegExp(`127\\.0\\.0\\.1:${down}: error`), 'named in the report');
    t.ok((await readFile(partial)).equals(await readFile(merged)), 'the others still answered');
    const noToken = await run(process.execPath, [MAIN, 'query', '--from', urls, '-w', partial, filter]);
    t.match(noToken.stderr, /HTTP 401/, 'without the token each appliance reports 401');
  });
});

t.test('mirrorcap index killed mid-build leaves nothing half-trusted', { skip }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mirrorcap-index-kill-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const session = join(dir, 'vni-7');
  await run('mkdir', ['-p', session]);
  const records = Array.from({ length: 60_000 }, (_, i) => ({ sec: 1_790_000_000 + Math.floor(i / 100), frac: (i % 100) * 1e7, data: frame(3, i) }));
  const path = join(session, 'vni-7-20260922T000000Z-000000.pcap');
  await writeFile(path, buildPcap({ ns: true, records }));
  t.comment(`${(await stat(path)).size} bytes`);
  for (const delay of [30, 120, 400]) {
    await rm(`${path}.idx`, { force: true });
    const child = spawn(process.execPath, [MAIN, 'index', dir], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, delay));
    child.kill('SIGKILL');
    await new Promise((r) => child.on('close', r));
    const st = await stat(path);
    const idx = await loadIndex(path, st.size, st.mtimeMs);
    t.ok(idx === 'missing' || typeof idx !== 'string', `killed after ${delay} ms: the index is whole or absent (${typeof idx === 'string' ? idx : 'whole'})`);
    const q = join(dir, 'q.pcap');
    const r = await run(process.execPath, [MAIN, 'query', '--out', dir, '-w', q, 'udp and host 10.3.0.2']);
    t.equal(r.code, 0, r.stderr);
    t.ok((await readFile(q)).subarray(24).equals(await oracle(dir, [path], 'udp and host 10.3.0.2')), 'the answer is exact');
  }
});
