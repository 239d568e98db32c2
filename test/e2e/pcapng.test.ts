/**
 * --format pcapng end to end, through `mirrorcap decap` of real VXLAN and GWLB captures (the
 * same Recorder as the appliance): per-session format from the config file, interfaces named
 * for their sessions, the same packets as the pcap format's, rotation, mergecap, compression,
 * index and query; and the bad values. Oracles: capinfos, tshark, tcpdump, mergecap.
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { MAIN } from '../lib/appliance.js';
import { REAL_DIR } from '../lib/captures.js';
import { capinfosInterfaces, pcapngStatistics } from '../lib/tshark.js';
import { run, tool } from '../lib/tools.js';

const cli = (args: string[]): SpawnSyncReturns<string> => spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 60_000 });
const temp = (): Promise<string> => mkdtemp(join(tmpdir(), 'mirrorcap-pcapng-'));
/** Two VNIs (4242, 4711), 28 packets of HTTP. */
const TWO_VNI = join(REAL_DIR, 'zeek-vxlan-overlapping-http-get-2vni.pcap');
const GWLB = join(REAL_DIR, 'suricata-verify-geneve-aws-gwlb-gre-http.pcap');
const skip = existsSync(TWO_VNI) ? false : `${REAL_DIR} is not here`;

async function filesOf(dir: string, suffix: string): Promise<string[]> {
  return (await readdir(dir)).filter((f) => f.endsWith(suffix)).sort().map((f) => join(dir, f));
}

/** Every packet of these files, bytes and nanosecond timestamps, as tcpdump (libpcap) prints them. */
async function tcpdumpHex(files: string[]): Promise<string> {
  let out = '';
  for (const f of files) out += await tool('tcpdump', ['-r', f, '-nn', '-xx', '--nano']);
  return out;
}

