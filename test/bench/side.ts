/**
 * Receivers side by side (the bench sections cpu-side and jumbo-side): mirrorcap's sources and
 * `tcpdump -w` started at once in a network namespace of their own, on the receiving end of a
 * veth pair, all pinned to one core, the generator (this process's children) to the other,
 * and fed in turn, a slice each. Each works alone while the others wait, and all see the same
 * machine: this VM's speed drifts by up to 2x over minutes, which receivers measured one
 * after another cannot tell from their own differences.
 *
 * On a veth the packets arrive inbound, once each, as from a NIC. On lo a packet socket sees
 * every packet twice (outgoing and incoming): tcpdump would write each twice, and its ring be
 * filled with both, while mirrorcap's ring ignores outgoing packets in the kernel. Each
 * receiver has its own UDP port (its kernel filter passes only that one); tcpdump's port is
 * held by a socket that is never read, so the kernel answers no ICMP.
 *
 *   generator (CPU 0) ──veth──▶ netns: native :P1, afpacket:mcside1 :P2, dgram :P3, tcpdump -w :P4 (CPU 1), fed in turn
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadNative } from '../../src/native/addon.js';
import { RETIRE_MS } from '../../src/source/afpacket.js';
import { launchAppliance, MAIN, type Appliance } from '../lib/appliance.js';
import { haveTool } from '../lib/tools.js';
import { runGeneratorProcess } from './generator.js';

const NS = 'mcside';
const HOST = '10.78.0.2';
const IFACE = 'mcside1';
const VNIS = 3;
/** After each feeding: the packet ring hands a block over within its retire timeout, and the sockets drain. */
export const SETTLE_MS = RETIRE_MS + 50;
const PORTS = { native: 14_811, afpacket: 14_812, dgram: 14_813, tcpdump: 14_814 } as const;
export type SideName = keyof typeof PORTS;

export interface Side {
  readonly name: SideName;
  readonly pid: number;
  /** Datagrams sent to it, in all and in the measured slices; its CPU seconds over those slices. */
  sent: number;
  sentMeasured: number;
  cpu: number;
  /** CPU seconds it spent while the others' slices were fed (timers, wake-ups), and how long those lasted. */
  idleCpu: number;
  idleSeconds: number;
  /** Packets in its files, known once stopped. */
  written: number;
  stop(): Promise<void>;
  kill(): void;
}

