/**
 * Load generator: VXLAN datagrams to one target, at a rate or flat out, bounded in time
 * and count, each inner frame carrying a per-VNI sequence number (see seqframe.ts) so
 * loss, duplicates and reordering can be counted exactly from the written pcaps.
 *
 *   node dist/test/bench/generator.js --target 127.0.0.1:4789 --vnis 3 --size 64|512|1400|imix
 *        (--rate PPS | --flat-out) [--duration S] [--count N] [--vni-base 1] [--sender auto|sendmmsg|dgram]
 *        [--encap vxlan|geneve] [--sockets 1]
 *
 * --encap geneve sends each VXLAN datagram as a Gateway Load Balancer endpoint delivers it
 * (replay's encoder: GENEVE with the three GWLB options, IPv4, UDP to 4789, then the datagram):
 * the target is then mirrorcap's --geneve port, and the files hold the same inner frames.
 *
 * Prints one JSON summary (GeneratorSummary) on stdout when done.
 *
 * One batch of slots is written once; slot i carries VNI (i mod vnis) and frame length
 * pattern[(i / vnis) mod pattern length], so every batch gives each VNI the same slots
 * and only the sequence numbers are rewritten between batches.
 */
import { spawn } from 'node:child_process';
import { setImmediate as yieldLoop, setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gwlbTemplate, GWLB_WRAP_LEN, writeGwlbWrap } from '../../src/replay/replay.js';
import { openSender } from '../../src/replay/sender.js';
import { VXLAN_HEADER_LEN, frameSizes, setSeq, writeDatagram } from './seqframe.js';

export interface GeneratorOptions {
  host: string;
  port: number;
  /** Number of VNIs, vniBase .. vniBase + vnis - 1, sent round-robin. */
  vnis: number;
  vniBase?: number;
  /** '64', '512', '1400', 'imix' or another inner frame length. */
  size: string;
  /** Packets per second in total; undefined sends flat out. */
  rate?: number;
  durationSec: number;
  /** Stop after this many datagrams in total. */
  count?: number;
  sender?: 'auto' | 'sendmmsg' | 'dgram';
  sendBufferBytes?: number;
  /** vxlan (default), or geneve: wrapped as a GWLB endpoint delivers it. */
  encap?: 'vxlan' | 'geneve';
  /**
   * Sockets (source ports) the batches take in turn; default 1. Several let SO_REUSEPORT or a
   * fanout hash spread the load over receive threads (--workers).
   */
  sockets?: number;
}

export interface GeneratorSummary {
  target: string;
  method: 'sendmmsg' | 'dgram';
  size: string;
  mode: 'rate' | 'flat-out';
  requestedPps: number | null;
  vnis: number[];
  sent: number;
  /** VNI -> datagrams sent; their sequence numbers are 0 .. n-1. */
  sentPerVni: Record<string, number>;
  innerBytes: number;
  seconds: number;
  pps: number;
  innerGbps: number;
  /** Sends the kernel took only partly (socket buffer full) before the rest went out. */
  stalls: number;
  /** ICMP port unreachable seen: nobody was listening for part of the run. */
  refused: number;
}

const TARGET_BATCH = 256;
/** Flat out, hand the event loop a turn this often so signals and timers still run. */
const YIELD_MS = 5;

