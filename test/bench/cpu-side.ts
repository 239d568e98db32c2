/**
 * Bench section `cpu-side`: CPU per packet of 64-byte frames at a fixed rate, the native
 * appliance, the afpacket one and `tcpdump -w` side by side (issue 17's "afpacket <= 2x
 * tcpdump"). The appliance table measures its receivers one after another, and this VM's
 * speed drifts by up to 2x over minutes: here all three run at once, pinned to one core, the
 * generator pinned to the other, and are fed in turn, a slice each at the same rate, so each
 * works alone while the others wait and all see the same machine (index-cost's method).
 *
 * They receive on a veth pair, not on lo: the generator sends from the root namespace to
 * 10.78.0.2 in a namespace of its own, where the packets arrive inbound, once each, as from
 * a NIC. On lo every packet is seen twice by a packet socket (outgoing and incoming):
 * tcpdump would write each twice, and its ring be filled with both, while mirrorcap's ring
 * ignores outgoing packets in the kernel. Each receiver has its own UDP port (its kernel
 * filter passes only that one); tcpdump's port is held by a socket that is never read, so
 * the kernel answers no ICMP.
 *
 *   generator (CPU 0) ──veth──▶ netns: native :P1, afpacket:mcside1 :P2, tcpdump -w :P3 (all CPU 1), fed in turn
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadNative } from '../../src/native/addon.js';
import { launchAppliance, MAIN, type Appliance } from '../lib/appliance.js';
import { haveTool } from '../lib/tools.js';
import { cpuSeconds, loadLine } from './appliance.js';
import { runGeneratorProcess } from './generator.js';
import { median, printTable } from './table.js';

const NS = 'mcside';
const HOST = '10.78.0.2';
const IFACE = 'mcside1';
const RATE = 50_000;
const VNIS = 3;
const PORTS = { native: 14_811, afpacket: 14_812, tcpdump: 14_813 } as const;
type Name = keyof typeof PORTS;

interface Receiver {
  readonly name: Name;
  readonly pid: number;
  sent: number;
  cpu: number;
  /** Packets in its files, known once stopped. */
  written: number;
  stop(): Promise<void>;
  kill(): void;
}

const sh = (cmd: string, args: string[]): { status: number | null; stderr: string } => {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stderr: r.stderr ?? '' };
};
const ip = (...args: string[]): void => {
  const r = sh('ip', args);
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
};
/** argv run inside the namespace, pinned to `cpu`. */
const inNs = (cpu: number, argv: string[]): string[] => ['ip', 'netns', 'exec', NS, 'taskset', '-c', String(cpu), ...argv];

export async function run({ quick }: { quick: boolean }): Promise<void> {
  console.log(`\n## cpu-side: 64-byte frames at ${RATE.toLocaleString('en-US')} pps, native, afpacket and tcpdump -w side by side on one core, fed in turn, through a veth pair`);
  const native = loadNative();
  const root = process.getuid?.() === 0;
  const cores = availableParallelism();
  if (!native.ok || !root || cores < 2 || !haveTool('ip') || !haveTool('tcpdump') || !haveTool('taskset')) {
    console.log(`skipped: needs root, 2 cores, ip, tcpdump, taskset and the native addon (root: ${root}, cores: ${cores}, native: ${native.ok ? 'yes' : native.reason})`);
    return;
  }
  const load = loadLine();
  const appCpu = cores - 1;
  const rounds = quick ? 1 : 3;
  const slices = quick ? 2 : 5;
  const sliceSeconds = 2;
  const warm = quick ? 2 : 4;
  sh('ip', ['netns', 'del', NS]);
  ip('netns', 'add', NS);
  const dir = await mkdtemp(join(tmpdir(), 'mirrorcap-bench-side-'));
  execPin(0, process.pid);
  try {
    ip('link', 'add', 'mcside0', 'type', 'veth', 'peer', 'name', IFACE, 'netns', NS);
    ip('addr', 'add', '10.78.0.1/24', 'dev', 'mcside0');
    ip('-n', NS, 'addr', 'add', `${HOST}/24`, 'dev', IFACE);
    ip('link', 'set', 'mcside0', 'up');
    ip('-n', NS, 'link', 'set', IFACE, 'up');
    ip('-n', NS, 'link', 'set', 'lo', 'up');
    const rows = [['round', 'native ns/packet', 'afpacket ns/packet', 'tcpdump -w ns/packet', 'afpacket / tcpdump', 'native / tcpdump', 'loss native / afpacket / tcpdump']];
    const ratios: number[] = [];
    for (let round = 1; round <= rounds; round++) {
      const rs = await start(join(dir, `r${round}`), appCpu);
      try {
        const feed = async (r: Receiver, seconds: number): Promise<void> => {
          const g = await runGeneratorProcess({ host: HOST, port: PORTS[r.name], vnis: VNIS, size: '64', rate: RATE, durationSec: seconds });
          r.sent += g.sent;
          // The packet ring hands a block over within its retire timeout (50 ms).
          await sleep(150);
        };
        for (const r of rs) await feed(r, warm);
        const at = rs.map((r) => cpuSeconds(r.pid));
        const before = rs.map((r) => r.sent);
        for (let i = 0; i < slices; i++) for (const r of rs) await feed(r, sliceSeconds);
        rs.forEach((r, i) => (r.cpu = cpuSeconds(r.pid) - at[i]!));
        const ns = rs.map((r, i) => (1e9 * r.cpu) / Math.max(1, r.sent - before[i]!));
        for (const r of rs) await r.stop();
        const loss = rs.map((r) => `${((100 * (r.sent - r.written)) / Math.max(1, r.sent)).toFixed(2)} %`);
        ratios.push(ns[1]! / ns[2]!);
        rows.push([String(round), ns[0]!.toFixed(0), ns[1]!.toFixed(0), ns[2]!.toFixed(0), (ns[1]! / ns[2]!).toFixed(2), (ns[0]! / ns[2]!).toFixed(2), loss.join(' / ')]);
      } finally {
        for (const r of rs) r.kill();
      }
    }
    console.log(
      `VXLAN to ${HOST} in a namespace (veth), ${VNIS} sessions; per round: all three started, ${warm} s of warm-up each, then ${slices} slices of ${sliceSeconds} s to each in turn; ` +
        `receivers on CPU ${appCpu}, generator on CPU 0; CPU of each process over its slices per packet sent to it; ${load}`,
    );
    printTable(rows, [0]);
    const m = median(ratios);
    const spread = `${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)}`;
    console.log(`  [${m <= 2 ? 'met' : 'not met'}] CPU per packet afpacket <= 2x tcpdump -w (issue 17): median ${m.toFixed(2)}x of ${ratios.length} rounds (${spread})`);
  } finally {
    execPin(-1, process.pid, cores);
    sh('ip', ['link', 'del', 'mcside0']);
    sh('ip', ['netns', 'del', NS]);
    await rm(dir, { recursive: true, force: true });
  }
}

