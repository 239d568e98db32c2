/**
 * Receive rate, raw: receivers in this process that only count datagrams: node:dgram
 * (the baseline, one 'message' event per datagram) and NativeSource (recvmmsg, one call
 * per batch). Nothing is written to disk: this is each receive path's ceiling, not the
 * appliance's rate.
 *  1. Flat out: the generator (its own process) sends 64-byte frames as fast as it can;
 *     loss is its sent count minus what was counted.
 *  2. Drain: a burst that fits the socket buffer is queued while the loop is blocked,
 *     then timed until it has all been counted. The generator cannot outrun a receiver
 *     on this machine, so this is what shows the cost of receiving per datagram.
 *
 *   node dist/test/bench/receive-rate.js [--quick]
 */
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { setImmediate as yieldLoop } from 'node:timers/promises';
import { loadNative, type NativeBinding } from '../../src/native/addon.js';
import { NativeSource, slotBytesFor } from '../../src/source/native.js';
import { runGeneratorProcess } from './generator.js';
import { VXLAN_HEADER_LEN, writeDatagram } from './seqframe.js';
import { printTable } from './table.js';

/** The same request for both; dgram cannot force past rmem_max, so neither does native here. */
const RECV_BUFFER = 4 << 20;
/** What SO_RCVBUFFORCE allows the native source beyond rmem_max: rides out being descheduled. */
const FORCED_RECV_BUFFER = 64 << 20;

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

async function nativeReceiver(recvBufferBytes: number, slotBytes?: number): Promise<Receiver> {
  const src = new NativeSource({ host: '127.0.0.1', port: 0, recvBufferBytes, ...(slotBytes === undefined ? {} : { slotBytes }) });
  // Reads each datagram's first byte, as the pipeline reads its VXLAN header: where the
  // slots lie in memory shows in the cost.
  let sum = 0;
  await src.start((b) => {
    for (let i = 0; i < b.count; i++) sum += b.slab[b.offsets[i]!]!;
  });
  void sum;
  return {
    port: src.address()!.port,
    count: () => src.stats.datagrams,
    kernelDrops: () => src.stats.kernelDrops,
    extra: () => `rcvbuf ${src.grantedRecvBuffer}, ${(src.stats.datagrams / Math.max(1, src.stats.batches)).toFixed(1)}/batch`,
    close: () => src.stop(),
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

async function measure(name: string, make: () => Promise<Receiver>, seconds: number): Promise<string[]> {
  const rx = await make();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const gen = await runGeneratorProcess({ host: '127.0.0.1', port: rx.port, vnis: 3, size: '64', durationSec: seconds });
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

const DRAIN_BURST = 4000;

/** Median datagrams/s at which rx counts a queued burst of `frameLen`-byte frames, over `reps` bursts. */
async function drain(binding: NativeBinding, name: string, make: () => Promise<Receiver>, reps: number, frameLen = 64): Promise<string[]> {
  const rx = await make();
  const tx = new binding.Sender('127.0.0.1', rx.port);
  const slot = VXLAN_HEADER_LEN + frameLen;
  const slab = Buffer.alloc(DRAIN_BURST * slot);
  const offsets = new Uint32Array(DRAIN_BURST);
  const lengths = new Uint32Array(DRAIN_BURST);
  for (let i = 0; i < DRAIN_BURST; i++) {
    offsets[i] = i * slot;
    lengths[i] = writeDatagram(slab, offsets[i]!, 1, frameLen);
  }
  const rates: number[] = [];
  const drops0 = rx.kernelDrops();
  let cpuMicros = 0;
  for (let r = 0; r < reps; r++) {
    const target = rx.count() + DRAIN_BURST;
    // Synchronous: the event loop cannot read until the whole burst is queued.
    for (let sent = 0; sent < DRAIN_BURST; ) sent += Math.max(0, tx.send(slab, offsets, lengths, sent, Math.min(1024, DRAIN_BURST - sent)));
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    while (rx.count() < target) await yieldLoop();
    rates.push(DRAIN_BURST / ((performance.now() - t0) / 1000));
    const cpu = process.cpuUsage(cpu0);
    cpuMicros += cpu.user + cpu.system;
  }
  tx.close();
  rates.sort((a, b) => a - b);
  const row = [
    name,
    String(frameLen),
    String(DRAIN_BURST),
    String(reps),
    Math.round(rates[rates.length >> 1]!).toLocaleString('en'),
    Math.round(rates[rates.length - 1]!).toLocaleString('en'),
    ((1000 * cpuMicros) / (reps * DRAIN_BURST)).toFixed(0),
    String(rx.kernelDrops() - drops0),
  ];
  await rx.close();
  return row;
}

export async function run(opts: { quick: boolean }): Promise<void> {
  const load0 = loadavg();
  const seconds = opts.quick ? 3 : 8;
  const rows = [['receiver', 'sent', 'gen pps', 'received', 'recv pps', 'loss', 'kernel drops', 'CPU', 'notes']];
  rows.push(await measure('node:dgram (baseline)', dgramReceiver, seconds));
  const load = loadNative();
  if (load.ok) {
    rows.push(await measure('NativeSource', () => nativeReceiver(RECV_BUFFER), seconds));
    rows.push(await measure('NativeSource, 64 MiB forced', () => nativeReceiver(FORCED_RECV_BUFFER), seconds));
  } else {
    rows.push(['NativeSource', `not available: ${load.reason}`]);
  }
  console.log(`\nReceive rate: generator flat out, 64-byte frames, 3 VNIs, ${seconds} s per receiver (counting only, no disk)`);
  console.log(`load average before: ${load0.map((l) => l.toFixed(2)).join(' ')} on ${availableParallelism()} cores (other work here skews these)`);
  printTable(rows, [0, 8]);

  if (load.ok) {
    const reps = opts.quick ? 10 : 40;
    const drains = [['receiver', 'frame', 'burst', 'reps', 'median pps', 'best pps', 'CPU ns/datagram', 'kernel drops']];
    drains.push(await drain(load.binding, 'node:dgram (baseline)', dgramReceiver, reps));
    drains.push(await drain(load.binding, 'NativeSource', () => nativeReceiver(RECV_BUFFER), reps));
    console.log(`\nDrain rate: a queued burst of ${DRAIN_BURST} 64-byte frames counted as fast as the receiver can`);
    printTable(drains);

    // Receive slots are sized from the snaplen: 64 KiB for the default 65535 (any datagram
    // whole), 10 KiB for a 9000-byte snaplen. The slab is 16 MiB or 2.5 MiB; pages are touched
    // only where datagrams land. Same burst, both frame sizes, a buffer that holds it all.
    const slots = [['receiver', 'frame', 'burst', 'reps', 'median pps', 'best pps', 'CPU ns/datagram', 'kernel drops']];
    for (const frameLen of [64, 1400]) {
      for (const [label, slotBytes] of [['10 KiB slots (snaplen 9000)', slotBytesFor(9000)], ['64 KiB slots (snaplen 65535)', slotBytesFor(65535)]] as const) {
        slots.push(await drain(load.binding, `NativeSource, ${label}`, () => nativeReceiver(FORCED_RECV_BUFFER, slotBytes), reps, frameLen));
      }
    }
    console.log(`\nDrain rate by receive slot size: a queued burst of ${DRAIN_BURST} frames, 64 MiB forced buffer`);
    printTable(slots);
  }
  console.log(`peak RSS of this process ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await run({ quick: process.argv.includes('--quick') });
}