export interface Feeding {
  /** Inner frame size (the generator's --size). */
  readonly size: string;
  /** Packets per second; undefined: flat out. */
  readonly rate?: number;
  /** Seconds each receiver is fed before the measured slices (not counted in sentMeasured or cpu). */
  readonly warm: number;
  readonly slices: number;
  readonly sliceSeconds: number;
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

/** Why the machine cannot run these sections, or null. */
export function sideUnavailable(): string | null {
  const native = loadNative();
  const root = process.getuid?.() === 0;
  const cores = availableParallelism();
  if (native.ok && root && cores >= 2 && haveTool('ip') && haveTool('tcpdump') && haveTool('taskset') && haveTool('python3')) return null;
  return `needs root, 2 cores, ip, tcpdump, taskset, python3 and the native addon (root: ${root}, cores: ${cores}, native: ${native.ok ? 'yes' : native.reason})`;
}

/**
 * Runs `rounds` rounds: each starts the receivers named in a fresh folder, feeds them in turn
 * and stops them (their files deleted), handing the round's sides to `measured`. The veth and
 * the namespace (MTU 9001: jumbo frames fit) live for the whole run.
 */
export async function sideBySide(names: readonly SideName[], feeding: Feeding, rounds: number, measured: (sides: readonly Side[], round: number) => void): Promise<string> {
  const cores = availableParallelism();
  const appCpu = cores - 1;
  sh('ip', ['netns', 'del', NS]);
  sh('ip', ['link', 'del', 'mcside0']);
  ip('netns', 'add', NS);
  const root = await mkdtemp(join(tmpdir(), 'mirrorcap-bench-side-'));
  pin(process.pid, '0');
  try {
    ip('link', 'add', 'mcside0', 'mtu', '9001', 'type', 'veth', 'peer', 'name', IFACE, 'mtu', '9001', 'netns', NS);
    ip('addr', 'add', '10.78.0.1/24', 'dev', 'mcside0');
    ip('-n', NS, 'addr', 'add', `${HOST}/24`, 'dev', IFACE);
    ip('link', 'set', 'mcside0', 'up');
    ip('-n', NS, 'link', 'set', IFACE, 'up');
    ip('-n', NS, 'link', 'set', 'lo', 'up');
    for (let round = 1; round <= rounds; round++) {
      const dir = join(root, `r${round}`);
      const sides = await start(names, dir, appCpu);
      try {
        const feed = async (s: Side, seconds: number): Promise<number> => {
          const g = await runGeneratorProcess({ host: HOST, port: PORTS[s.name], vnis: VNIS, size: feeding.size, ...(feeding.rate === undefined ? {} : { rate: feeding.rate }), durationSec: seconds });
          s.sent += g.sent;
          await sleep(SETTLE_MS);
          return g.sent;
        };
        for (const s of sides) await feed(s, feeding.warm);
        for (let i = 0; i < feeding.slices; i++) {
          for (const s of sides) {
            const at = sides.map((x) => runSeconds(x.pid));
            const t0 = performance.now();
            s.sentMeasured += await feed(s, feeding.sliceSeconds);
            const seconds = (performance.now() - t0) / 1000;
            sides.forEach((x, k) => {
              const used = runSeconds(x.pid) - at[k]!;
              if (x === s) x.cpu += used;
              else {
                x.idleCpu += used;
                x.idleSeconds += seconds;
              }
            });
          }
        }
        for (const s of sides) await s.stop();
        measured(sides, round);
      } finally {
        for (const s of sides) s.kill();
        await rm(dir, { recursive: true, force: true });
      }
    }
    return `VXLAN to ${HOST} in a namespace (veth, MTU 9001), ${VNIS} sessions; per round: all started, ${feeding.warm} s of ${feeding.rate === undefined ? 'flat-out' : `${feeding.rate.toLocaleString('en-US')} pps`} warm-up each, then ${feeding.slices} slices of ${feeding.sliceSeconds} s to each in turn; receivers on CPU ${appCpu}, generator on CPU 0`;
  } finally {
    pin(process.pid, `0-${cores - 1}`);
    sh('ip', ['link', 'del', 'mcside0']);
    sh('ip', ['netns', 'del', NS]);
    await rm(root, { recursive: true, force: true });
  }
}

/**
 * CPU seconds of every thread of a process, from the scheduler's own count of the time each
 * ran (/proc/PID/task/TID/schedstat, nanoseconds), not utime + stime's 10 ms ticks: a slice of
 * tcpdump at 50k pps is 25 ms of CPU, two or three ticks, and a tick is charged to whoever
 * runs when it fires. A thread that ended is no longer counted; the receivers' threads live
 * as long as they do.
 */
function runSeconds(pid: number): number {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return ns / 1e9;
}

function pin(pid: number, cpus: string): void {
  const r = sh('taskset', ['-p', '-c', cpus, String(pid)]);
  if (r.status !== 0) throw new Error(`taskset: ${r.stderr}`);
}

/** The receivers named, started in the namespace on `cpu`. */
async function start(names: readonly SideName[], dir: string, cpu: number): Promise<Side[]> {
  const sides: Side[] = [];
  try {
    for (const name of names) {
      if (name === 'tcpdump') sides.push(await tcpdumpSide(join(dir, 'tcpdump.pcap'), cpu));
      else {
        const source = name === 'afpacket' ? `afpacket:${IFACE}` : name;
        const app = await launchAppliance(inNs(cpu, [process.execPath, MAIN, '--out', join(dir, name), '--source', source, '--listen', `${HOST}:${PORTS[name]}`, '--http', '127.0.0.1:0']), { env: process.env }, 30_000);
        sides.push(applianceSide(name, app));
      }
    }
    return sides;
  } catch (err) {
    for (const s of sides) s.kill();
    throw err;
  }
}

function newSide(name: SideName, pid: number, stop: (side: Side) => Promise<void>, kill: () => void): Side {
  const side: Side = { name, pid, sent: 0, sentMeasured: 0, cpu: 0, idleCpu: 0, idleSeconds: 0, written: NaN, stop: () => stop(side), kill };
  return side;
}

function applianceSide(name: SideName, app: Appliance): Side {
  return newSide(
    name,
    app.proc.pid!,
    async (side) => {
      const code = await app.stop('SIGINT');
      if (code !== 0) throw new Error(`mirrorcap (${name}) exited ${code}: ${app.stderr()}`);
      const written = app.logs.find((l) => l.event === 'shutdown')?.['writtenPackets'];
      side.written = typeof written === 'number' ? written : NaN;
    },
    () => void (app.proc.exitCode === null && app.proc.kill('SIGKILL')),
  );
}

/** tcpdump -w on the veth end, its port held by a socket that is never read. */
async function tcpdumpSide(file: string, cpu: number): Promise<Side> {
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
  return newSide(
    'tcpdump',
    proc.pid!,
    async (side) => {
      // Its ring hands a block over within its timeout (tcpdump's: 1 s): what reached the ring belongs in its file, as in ours.
      await sleep(1200);
      proc.kill('SIGINT');
      const code = await exited;
      if (holder.exitCode === null) holder.kill('SIGKILL');
      if (code !== 0) throw new Error(`tcpdump exited ${code}: ${err}`);
      side.written = Number(/(\d+) packets? captured/.exec(err)?.[1] ?? NaN);
    },
    kill,
  );
}