/** Pins `pid` to `cpu`, or (-1) back to every core. */
function execPin(cpu: number, pid: number, cores = 1): void {
  const r = sh('taskset', ['-p', '-c', cpu < 0 ? `0-${cores - 1}` : String(cpu), String(pid)]);
  if (r.status !== 0) throw new Error(`taskset: ${r.stderr}`);
}

/** The three receivers, started in the namespace on `cpu`. */
async function start(dir: string, cpu: number): Promise<Receiver[]> {
  const rs: Receiver[] = [];
  try {
    for (const [name, source] of [
      ['native', 'native'],
      ['afpacket', `afpacket:${IFACE}`],
    ] as const) {
      const out = join(dir, name);
      const app = await launchAppliance(inNs(cpu, [process.execPath, MAIN, '--out', out, '--source', source, '--listen', `${HOST}:${PORTS[name]}`, '--http', '127.0.0.1:0']), { env: process.env }, 30_000);
      rs.push(applianceSide(name, app));
    }
    rs.push(await tcpdumpSide(join(dir, 'tcpdump.pcap'), cpu));
    return rs;
  } catch (err) {
    for (const r of rs) r.kill();
    throw err;
  }
}

function applianceSide(name: Name, app: Appliance): Receiver {
  const side: Receiver = {
    name,
    pid: app.proc.pid!,
    sent: 0,
    cpu: 0,
    written: NaN,
    async stop() {
      const code = await app.stop('SIGINT');
      if (code !== 0) throw new Error(`mirrorcap (${name}) exited ${code}: ${app.stderr()}`);
      const written = app.logs.find((l) => l.event === 'shutdown')?.['writtenPackets'];
      side.written = typeof written === 'number' ? written : NaN;
    },
    kill: () => void (app.proc.exitCode === null && app.proc.kill('SIGKILL')),
  };
  return side;
}

/** tcpdump -w on the veth end, its port held by a socket that is never read. */
async function tcpdumpSide(file: string, cpu: number): Promise<Receiver> {
  const port = PORTS.tcpdump;
  const holder = spawn('ip', ['netns', 'exec', NS, 'python3', '-c', `import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.setsockopt(socket.SOL_SOCKET,socket.SO_RCVBUF,1)\ns.bind(('${HOST}',${port}))\ntime.sleep(86400)`], { stdio: 'ignore' });
  const argv = inNs(cpu, ['tcpdump', '-i', IFACE, '-Z', 'root', '-w', file, 'udp', 'dst', 'port', String(port)]);
  const proc: ChildProcess = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('close', (code) => resolve(code)));
  const kill = (): void => {
    if (proc.exitCode === null) proc.kill('SIGKILL');
    if (holder.exitCode === null) holder.kill('SIGKILL');
  };
  const until = Date.now() + 5000;
  while (!err.includes('listening on') && proc.exitCode === null && Date.now() < until) await sleep(20);
  if (!err.includes('listening on')) {
    kill();
    throw new Error(`tcpdump did not start: ${err}`);
  }
  await sleep(200);
  const side: Receiver = {
    name: 'tcpdump',
    pid: proc.pid!,
    sent: 0,
    cpu: 0,
    written: NaN,
    async stop() {
      proc.kill('SIGINT');
      const code = await exited;
      if (holder.exitCode === null) holder.kill('SIGKILL');
      if (code !== 0) throw new Error(`tcpdump exited ${code}: ${err}`);
      side.written = Number(/(\d+) packets? captured/.exec(err)?.[1] ?? NaN);
    },
    kill,
  };
  return side;
}
