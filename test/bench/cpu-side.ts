/**
 * Bench section `cpu-side`: CPU per packet of 64-byte frames at a fixed rate, the native
 * appliance, the afpacket one and `tcpdump -w` side by side (side.ts: one core, fed in turn,
 * through a veth), for issue 17's "afpacket <= 2x tcpdump". CPU of each process over its own
 * slices, per packet sent to it in them: what receiving a packet costs. What a receiver costs
 * while the others are fed (its timers and wake-ups, and what an idle spell sets off, such as
 * V8 shrinking its heap) is not a cost per packet; it is printed beside, per second.
 */
import { loadLine } from './appliance.js';
import { SETTLE_MS, sideBySide, sideUnavailable, type SideName } from './side.js';
import { median, printTable } from './table.js';

const RATE = 50_000;
/**
 * Rounds, each with fresh processes; the verdict is their median. Now and then one process runs
 * a whole round at 1.3-2x its usual CPU per packet (a V8 heap compaction in its slices, or
 * something in its start that a twin started beside it escapes): five rounds keep one such
 * round from deciding.
 */
const ROUNDS = 5;
const NAMES: readonly SideName[] = ['native', 'afpacket', 'tcpdump'];

export async function run({ quick }: { quick: boolean }): Promise<void> {
  console.log(`\n## cpu-side: 64-byte frames at ${RATE.toLocaleString('en-US')} pps, native, afpacket and tcpdump -w side by side on one core, fed in turn, through a veth pair`);
  const why = sideUnavailable();
  if (why !== null) {
    console.log(`skipped: ${why}`);
    return;
  }
  const load = loadLine();
  const rows = [['round', 'native ns/packet', 'afpacket ns/packet', 'tcpdump -w ns/packet', 'afpacket / tcpdump', 'native / tcpdump', 'idle ms/s native / afpacket / tcpdump', 'loss native / afpacket / tcpdump']];
  const ratios: number[] = [];
  const how = await sideBySide(NAMES, { size: '64', rate: RATE, warm: quick ? 2 : 4, slices: quick ? 2 : 5, sliceSeconds: 2 }, quick ? 1 : ROUNDS, (sides, round) => {
    const ns = sides.map((s) => (1e9 * s.cpu) / Math.max(1, s.sentMeasured));
    const idle = sides.map((s) => ((1000 * s.idleCpu) / Math.max(1e-9, s.idleSeconds)).toFixed(1));
    const loss = sides.map((s) => `${((100 * (s.sent - s.written)) / Math.max(1, s.sent)).toFixed(2)} %`);
    ratios.push(ns[1]! / ns[2]!);
    rows.push([String(round), ns[0]!.toFixed(0), ns[1]!.toFixed(0), ns[2]!.toFixed(0), (ns[1]! / ns[2]!).toFixed(2), (ns[0]! / ns[2]!).toFixed(2), idle.join(' / '), loss.join(' / ')]);
  });
  console.log(
    `${how}; ns/packet: the CPU of each process (all its threads, as the scheduler counts it) over its own slices and the ${SETTLE_MS} ms after each, per packet sent to it; idle: its CPU while the others were fed, per second; ${load}`,
  );
  printTable(rows, [0]);
  const m = median(ratios);
  const spread = `${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)}`;
  console.log(`  [${m <= 2 ? 'met' : 'not met'}] CPU per packet afpacket <= 2x tcpdump -w (issue 17): median ${m.toFixed(2)}x of ${ratios.length} rounds (${spread})`);
}
