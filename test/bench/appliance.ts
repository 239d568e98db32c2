/**
 * Bench section `appliance`: mirrorcap as a user runs it (the built CLI, its own process), fed
 * by the load generator (its own process) over loopback, side by side with what a user would
 * run instead. One table per inner frame size: 64, 512, 1400 bytes and IMIX (7:64/4:576/1:1500).
 *
 * Receivers, each started afresh for every step, so that a step's captures are checked whole
 * and deleted at once (flat out they reach GBs):
 *   native    mirrorcap --source native (recvmmsg; the default 32 MiB buffer, forced past rmem_max)
 *   afpacket:lo  mirrorcap --source afpacket:lo (a 32 MiB TPACKET_V3 ring; it skips lo's outgoing copies)
 *   dgram     mirrorcap --source dgram (node:dgram; the buffer is capped at net.core.rmem_max)
 *   native GENEVE (GWLB)  native, fed at 64 B the same frames as a GWLB endpoint delivers them to --geneve
 *             (GENEVE + IPv4 + UDP around each VXLAN datagram), against plain VXLAN in the same run
 *   tcpdump   tcpdump -i lo -w FILE udp port P (its default 2 MiB buffer), when installed. A socket
 *             is bound on P and never read: to a closed port every datagram would draw an ICMP port
 *             unreachable (not rate-limited on lo), and a socket that drains would take CPU from
 *             tcpdump on this 2-core machine; a full socket drops for next to nothing.
 *
 * A last table runs every receiver at one fixed rate of 64-byte frames for CPU per packet.
 *
 * Steps: flat out first; when that lost anything, paced runs bisect towards the highest rate
 * with zero loss, starting at a fraction of what the receiver kept flat out.
 * Loss is counted from the files (checkSequences over the session pcaps or tcpdump's file); the
 * receivers' own counters (mirrorcap's shutdown summary and /metrics, tcpdump's report) are only
 * cross-checked against them. CPU is the receiver's utime + stime over the step per second of
 * sending; on loopback the kernel delivers on the sender's core, so that work is not in it. Peak
 * RSS is VmHWM. The disk's rate comes from a plain sequential write to the same file system,
 * just before each table of large frames (page-cache write rates swing with the dirty pages).
 *
 *   node dist/test/bench/appliance.js [--quick] [--sizes=64,1400] [--receivers=native,dgram] [--threads]
 *        (--threads: only the fixed-rate CPU table: native and afpacket, each also with --workers 2, and tcpdump -w)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { closeSync, fsyncSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { loadNative } from '../../src/native/addon.js';
import { httpGet, metricSum, metricValue, startAppliance, waitFor } from '../lib/appliance.js';
import { haveTool } from '../lib/tools.js';
import { runGeneratorProcess, type GeneratorSummary } from './generator.js';
import { checkSequences, type SequenceReport } from './seqcheck.js';
import { printTable } from './table.js';

const MiB = 1 << 20;
const VNIS = 3;
/** Outer Ethernet + IPv4 + UDP + VXLAN in front of every inner frame in tcpdump's file. */
const OUTER_HEADERS = 14 + 20 + 8 + 8;
const PCAP_FILE_HEADER = 24;
const PCAP_RECORD_HEADER = 16;
/** The first paced rate: this fraction of the rate the receiver kept up with flat out. */
const START_FRACTION = 0.8;
/** libpcap hands over a partly filled ring block only after its 1 s timeout; stopping sooner loses it. */
const TCPDUMP_SETTLE_MS = 1500;
/** What the ring still holds is handed over within its retire timeout (RETIRE_MS, 100 ms), and read at once. */
const AFPACKET_SETTLE_MS = 300;
/** The fixed rate of the CPU-per-packet table: every receiver holds it without loss on this machine. */
const FIXED_RATE_PPS = 50_000;
/** Seconds sent at FIXED_RATE_PPS before the CPU is measured (see runStep). */
const FIXED_RATE_WARM_SECONDS = 3;
/**
 * Seconds measured at least: CPU time is read in 10 ms ticks, and tcpdump spends ~5 of them
 * on 150,000 packets, so a 3 s step read it to +-20 %.
 */
const FIXED_RATE_SECONDS = 10;
/**
 * The fixed-rate table's generator sends from this many source ports in turn, so the kernel's
 * hash (SO_REUSEPORT, PACKET_FANOUT_HASH) spreads the load over --workers; every row alike.
 */
const FIXED_RATE_SOCKETS = 8;
/** The largest inner frame an AWS mirror target with MTU 9001 receives: 9001 - 50 bytes of encapsulation. */
const JUMBO_FRAME = '8950';
/** Frames from this size up may be limited by the disk: their tables also measure it. */
const LARGE_FRAME = 1400;

export interface Plan {
  sizes: string[];
  flatSeconds: number;
  stepSeconds: number;
  searchSteps: number;
  diskBytes: number;
  /** Also a flat-out run of jumbo frames: more bytes a second than the disk takes. */
  jumbo: boolean;
}

const FULL: Plan = { sizes: ['64', '512', '1400', 'imix'], flatSeconds: 4, stepSeconds: 3, searchSteps: 4, diskBytes: 1024 * MiB, jumbo: true };
export const QUICK: Plan = { sizes: ['64', '1400'], flatSeconds: 2, stepSeconds: 2, searchSteps: 1, diskBytes: 256 * MiB, jumbo: false };

/** What a receiver says about itself, to cross-check against the files. */
interface OwnCount {
  /** Packets it says it wrote. */
  written: number;
  /** Datagrams its socket lost, as it reports them. */
  kernelDrops: number;
  /** Everything else it dropped, by reason. */
  dropped: Record<string, number>;
  /** Packets it knows it lost (socket drops and its own drops); null when it cannot say exactly. */
  lost: number | null;
  /** --workers: datagrams each receive thread received. */
  perWorker?: number[];
}

