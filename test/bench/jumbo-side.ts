/**
 * Bench section `jumbo-side`: 8,950-byte frames flat out, the bytes that reach the files of the
 * native appliance, the afpacket one, the node:dgram one and `tcpdump -w`, side by side
 * (side.ts: one core, fed in turn, through a veth with a 9001-byte MTU), for issue 17's
 * "bytes reaching files >= 1.1x tcpdump -w and >= node:dgram". Each receiver's rate is the
 * frames in its files over the seconds it was fed (its warm-up included: the files hold it).
 */
import { loadLine } from './appliance.js';
import { sideBySide, sideUnavailable, type SideName } from './side.js';
import { median, printTable } from './table.js';

const FRAME = 8950;
const NAMES: readonly SideName[] = ['native', 'afpacket', 'dgram', 'tcpdump'];

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
}
