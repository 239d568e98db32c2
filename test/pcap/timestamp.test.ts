import t from 'tap';
import type { Test } from 'tap';
import { MAX_TSRESOL_POW10, MAX_TSRESOL_POW2, TimestampConverter } from '../../src/pcap/timestamp.js';
import { Random } from '../lib/random.js';

/** The exact answer, with BigInt. */
function reference(base: 10 | 2, exp: number, ts: bigint, offset: number): [number, number] {
  const units = BigInt(base) ** BigInt(exp);
  const sec = ts / units;
  const nsec = ((ts % units) * 1_000_000_000n) / units;
  return [Number(sec) + offset, Number(nsec)];
}

function check(t: Test, base: 10 | 2, exp: number, ts: bigint, offset = 0): boolean {
  const conv = new TimestampConverter(base, exp, offset);
  convert(conv, ts);
  const [sec, nsec] = reference(base, exp, ts, offset);
  if (conv.sec === sec && conv.nsec === nsec) return true;
  t.fail(`${base}^-${exp} ts=${ts}: got ${conv.sec}.${conv.nsec}, want ${sec}.${nsec}`);
  return false;
}

const MAX64 = (1n << 64n) - 1n;

/** Stores the count as pcapng does, in alternating byte orders, at an odd offset, and converts it. */
const scratch = Buffer.alloc(12);
let flip = false;
function convert(conv: TimestampConverter, ts: bigint): void {
  flip = !flip;
  const hi = Number(ts >> 32n);
  const lo = Number(ts & 0xffffffffn);
  if (flip) {
    scratch.writeUInt32LE(hi, 3);
    scratch.writeUInt32LE(lo, 7);
  } else {
    scratch.writeUInt32BE(hi, 3);
    scratch.writeUInt32BE(lo, 7);
  }
  conv.convert(scratch, 3, flip);
}

t.test('every resolution, edge and random 64-bit counts, exact to the ns', async (t) => {
  const rand = new Random(0x5eed);
  let ok = true;
  for (const [base, max] of [[10, MAX_TSRESOL_POW10], [2, MAX_TSRESOL_POW2]] as const) {
    for (let exp = 0; exp <= max; exp++) {
      const units = BigInt(base) ** BigInt(exp);
      const edges = [0n, 1n, units - 1n, units, units + 1n, MAX64, MAX64 - 1n, 1n << 53n, (1n << 53n) + 1n, 0xffffffffn, 1n << 32n];
      for (const ts of edges) if (ts >= 0n && ts <= MAX64) ok = check(t, base, exp, ts) && ok;
      for (let i = 0; i < 2000; i++) {
        const ts = (BigInt(rand.next()) << 32n) | BigInt(rand.next());
        ok = check(t, base, exp, ts) && ok;
      }
    }
  }
  t.ok(ok, 'all conversions match the BigInt reference');
});

t.test('realistic clocks: µs and ns since 1970 and an if_tsoffset', async (t) => {
  t.ok(check(t, 10, 6, 1_700_000_000_123_456n));
  t.ok(check(t, 10, 9, 1_700_000_000_123_456_789n));
  t.ok(check(t, 10, 9, 1_700_000_000_999_999_999n, 3600));
  t.ok(check(t, 10, 6, 5_000_001n, -7200));
  const conv = new TimestampConverter(10, 9);
  convert(conv, 1_700_000_000_123_456_789n);
  t.same([conv.sec, conv.nsec], [1_700_000_000, 123_456_789]);
});

t.test('resolutions a 64-bit count cannot express are refused', async (t) => {
  t.throws(() => new TimestampConverter(10, MAX_TSRESOL_POW10 + 1), RangeError);
  t.throws(() => new TimestampConverter(2, MAX_TSRESOL_POW2 + 1), RangeError);
  t.throws(() => new TimestampConverter(10, -1), RangeError);
});
