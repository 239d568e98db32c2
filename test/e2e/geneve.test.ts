/**
 * GENEVE (RFC 8926) as a Gateway Load Balancer endpoint delivers it, against tshark: every
 * GENEVE capture of the shared real ones (the genuine AWS GWLB one, GENEVE→VXLAN nesting,
 * critical options, Google Cloud's mirroring) decapsulated offline gives the innermost frames
 * tshark shows, in the sessions the issue names, and the refusals tshark's fields predict;
 * the same datagrams sent live to --geneve give the same frames.
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { httpGet, MAIN, metricSum, sendDatagrams, startAppliance, waitFor } from '../lib/appliance.js';
import { decap, type DecapResult } from '../../src/commands/decap.js';
import { resolveConfig } from '../../src/config.js';
import { VXLAN_PORT } from '../../src/decode/vxlan.js';
import { createLogger } from '../../src/log.js';
import { ourRecords, realCaptures } from '../lib/captures.js';
import { tsharkFrames } from '../lib/tshark.js';
import { tool } from '../lib/tools.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const cli = (args: string[]): SpawnSyncReturns<string> => spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 60_000 });
const temp = (): Promise<string> => mkdtemp(join(tmpdir(), 'mirrorcap-geneve-'));

/** What tshark says one captured packet to 6081 (or 4789) must become. */
interface Expected {
  /** The outer UDP destination port. */
  readonly port: number;
  /** The outer UDP payload (the datagram a socket receives). */
  readonly datagram: Buffer;
  /** Session name, or the drop reason prefixed with '!'. */
  readonly where: string;
  /** The innermost frame, hex. */
  readonly frame: string;
}

/**
 * tshark's view of a capture, turned into what the RFC and the issue say we must do with each
 * datagram: drop control packets and unknown critical options; Ethernet to geneve-<vni>;
 * IPv4/IPv6 carrying VXLAN to vni-<vxlan vni>; other IP to gwlbe-<endpoint id>, or
 * geneve-<vni>-ip without one. Only tshark's fields are read, never our parser.
 */
function expected(path: string): Promise<Expected[]> {
  let e = tsharkSays.get(path);
  if (e === undefined) tsharkSays.set(path, (e = askTshark(path)));
  return e;
}

/** One tshark run per capture for the whole file's tests: tshark starts slowly on a busy machine. */
const tsharkSays = new Map<string, Promise<Expected[]>>();

async function askTshark(path: string): Promise<Expected[]> {
  const fields = ['udp.dstport', 'udp.payload', 'geneve.proto_type', 'geneve.vni', 'geneve.flags.oam', 'geneve.option.class', 'geneve.option.type', 'geneve.options', 'vxlan.vni', 'geneve.option.unknown.data'];
  const out = await tool('tshark', ['-r', path, '-T', 'fields', '-E', 'occurrence=a', '-E', 'aggregator=|', '-E', 'separator=\t', ...fields.flatMap((f) => ['-e', f])]);
  const result: Expected[] = [];
  for (const line of out.split('\n')) {
    if (line === '') continue;
    const [ports, payloads, proto, vni, oam, classes, types, options, vxlanVnis, unknownData] = line.split('\t').map((v) => (v ?? '').split('|'));
    const datagram = Buffer.from(payloads![0]!, 'hex');
    const port = Number(ports![0]);
    if (port === 4789 && vxlanVnis![0]) {
      result.push({ port, datagram, where: `vni-${Number(vxlanVnis![0])}`, frame: datagram.subarray(8).toString('hex') });
      continue;
    }
    if (port !== 6081) continue;
    if (proto![0] === '') {
      result.push({ port, datagram, where: '!bad_geneve', frame: '' });
      continue;
    }
    const headerLen = 8 + Buffer.from(options![0] ?? '', 'hex').length;
    const payload = datagram.subarray(headerLen);
    const critical = types!.some((ty, i) => ty !== '' && (Number(ty) & 0x80) !== 0 && Number(classes![i]) !== 0x0108);
    const p = Number(proto![0]);
    const v = Number(vni![0]);
    let where: string;
    let frame = payload;
    if (oam![0] === '1') where = '!geneve_oam';
    else if (critical) where = '!geneve_critical_option';
    else if (p === 0x6558) where = payload.length < 14 ? '!short' : `geneve-${v}`;
    else if (p === 0x0800 || p === 0x86dd) {
      if (Number(ports![1]) === 4789 && vxlanVnis![0]) {
        where = `vni-${Number(vxlanVnis![0])}`;
        frame = Buffer.from(payloads![1]!, 'hex').subarray(8);
      } else {
        // Amazon's options are unknown to tshark: their data is listed in option order.
        const t1 = types!.findIndex((ty, i) => Number(ty) === 1 && Number(classes![i]) === 0x0108);
        const allUnknown = unknownData!.length === classes!.length;
        where = t1 >= 0 && allUnknown ? `gwlbe-${unknownData![t1]}` : `geneve-${v}-ip`;
      }
    } else where = '!unsupported_protocol';
    result.push({ port, datagram, where, frame: frame.toString('hex') });
  }
  return result;
}

