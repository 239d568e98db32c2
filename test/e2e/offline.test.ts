/**
 * More ways in and out: replay into a live appliance, decap of a capture tcpdump took,
 * the interface source on lo, and every error path of them, checked with tshark.
 */
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { cp, mkdir, mkdtemp, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { httpGet, MAIN, metricValue, startAppliance, waitFor } from '../lib/appliance.js';
import { REAL_DIR, realCaptures } from '../lib/captures.js';
import { tsharkFrames, type Frame } from '../lib/tshark.js';
import { haveTool, run, tool } from '../lib/tools.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const FIXTURES = ['ipv4.pcap', 'ipv6.pcap', 'ethernet-vlan.pcap', 'truncated.pcap'].map((f) => join(ROOT, 'pcaps', f));

const cli = (args: string[], timeout = 60_000): SpawnSyncReturns<string> => spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout });
const temp = (): Promise<string> => mkdtemp(join(tmpdir(), 'mirrorcap-offline-'));

async function pcapsUnder(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((f) => f.endsWith('.pcap')).sort().map((f) => join(dir, f));
}

/** Every frame of these capture files, in order, as tshark reads them. */
async function framesOf(files: string[]): Promise<Frame[]> {
  const out: Frame[] = [];
  for (const f of files) out.push(...(await tsharkFrames(f)));
  return out;
}

/** The bytes of every frame of a session's files, in order, as tshark reads them. */
async function sessionFrames(dir: string): Promise<Buffer[]> {
  return (await framesOf(await pcapsUnder(dir))).map((x) => x.data);
}

t.test('replay of fixture captures into a live appliance: the same frames, byte for byte, in order', async (t) => {
  const out = await temp();
  const app = await startAppliance(['--out', out]);
  t.teardown(() => app.proc.kill('SIGKILL'));
  let expected = 0;
  for (const [i, fixture] of FIXTURES.entries()) {
    const r = cli(['replay', fixture, '--target', `127.0.0.1:${app.udpPort}`, '--vni', String(100 + i), '--flat-out']);
    t.equal(r.status, 0, `replay ${fixture}: ${r.stderr}`);
    const want = await tsharkFrames(fixture);
    expected += want.length;
    t.match(r.stdout, new RegExp(`sent\\s+${want.length} packets`), 'it reports what it sent');
  }
  await waitFor(async () => metricValue((await httpGet(app.httpPort, '/metrics')).body, 'mirrorcap_datagrams_total') === expected, 5000, 'all received');
  t.equal(await app.stop(), 0);
  for (const [i, fixture] of FIXTURES.entries()) {
    const want = (await tsharkFrames(fixture)).map((f) => f.data);
    const got = await sessionFrames(join(out, `vni-${100 + i}`));
    t.equal(got.length, want.length, `${fixture}: every frame arrived`);
    t.ok(got.every((g, k) => g.equals(want[k]!)), `${fixture}: byte-identical and in order`);
  }
});