interface Running {
  readonly port: number;
  readonly pid: number;
  /** --workers: the receive threads' Linux thread ids (the main thread's is pid). */
  readonly workerTids?: readonly number[];
  /** Resolves once what was sent has been taken off the socket. */
  settle(): Promise<void>;
  /** Stops it gracefully; its files are complete when this resolves. */
  stop(): Promise<OwnCount>;
  /** Its capture files, in the order they were written. */
  files(): Promise<string[]>;
  /** Kills it if it still runs (after a failed step). */
  abort(): void;
}

export interface ReceiverKind {
  readonly name: string;
  /** What the generator sends it: VXLAN (default), or VXLAN inside a GWLB's GENEVE. */
  readonly encap?: 'geneve';
  /** Bytes in front of each inner frame in its records. */
  readonly outerBytes: number;
  start(dir: string): Promise<Running>;
}

/**
 * Live stream clients attached by the `native + 4 streams` row: each a filtered /api/stream read
 * by curl into /dev/null (its own process, as a user's would be). Every filter matches every
 * generated frame, so each client takes the whole load: the worst case for the capture path.
 */
const STREAM_FILTERS = ['udp dst port 5001', 'host 198.18.0.2 and udp', 'udp portrange 10000-60000', 'ip and not tcp'];

/** The flow table's row (issue 16): native with --flows, at 64 B, against native without in the same run. */
const FLOWS = 'native --flows';
/** GENEVE's row (issue 14): the same frames as a GWLB endpoint delivers them to --geneve, at 64 B, against plain VXLAN. */
const GENEVE = 'native GENEVE (GWLB)';
/**
 * Issue 13's rows: files rotated at 16 MiB so that many close, and are indexed, within each step
 * (at the default 100 MiB hardly one would), with the index step on (the default) and off.
 */
const ROTATE_16 = ['--rotate-size', '16MiB'];
const INDEXED = `native ${ROTATE_16.join(' ')}`;
const UNINDEXED = `${INDEXED} --no-index`;

/** extra: more arguments for mirrorcap, named in the row; workers: --workers N. */
export function applianceReceiver(
  source: 'native' | 'dgram' | 'afpacket:lo',
  { streams = 0, flows = false, geneve = false, workers = 1, extra = [] as readonly string[] } = {},
): ReceiverKind {
  const threads = workers > 1 ? ['--workers', String(workers)] : [];
  const base = geneve ? GENEVE : flows ? `${source} --flows` : streams > 0 ? `${source} + ${streams} streams` : workers > 1 ? `${source} --workers ${workers}` : source;
  return {
    name: base + extra.map((a) => ` ${a}`).join(''),
    ...(geneve ? { encap: 'geneve' as const } : {}),
    outerBytes: 0,
    async start(dir) {
      const app = await startAppliance(['--out', dir, '--source', source, ...(flows ? ['--flows'] : []), ...(geneve ? ['--geneve', '127.0.0.1:0'] : []), ...threads, ...extra], {}, 30_000);
      // Sent to the GENEVE socket when that is the row: the VXLAN one stays idle.
      const port = geneve ? (app.logs.find((l) => l.event === 'start')!['genevePort'] as number) : app.udpPort;
      const clients: ChildProcess[] = [];
      const abortClients = (): void => clients.forEach((c) => c.exitCode === null && c.kill('SIGKILL'));
      try {
        // One after another: the appliance compiles only a few stream filters at once and refuses the rest ("try again").
        for (const f of STREAM_FILTERS.slice(0, streams)) {
          clients.push(spawn('curl', ['-sN', '-o', '/dev/null', '-G', '--data-urlencode', `filter=${f}`, `http://127.0.0.1:${app.httpPort}/api/stream`], { stdio: 'ignore' }));
          await waitFor(async () => metricSum((await httpGet(app.httpPort, '/metrics')).body, 'mirrorcap_streams') === clients.length, 10_000, 'stream clients');
        }
      } catch (e) {
        abortClients();
        app.proc.kill('SIGKILL');
        throw e;
      }
      const started = app.logs.find((l) => l.event === 'workers_started');
      return {
        port,
        pid: app.proc.pid!,
        ...(started === undefined ? {} : { workerTids: started.tids as number[] }),
        // The ring's UDP socket is never read (it only holds the port); a block is handed over
        // within its retire timeout (100 ms), so a moment covers what is still in the ring.
        settle: () => (source === 'afpacket:lo' ? sleep(AFPACKET_SETTLE_MS) : socketDrained(port)),
        async stop() {
          const metrics = (await httpGet(app.httpPort, '/metrics')).body;
          const code = await app.stop();
          abortClients();
          if (code !== 0) throw new Error(`mirrorcap --source ${source} exited ${code}: ${app.stderr()}`);
          const summary = app.logs.find((l) => l.event === 'shutdown');
          if (summary === undefined) throw new Error(`mirrorcap --source ${source} logged no shutdown summary`);
          const kernelDrops = metricSum(metrics, 'mirrorcap_socket_drops_total');
          const dropped = summary.dropped as Record<string, number>;
          const lost = Object.values(dropped).reduce((sum, n) => sum + n, kernelDrops);
          // What the clients could not take is theirs alone, not a loss of the files.
          const streamDrops: Record<string, number> = streams === 0 ? {} : { stream_dropped: metricValue(metrics, 'mirrorcap_stream_dropped_packets_total') ?? NaN };
          const perWorker = Array.from({ length: workers > 1 ? workers : 0 }, (_, w) => metricValue(metrics, 'mirrorcap_worker_received_packets_total', { worker: String(w) }) ?? NaN);
          return { written: summary.writtenPackets as number, kernelDrops, dropped: { ...dropped, ...streamDrops }, lost, ...(workers > 1 ? { perWorker } : {}) };
        },
        files: () => sessionFiles(dir),
        abort: () => {
          abortClients();
          if (app.proc.exitCode === null) app.proc.kill('SIGKILL');
        },
      };
    },
  };
}