/**
 * Every frame we wrote, as hex, by session folder. Read with our reader to keep the test
 * short on a busy machine (one tshark start per file costs seconds): tshark reads our files
 * in the GWLB test below, and the reader itself is checked against tshark in test/pcap.
 */
async function written(out: string): Promise<Map<string, string[]>> {
  const bySession = new Map<string, string[]>();
  if (!existsSync(out)) return bySession;
  for (const s of (await readdir(out)).sort()) {
    const frames: string[] = [];
    for (const f of (await readdir(join(out, s))).filter((f) => f.endsWith('.pcap')).sort()) frames.push(...(await ourRecords(join(out, s, f))).map((x) => x.data.toString('hex')));
    bySession.set(s, frames);
  }
  return bySession;
}

/** `mirrorcap decap` in this process (the CLI's own path is the GWLB test's). */
async function decapHere(path: string, out: string): Promise<DecapResult> {
  const config = resolveConfig(new Map([['out', { value: out, origin: '--out' }]]), {}, { 'log-level': 'silent' });
  return decap(path, VXLAN_PORT, config, createLogger('silent', 2));
}

function group(list: Expected[]): { sessions: Map<string, string[]>; drops: Map<string, number> } {
  const sessions = new Map<string, string[]>();
  const drops = new Map<string, number>();
  for (const e of list) {
    if (e.where.startsWith('!')) drops.set(e.where.slice(1), (drops.get(e.where.slice(1)) ?? 0) + 1);
    else (sessions.get(e.where) ?? sessions.set(e.where, []).get(e.where)!).push(e.frame);
  }
  return { sessions, drops };
}

const sorted = (m: Map<string, string[]>): Record<string, string[]> => Object.fromEntries([...m].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => [k, [...v].sort()]));

const real = realCaptures();
const geneveFiles = real.files.filter((f) => /geneve|arkime-synthetic/.test(basename(f)) && !/bigtcp/.test(basename(f)));

t.test('decap of every real GENEVE capture: the innermost frames tshark shows, in the sessions and drops RFC 8926 asks for', { skip: real.skip }, async (t) => {
  t.ok(geneveFiles.length >= 12, `${geneveFiles.length} GENEVE captures`);
  let gwlb = false;
  for (const path of geneveFiles) {
    const f = basename(path);
    const want = group(await expected(path));
    const dir = await temp();
    const r = await decapHere(path, join(dir, 'out'));
    t.equal(r.error, null, f);
    t.same(sorted(await written(join(dir, 'out'))), sorted(want.sessions), `${f}: sessions ${[...want.sessions.keys()].join(', ') || 'none'}`);
    const dropped = Object.fromEntries(Object.entries(r.summary.dropped).filter(([, n]) => n > 0));
    t.same(dropped, Object.fromEntries(want.drops), `${f}: dropped ${JSON.stringify(dropped)}`);
    if ([...want.sessions.keys()].some((s) => s.startsWith('gwlbe-'))) gwlb = true;
    await rm(dir, { recursive: true, force: true });
  }
  t.ok(gwlb, 'the genuine AWS GWLB capture made a gwlbe-<endpoint> session');
});