t.test('replay pacing, loops and --source-port-hash', async (t) => {
  const sock = createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => sock.close());
  const seen: Array<{ port: number; flow: string }> = [];
  sock.on('message', (msg, rinfo) => {
    // The inner frame's IPv4 5-tuple (fixture frames are Ethernet + IPv4 + TCP/UDP at fixed offsets).
    const f = msg.subarray(8);
    const flow = f.readUInt16BE(12) === 0x0800 ? `${f.subarray(26, 34).toString('hex')}/${f[23]}/${f.subarray(34, 38).toString('hex')}` : 'other';
    seen.push({ port: rinfo.port, flow });
  });
  const port = (sock.address() as { port: number }).port;
  const fixture = FIXTURES[0]!;
  const n = (await tsharkFrames(fixture)).length;

  const started = Date.now();
  const paced = cli(['replay', fixture, '--target', `127.0.0.1:${port}`, '--rate', '200', '--loop', '3']);
  const took = Date.now() - started;
  t.equal(paced.status, 0, paced.stderr);
  t.match(paced.stdout, new RegExp(`sent\\s+${3 * n} packets.*3 loops`, 's'), '--loop 3 sends the capture three times');
  t.ok(took >= ((3 * n - 1) / 200) * 1000 * 0.9, `--rate 200: ${3 * n} packets took ${took} ms`);
  await waitFor(() => seen.length === 3 * n, 5000, 'received');
  t.equal(new Set(seen.map((s) => s.port)).size, 1, 'one source port without the hash');

  seen.length = 0;
  const hashed = cli(['replay', fixture, '--target', `127.0.0.1:${port}`, '--flat-out', '--source-port-hash']);
  t.equal(hashed.status, 0, hashed.stderr);
  await waitFor(() => seen.length === n, 5000, 'received');
  const portsByFlow = new Map<string, Set<number>>();
  for (const s of seen) portsByFlow.set(s.flow, (portsByFlow.get(s.flow) ?? new Set()).add(s.port));
  t.ok([...portsByFlow.values()].every((ports) => ports.size === 1), 'each inner flow keeps one outer source port');
  t.ok(new Set(seen.map((s) => s.port)).size > 1, `flows are spread over ${new Set(seen.map((s) => s.port)).size} source ports`);

  const fast = Date.now();
  const speed = cli(['replay', join(ROOT, 'pcaps', 'vxlan-outer.pcap'), '--target', `127.0.0.1:${port}`, '--speed', '1000000']);
  t.equal(speed.status, 0, speed.stderr);
  t.ok(Date.now() - fast < 5000, '--speed scales the capture\'s own timing');
});

