/**
 * Queries against libpcap: for many expressions (hand-written ones aimed at what the index
 * answers, and generated ones over the whole language) and time windows, the answer of
 * runQuery over a store of three sessions, rotated files, indexed files and an open .part
 * must be byte for byte the records `tcpdump -r` selects from the same records, in time order.
 * Then the same with indexes broken in every way (corrupt, truncated, stale, missing, another
 * version): still exact, each counted as a scan.
 */
import { mkdtemp, readFile, rm, truncate, utimes, writeFile, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import t from 'tap';
import { compileFilter } from '../../src/filter/index.js';
import { indexPathOf, indexProblem } from '../../src/finish/index-build.js';
import { runQuery } from '../../src/query/query.js';
import type { QueryStats, Time } from '../../src/query/file-source.js';
import { buildCorpus, poolsOf } from '../filter/corpus.js';
import { ExpressionGenerator } from '../filter/generate.js';
import { Random } from '../lib/random.js';
import { haveTool, mapLimit, withTempDir } from '../lib/tools.js';
import { BASE_SEC, buildStore, splitRecords, type Store } from './store.js';

const SEED = Number(process.env.MIRRORCAP_QUERY_SEED ?? 0x1d3);
const GENERATED = Number(process.env.MIRRORCAP_QUERY_EXPRESSIONS ?? 120);

const HAND_WRITTEN = [
  '',
  'tcp',
  'udp',
  'icmp or icmp6',
  'ip',
  'ip6',
  'arp',
  'not tcp',
  'port 53',
  'tcp port 80 or 443',
  'udp port 53 and not host 10.0.0.1',
  'portrange 1-1024',
  'src port 80',
  'ip proto 17',
  'ip6 proto 6',
  'ip6 proto 58 or ip proto 1',
  'vlan',
  'vlan 100',
  'vlan and host 10.0.0.1',
  'vlan 100 and tcp',
  'net 10.0.0.0/8',
  'net 192.168.0.0/16 and port 80',
  'host 10.0.0.1 or host 192.168.1.10',
  'tcp[tcpflags] & tcp-syn != 0',
  'len > 1000',
  'greater 500 and udp',
  'ether broadcast',
  '(tcp or udp) and not (port 22 or port 53)',
  'ip[6:2] & 0x1fff != 0',
];

/** Runs a query into memory; `syncReads` as `mirrorcap query` reads (synchronous calls), else as /api/query (the thread pool). */
async function query(store: Store, filter: string, since: Time | null, until: Time | null, limit = 0, syncReads = false): Promise<{ bytes: Buffer; stats: QueryStats }> {
  const chunks: Buffer[] = [];
  const stats = await runQuery({ out: store.out, sessions: [], filter, since, until, limit }, async (c) => void chunks.push(Buffer.from(c)), { syncReads });
  return { bytes: Buffer.concat(chunks), stats };
}

/** tcpdump's selection from every record, cut to the window, in time order (every time differs). */
function tcpdump(path: string, filter: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn('tcpdump', ['--time-stamp-precision=nano', '-r', path, '-w', '-', ...(filter === '' ? [] : ['--', filter])], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`tcpdump ${filter}: ${err}`))));
  });
}

function expected(tcpdumpOut: Buffer, since: Time | null, until: Time | null, limit = 0): Buffer {
  const lt = (a: Time, b: Time): boolean => a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);
  const recs = splitRecords(tcpdumpOut)
    .filter((r) => (since === null || !lt([r.sec, r.nsec], since)) && (until === null || lt([r.sec, r.nsec], until)))
    .sort((a, b) => a.sec - b.sec || a.nsec - b.nsec);
  return Buffer.concat((limit > 0 ? recs.slice(0, limit) : recs).map((r) => r.bytes));
}

const skip = haveTool('tcpdump') ? false : 'tcpdump is not installed';
const corpusDir = await mkdtemp(join(tmpdir(), 'mirrorcap-query-'));
t.teardown(() => rm(corpusDir, { recursive: true, force: true }));
const corpus = await buildCorpus(corpusDir);