t.test('the AWS GWLB capture: raw IP files (link type 101) tshark decodes as GRE, ids in /api/sessions; the endpoint named in the config file', { skip: real.skip }, async (t) => {
  const path = geneveFiles.find((f) => /aws-gwlb/.test(f))!;
  const dir = await temp();
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const r = cli(['decap', path, '--out', join(dir, 'out')]);
  t.equal(r.status, 0, r.stderr);
  const session = join(dir, 'out', 'gwlbe-31e129cdc0cd8633');
  const files = (await readdir(session)).filter((f) => f.endsWith('.pcap'));
  t.equal(files.length, 1);
  const frames = await tsharkFrames(join(session, files[0]!));
  t.ok(frames.length === 12 && frames.every((f) => f.linkType === 101), 'twelve raw-IP records');
  const protos = await tool('tshark', ['-r', join(session, files[0]!), '-T', 'fields', '-e', 'frame.protocols']);
  t.ok(protos.split('\n').filter(Boolean).every((p) => p.startsWith('raw:ip:gre:ip:tcp')), 'tshark reads IPv4/GRE/IPv4/TCP in them');

  // Named in the config file by the endpoint id as AWS prints it, with settings of its own; strict
  // refuses the endpoints not named (none here) as it refuses unknown VNIs.
  const config = join(dir, 'named.yaml');
  await writeFile(config, 'strict: true\nsessions:\n  - gwlb-endpoint: vpce-031e129cdc0cd8633\n    name: inspection\n    rotate-packets: 5\n');
  const named = cli(['decap', path, '--out', join(dir, 'named'), '--config', config]);
  t.equal(named.status, 0, named.stderr);
  t.same(await readdir(join(dir, 'named')), ['inspection'], 'the configured name, not gwlbe-<id>');
  const parts = (await readdir(join(dir, 'named', 'inspection'))).filter((f) => f.endsWith('.pcap')).sort();
  t.equal(parts.length, 3, 'its own rotate-packets: 5 + 5 + 2');
  const namedFrames = (await Promise.all(parts.map((f) => tsharkFrames(join(dir, 'named', 'inspection', f))))).flat();
  t.same(namedFrames.map((f) => [f.linkType, f.data.toString('hex')]), frames.map((f) => [f.linkType, f.data.toString('hex')]), 'tshark reads the same twelve raw-IP records');

  // Live: the same datagrams to --geneve, and the GWLB ids in the API and the log.
  const datagrams = (await expected(path)).map((e) => e.datagram);
  const app = await startAppliance(['--out', join(dir, 'live'), '--geneve', '127.0.0.1:0']);
  t.teardown(() => app.proc.kill('SIGKILL'));
  const start = app.logs.find((l) => l.event === 'start')!;
  const port = start['genevePort'] as number;
  t.ok(port > 0, `GENEVE on ${port}`);
  await sendDatagrams(port, datagrams);
  await waitFor(async () => metricSum((await httpGet(app.httpPort, '/metrics')).body, 'mirrorcap_datagrams_total') === datagrams.length, 5000, 'all received');
  const api = JSON.parse((await httpGet(app.httpPort, '/api/sessions')).body) as { sessions?: unknown[] } | unknown[];
  const list = (Array.isArray(api) ? api : api.sessions ?? []) as Array<Record<string, unknown>>;
  const s = list.find((x) => x['name'] === 'gwlbe-31e129cdc0cd8633');
  t.same(s?.['gwlb'], { endpointId: '31e129cdc0cd8633', attachmentId: '0000000000000000' }, '/api/sessions shows the endpoint and attachment ids');
  t.equal(s?.['encap'], 'gwlbe');
  t.equal(await app.stop(), 0);
  const created = app.logs.find((l) => l.event === 'session_created');
  t.same(created?.['gwlb'], { endpointId: '31e129cdc0cd8633', attachmentId: '0000000000000000' }, 'the session_created log line has them');
  const live = await written(join(dir, 'live'));
  t.same(live.get('gwlbe-31e129cdc0cd8633'), frames.map((f) => f.data.toString('hex')), 'live frames equal the decapsulated ones, in order');
});