t.test('decap of a capture tcpdump took on lo equals the live appliance\'s output, frame for frame', { skip: haveTool('tcpdump') ? false : 'tcpdump is not installed' }, async (t) => {
  const dir = await temp();
  const app = await startAppliance(['--out', join(dir, 'live'), '--rotate-packets', '7']);
  t.teardown(() => app.proc.kill('SIGKILL'));
  const capture = join(dir, 'lo.pcap');
  const tcpdump = spawn('tcpdump', ['-i', 'lo', '-w', capture, '-U', '-n', `udp dst port ${app.udpPort}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.teardown(() => tcpdump.kill('SIGKILL'));
  let tcpdumpErr = '';
  tcpdump.stderr.on('data', (d: Buffer) => (tcpdumpErr += d.toString()));
  await waitFor(() => /listening on/.test(tcpdumpErr), 5000, 'tcpdump listening');
  let sent = 0;
  for (const [i, fixture] of FIXTURES.entries()) {
    t.equal(cli(['replay', fixture, '--target', `127.0.0.1:${app.udpPort}`, '--vni', String(7 + i), '--rate', '2000']).status, 0);
    sent += (await tsharkFrames(fixture)).length;
  }
  await waitFor(async () => metricValue((await httpGet(app.httpPort, '/metrics')).body, 'mirrorcap_datagrams_total') === sent, 5000, 'all received');
  await new Promise((r) => setTimeout(r, 1500)); // tcpdump writes its last block on its own time
  tcpdump.kill('SIGINT');
  await new Promise((r) => tcpdump.on('close', r));
  t.equal(await app.stop(), 0);

  const r = cli(['decap', capture, '--out', join(dir, 'offline'), '--port', String(app.udpPort), '--rotate-packets', '7']);
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, new RegExp(`packets read\\s+${sent}\\n\\s+decapsulated\\s+${sent}`), 'the summary counts every packet');
  for (let i = 0; i < FIXTURES.length; i++) {
    const session = `vni-${7 + i}`;
    const live = await pcapsUnder(join(dir, 'live', session));
    const offline = await pcapsUnder(join(dir, 'offline', session));
    t.equal(offline.length, live.length, `${session}: as many files (${live.length})`);
    const a = await framesOf(live);
    const b = await framesOf(offline);
    t.equal(b.length, a.length, `${session}: as many frames`);
    t.ok(b.every((f, k) => f.data.equals(a[k]!.data) && f.origLen === a[k]!.origLen && f.capLen === a[k]!.capLen), `${session}: frame for frame the same bytes and lengths`);
  }
});

const real = realCaptures();

t.test('decap against the real VXLAN captures: our frames are the frames tshark shows inside VXLAN', { skip: real.skip }, async (t) => {
  const files = real.files.filter((f) => /vxlan/.test(basename(f)) && !/gpe|geneve|bigtcp/.test(basename(f)));
  t.ok(files.length >= 10, `${files.length} VXLAN captures`);
  for (const path of files) {
    const f = basename(path);
    const port = /8472/.test(f) ? 8472 : 4789;
    const out = join(await temp(), 'out');
    const r = cli(['decap', path, '--out', out, '--port', String(port), '--geneve-port', '0']); // VXLAN only: GENEVE has its own test
    t.equal(r.status, 0, `${f}: ${r.stderr}`);
    const want = (await tool('tshark', ['-r', path, '-d', `udp.port==${port},vxlan`, '-Y', `vxlan && udp.dstport == ${port}`, '-T', 'fields', '-E', 'occurrence=f', '-e', 'udp.payload']))
      .split('\n')
      .filter(Boolean)
      .map((hex) => Buffer.from(hex, 'hex').subarray(8));
    const ours: Buffer[] = [];
    if (existsSync(out)) for (const s of (await readdir(out)).sort()) ours.push(...(await sessionFrames(join(out, s))));
    const key = (b: Buffer): string => b.toString('hex');
    t.same(ours.map(key).sort(), want.map(key).sort(), `${f}: ${want.length} inner frames`);
  }
});

t.test('decap keeps the capture\'s own timestamps, a step back included; tshark, capinfos and mergecap read the file', { skip: existsSync(REAL_DIR) ? false : `${REAL_DIR} is not here` }, async (t) => {
  // Frame 8 (9100 bytes, an offload super-packet) was captured 39 µs before frame 7.
  const source = join(REAL_DIR, 'zeek-vxlan-encapsulated-http.pcap');
  const out = join(await temp(), 'out');
  const r = cli(['decap', source, '--out', out]);
  t.equal(r.status, 0, r.stderr);
  const want = (await tool('tshark', ['-r', source, '-T', 'fields', '-e', 'frame.time_epoch'])).split('\n').filter(Boolean);
  t.equal(want.length, 12);
  t.ok(want[7]! < want[6]!, `the capture steps back at frame 8 (${want[6]} then ${want[7]})`);
  const [file] = await pcapsUnder(join(out, 'vni-1'));
  const got = (await tsharkFrames(file!)).map((f) => f.ts);
  t.same(got, want, 'every record has the time the capture gave its datagram, to the nanosecond');
  const info = await run('capinfos', ['-M', '-c', '-o', file!]);
  t.equal(info.code, 0, info.stderr);
  t.match(info.stdout, /Strict time order:\s+False/, 'capinfos reads it and sees the step');
  const merged = join(out, 'merged.pcap');
  const mc = await run('mergecap', ['-w', merged, file!]);
  t.equal(mc.code, 0, mc.stderr);
  t.equal((await tsharkFrames(merged)).length, 12, 'mergecap takes it');
});

t.test('decap: formats, corrupt input, unknown link types', async (t) => {
  const dir = await temp();
  const source = join(ROOT, 'pcaps', 'vxlan-outer.pcap');
  const base = cli(['decap', source, '--out', join(dir, 'base')]);
  t.equal(base.status, 0, base.stderr);
  const baseFrames = async (sub: string): Promise<string[]> => {
    const out: string[] = [];
    for (const s of (await readdir(join(dir, sub))).sort()) out.push(...(await sessionFrames(join(dir, sub, s))).map((b) => b.toString('hex')));
    return out;
  };
  const expected = await baseFrames('base');
  t.ok(expected.length > 0, `the fixture holds VXLAN (${expected.length} inner frames)`);
  for (const [name, args] of [
    ['pcapng', ['-F', 'pcapng']],
    ['usec pcap', ['-F', 'pcap']],
    ['linux cooked', ['-T', 'linux-sll']],
  ] as const) {
    const converted = join(dir, `${name.replace(/ /g, '-')}.cap`);
    const e = await run('editcap', [...args, source, converted]);
    t.equal(e.code, 0, `editcap ${args.join(' ')}: ${e.stderr}`);
    if (name === 'linux cooked') {
      // editcap -T relabels; rebuild real SLL headers so the frames are what a cooked capture holds.
      await writeFile(converted, toSll(await readFile(source)));
    }
    const r = cli(['decap', converted, '--out', join(dir, name.replace(/ /g, '-'))]);
    t.equal(r.status, 0, `${name}: ${r.stderr}`);
    t.same(await baseFrames(name.replace(/ /g, '-')), expected, `${name}: the same inner frames`);
  }

  const whole = await readFile(source);
  const cutAt = whole.length - 10;
  await writeFile(join(dir, 'cut.pcap'), whole.subarray(0, cutAt));
  const cut = cli(['decap', join(dir, 'cut.pcap'), '--out', join(dir, 'cut')]);
  t.equal(cut.status, 1, 'a truncated capture exits 1');
  t.match(cut.stderr, /byte \d+: .*every packet before it was written/, 'naming the byte offset');
  t.equal((await baseFrames('cut')).length, expected.length - 1, 'everything before the torn record is written');

  const garbage = join(dir, 'garbage.pcap');
  await writeFile(garbage, Buffer.from('this is not a capture file at all, just text'));
  const bad = cli(['decap', garbage, '--out', join(dir, 'garbage')]);
  t.equal(bad.status, 1);
  t.match(bad.stderr, /byte 0: .*magic/i);

  const wifi = join(dir, 'wifi.pcap');
  t.equal((await run('editcap', ['-T', 'ieee-802-11', source, wifi])).code, 0);
  const lt = cli(['decap', wifi, '--out', join(dir, 'wifi')]);
  t.equal(lt.status, 1, 'a link type we cannot read exits 1');
  t.match(lt.stderr, /link type 105, which mirrorcap cannot read/);

  t.equal(cli(['decap', join(dir, 'nope.pcap')]).status, 2, 'a missing file is a usage error');
  t.equal(cli(['decap']).status, 2);
  t.match(cli(['decap', source, '--listen', '0.0.0.0:1']).stderr, /unknown option --listen for mirrorcap decap/);
});

t.test('interface source on lo, and its error paths', async (t) => {
  const dir = await temp();
  const root = process.getuid?.() === 0;
  const capOk = (await import('../../src/source/libpcap.js')).loadCap().ok;
  if (!root || !capOk) {
    t.pass(`skipped: needs root and the cap module (root: ${root}, cap: ${capOk})`);
  } else {
    // mirrorcap owns no socket on the port: the interface source sees the datagrams on lo
    // anyway. A socket that never reads holds it, so the kernel does not answer replay with
    // port unreachable (replay exits 1 when its datagrams are refused).
    const holder = createSocket('udp4');
    await new Promise<void>((r) => holder.bind(0, '127.0.0.1', () => r()));
    t.teardown(() => holder.close());
    const port = (holder.address() as { port: number }).port;
    const app = await startAppliance(['--out', join(dir, 'if'), '--source', 'pcap:lo', '--listen', `127.0.0.1:${port}`]);
    t.teardown(() => app.proc.kill('SIGKILL'));
    t.equal(app.logs.find((l) => l.event === 'start')?.source, 'pcap');
    const fixture = FIXTURES[1]!;
    const want = (await tsharkFrames(fixture)).map((f) => f.data);
    t.equal(cli(['replay', fixture, '--target', `127.0.0.1:${port}`, '--vni', '5', '--rate', '1000']).status, 0);
    await waitFor(async () => metricValue((await httpGet(app.httpPort, '/metrics')).body, 'mirrorcap_packets_total', { session: 'vni-5' }) === want.length, 5000, 'captured');
    t.equal(await app.stop(), 0);
    const got = await sessionFrames(join(dir, 'if', 'vni-5'));
    t.ok(got.length === want.length && got.every((g, k) => g.equals(want[k]!)), `the interface source wrote the ${want.length} frames, byte for byte`);
  }
  const bad = cli(['--source', 'pcap:nosuchif0', '--out', join(dir, 'x'), '--http', '127.0.0.1:0']);
  if (capOk) {
    t.equal(bad.status, 2, 'an unknown interface exits 2');
    t.match(bad.stderr, /there is no interface "nosuchif0".*mirrorcap interfaces/);
  } else t.pass('skipped: the unknown-interface check needs the cap module');
  if (root && capOk && haveTool('setpriv')) {
    // Root without CAP_NET_RAW (dropped from the bounding set): the permission is missing
    // while the checkout stays readable, wherever it lives (a 0700 folder under /root too).
    // env -u: tap's --import hooks in NODE_OPTIONS are not needed by the child.
    const r = spawnSync('env', ['-u', 'NODE_OPTIONS', 'setpriv', '--bounding-set=-net_raw,-net_admin', process.execPath, MAIN, '--source', 'pcap:lo', '--out', join(dir, 'y'), '--http', '127.0.0.1:0'], { encoding: 'utf8' });
    t.equal(r.status, 2, `no permission exits 2 (${r.stdout}${r.stderr})`);
    t.match(r.stderr, /not allowed to capture on lo.*root or grant CAP_NET_RAW/);
  } else t.pass('skipped: the no-permission check needs root, the cap module and setpriv');
  // Without the cap module: a copy of the package whose node_modules lacks it.
  const pkg = join(dir, 'nocap');
  await mkdir(join(pkg, 'node_modules'), { recursive: true });
  await cp(join(ROOT, 'dist'), join(pkg, 'dist'), { recursive: true });
  await cp(join(ROOT, 'package.json'), join(pkg, 'package.json'));
  for (const m of await readdir(join(ROOT, 'node_modules'))) if (m !== 'cap') await symlink(join(ROOT, 'node_modules', m), join(pkg, 'node_modules', m));
  const main = join(pkg, 'dist', 'src', 'main.js');
  const noCap = spawnSync(process.execPath, [main, '--source', 'pcap:lo', '--out', join(dir, 'z'), '--http', '127.0.0.1:0'], { encoding: 'utf8' });
  t.equal(noCap.status, 2, 'without cap, --source pcap: exits 2');
  t.match(noCap.stderr, /"cap" module .* not installed.*npm install cap/);
  const list = spawnSync(process.execPath, [main, 'interfaces'], { encoding: 'utf8' });
  t.equal(list.status, 2);
  t.match(list.stderr, /"cap" module/);
  if (capOk) t.match(cli(['interfaces']).stdout, /^lo\s/m, '`mirrorcap interfaces` lists lo');
  else t.pass('skipped: listing interfaces needs the cap module');
});

/** A classic pcap of Ethernet frames rewritten as LINKTYPE_LINUX_SLL (113) with real SLL headers. */
function toSll(pcap: Buffer): Buffer {
  const out: Buffer[] = [Buffer.from(pcap.subarray(0, 24))];
  out[0]!.writeUInt32LE(113, 20);
  for (let p = 24; p + 16 <= pcap.length; ) {
    const incl = pcap.readUInt32LE(p + 8);
    const orig = pcap.readUInt32LE(p + 12);
    const frame = pcap.subarray(p + 16, p + 16 + incl);
    const hdr = Buffer.from(pcap.subarray(p, p + 16));
    hdr.writeUInt32LE(incl + 2, 8);
    hdr.writeUInt32LE(orig + 2, 12);
    const sll = Buffer.alloc(16);
    sll.writeUInt16BE(0, 0); // to us
    sll.writeUInt16BE(1, 2); // ARPHRD_ETHER
    sll.writeUInt16BE(6, 4);
    frame.copy(sll, 6, 6, 12); // source MAC
    sll.writeUInt16BE(frame.readUInt16BE(12), 14);
    out.push(hdr, sll, frame.subarray(14));
    p += 16 + incl;
  }
  return Buffer.concat(out);
}