/** A socket bound on a free port that is never read; see the file comment. */
async function sinkSocket(): Promise<{ port: number; close(): void }> {
  const load = loadNative();
  if (load.ok) {
    const rx = new load.binding.Receiver('127.0.0.1', 0, false);
    rx.setRecvBuffer(1);
    return { port: rx.address().port, close: () => rx.close() };
  }
  // Without the addon a dgram socket has to do; it drains, which costs some CPU.
  const s = createSocket({ type: 'udp4', recvBufferSize: 4096 });
  s.on('message', () => {});
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
  return { port: s.address().port, close: () => s.close() };
}

const tcpdumpReceiver: ReceiverKind = {
  name: 'tcpdump -w',
  outerBytes: OUTER_HEADERS,
  async start(dir) {
    const sink = await sinkSocket();
    const file = join(dir, 'tcpdump.pcap');
    // -Z root: as root tcpdump would otherwise drop to its own user, who cannot write in dir.
    const proc = spawn('tcpdump', ['-i', 'lo', '-Z', 'root', '-w', file, 'udp', 'port', String(sink.port)], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((resolve) => proc.on('close', (code) => resolve(code)));
    const abort = (): void => {
      if (proc.exitCode === null) proc.kill('SIGKILL');
      sink.close();
    };
    try {
      await waitFor(() => err.includes('listening on') || proc.exitCode !== null, 5000, 'tcpdump to listen');
      if (proc.exitCode !== null) throw new Error(`tcpdump exited ${proc.exitCode}: ${err}`);
      await sleep(200); // "listening" is printed just before the capture loop starts
    } catch (e) {
      abort();
      throw e;
    }
    return {
      port: sink.port,
      pid: proc.pid!,
      settle: () => sleep(TCPDUMP_SETTLE_MS),
      async stop() {
        proc.kill('SIGINT');
        const code = await exited;
        sink.close();
        if (code !== 0) throw new Error(`tcpdump exited ${code}: ${err}`);
        const count = (what: string): number => Number(new RegExp(`(\\d+) packets? ${what}`).exec(err)?.[1] ?? NaN);
        // On lo its drop count covers each packet twice (out and in), so it explains no exact loss.
        return { written: count('captured'), kernelDrops: count('dropped by kernel'), dropped: {}, lost: null };
      },
      files: async () => [file],
      abort,
    };
  },
};

/**
 * The generator alone, flat out into a socket nobody reads: what it can send right now with no
 * receiver's work (wake-ups, taps) charged to its core. The baseline row of every table.
 */
async function generatorCeiling(size: string, seconds: number): Promise<GeneratorSummary> {
  const sink = await sinkSocket();
  try {
    return await runGeneratorProcess({ host: '127.0.0.1', port: sink.port, vnis: VNIS, size, durationSec: seconds });
  } finally {
    sink.close();
  }
}

/** The capture files of every session folder, by name: not their index sidecars, not <out>/flows. */
async function sessionFiles(dir: string): Promise<string[]> {
  const files: string[] = [];
  for (const session of (await readdir(dir)).sort()) {
    // The captures only: not their index sidecars (.pcap.idx), nor the flow logs' folder.
    for (const f of (await readdir(join(dir, session))).sort()) if (/\.pcap(ng)?$/.test(f)) files.push(join(dir, session, f));
  }
  return files;
}

/** Bytes waiting in the receive queues of the IPv4 UDP sockets bound to port. */
function rxQueue(port: number): number {
  const want = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  let queued = 0;
  for (const line of readFileSync('/proc/net/udp', 'utf8').split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols.length > 4 && cols[1]!.endsWith(want)) queued += parseInt(cols[4]!.split(':')[1]!, 16);
  }
  return queued;
}

/** Waits until the socket's queue has stayed empty for a moment (a receiver may lag the sender). */
export async function socketDrained(port: number): Promise<void> {
  const end = Date.now() + 10_000;
  let empty = 0;
  while (empty < 3 && Date.now() < end) {
    empty = rxQueue(port) === 0 ? empty + 1 : 0;
    await sleep(50);
  }
}