export async function generate(opts: GeneratorOptions): Promise<GeneratorSummary> {
  const nV = opts.vnis;
  const vniBase = opts.vniBase ?? 1;
  if (!Number.isInteger(nV) || nV < 1 || nV > 4096) throw new RangeError(`--vnis must be 1..4096, got ${nV}`);
  if (!Number.isInteger(vniBase) || vniBase < 0 || vniBase + nV > 1 << 24) throw new RangeError('VNIs must fit in 24 bits');
  if (!(opts.durationSec > 0)) throw new RangeError('--duration must be positive');
  if (opts.rate !== undefined && !(opts.rate > 0)) throw new RangeError('--rate must be positive');
  const pattern = frameSizes(opts.size);
  const cycle = nV * pattern.length;
  const B = cycle * Math.max(1, Math.floor(TARGET_BATCH / cycle));
  // In front of each VXLAN datagram: nothing, or the GWLB's GENEVE + IPv4 + UDP.
  const wrap = opts.encap === 'geneve' ? GWLB_WRAP_LEN : 0;
  const template = opts.encap === 'geneve' ? gwlbTemplate({ endpointId: '0000000000000001', attachmentId: '0000000000000000' }) : null;
  const slotBytes = Math.ceil((wrap + VXLAN_HEADER_LEN + Math.max(...pattern)) / 64) * 64;

  const slab = Buffer.alloc(B * slotBytes);
  const offsets = new Uint32Array(B);
  const lengths = new Uint32Array(B);
  for (let i = 0; i < B; i++) {
    offsets[i] = i * slotBytes;
    const vni = vniBase + (i % nV);
    const vxlanLen = writeDatagram(slab, offsets[i]! + wrap, vni, pattern[Math.floor(i / nV) % pattern.length]!);
    if (template !== null) writeGwlbWrap(slab, offsets[i]!, template, vni, vxlanLen);
    lengths[i] = wrap + vxlanLen;
  }
  const perVniPerBatch = B / nV;

  const socketCount = opts.sockets ?? 1;
  if (!Number.isInteger(socketCount) || socketCount < 1 || socketCount > 64) throw new RangeError(`--sockets must be 1..64, got ${socketCount}`);
  const senders = await Promise.all(
    Array.from({ length: socketCount }, () => openSender({ host: opts.host, port: opts.port, kind: opts.sender ?? 'auto', sendBufferBytes: opts.sendBufferBytes ?? 4 << 20 })),
  );
  let turn = 0;
  const sentPerVni = new Float64Array(nV);
  const limit = opts.count ?? Infinity;
  const rate = opts.rate;
  // Paced sends go out in chunks of about half a millisecond's worth.
  const chunk = rate === undefined ? B : Math.min(B, Math.max(1, Math.round(rate / 2000)));
  let sent = 0;
  let innerBytes = 0;
  let stalls = 0;
  let batchNo = 0;
  let pos = B;
  const start = performance.now();
  const deadline = start + opts.durationSec * 1000;
  let lastYield = start;
  try {
    for (;;) {
      const now = performance.now();
      if (now >= deadline || sent >= limit) break;
      if (pos === B) {
        for (let i = 0; i < B; i++) setSeq(slab, offsets[i]! + wrap, batchNo * perVniPerBatch + Math.floor(i / nV));
        batchNo++;
        pos = 0;
      }
      let want = Math.min(B - pos, limit - sent);
      if (rate !== undefined) {
        const allowed = Math.floor((rate * (now - start)) / 1000) - sent;
        if (allowed < Math.min(chunk, want)) {
          const waitMs = ((Math.min(chunk, want) - allowed) / rate) * 1000;
          // Timers are coarse: sleep only for the bulk of a long wait, spin the loop for the rest.
          await (waitMs >= 2 ? sleep(Math.min(waitMs - 1, deadline - now)) : yieldLoop());
          continue;
        }
        want = Math.min(want, allowed);
      }
      const n = await senders[turn++ % socketCount]!.send(slab, offsets, lengths, pos, want);
      for (let i = pos; i < pos + n; i++) {
        sentPerVni[i % nV]++;
        innerBytes += lengths[i]! - wrap - VXLAN_HEADER_LEN;
      }
      pos += n;
      sent += n;
      if (n < want) {
        stalls++;
        await yieldLoop();
        lastYield = performance.now();
      } else if (now - lastYield >= YIELD_MS) {
        await yieldLoop();
        lastYield = performance.now();
      }
    }
  } finally {
    for (const sender of senders) await sender.close();
  }
  const seconds = (performance.now() - start) / 1000;
  const vnis = Array.from({ length: nV }, (_, i) => vniBase + i);
  return {
    target: `${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${opts.port}`,
    method: senders[0]!.kind,
    size: opts.size,
    mode: rate === undefined ? 'flat-out' : 'rate',
    requestedPps: rate ?? null,
    vnis,
    sent,
    sentPerVni: Object.fromEntries(vnis.map((v, i) => [String(v), sentPerVni[i]!])),
    innerBytes,
    seconds,
    pps: sent / seconds,
    innerGbps: (innerBytes * 8) / seconds / 1e9,
    stalls,
    refused: senders.reduce((n, s) => n + s.refused, 0),
  };
}

