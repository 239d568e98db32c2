/**
 * The interface source (`--source pcap:<iface>`) and what libpcap prints by itself: its
 * SIOCGIFADDR warnings never reach our stderr. (Capture on lo and the other error paths are
 * in offline.test.ts.)
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { launchAppliance, MAIN } from '../lib/appliance.js';

const cli = (args: string[]): SpawnSyncReturns<string> => spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 60_000 });
const temp = (): Promise<string> => mkdtemp(join(tmpdir(), 'mirrorcap-interface-'));

t.test('interface source: libpcap\'s own stderr warnings never reach ours', async (t) => {
  const capOk = (await import('../../src/source/libpcap.js')).loadCap().ok;
  if (!capOk) return void t.pass('skipped: the cap module is not built (npm ci with libpcap-dev installed)');
  const dir = await temp();
  // cap prints "Warning: SIOCGIFADDR: nosuchif0: No such device - This may not actually work".
  const bad = cli(['--source', 'pcap:nosuchif0', '--out', join(dir, 'x'), '--listen', '127.0.0.1:0', '--http', '127.0.0.1:0']);
  t.equal(bad.status, 2, 'an unknown interface exits 2');
  t.match(bad.stderr, /^mirrorcap: --source pcap:nosuchif0: there is no interface "nosuchif0"; `mirrorcap interfaces` lists the ones that can be opened\n$/, 'one clean line, nothing from libpcap before it');

  const root = process.getuid?.() === 0;
  const native = (await import('../../src/native/addon.js')).loadNative().ok;
  if (!root || !native || spawnSync('sh', ['-c', 'command -v ip']).status !== 0) {
    return void t.pass(`skipped the interfaces without an address: needs root, ip and the native addon (root: ${root}, native: ${native})`);
  }
  // A namespace of our own with two veth pairs and no IPv4 address: one pair up, one down.
  const ns = `mirrorcap-pcap-${process.pid}`;
  const ip = (...args: string[]): void => {
    const r = spawnSync('ip', args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
  };
  ip('netns', 'add', ns);
  t.teardown(() => void spawnSync('ip', ['netns', 'del', ns]));
  ip('-n', ns, 'link', 'set', 'lo', 'up');
  ip('-n', ns, 'link', 'add', 'mcup0', 'type', 'veth', 'peer', 'name', 'mcup1');
  ip('-n', ns, 'link', 'set', 'mcup0', 'up');
  ip('-n', ns, 'link', 'set', 'mcup1', 'up');
  ip('-n', ns, 'link', 'add', 'mcdown0', 'type', 'veth', 'peer', 'name', 'mcdown1');
  const inNs = (args: string[]): string[] => ['ip', 'netns', 'exec', ns, process.execPath, MAIN, ...args];
  const app = await launchAppliance(inNs(['--source', 'pcap:mcup0', '--out', join(dir, 'up'), '--listen', '127.0.0.1:4789', '--http', '127.0.0.1:0']), { env: process.env });
  t.teardown(() => app.proc.kill('SIGKILL'));
  t.equal(await app.stop(), 0);
  t.equal(app.stderr(), '', 'libpcap\'s "no IPv4 address assigned" went into the log, not to stderr');
  t.match(app.logs.find((l) => l.event === 'libpcap_warning'), { level: 'warn', iface: 'mcup0', text: /mcup0: no IPv4 address assigned/ }, 'logged as a warning');
  const [ipCmd, ...ipArgs] = inNs(['--source', 'pcap:mcdown0', '--out', join(dir, 'down'), '--listen', '127.0.0.1:4789', '--http', '127.0.0.1:0']);
  const down = spawnSync(ipCmd!, ipArgs, { encoding: 'utf8', timeout: 30_000 });
  t.equal(down.status, 2, `an interface that is down exits 2 (stderr: ${down.stderr.trim()})`);
  t.match(down.stderr, /^mirrorcap: --source pcap:mcdown0: libpcap could not open mcdown0: That device is not up \(ip link set mcdown0 up\)\n$/, 'one line, libpcap\'s warning not before it');
});