t.test('query answers equal tcpdump -r, with and without a time window', { skip }, async (t) => {
  await withTempDir(async (dir) => {
    const random = new Random(SEED);
    const store = await buildStore(dir, corpus.ethernet, random);
    t.comment(`seed ${SEED}: ${store.records} records in ${store.files.length} files (${corpus.sources.length} sources)`);
    const gen = new ExpressionGenerator(random, poolsOf(corpus.ethernet));
    const exprs = [...HAND_WRITTEN];
    for (let tries = 0; exprs.length < HAND_WRITTEN.length + GENERATED && tries < GENERATED * 20; tries++) {
      const e = gen.expression();
      try {
        compileFilter(e);
        exprs.push(e);
      } catch {
        // refused expressions are the filter test's business
      }
    }
    const span = Math.ceil(store.records / 8);
    let mismatches = 0;
    let matched = 0;
    let narrowed = 0;
    await mapLimit(exprs, 3, async (e, i) => {
      // Every other expression read as the command reads, the others as the appliance does.
      const syncReads = i % 2 === 0;
      const all = await tcpdump(store.all, e);
      const windows: Array<[Time | null, Time | null]> = [[null, null]];
      const a = BASE_SEC + random.below(span);
      windows.push([[a, random.below(1e9)], [a + 1 + random.below(Math.floor(span / 4) + 1), 0]]);
      for (const [since, until] of windows) {
        const want = expected(all, since, until);
        const got = await query(store, e, since, until, 0, syncReads);
        if (!got.bytes.subarray(24).equals(want)) {
          mismatches++;
          t.fail(`"${e}" (sync reads ${syncReads}) window ${JSON.stringify([since, until])}: ${splitRecords(got.bytes).length} records, tcpdump ${splitRecords(Buffer.concat([Buffer.alloc(24), want])).length}`);
        }
        if (want.length > 0) matched++;
        if (got.stats.bytesRead < store.records * 16) narrowed++;
        t.equal(got.stats.scanned.part, 1, 'the open .part is scanned');
        t.same(got.stats.errors, [], 'no file errors');
      }
    });
    t.equal(mismatches, 0, `${exprs.length} expressions × 2 windows equal tcpdump -r`);
    t.ok(matched > exprs.length / 2, `most answers are not empty (${matched})`);
    t.ok(narrowed > 10, `the index narrowed the reads of ${narrowed} answers`);
    const limited = await query(store, 'ip', null, null, 7);
    t.equal(splitRecords(limited.bytes).length, 7, '--limit');
    t.ok(limited.bytes.subarray(24).equals(expected(await tcpdump(store.all, 'ip'), null, null, 7)), 'the first 7 in time order');
  });
});

t.test('broken indexes are never trusted: the file is scanned, the answer stays exact', { skip }, async (t) => {
  await withTempDir(async (dir) => {
    const random = new Random(SEED + 1);
    const store = await buildStore(dir, corpus.ethernet.slice(0, 1200), random);
    const finished = store.files.filter((f) => !f.endsWith('.part'));
    t.ok(finished.length >= 5, 'enough files');
    const [corrupt, cut, stale, missing, version] = finished;
    const idx = await readFile(indexPathOf(corrupt!));
    idx[idx.length >> 1] ^= 0x40;
    await writeFile(indexPathOf(corrupt!), idx);
    await truncate(indexPathOf(cut!), (await readFile(indexPathOf(cut!))).length - 7);
    const later = new Date(Date.now() + 5000);
    await utimes(stale!, later, later);
    await unlink(indexPathOf(missing!));
    const v = await readFile(indexPathOf(version!));
    v.writeUInt32LE(99, 8);
    await writeFile(indexPathOf(version!), v);
    // At start the step reads headers only; a body broken past the header is found by the CRC when a query reads it.
    for (const [what, path] of [['stale', stale], ['missing', missing], ['version', version]] as const) {
      t.not(await indexProblem(path!), null, `${what}: the index step's start check says it is needed`);
    }
    for (const e of ['', 'udp port 53', 'host 10.0.0.1 or arp', 'tcp and not port 80']) {
      for (const syncReads of [false, true]) {
        const got = await query(store, e, null, null, 0, syncReads);
        t.ok(got.bytes.subarray(24).equals(expected(await tcpdump(store.all, e), null, null)), `"${e}" exact (sync reads ${syncReads})`);
        t.same(got.stats.scanned, { missing: 1, corrupt: 2, version: 1, stale: 1, part: 1 }, `"${e}": each broken index counted as a scan (sync reads ${syncReads})`);
      }
    }
  });
});