t.test('a GENEVE VNI named in the config file: its frames under the name, strict drops the VNI not named', { skip: real.skip }, async (t) => {
  const path = geneveFiles.find((f) => basename(f) === 'tcpdump-geneve.pcap')!;
  const other = geneveFiles.find((f) => basename(f) === 'zeek-geneve-tagged-udp-packet.pcap')!;
  const want = group(await expected(path));
  const wantOther = group(await expected(other));
  t.same([...want.sessions.keys()], ['geneve-11'], 'tshark: Ethernet in GENEVE VNI 11 (VNI 10 has a critical option)');
  t.same([...wantOther.sessions.keys()], ['geneve-100'], 'tshark: Ethernet in GENEVE VNI 100');
  const dir = await temp();
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'named.yaml');
  await writeFile(file, 'strict: true\nsessions:\n  - geneve-vni: 11\n    name: overlay-eleven\n');
  const run = (capture: string, out: string): Promise<DecapResult> => {
    const flags = new Map([['out', { value: join(dir, out), origin: '--out' }], ['config', { value: file, origin: '--config' }]]);
    return decap(capture, VXLAN_PORT, resolveConfig(flags, {}, { 'log-level': 'silent' }), createLogger('silent', 2));
  };
  const r = await run(path, 'out');
  t.same(sorted(await written(join(dir, 'out'))), sorted(new Map([['overlay-eleven', want.sessions.get('geneve-11')!]])), 'VNI 11 frames under overlay-eleven');
  t.equal(r.summary.dropped['geneve_critical_option'], want.drops.get('geneve_critical_option'), 'the critical-option packets dropped as before');
  const strict = await run(other, 'other');
  t.same(sorted(await written(join(dir, 'other'))), {}, 'nothing of VNI 100 written');
  t.equal(strict.summary.dropped['unknown_vni'], wantOther.sessions.get('geneve-100')!.length, 'VNI 100 refused by strict, counted as unknown_vni');
  const bad = join(dir, 'bad.yaml');
  await writeFile(bad, 'sessions:\n  - geneve-vni: 10\n    vni: 10\n    name: both\n');
  t.throws(() => resolveConfig(new Map([['config', { value: bad, origin: '--config' }]]), {}), /invalid sessions\[0\].*one of vni, geneve-vni, gwlb-endpoint/, 'one match key per entry');
  await writeFile(bad, 'sessions:\n  - geneve-vni: 10\n    name: geneve-11\n');
  t.throws(() => resolveConfig(new Map([['config', { value: bad, origin: '--config' }]]), {}), /the automatic session name of GENEVE VNI 11/, 'no name another key gets automatically');
});

t.test('every real GENEVE datagram sent live to --geneve: the files decap writes, frame for frame', { skip: real.skip }, async (t) => {
  const dir = await temp();
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const geneveOnly: Expected[] = [];
  for (const path of geneveFiles) geneveOnly.push(...(await expected(path)).filter((e) => e.port === 6081));
  const app = await startAppliance(['--out', join(dir, 'live'), '--geneve', '127.0.0.1:0']);
  t.teardown(() => app.proc.kill('SIGKILL'));
  const port = app.logs.find((l) => l.event === 'start')!['genevePort'] as number;
  await sendDatagrams(port, geneveOnly.map((e) => e.datagram));
  await waitFor(async () => metricSum((await httpGet(app.httpPort, '/metrics')).body, 'mirrorcap_datagrams_total') === geneveOnly.length, 10_000, 'all received');
  const metrics = (await httpGet(app.httpPort, '/metrics')).body;
  t.equal(await app.stop(), 0);
  const want = group(geneveOnly);
  t.same(sorted(await written(join(dir, 'live'))), sorted(want.sessions), `${want.sessions.size} sessions, ${geneveOnly.length} datagrams`);
  for (const [reason, n] of want.drops) t.equal(metricSum(metrics, 'mirrorcap_dropped_packets_total', { reason }), n, `${n} counted as ${reason}`);
});

