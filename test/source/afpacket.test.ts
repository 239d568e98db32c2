/**
 * The packet ring source (`--source afpacket:<iface>`) on a veth pair between two network
 * namespaces this test creates: a sender namespace replays real captures as VXLAN to the
 * receiver namespace, where mirrorcap reads the interface's TPACKET_V3 ring. The oracle is
 * libpcap: `tcpdump -r -t -xx` of the session file equals that of the capture replayed.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { launchAppliance, MAIN, type Appliance } from '../lib/appliance.js';
import { REAL_DIR } from '../lib/captures.js';
import { haveTool } from '../lib/tools.js';
import { loadNative } from '../../src/native/addon.js';
import { AfPacketSource } from '../../src/source/afpacket.js';

const root = process.getuid?.() === 0;
const native = loadNative().ok;
const skip = !root || !native || !haveTool('ip') || !haveTool('tcpdump') ? `needs root, ip, tcpdump and the native addon (root: ${root}, native: ${native})` : false;

const MIXED = join(REAL_DIR, 'plain-suricata-verify-mixed-lan-ftp-http.pcap');
const JUMBO = join(REAL_DIR, 'plain-zeek-smtp-tso-8754B-frames.pcap');
const SNAPPED = join(REAL_DIR, 'plain-zeek-tcp-timestamp-snaplen-truncated.pcap');

const sh = (cmd: string, args: string[]): { status: number | null; stdout: string; stderr: string } => {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000, maxBuffer: 256 << 20 });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
};
const ip = (...args: string[]): void => {
  const r = sh('ip', args);
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
};
/** Each record's bytes as libpcap reads them, without the timestamp. */
const dump = (file: string): string => {
  const r = sh('tcpdump', ['-r', file, '-t', '-nn', '-xx']);
  if (r.status !== 0) throw new Error(`tcpdump -r ${file}: ${r.stderr}`);
  return r.stdout;
};