/**
 * Runs the generator as its own process, as the benches do: its sends then never share an
 * event loop (or a core) with the receiver under test. Rejects when it exits non-zero.
 */
export function runGeneratorProcess(opts: GeneratorOptions): Promise<GeneratorSummary> {
  const target = `${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${opts.port}`;
  const args = [fileURLToPath(import.meta.url), '--target', target, '--vnis', String(opts.vnis), '--size', opts.size];
  args.push(...(opts.rate === undefined ? ['--flat-out'] : ['--rate', String(Math.round(opts.rate))]), '--duration', String(opts.durationSec));
  if (opts.vniBase !== undefined) args.push('--vni-base', String(opts.vniBase));
  if (opts.count !== undefined) args.push('--count', String(opts.count));
  if (opts.sender !== undefined) args.push('--sender', opts.sender);
  if (opts.encap !== undefined) args.push('--encap', opts.encap);
  if (opts.sockets !== undefined) args.push('--sockets', String(opts.sockets));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out) as GeneratorSummary) : reject(new Error(`generator exited ${code}: ${err.trim()}`))));
  });
}

/** "127.0.0.1:4789", "[::1]:4789", "localhost:4789". */
export function parseTarget(target: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(target) ?? /^([^:]+):(\d+)$/.exec(target);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !(port >= 1 && port <= 65535)) throw new RangeError(`--target must be host:port or [v6]:port, got ${target}`);
  return { host: m[1]!, port };
}

export function parseGeneratorArgs(argv: string[]): GeneratorOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      target: { type: 'string' },
      vnis: { type: 'string', default: '1' },
      'vni-base': { type: 'string', default: '1' },
      size: { type: 'string', default: '64' },
      rate: { type: 'string' },
      'flat-out': { type: 'boolean', default: false },
      duration: { type: 'string', default: '5' },
      count: { type: 'string' },
      sender: { type: 'string', default: 'auto' },
      encap: { type: 'string', default: 'vxlan' },
      sockets: { type: 'string', default: '1' },
    },
    strict: true,
  });
  if (values.target === undefined) throw new RangeError('--target host:port is required');
  if ((values.rate === undefined) === !values['flat-out']) throw new RangeError('give exactly one of --rate PPS and --flat-out');
  const sender = values.sender;
  if (sender !== 'auto' && sender !== 'sendmmsg' && sender !== 'dgram') throw new RangeError('--sender must be auto, sendmmsg or dgram');
  const encap = values.encap;
  if (encap !== 'vxlan' && encap !== 'geneve') throw new RangeError('--encap must be vxlan or geneve');
  const opts: GeneratorOptions = {
    ...parseTarget(values.target),
    vnis: Number(values.vnis),
    vniBase: Number(values['vni-base']),
    size: values.size,
    durationSec: Number(values.duration),
    sender,
    encap,
    sockets: Number(values.sockets),
  };
  if (values.rate !== undefined) opts.rate = Number(values.rate);
  if (values.count !== undefined) {
    opts.count = Number(values.count);
    if (!Number.isInteger(opts.count) || opts.count < 1) throw new RangeError('--count must be a positive integer');
  }
  return opts;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    const summary = await generate(parseGeneratorArgs(process.argv.slice(2)));
    process.stdout.write(`${JSON.stringify(summary)}\n`);
  } catch (err) {
    process.stderr.write(`generator: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 2;
  }
}