t.test('replay --encap geneve --gwlb beside two VXLAN ports: one appliance, three sockets, one pipeline, counted per listener', async (t) => {
  const dir = await temp();
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const fixture = join(ROOT, 'pcaps', 'ipv4.pcap');
  const frames = await tsharkFrames(fixture);
  const want = frames.map((f) => f.data.toString('hex'));
  const app = await startAppliance(['--out', join(dir, 'live'), '--listen', '127.0.0.1:0,127.0.0.1:0', '--geneve', '127.0.0.1:0', '--session-key', 'vni+src']);
  t.teardown(() => app.proc.kill('SIGKILL'));
  const start = app.logs.find((l) => l.event === 'start')!;
  const port = start['genevePort'] as number;
  const [vx1, vx2] = start['udpPorts'] as number[];
  t.ok(vx1! > 0 && vx2! > 0 && vx1 !== vx2 && port > 0, `VXLAN on ${vx1} and ${vx2}, GENEVE on ${port}`);
  const r = cli(['replay', fixture, '--target', `127.0.0.1:${port}`, '--vni', '321', '--encap', 'geneve', '--gwlb', 'vpce-0a1b2c3d4e5f60718', '--flat-out']);
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /in GENEVE as GWLB endpoint a1b2c3d4e5f60718/);
  for (const [p, vni] of [[vx1, 1], [vx2, 2]] as const) t.equal(cli(['replay', fixture, '--target', `127.0.0.1:${p}`, '--vni', String(vni), '--flat-out']).status, 0);
  await waitFor(async () => metricSum((await httpGet(app.httpPort, '/metrics')).body, 'mirrorcap_datagrams_total') === 3 * want.length, 5000, 'all received');
  const api = (await httpGet(app.httpPort, '/api/sessions')).body;
  const metrics = (await httpGet(app.httpPort, '/metrics')).body;
  t.equal(await app.stop(), 0);
  // Each socket's own counters: VXLAN is 8 bytes of header per frame; a GWLB's GENEVE 40 (8 + three
  // options of 12, 12 and 8), then the IPv4 (20) and UDP (8) headers around the VXLAN datagram.
  const wire = (overhead: number): number => frames.reduce((n, f) => n + f.origLen + overhead, 0);
  for (const [p, overhead] of [[vx1, 8], [vx2, 8], [port, 40 + 20 + 8 + 8]] as const) {
    const listener = `127.0.0.1:${p}`;
    t.equal(metricSum(metrics, 'mirrorcap_received_datagrams_total', { listener }), want.length, `${listener}: every datagram counted`);
    t.equal(metricSum(metrics, 'mirrorcap_received_bytes_total', { listener }), wire(overhead), `${listener}: their bytes`);
    t.equal(metricSum(metrics, 'mirrorcap_socket_drops_total', { listener }), 0, `${listener}: no kernel drops`);
  }
  // The stand-in ENI (192.0.2.1) inside the GENEVE keys the session under vni+src; tshark reads each file.
  const sessions = (await readdir(join(dir, 'live'))).sort();
  t.same(sessions, ['vni-1-127.0.0.1', 'vni-2-127.0.0.1', 'vni-321-192.0.2.1']);
  for (const s of sessions) {
    const files = (await readdir(join(dir, 'live', s))).filter((f) => f.endsWith('.pcap'));
    const got = (await Promise.all(files.map((f) => tsharkFrames(join(dir, 'live', s, f))))).flat();
    t.same(got.map((f) => f.data.toString('hex')), want, `${s}: every frame, byte for byte, in order (tshark)`);
  }
  t.match(api, /"endpointId":\s*"a1b2c3d4e5f60718"/, 'the endpoint id reached /api/sessions');
  const bad = cli(['replay', fixture, '--target', `127.0.0.1:${port}`, '--gwlb', '12']);
  t.equal(bad.status, 2, '--gwlb without --encap geneve is a usage error');
});