t.test('pcapng files: per-session format, named interfaces, the pcap format\'s packets, statistics, mergecap, compression, query', { skip }, async (t) => {
  const dir = await temp();
  const cfg = join(dir, 'mirrorcap.yaml');
  await writeFile(cfg, 'sessions:\n  - { vni: 4242, name: web-prod, format: pcapng, filter: "tcp port 80" }\n  - { vni: 4711, name: api }\n');
  const mixed = cli(['decap', TWO_VNI, '--out', join(dir, 'mixed'), '--config', cfg]);
  t.equal(mixed.status, 0, mixed.stderr);
  t.equal((await filesOf(join(dir, 'mixed', 'web-prod'), '.pcapng')).length, 1, 'the session set to pcapng writes .pcapng');
  t.equal((await filesOf(join(dir, 'mixed', 'api'), '.pcap')).length, 1, 'the other keeps the default pcap');

  // The whole store both ways, rotated every 5 packets.
  const ng = join(dir, 'ng');
  const classic = join(dir, 'classic');
  const named = join(dir, 'named.yaml');
  await writeFile(named, 'sessions:\n  - { vni: 4242, name: web-prod, filter: "tcp port 80" }\n  - { vni: 4711, name: api }\n');
  const args = ['--rotate-packets', '5', '--config', named];
  t.equal(cli(['decap', TWO_VNI, '--out', ng, '--format', 'pcapng', ...args]).status, 0);
  t.equal(cli(['decap', TWO_VNI, '--out', classic, '--format', 'pcap', ...args]).status, 0);
  for (const s of ['web-prod', 'api']) {
    const ngFiles = await filesOf(join(ng, s), '.pcapng');
    const pcapFiles = await filesOf(join(classic, s), '.pcap');
    t.equal(ngFiles.length, pcapFiles.length, `${s}: rotation makes as many files (${ngFiles.length})`);
    t.ok(ngFiles.length >= 2, `${s}: rotated`);
    t.equal(await tcpdumpHex(ngFiles), await tcpdumpHex(pcapFiles), `${s}: tcpdump -r reads the same packets, bytes and nanosecond times, from both formats`);
    const info = await run('capinfos', ngFiles);
    t.equal(info.code, 0);
    t.equal(info.stderr.replace(/Running as user.*\n/, ''), '', `capinfos: no warning`);
    t.equal(info.stdout.match(/Capture application:\s+mirrorcap \d/g)?.length, ngFiles.length, 'the section header names mirrorcap');
    t.equal(info.stdout.match(/Capture oper-sys:\s+\S+/g)?.length, ngFiles.length, 'and the OS');
    const ifaces = await capinfosInterfaces(...ngFiles);
    t.equal(ifaces.length, ngFiles.length, 'one interface per file');
    for (const iface of ifaces) {
      t.equal(iface['Name'], s);
      t.match(iface['Description'], s === 'web-prod' ? /^VXLAN VNI 4242, outer source any, filter: tcp port 80$/ : /^VXLAN VNI 4711, outer source any$/);
      t.equal(iface['Filter string'], s === 'web-prod' ? 'tcp port 80' : undefined, 'if_filter only where a filter is set');
      t.equal(iface['Time precision'], 'nanoseconds (9)');
    }
    let received = 0;
    for (const f of ngFiles) {
      const [isb] = await pcapngStatistics(f);
      t.equal(isb!.dropped, 0, 'nothing dropped');
      received += isb!.received;
    }
    t.equal(received, 14, `${s}: the statistics blocks count every packet of the session once`);
  }
  const names = (await tool('tshark', ['-r', (await filesOf(join(ng, 'web-prod'), '.pcapng'))[0]!, '-T', 'fields', '-e', 'frame.interface_name'])).split('\n').filter(Boolean);
  t.ok(names.length === 5 && names.every((n) => n === 'web-prod'), 'tshark: frame.interface_name is the session');

  // mergecap of both sessions: one interface per session, and the name filters.
  const merged = join(dir, 'merged.pcapng');
  const all = [...(await filesOf(join(ng, 'web-prod'), '.pcapng')), ...(await filesOf(join(ng, 'api'), '.pcapng'))];
  // -I any: the identical interface descriptions of one session's files become one interface.
  const mc = await run('mergecap', ['-I', 'any', '-w', merged, ...all]);
  t.equal(mc.code, 0, mc.stderr);
  t.same((await capinfosInterfaces(merged)).map((i) => i['Name']).sort(), ['api', 'web-prod'], 'mergecap: one interface per session');
  const web = (await tool('tshark', ['-r', merged, '-Y', 'frame.interface_name == "web-prod"', '-T', 'fields', '-e', 'frame.number'])).split('\n').filter(Boolean);
  t.equal(web.length, 14, 'frame.interface_name == "web-prod" selects that session');

  // Index and query: the answer is classic pcap, the same bytes as from the pcap store.
  for (const store of [ng, classic]) t.equal(cli(['query', 'tcp', '--out', store, '-w', join(store, 'answer.pcap')]).status, 0);
  t.ok((await readFile(join(ng, 'answer.pcap'))).equals(await readFile(join(classic, 'answer.pcap'))), 'query of the pcapng store answers the pcap store\'s bytes');
  const q = cli(['query', 'tcp', '--out', ng, '-w', join(dir, 'again.pcap')]);
  t.match(q.stderr, /through their index/);
  t.notMatch(q.stderr, /scanned \(/, 'every pcapng file answered through its index');

  // Compressed pcapng: tshark reads .pcapng.gz and .pcapng.zst as the plain file.
  const plain = await tool('tshark', ['-r', all[0]!, '-x']);
  for (const c of ['gzip', 'zstd']) {
    const out = join(dir, c);
    const r = cli(['decap', TWO_VNI, '--out', out, '--format', 'pcapng', '--compress', c, ...args]);
    t.equal(r.status, 0, r.stderr);
    const [packed] = await filesOf(join(out, 'web-prod'), c === 'gzip' ? '.pcapng.gz' : '.pcapng.zst');
    t.ok(packed, `--compress ${c}: ${packed}`);
    t.equal(await tool('tshark', ['-r', packed!, '-x']), plain, `tshark reads the ${c} pcapng as the plain one`);
  }
});

t.test('pcapng of a GWLB endpoint session: raw IP interface named for the endpoint', { skip: existsSync(GWLB) ? false : `${GWLB} is not here` }, async (t) => {
  const out = join(await temp(), 'out');
  t.equal(cli(['decap', GWLB, '--out', out, '--format', 'pcapng']).status, 0);
  const [session] = await readdir(out);
  const [file] = await filesOf(join(out, session!), '.pcapng');
  const [iface] = await capinfosInterfaces(file!);
  t.equal(iface!['Name'], session);
  t.match(iface!['Encapsulation'], /Raw IP/);
  t.match(iface!['Description'], /^GENEVE \(raw IP\), GWLB endpoint [0-9a-f]+/);
});

t.test('--format: a bad value is a usage error (exit 2), on the command line and in a session of the config file', async (t) => {
  const dir = await temp();
  const flag = cli(['decap', TWO_VNI, '--out', join(dir, 'a'), '--format', 'pcapngx']);
  t.equal(flag.status, 2);
  t.match(flag.stderr, /format.*one of pcap, pcapng/);
  const cfg = join(dir, 'bad.yaml');
  await writeFile(cfg, 'sessions:\n  - { vni: 1, name: a, format: ng }\n');
  const file = cli(['decap', TWO_VNI, '--out', join(dir, 'b'), '--config', cfg]);
  t.equal(file.status, 2);
  t.match(file.stderr, /format/);
});
