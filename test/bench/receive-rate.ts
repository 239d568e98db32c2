/**
 * Receive rate, raw: the generator (its own process) sends 64-byte frames flat out to a
 * receiver in this process that only counts datagrams: node:dgram (the baseline, one
 * 'message' event per datagram) and NativeSource (recvmmsg, one call per batch). Loss
 * is the generator's sent count minus what was counted; nothing is written to disk, so
 * this is the ceiling of each receive path, not the appliance's rate.
 *
 *   node dist/test/bench/receive-rate.js [--quick]
 */
import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { NativeSource, loadNative } from '../../src/source/native.js';
import type { GeneratorSummary } from './generator.js';

const GENERATOR = fileURLToPath(new URL('./generator.js', import.meta.url));
/** The same request for both; dgram cannot force past rmem_max, so neither does native here. */
const RECV_BUFFER = 4 << 20;

interface Receiver {
  port: number;
  count(): number;
  kernelDrops(): number;
  extra(): string;
  close(): Promise<void>;
}

async function dgramReceiver(): Promise<Receiver> {
  const socket = createSocket({ type: 'udp4', recvBufferSize: RECV_BUFFER });
  let n = 0;
  socket.on('message', () => n++);
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const port = socket.address().port;
  return {
    port,
    count: () => n,
    kernelDrops: () => procNetUdpDrops(port),
    extra: () => `rcvbuf ${socket.getRecvBufferSize()}`,
    close: () => new Promise((resolve) => socket.close(() => resolve())),
  };
}

async function nativeReceiver(): Promise<Receiver> {
  const src = new NativeSource({ host: '127.0.0.1', port: 0, recvBufferBytes: RECV_BUFFER });
  await src.start(() => {});
  return {
    port: src.address()!.port,
    count: () => src.stats.datagrams,
    kernelDrops: () => src.stats.kernelDrops,
    extra: () => `rcvbuf ${src.grantedRecvBuffer}, ${(src.stats.datagrams / Math.max(1, src.stats.batches)).toFixed(1)}/batch`,
    close: () => src.close(),
  };
}

/** The drops column of /proc/net/udp for a socket bound to 127.0.0.1:port. */
function procNetUdpDrops(port: number): number {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const line = readFileSync('/proc/net/udp', 'utf8')
    .split('\n')
    .find((l) => l.trim().split(/\s+/)[1] === local);
  return line === undefined ? NaN : Number(line.trim().split(/\s+/).at(-1));
}

function runGenerator(port: number, seconds: number): Promise<GeneratorSummary> {
  return new Promise((resolve, reject) => {
    const args = [GENERATOR, '--target', `127.0.0.1:${port}`, '--vnis', '3', '--size', '64', '--flat-out', '--duration', String(seconds)];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as GeneratorSummary) : reject(new Error(`generator exited ${code}`))));
  });
}

async function measure(name: string, make: () => Promise<Receiver>, seconds: number): Promise<string[]> {
  const rx = await make();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const gen = await runGenerator(rx.port, seconds);
  await sleep(300); // let the receiver drain its socket buffer
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const got = rx.count();
  const row = [
    name,
    gen.sent.toLocaleString('en'),
    Math.round(gen.pps).toLocaleString('en'),
    got.toLocaleString('en'),
    Math.round(got / gen.seconds).toLocaleString('en'),
    `${((100 * (gen.sent - got)) / gen.sent).toFixed(2)} %`,
    String(rx.kernelDrops()),
    `${(((cpu.user + cpu.system) / 1e6 / wall) * 100).toFixed(0)} %`,
    rx.extra(),
  ];
  await rx.close();
  return row;
}

export async function run(opts: { quick: boolean }): Promise<void> {
  const seconds = opts.quick ? 3 : 8;
  const rows = [['receiver', 'sent', 'gen pps', 'received', 'recv pps', 'loss', 'kernel drops', 'CPU', 'notes']];
  rows.push(await measure('node:dgram (baseline)', dgramReceiver, seconds));
  const load = loadNative();
  if (load.ok) rows.push(await measure('NativeSource', nativeReceiver, seconds));
  else rows.push(['NativeSource', `not available: ${load.reason}`]);
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  console.log(`\nReceive rate: generator flat out, 64-byte frames, 3 VNIs, ${seconds} s per receiver (counting only, no disk)`);
  for (const r of rows) console.log(r.map((v, c) => (c === 0 || c === 8 ? v.padEnd(widths[c]!) : v.padStart(widths[c]!))).join('  '));
  console.log(`peak RSS of this process ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await run({ quick: process.argv.includes('--quick') });
}
