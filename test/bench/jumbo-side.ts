/**
 * Bench section `jumbo-side`: 8,950-byte frames flat out, the bytes that reach the files of the
 * native appliance, the afpacket one, the node:dgram one and `tcpdump -w`, side by side
 * (side.ts: one core, fed in turn, through a veth with a 9001-byte MTU), for issue 17's
 * "bytes reaching files >= 1.1x tcpdump -w and >= node:dgram". Each receiver's rate is the
 * frames in its files over the seconds it was fed (its warm-up included: the files hold it).
 * Then "the zero-loss rate >= tcpdump's": the same four at fixed rates on a grid, each rate
 * with fresh receivers fed in turn; a receiver's zero-loss rate is the highest rate of the
 * grid up to which it lost nothing (loss counted from its files, warm-up included); the grid
 * stops once every receiver has lost.
 */
import { loadLine } from './appliance.js';
import { sideBySide, sideUnavailable, type SideName } from './side.js';
import { median, printTable } from './table.js';

const FRAME = 8950;
const NAMES: readonly SideName[] = ['native', 'afpacket', 'dgram', 'tcpdump'];
/** Rates (packets/s) of the zero-loss grid, ascending. */
const GRID = [5_000, 7_500, 10_000, 12_500, 15_000, 17_500, 20_000, 25_000, 30_000, 40_000];

export async function run({ quick }: { quick: boolean }): Promise<void> {
  console.log(`\n## jumbo-side: ${FRAME}-byte frames flat out, native, afpacket, dgram and tcpdump -w side by side on one core, fed in turn, through a veth pair`);
  const why = sideUnavailable();
  if (why !== null) {
    console.log(`skipped: ${why}`);
    return;
  }
  const load = loadLine();
  const feeding = { size: String(FRAME), warm: 1, slices: quick ? 2 : 4, sliceSeconds: 2 };
  const seconds = feeding.warm + feeding.slices * feeding.sliceSeconds;
  const rows = [['round', ...NAMES.map((n) => `${n} MB/s`), 'native / tcpdump', 'afpacket / tcpdump', ...NAMES.map((n) => `${n} loss`)]];
  const mbs = new Map<SideName, number[]>(NAMES.map((n) => [n, []]));
  const how = await sideBySide(NAMES, feeding, quick ? 1 : 3, (sides, round) => {
    const mb = sides.map((s) => (s.written * FRAME) / 1e6 / seconds);
    sides.forEach((s, i) => mbs.get(s.name)!.push(mb[i]!));
    const t = mb[3]!;
    rows.push([String(round), ...mb.map((x) => x.toFixed(0)), (mb[0]! / t).toFixed(2), (mb[1]! / t).toFixed(2), ...sides.map((s) => `${((100 * (s.sent - s.written)) / Math.max(1, s.sent)).toFixed(1)} %`)]);
  });
  console.log(`${how}; inner frame bytes in the files per second fed; ${load}`);
  printTable(rows, [0]);
  const med = (n: SideName): number => median(mbs.get(n)!);
  for (const ours of ['native', 'afpacket'] as const) {
    const vsT = med(ours) / med('tcpdump');
    const met = vsT >= 1.1 && med(ours) >= med('dgram');
    console.log(
      `  [${met ? 'met' : 'not met'}] ${FRAME}-byte frames flat out, ${ours}: bytes reaching files >= 1.1x tcpdump -w and >= dgram (issue 17): medians ${med(ours).toFixed(0)} MB/s, ` +
        `tcpdump ${med('tcpdump').toFixed(0)} (${vsT.toFixed(2)}x), dgram ${med('dgram').toFixed(0)}`,
    );
  }
  await zeroLoss(quick);
}

/** The zero-loss grid: loss per receiver at each rate, and each one's zero-loss rate. */
async function zeroLoss(quick: boolean): Promise<void> {
  const grid = quick ? GRID.slice(0, 3) : GRID;
  const rows = [['pps', ...NAMES.map((n) => `${n} loss`)]];
  // The highest rate of the grid up to which (inclusive) a receiver lost nothing; 0: not even the first.
  const zero = new Map<SideName, number>(NAMES.map((n) => [n, 0]));
  const failed = new Set<SideName>();
  let how = '';
  for (const rate of grid) {
    // Every receiver lost at a lower rate: the rest of the grid would say nothing new.
    if (failed.size === NAMES.length) break;
    how = await sideBySide(NAMES, { size: String(FRAME), rate, warm: 1, slices: 2, sliceSeconds: 2 }, 1, (sides) => {
      rows.push([rate.toLocaleString('en-US'), ...sides.map((s) => `${((100 * (s.sent - s.written)) / Math.max(1, s.sent)).toFixed(2)} %`)]);
      for (const s of sides) {
        if (s.written < s.sent) failed.add(s.name);
        else if (!failed.has(s.name)) zero.set(s.name, rate);
      }
    });
  }
  console.log(`zero loss on a grid of rates, fresh receivers for each (the last: ${how})`);
  printTable(rows, [0]);
  const z = (n: SideName): string => (zero.get(n)! === 0 ? `< ${grid[0]!.toLocaleString('en-US')}` : zero.get(n)!.toLocaleString('en-US'));
  for (const ours of ['native', 'afpacket'] as const) {
    console.log(`  [${zero.get(ours)! >= zero.get('tcpdump')! ? 'met' : 'not met'}] ${FRAME}-byte frames, ${ours}: zero-loss rate >= tcpdump's (issue 17): ${z(ours)} pps against ${z('tcpdump')} (dgram ${z('dgram')})`);
  }
}