/** utime + stime of a process (or of one of its threads), in seconds (USER_HZ is 100 on Linux). */
export function cpuSeconds(pid: number, tid?: number): number {
  const stat = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** VmHWM: the peak resident set of a process, in bytes. */
function peakRss(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

export interface Step {
  /** Requested packets/s; undefined when flat out. */
  rate: number | undefined;
  gen: GeneratorSummary;
  seq: SequenceReport;
  fileBytes: number;
  /** Inner frame bytes in the files. */
  innerBytes: number;
  /** The receiver's CPU over the measured part of the run (after any warm-up). */
  cpuSeconds: number;
  /** The share of the run's packets sent while cpuSeconds was measured: 1 without a warm-up. */
  cpuShare: number;
  /** --workers: the main thread's CPU seconds and each receive thread's. */
  threadCpu?: { main: number; workers: number[] };
  peakRss: number;
  own: OwnCount;
  /** Capture files it wrote. */
  files: number;
}

/**
 * One run of `kind` fed for `seconds`. With `warmSeconds` (a paced rate only) the generator
 * first sends that long at the same rate and the CPU is measured from then on: a receiver
 * just started spends its first seconds compiling its hot paths (a third of its CPU at 50k
 * packets/s over 10 s), which a capture running for days does not.
 */
export async function runStep(kind: ReceiverKind, size: string, seconds: number, rate: number | undefined, root: string, sockets = 1, warmSeconds = 0): Promise<Step> {
  const dir = await mkdtemp(join(root, 'step-'));
  let rx: Running | undefined;
  try {
    rx = await kind.start(dir);
    const pid = rx.pid;
    const tids = rx.workerTids ?? [];
    const sending = runGeneratorProcess({ host: '127.0.0.1', port: rx.port, vnis: VNIS, size, rate, durationSec: seconds + warmSeconds, sockets, ...(kind.encap ? { encap: kind.encap } : {}) });
    if (warmSeconds > 0) await sleep(warmSeconds * 1000);
    const cpu0 = cpuSeconds(pid);
    const threads0 = [cpuSeconds(pid, pid), ...tids.map((t) => cpuSeconds(pid, t))];
    const gen = await sending;
    await rx.settle();
    const cpu = cpuSeconds(pid) - cpu0;
    const threads = [cpuSeconds(pid, pid), ...tids.map((t) => cpuSeconds(pid, t))].map((c, i) => c - threads0[i]!);
    const threadCpu = tids.length === 0 ? undefined : { main: threads[0]!, workers: threads.slice(1) };
    const rss = peakRss(rx.pid);
    const own = await rx.stop();
    const files = await rx.files();
    const seq = await checkSequences(files, gen.sentPerVni);
    const fileBytes = files.reduce((sum, f) => sum + statSync(f).size, 0);
    const innerBytes = fileBytes - files.length * PCAP_FILE_HEADER - seq.records * (PCAP_RECORD_HEADER + kind.outerBytes);
    return { rate, gen, seq, fileBytes, innerBytes, cpuSeconds: cpu, cpuShare: seconds / (seconds + warmSeconds), ...(threadCpu === undefined ? {} : { threadCpu }), peakRss: rss, own, files: files.length };
  } finally {
    rx?.abort();
    await rm(dir, { recursive: true, force: true });
  }
}

export interface Result {
  receiver: string;
  size: string;
  flat: Step;
  /** Every step, flat out first. */
  steps: Step[];
  /** Highest rate (packets/s actually sent) with zero loss; null when no step was lossless. */
  zeroLoss: number | null;
  peakRss: number;
}

/** Flat out, then (if that lost anything) a bisection over paced rates. */
export async function measure(kind: ReceiverKind, size: string, plan: Plan, root: string, searchSteps: number): Promise<Result> {
  const flat = await runStep(kind, size, plan.flatSeconds, undefined, root);
  const steps = [flat];
  let zeroLoss: number | null = flat.seq.lost === 0 ? flat.gen.pps : null;
  if (zeroLoss === null) {
    let lo = 0;
    let hi = flat.gen.pps;
    let rate = (START_FRACTION * uniqueReceived(flat)) / flat.gen.seconds;
    for (let i = 0; i < searchSteps; i++) {
      const s = await runStep(kind, size, plan.stepSeconds, rate, root);
      steps.push(s);
      // The generator may fall short of the rate asked for: what it really sent is what counts.
      if (s.seq.lost === 0) {
        lo = s.gen.pps;
        zeroLoss = Math.max(zeroLoss ?? 0, lo);
      } else {
        hi = Math.min(hi, s.gen.pps);
      }
      rate = lo > 0 ? (lo + hi) / 2 : rate / 2;
    }
  }
  return { receiver: kind.name, size, flat, steps, zeroLoss, peakRss: Math.max(...steps.map((s) => s.peakRss)) };
}

const uniqueReceived = (s: Step): number => s.seq.perVni.reduce((n, v) => n + v.unique, 0);
const int = (n: number): string => Math.round(n).toLocaleString('en');
const kpps = (n: number): string => `${(n / 1000).toFixed(0)}k`;
const pct = (part: number, whole: number): string => `${((100 * part) / whole).toFixed(2)} %`;
const mib = (bytes: number): string => `${(bytes / MiB).toFixed(0)} MiB`;
const mbps = (bytes: number, seconds: number): number => bytes / seconds / 1e6;

/** Whether the receiver's own counters agree with its files. */
function ownCheck(s: Step): string {
  const problems: string[] = [];
  if (s.own.written !== s.seq.records) problems.push(`says ${int(s.own.written)} written, files hold ${int(s.seq.records)}`);
  if (s.own.lost !== null && s.own.lost !== s.seq.lost) problems.push(`counts ${int(s.own.lost)} lost, files miss ${int(s.seq.lost)}`);
  const dropped = Object.entries(s.own.dropped).map(([reason, n]) => `${reason} ${int(n)}`);
  if (s.seq.duplicated > 0) problems.push(`${int(s.seq.duplicated)} duplicated`);
  if (s.seq.reordered > 0) problems.push(`${int(s.seq.reordered)} reordered`);
  if (s.gen.refused > 0) problems.push(`${s.gen.refused} refused`);
  return [problems.length === 0 ? 'agree' : problems.join(', '), ...dropped].join('; ');
}

function zeroLossCell(r: Result): string {
  if (r.zeroLoss === null) return `< ${int(Math.min(...r.steps.map((s) => s.gen.pps)))}`;
  return r.steps.length === 1 ? `>= ${int(r.zeroLoss)} (flat out)` : int(r.zeroLoss);
}

function printResults({ title, ceiling, rows: results }: Table): void {
  const rows = [['receiver', 'zero-loss pps', 'flat out: sent pps', 'written pps', 'inner Gbit/s', 'file MB/s', 'loss', 'socket drops', 'CPU', 'peak RSS', 'own counters', 'steps (sent pps: loss)']];
  rows.push(['(none: unread socket)', '-', int(ceiling.pps), '-', ceiling.innerGbps.toFixed(2), '-', '-', '-', '-', '-', 'the generator ceiling now', '']);
  for (const r of results) {
    const f = r.flat;
    rows.push([
      r.receiver,
      zeroLossCell(r),
      int(f.gen.pps),
      int(uniqueReceived(f) / f.gen.seconds),
      ((f.innerBytes * 8) / f.gen.seconds / 1e9).toFixed(2),
      mbps(f.fileBytes, f.gen.seconds).toFixed(0),
      pct(f.seq.lost, f.gen.sent),
      int(f.own.kernelDrops),
      `${cpuPercent(f).toFixed(0)} %`,
      mib(r.peakRss),
      ownCheck(f),
      r.steps.map((s) => `${s.rate === undefined ? 'flat ' : ''}${kpps(s.gen.pps)}: ${s.seq.lost === 0 ? '0' : pct(s.seq.lost, s.gen.sent)}`).join(', '),
    ]);
  }
  console.log(`\n${title}`);
  printTable(rows, [0, 10, 11]);
}

export function loadLine(): string {
  return `load average ${loadavg().map((l) => l.toFixed(2)).join(' ')} on ${availableParallelism()} cores (shared with other work: rates are noisy, compare rows of one table)`;
}

interface DiskRate {
  bytes: number;
  /** write() into the page cache. */
  pageCache: number;
  /** The same writes plus an fsync at the end. */
  synced: number;
}

/** Sequential write of `bytes` in 4 MiB writes to a file in dir, bytes/s. */
function measureDisk(dir: string, bytes: number): DiskRate {
  const buf = Buffer.alloc(4 * MiB, 0xa5);
  const file = join(dir, 'disk-rate.bin');
  const fd = openSync(file, 'w');
  try {
    const t0 = performance.now();
    for (let done = 0; done < bytes; ) done += writeSync(fd, buf, 0, Math.min(buf.length, bytes - done));
    const t1 = performance.now();
    fsyncSync(fd);
    const t2 = performance.now();
    return { bytes, pageCache: bytes / ((t1 - t0) / 1000), synced: bytes / ((t2 - t0) / 1000) };
  } finally {
    closeSync(fd);
    unlinkSync(file);
  }
}

type Verdict = [met: boolean, text: string];

function goals(tables: Table[]): Verdict[] {
  const searched = tables.filter((t) => t.size !== JUMBO_FRAME);
  const results = searched.flatMap((t) => t.rows);
  const find = (rx: string, size: string): Result | undefined => results.find((r) => r.receiver === rx && r.size === size);
  const sizes = searched.map((t) => t.size);
  const verdicts: Verdict[] = [];

  const n64 = find('native', '64');
  const t64 = find(tcpdumpReceiver.name, '64');
  if (n64) {
    const lostText = (r: Result): string => `${r.receiver} lost ${int(r.flat.seq.lost)} of ${int(r.flat.gen.sent)} at ${int(r.flat.gen.pps)} pps`;
    verdicts.push([
      n64.flat.seq.lost === 0,
      `64-byte frames flat out with zero loss: ${lostText(n64)}${t64 ? `; ${lostText(t64)}` : ''}`,
    ]);
  }

  // A lossless flat-out rate is a lower bound (the receiver might take more); a receiver that lost
  // at every rate tried is below the lowest of them. Each side is judged by the bound that is
  // least in its favour.
  const lowest = (r: Result): number => Math.min(...r.steps.map((s) => s.gen.pps));
  const value = (r: Result | undefined): number => (r === undefined ? NaN : (r.zeroLoss ?? lowest(r)));
  const rate = (r: Result | undefined): string => {
    if (r === undefined) return '-';
    if (r.zeroLoss === null) return `<${kpps(lowest(r))}`;
    return `${r.steps.length === 1 ? '>=' : ''}${kpps(r.zeroLoss)}`;
  };
  const g64 = find(GENEVE, '64');
  if (n64 && g64) {
    const ratio = value(g64) / value(n64);
    // Lossless flat out is only the generator's reach at that moment, which swings with the load.
    const bounds = g64.steps.length === 1 && n64.steps.length === 1 ? ' (both lossless flat out: the generator was the limit; see the CPU per packet table)' : '';
    verdicts.push([ratio >= 0.9, `zero-loss rate at 64 B of VXLAN inside a GWLB's GENEVE within 10 % of plain VXLAN (issue 14): ${rate(g64)} vs ${rate(n64)} = ${(100 * ratio).toFixed(0)} %${bounds}`]);
  }
  const f64 = find(FLOWS, '64');
  if (n64 && f64) {
    const ratio = value(f64) / value(n64);
    verdicts.push([ratio >= 0.9, `zero-loss rate at 64 B with --flows within 10 % of without (issue 16): ${rate(f64)} vs ${rate(n64)} = ${(100 * ratio).toFixed(0)} %`]);
  }

  const indexed = find(INDEXED, 'imix');
  const unindexed = find(UNINDEXED, 'imix');
  if (indexed && unindexed) {
    const ratio = value(indexed) / value(unindexed);
    const cpu = (r: Result): string => `${cpuPercent(r.flat).toFixed(0)} % CPU flat out`;
    verdicts.push([
      ratio >= 0.9,
      `IMIX zero-loss rate with the index within 10 % of --no-index (issue 13; its CPU goal is the index-cost section's): ` +
        `${rate(indexed)} (${cpu(indexed)}) vs ${rate(unindexed)} (${cpu(unindexed)}) = ${(100 * ratio).toFixed(0)} %`,
    ]);
  }

  const vsDgram = sizes.map((size) => {
    const n = find('native', size);
    const d = find('dgram', size);
    const ratio = (n?.zeroLoss ?? NaN) / value(d);
    const bound = n?.steps.length === 1 || d?.zeroLoss === null ? '>=' : '';
    return { ok: ratio >= 3, text: `${size}: ${rate(n)} vs ${rate(d)} = ${Number.isNaN(ratio) ? '-' : `${bound}${ratio.toFixed(1)}x`}` };
  });
  verdicts.push([vsDgram.every((v) => v.ok), `zero-loss rate native >= 3x dgram at every size: ${vsDgram.map((v) => v.text).join('; ')}`]);

  if (results.some((r) => r.receiver === tcpdumpReceiver.name)) {
    const vsTcpdump = sizes.map((size) => {
      const n = find('native', size);
      const t = find(tcpdumpReceiver.name, size);
      // Both lossless flat out proves nothing either way; the generator's reach against each still ranks them.
      return { ok: (n?.zeroLoss ?? NaN) >= value(t), boundOnly: n?.steps.length === 1, text: `${size}: ${rate(n)} vs ${rate(t)}` };
    });
    const why = vsTcpdump.some((v) => !v.ok && v.boundOnly)
      ? ' (">=": lost nothing at the highest rate the generator reached against it, which was lower against native)'
      : '';
    verdicts.push([vsTcpdump.every((v) => v.ok), `zero-loss rate native >= tcpdump -w at every size: ${vsTcpdump.map((v) => v.text).join('; ')}${why}`]);
  }

  for (const { disk, rows } of tables) {
    const r = rows.find((row) => row.receiver === 'native');
    if (disk === null || r === undefined) continue;
    const f = r.flat;
    const wrote = mbps(f.fileBytes, f.gen.seconds);
    const sent = mbps(f.gen.innerBytes, f.gen.seconds);
    const share = wrote / (disk.pageCache / 1e6);
    const limit = f.seq.lost === 0 ? `lost nothing: the generator, sending ${sent.toFixed(0)} MB/s of frames, is the limit` : `lost ${pct(f.seq.lost, f.gen.sent)} of ${sent.toFixed(0)} MB/s sent`;
    verdicts.push([
      share >= 0.9,
      `${r.size}-byte frames within 10 % of the disk: native wrote ${wrote.toFixed(0)} MB/s flat out = ${(100 * share).toFixed(0)} % of the ` +
        `${(disk.pageCache / 1e6).toFixed(0)} MB/s a plain write reached just before (${((100 * wrote * 1e6) / disk.synced).toFixed(0)} % of ` +
        `${(disk.synced / 1e6).toFixed(0)} MB/s with fsync); ${limit}`,
    ]);
  }

  // Issue 17: jumbo frames flat out, bytes reaching the files against tcpdump -w and node:dgram, per source of ours.
  const jumbo = tables.find((t) => t.size === JUMBO_FRAME);
  const jumboRow = (rx: string): Result | undefined => jumbo?.rows.find((r) => r.receiver === rx);
  const tj = jumboRow(tcpdumpReceiver.name);
  const dj = jumboRow('dgram');
  for (const rx of ['native', 'afpacket:lo']) {
    const r = jumboRow(rx);
    if (r === undefined || tj === undefined || dj === undefined) continue;
    const mb = (x: Result): number => mbps(x.flat.fileBytes, x.flat.gen.seconds);
    const vsT = mb(r) / mb(tj);
    verdicts.push([
      vsT >= 1.1 && mb(r) >= mb(dj) && value(r) >= value(tj),
      `${JUMBO_FRAME}-byte frames: flat out file MB/s >= 1.1x tcpdump -w and >= dgram, zero-loss rate >= tcpdump's (issue 17): ${rx} ${mb(r).toFixed(0)} MB/s, ` +
        `tcpdump -w ${mb(tj).toFixed(0)} (${vsT.toFixed(2)}x), dgram ${mb(dj).toFixed(0)}; zero loss ${rate(r)} vs ${rate(tj)}`,
    ]);
  }

  const streamed = find('native + 4 streams', '64');
  if (n64 && streamed) {
    const ratio = value(streamed) / value(n64);
    verdicts.push([
      ratio >= 0.9,
      `64-byte frames, zero-loss rate with 4 filtered streams attached within 10 % of without: ${rate(streamed)} vs ${rate(n64)} = ${(100 * ratio).toFixed(0)} % ` +
        `(stream clients dropped ${int(streamed.flat.own.dropped.stream_dropped ?? 0)} flat out)`,
    ]);
  }

  const ours = tables.flatMap((t) => t.rows).filter((r) => r.receiver === 'native' || r.receiver === 'dgram');
  const peak = (rx: string): number => Math.max(...ours.filter((r) => r.receiver === rx).map((r) => r.peakRss));
  const worst = Math.max(...ours.map((r) => r.peakRss));
  verdicts.push([worst < 200 * MiB, `peak RSS < 200 MiB: native ${mib(peak('native'))}, dgram ${mib(peak('dgram'))} at most over every step`]);
  return verdicts;
}

/**
 * 64-byte frames at one rate every receiver holds: CPU per received packet, receiver process
 * only (on lo the kernel's receive work runs on the sender's core, for every receiver alike).
 */
async function cpuPerPacket(kinds: readonly ReceiverKind[], plan: Plan, root: string): Promise<Map<string, Step>> {
  const load = loadLine();
  const steps = new Map<string, Step>();
  const seconds = Math.max(plan.stepSeconds, FIXED_RATE_SECONDS);
  for (const kind of kinds) steps.set(kind.name, await runStep(kind, '64', seconds, FIXED_RATE_PPS, root, FIXED_RATE_SOCKETS, FIXED_RATE_WARM_SECONDS));
  const rows = [['receiver', 'sent pps', 'loss', 'CPU', 'CPU ns per received packet']];
  for (const [name, s] of steps) {
    rows.push([name, int(s.gen.pps), pct(s.seq.lost, s.gen.sent), `${cpuPercent(s).toFixed(0)} %`, nsPerPacket(s).toFixed(0)]);
  }
  console.log(`\n64-byte inner frames at ${int(FIXED_RATE_PPS)} pps for ${seconds} s after ${FIXED_RATE_WARM_SECONDS} s of warm-up at that rate: CPU per packet; ${load}`);
  printTable(rows, [0]);
  printThreads(steps);
  return steps;
}

/**
 * --workers 2 against one receiver, per thread: the main thread (merge, pipeline, writers) per
 * packet written, and each receive thread per packet it received. This machine has 2 cores, so
 * two workers and the main thread share them: no gain shows here, but the per-thread costs say
 * how far N cores go (docs/performance.md has the extrapolation).
 */
function printThreads(steps: ReadonlyMap<string, Step>): void {
  const rows = [['receiver', 'written', 'process ns/packet', 'main thread ns/packet', 'per worker: packets, ns/packet received']];
  for (const [name, s] of steps) {
    const base = name.replace(/ --workers \d+$/, '');
    if (s.threadCpu === undefined && ![...steps.keys()].some((k) => k.startsWith(`${base} --workers`))) continue;
    const main = s.threadCpu === undefined ? '-' : ((1e9 * s.threadCpu.main) / Math.max(1, s.seq.records * s.cpuShare)).toFixed(0);
    const workers = s.threadCpu?.workers.map((c, w) => {
      const n = s.own.perWorker?.[w] ?? NaN;
      return n > 0 ? `${int(n)}: ${((1e9 * c) / (n * s.cpuShare)).toFixed(0)} ns` : `none (${((100 * c) / (s.gen.seconds * s.cpuShare)).toFixed(1)} % CPU idle)`;
    });
    rows.push([name, int(s.seq.records), nsPerPacket(s).toFixed(0), main, workers?.join('; ') ?? '(the main thread receives)']);
  }
  if (rows.length === 1) return;
  console.log('\nreceive threads (--workers): CPU per packet per thread, same run and rate');
  printTable(rows, [0]);
}

/** CPU per packet over the measured part of the run (the packets of the warm-up left out, by their share at the fixed rate). */
export const nsPerPacket = (s: Step): number => (1e9 * s.cpuSeconds) / Math.max(1, s.seq.records * s.cpuShare);

/** The receiver's CPU per second of sending, in % of a core, over the measured part of the run. */
export const cpuPercent = (s: Step): number => (100 * s.cpuSeconds) / (s.gen.seconds * s.cpuShare);

/**
 * The fixed-rate table's goals. afpacket against tcpdump (issue 17) is the cpu-side section's:
 * on lo a packet socket sees each packet twice and tcpdump writes it twice, and receivers
 * measured one after another see this VM's drift; cpu-side feeds them in turn through a veth.
 */
function fixedRateGoals(steps: ReadonlyMap<string, Step>): Verdict[] {
  const native = steps.get('native');
  const geneve = steps.get(GENEVE);
  const verdicts: Verdict[] = [];
  if (native !== undefined && geneve !== undefined) {
    const ratio = nsPerPacket(geneve) / nsPerPacket(native);
    verdicts.push([
      ratio <= 1.1 && geneve.seq.lost === 0,
      `64 B at ${int(FIXED_RATE_PPS)} pps, CPU per packet of VXLAN inside a GWLB's GENEVE within 10 % of plain VXLAN: ${nsPerPacket(geneve).toFixed(0)} vs ${nsPerPacket(native).toFixed(0)} ns = ${(100 * ratio).toFixed(0)} % (loss ${pct(geneve.seq.lost, geneve.gen.sent)})`,
    ]);
  }
  return verdicts;
}

interface Table {
  size: string;
  title: string;
  /** Measured just before the table, for the sizes where the disk may be the limit. */
  disk: DiskRate | null;
  ceiling: GeneratorSummary;
  rows: Result[];
}

function diskLine(d: DiskRate): string {
  return `disk now: ${mib(d.bytes)} in 4 MiB writes, ${(d.pageCache / 1e6).toFixed(0)} MB/s into the page cache, ${(d.synced / 1e6).toFixed(0)} MB/s with the fsync`;
}

/** `--NAME=a,b` on the command line (e.g. `--sizes=64 --receivers=native`), or null. */
function listArg(name: string): string[] | null {
  const arg = process.argv.find((a) => a.startsWith(`--${name}=`));
  return arg === undefined ? null : arg.slice(name.length + 3).split(',');
}

/** `--threads`: only the fixed-rate CPU table, for native and afpacket with one receiver and with --workers 2, and tcpdump -w. */
async function runThreads(plan: Plan): Promise<void> {
  if (!loadNative().ok) return console.log('\n## appliance --threads: no native addon, no receive threads');
  const root = await mkdtemp(join(tmpdir(), 'mirrorcap-bench-'));
  try {
    const kinds = (['native', 'afpacket:lo'] as const).flatMap((s) => [applianceReceiver(s), applianceReceiver(s, { workers: 2 })]);
    if (haveTool('tcpdump')) kinds.push(tcpdumpReceiver);
    const steps = await cpuPerPacket(kinds, plan, root);
    console.log('\ngoals (issue 17), this run:');
    for (const [met, text] of fixedRateGoals(steps)) console.log(`  [${met ? 'met' : 'not met'}] ${text}`);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

export async function run(opts: { quick: boolean; threads?: boolean }): Promise<void> {
  // --sizes=64 and --receivers=native,tcpdump narrow a run to some tables and rows (the rows
  // measured beside native, streams, flows and GENEVE, come with native).
  const sizes = listArg('sizes');
  const receivers = listArg('receivers');
  const base = opts.quick ? QUICK : FULL;
  const plan = sizes === null ? base : { ...base, sizes: base.sizes.filter((s) => sizes.includes(s)), jumbo: base.jumbo && sizes.includes(JUMBO_FRAME) };
  if (opts.threads === true) return runThreads(plan);
  const native = loadNative();
  let kinds: ReceiverKind[] = native.ok ? [applianceReceiver('native'), applianceReceiver('afpacket:lo'), applianceReceiver('dgram')] : [applianceReceiver('dgram')];
  const tcpdump = haveTool('tcpdump');
  if (tcpdump) kinds.push(tcpdumpReceiver);
  if (receivers !== null) kinds = kinds.filter((k) => receivers.includes(k.name));
  const root = await mkdtemp(join(tmpdir(), 'mirrorcap-bench-'));
  const started = performance.now();
  try {
    console.log(
      `\n## appliance: mirrorcap (its own process) fed by the generator (its own process, sendmmsg) over loopback, ${VNIS} VNIs, ` +
        `captures in ${tmpdir()}; flat out ${plan.flatSeconds} s, then up to ${plan.searchSteps} paced steps of ${plan.stepSeconds} s ` +
        'bisecting for zero loss; loss counted from the files',
    );
    if (!native.ok) console.log(`no native rows: ${native.reason}`);
    if (!tcpdump) console.log('tcpdump is not installed: no tcpdump rows');
    const specs = plan.sizes.map((size) => ({ size, searchSteps: plan.searchSteps, title: size === 'imix' ? 'IMIX (7:64 / 4:576 / 1:1500) inner frames' : `${size}-byte inner frames` }));
    if (plan.jumbo) {
      const title = `${JUMBO_FRAME}-byte inner frames (the largest behind an AWS 9001 MTU): flat out the generator sends more than the disk takes`;
      specs.push({ size: JUMBO_FRAME, searchSteps: plan.searchSteps, title });
    }
    const tables: Table[] = [];
    for (const spec of specs) {
      const load = loadLine();
      const disk = Number(spec.size) >= LARGE_FRAME ? measureDisk(root, plan.diskBytes) : null;
      const ceiling = await generatorCeiling(spec.size, plan.flatSeconds);
      const rows: Result[] = [];
      for (const kind of kinds) {
        rows.push(await measure(kind, spec.size, plan, root, spec.searchSteps));
        // Issue 14: VXLAN arriving inside a GWLB's GENEVE, measured right after plain VXLAN.
        if (kind.name === 'native' && spec.size === '64') rows.push(await measure(applianceReceiver('native', { geneve: true }), spec.size, plan, root, spec.searchSteps));
        // Issue 12: live streams must not slow capture; measured where capture is hardest.
        if (kind.name === 'native' && spec.size === '64' && haveTool('curl')) rows.push(await measure(applianceReceiver('native', { streams: 4 }), spec.size, plan, root, spec.searchSteps));
        // Issue 16: the flow table must not slow capture either.
        if (kind.name === 'native' && spec.size === '64') rows.push(await measure(applianceReceiver('native', { flows: true }), spec.size, plan, root, spec.searchSteps));
        // Issue 13: building the index must not slow capture; IMIX is the traffic its goal names.
        if (kind.name === 'native' && spec.size === 'imix') {
          rows.push(await measure(applianceReceiver('native', { extra: ROTATE_16 }), spec.size, plan, root, spec.searchSteps));
          rows.push(await measure(applianceReceiver('native', { extra: [...ROTATE_16, '--no-index'] }), spec.size, plan, root, spec.searchSteps));
        }
      }
      const table: Table = { size: spec.size, title: `${spec.title}; ${load}${disk ? `; ${diskLine(disk)}` : ''}`, disk, ceiling, rows };
      printResults(table);
      tables.push(table);
    }
    console.log(
      '\nzero-loss pps: the highest rate the generator really sent without a loss in the files (">=": lossless flat out, so the generator was the limit). ' +
        'written pps, Gbit/s (inner frames), file MB/s, loss: flat out. CPU: receiver process only, per second of sending. ' +
        "tcpdump's socket drops are its 'dropped by kernel', which on lo counts each packet out and in.",
    );
    // GENEVE's cost per packet beside plain VXLAN's, at one rate both hold: steadier than rates on a busy machine.
    const geneve = kinds.some((k) => k.name === 'native') ? [applianceReceiver('native', { geneve: true })] : [];
    const threaded = native.ok ? [applianceReceiver('native', { workers: 2 }), applianceReceiver('afpacket:lo', { workers: 2 })] : [];
    const fixed = await cpuPerPacket([...kinds, ...geneve, ...threaded], plan, root);
    console.log(`\ngoals (issues 4, 12, 14, 16, 17), this run:`);
    for (const [met, text] of [...goals(tables), ...fixedRateGoals(fixed)]) console.log(`  [${met ? 'met' : 'not met'}] ${text}`);
    console.log(`appliance section took ${((performance.now() - started) / 1000).toFixed(0)} s`);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await run({ quick: process.argv.includes('--quick'), threads: process.argv.includes('--threads') });
}