t.test('afpacket source on a veth pair between two namespaces', { skip }, async (t) => {
  const tag = process.pid.toString(36);
  const tx = `mcafp-tx-${tag}`;
  const rx = `mcafp-rx-${tag}`;
  ip('netns', 'add', tx);
  t.teardown(() => void sh('ip', ['netns', 'del', tx]));
  ip('netns', 'add', rx);
  t.teardown(() => void sh('ip', ['netns', 'del', rx]));
  ip('-n', tx, 'link', 'add', 'mcafp0', 'mtu', '9001', 'type', 'veth', 'peer', 'name', 'mcafp1', 'mtu', '9001', 'netns', rx);
  ip('-n', tx, 'addr', 'add', '10.77.0.1/24', 'dev', 'mcafp0');
  ip('-n', rx, 'addr', 'add', '10.77.0.2/24', 'dev', 'mcafp1');
  for (const [ns, dev] of [[tx, 'mcafp0'], [rx, 'mcafp1'], [tx, 'lo'], [rx, 'lo']] as const) ip('-n', ns, 'link', 'set', dev, 'up');
  // The down interface of the error case below.
  ip('-n', rx, 'link', 'add', 'mcdown0', 'type', 'veth', 'peer', 'name', 'mcdown1');

  const inNs = (ns: string, args: string[]): string[] => ['ip', 'netns', 'exec', ns, process.execPath, MAIN, ...args];
  const start = async (dir: string, extra: string[] = []): Promise<Appliance> => {
    const app = await launchAppliance(inNs(rx, ['--source', 'afpacket:mcafp1', '--listen', '0.0.0.0:4789', '--http', '127.0.0.1:0', '--out', dir, ...extra]), { env: process.env }, 30_000);
    t.teardown(() => void app.proc.kill('SIGKILL'));
    return app;
  };
  const replay = (file: string, vni: number, args: string[] = ['--rate', '20000'], target = '10.77.0.2:4789', ns = tx): void => {
    const r = sh('ip', ['netns', 'exec', ns, process.execPath, MAIN, 'replay', file, '--target', target, '--vni', String(vni), ...args]);
    if (r.status !== 0) throw new Error(`replay ${file}: ${r.stderr}`);
  };
  const sessionFile = async (dir: string, session: string): Promise<string> => {
    const files = (await readdir(join(dir, session))).filter((f) => f.endsWith('.pcap'));
    if (files.length !== 1) throw new Error(`${session}: expected one file, found ${files.join(', ')}`);
    return join(dir, session, files[0]!);
  };
  /** The receiver namespace's count of UDP datagrams that found no socket (each draws an ICMP port unreachable). */
  const noPorts = (): number => {
    const lines = sh('ip', ['netns', 'exec', rx, 'cat', '/proc/net/snmp']).stdout.split('\n').filter((l) => l.startsWith('Udp: '));
    const [names, values] = lines.map((l) => l.split(/\s+/));
    return Number(values![names!.indexOf('NoPorts')]);
  };
  const metrics = (app: Appliance): string => sh('ip', ['netns', 'exec', rx, 'curl', '-s', `http://127.0.0.1:${app.httpPort}/metrics`]).stdout;

  t.test('real captures arrive byte for byte, each once, with kernel timestamps; the shutdown drains the ring', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'mirrorcap-afpacket-'));
    const app = await start(dir);
    const before = Date.now() / 1000;
    replay(MIXED, 1);
    replay(JUMBO, 2);
    replay(SNAPPED, 3);
    // The last frames are still in a block the kernel has not handed over: SIGTERM at once.
    replay(MIXED, 4, ['--flat-out']);
    const text = metrics(app);
    t.equal(await app.stop(), 0, `exits 0 (${app.stderr()})`);
    const summary = app.logs.find((l) => l.event === 'shutdown');
    t.match(summary, { dropped: {}, filesLeftPart: 0 }, 'nothing dropped, every file closed');
    for (const [vni, file] of [[1, MIXED], [2, JUMBO], [3, SNAPPED], [4, MIXED]] as const) {
      const written = await sessionFile(dir, `vni-${vni}`);
      t.equal(dump(written), dump(file), `vni-${vni}: tcpdump reads the same records as in ${file}`);
    }
    t.equal(summary?.writtenPackets, 2 * 1350 + 19 + 878, 'each frame written once');
    t.match(text, /^mirrorcap_socket_drops_total\{listener="afpacket:mcafp1"\} 0$/m, 'the ring dropped nothing');
    const first = sh('capinfos', ['-a', '-S', await sessionFile(dir, 'vni-1')]).stdout;
    const at = Number(/First packet time:\s+([\d.]+)/.exec(first)?.[1]);
    t.ok(at >= before - 1 && at <= Date.now() / 1000, `the first record carries the receive time (${at}, test began ${before})`);
  });

  t.test('--workers 2: two rings in one fanout group; every frame once, each file in time order; the shutdown drains both', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'mirrorcap-afpacket-'));
    const app = await start(dir, ['--workers', '2']);
    // Each replay is its own process, so its own source port: the flow hash spreads them.
    const jumbos = [2, 3, 5, 6, 7, 8];
    replay(MIXED, 1);
    for (const vni of jumbos) replay(JUMBO, vni);
    replay(MIXED, 4, ['--flat-out']);
    const text = metrics(app);
    t.equal(await app.stop(), 0, `exits 0 (${app.stderr()})`);
    const perWorker = [0, 1].map((w) => Number(new RegExp(`^mirrorcap_worker_received_packets_total\\{worker="${w}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0));
    t.ok(perWorker.every((n) => n > 0), `both rings received (${perWorker.join(', ')})`);
    t.match(text, /^mirrorcap_socket_drops_total\{listener="afpacket:mcafp1"\} \d+$/m, 'the listener is named by its interface, as with one ring');
    const summary = app.logs.find((l) => l.event === 'shutdown');
    t.match(summary, { dropped: {}, filesLeftPart: 0 }, 'nothing dropped, every file closed');
    t.equal(summary?.writtenPackets, 2 * 1350 + jumbos.length * 19, 'each frame written once');
    for (const [vni, file] of [[1, MIXED], [4, MIXED], ...jumbos.map((v) => [v, JUMBO] as const)] as const) {
      const written = await sessionFile(dir, `vni-${vni}`);
      t.equal(dump(written), dump(file), `vni-${vni}: tcpdump reads the same records as in ${file}`);
      t.match(sh('capinfos', ['-o', written]).stdout, /Strict time order:\s+True/, `vni-${vni}: in time order (capinfos)`);
    }
  });

  t.test('the kernel filter takes every --listen port and --geneve\'s and keeps other ports out; what the host sends out is not received; a held port draws no ICMP', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'mirrorcap-afpacket-'));
    const app = await start(dir, ['--listen', '0.0.0.0:4789,0.0.0.0:8472', '--geneve', '0.0.0.0:6081']);
    for (const port of [4789, 8472, 6081]) t.match(sh('ip', ['netns', 'exec', rx, 'ss', '-uln', `sport = :${port}`]).stdout, new RegExp(`0\\.0\\.0\\.0:${port}`), `a UDP socket holds ${port}`);
    const noPorts0 = noPorts();
    replay(JUMBO, 7);
    replay(JUMBO, 10, ['--rate', '20000'], '10.77.0.2:8472');
    replay(JUMBO, 11, ['--rate', '20000', '--encap', 'geneve'], '10.77.0.2:6081');
    t.equal(noPorts(), noPorts0, 'no datagram to 4789, 8472 or 6081 found the port closed (each would draw an ICMP port unreachable)');
    replay(JUMBO, 5, ['--rate', '20000'], '10.77.0.2:4790');
    t.equal(noPorts(), noPorts0 + 19, 'the oracle counts those to a port nobody holds (Udp NoPorts)');
    replay(MIXED, 6, ['--rate', '20000'], '10.77.0.1:4789', rx); // out of mcafp1, to the sender's namespace
    const text = metrics(app);
    t.equal(await app.stop(), 0);
    t.same((await readdir(dir)).sort(), ['vni-10', 'vni-11', 'vni-7'], 'only the datagrams to our ports that came in: VXLAN on 4789 and 8472, VXLAN inside GENEVE on 6081');
    for (const vni of [7, 10, 11]) t.equal(dump(await sessionFile(dir, `vni-${vni}`)), dump(JUMBO), `vni-${vni}: tcpdump reads the records replayed`);
    t.notMatch(text, /mirrorcap_capture_skipped_packets_total\{/, 'the kernel filtered the rest: nothing reached the parser to skip');
  });

  t.test('--bpf widens the kernel filter; what is not VXLAN to our port is counted as skipped, also by ring workers', async (t) => {
    for (const workers of [1, 2]) {
      const dir = await mkdtemp(join(tmpdir(), 'mirrorcap-afpacket-'));
      const app = await start(dir, ['--bpf', 'udp', ...(workers > 1 ? ['--workers', String(workers)] : [])]);
      replay(JUMBO, 8, ['--rate', '20000'], '10.77.0.2:4790');
      replay(JUMBO, 9);
      // Receive threads hand their counts to the main thread every half second.
      const skipped = /^mirrorcap_capture_skipped_packets_total\{listener="afpacket:mcafp1",reason="other_port"\} 19$/m;
      let text = metrics(app);
      for (let i = 0; i < 20 && !skipped.test(text); i++) {
        await new Promise((r) => setTimeout(r, 250));
        text = metrics(app);
      }
      t.equal(await app.stop(), 0);
      t.same((await readdir(dir)).sort(), ['vni-9'], `--workers ${workers}: only our port's datagrams written`);
      t.match(text, skipped, `--workers ${workers}: the other port counted`);
    }
  });

  t.test('clear errors: a down interface, an unknown one, a bad --bpf', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'mirrorcap-afpacket-'));
    for (const [iface, extra, message] of [
      ['mcdown0', [], /^mirrorcap: --source afpacket:mcdown0: mcdown0 is down \(ip link set mcdown0 up\)\n$/],
      ['nosuch0', [], /^mirrorcap: --source afpacket:nosuch0: there is no interface "nosuch0"; `mirrorcap interfaces` lists them\n$/],
      ['mcafp1', ['--bpf', 'udp port'], /^mirrorcap: --bpf "udp port": /],
    ] as const) {
      const r = sh('ip', ['netns', 'exec', rx, process.execPath, MAIN, '--source', `afpacket:${iface}`, '--listen', '0.0.0.0:4789', '--http', '127.0.0.1:0', '--out', dir, ...extra]);
      t.equal(r.status, 2, `${iface} ${extra.join(' ')}: exits 2`);
      t.match(r.stderr, message);
    }
  });
});

t.test('afpacket source: stop before start and twice is harmless; no interface is a ConfigError', { skip: native ? false : 'needs the native addon' }, async (t) => {
  const src = new AfPacketSource({ iface: 'nosuch0', listen: [{ host: '127.0.0.1', port: 0 }], geneve: null, bpf: null, ringBytes: 4 << 20 });
  await t.rejects(src.start(() => false), { name: 'ConfigError', message: /there is no interface "nosuch0"/ });
  t.equal(src.ready, false);
  await src.stop();
  await src.stop();
  t.equal(src.stats.kernelDrops, 0);
});
