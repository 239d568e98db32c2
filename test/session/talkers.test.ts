/**
 * The space-saving top-talkers table against an exact Map count: exact while
 * addresses fit, its guarantees when they do not, and its index intact under
 * heavy churn.
 */
import t from 'tap';
import { TopTalkers } from '../../src/session/talkers.js';
import { addr4, addr6 } from '../lib/frames.js';
import { Random } from '../lib/random.js';

const v4 = (i: number): Buffer => Buffer.from([10, (i >> 16) & 255, (i >> 8) & 255, i & 255]);
const text4 = (i: number): string => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;

t.test('exact while every address has a slot; IPv4 and IPv6 kept apart', async (t) => {
  const tt = new TopTalkers(8);
  const buf = Buffer.concat([Buffer.alloc(3), addr4('192.0.2.1'), addr6('2001:db8::1'), addr6('c000:201::')]);
  tt.add(buf, 3, 4, 100);
  tt.add(buf, 7, 16, 50);
  tt.add(buf, 3, 4, 20);
  // Same first four bytes as 192.0.2.1, but an IPv6 address: a different talker.
  tt.add(buf, 23, 16, 70);
  t.same(tt.top(10), [
    { address: '192.0.2.1', bytes: 120, error: 0 },
    { address: 'c000:201::', bytes: 70, error: 0 },
    { address: '2001:db8::1', bytes: 50, error: 0 },
  ]);
  t.same(tt.top(1).map((x) => x.address), ['192.0.2.1']);
  t.same(tt.top(0), []);
  t.equal(tt.size, 3);
});

t.test('input from the wire that is not an address is ignored', async (t) => {
  const tt = new TopTalkers(4);
  const b = v4(1);
  tt.add(b, 0, 5, 100);
  tt.add(b, 0, 0, 100);
  tt.add(b, 0, 4, 0);
  tt.add(b, 0, 4, NaN);
  tt.add(b, 0, 4, -3);
  t.equal(tt.size, 0);
  t.throws(() => new TopTalkers(0), RangeError);
  t.throws(() => new TopTalkers(1.5), RangeError);
});

t.test('space-saving guarantees on a skewed stream (10k addresses, 64 slots)', async (t) => {
  const tt = new TopTalkers(64);
  const exact = new Map<string, number>();
  const r = new Random(12345);
  let total = 0;
  for (let n = 0; n < 200_000; n++) {
    // Zipf-like: address i with weight ~ 1/(i+1).
    const i = Math.floor(10_000 ** (r.next() / 0x100000000)) - 1;
    const bytes = 60 + r.below(1400);
    tt.add(v4(i), 0, 4, bytes);
    exact.set(text4(i), (exact.get(text4(i)) ?? 0) + bytes);
    total += bytes;
  }
  const all = tt.top(64);
  t.equal(all.length, 64);
  t.equal(
    all.reduce((a, x) => a + x.bytes, 0),
    total,
    'the counts add up to every byte seen (each eviction hands its count on)',
  );
  t.equal(new Set(all.map((x) => x.address)).size, 64, 'no address holds two slots');
  let bounded = 0;
  for (const x of all) {
    const truth = exact.get(x.address) ?? 0;
    if (x.bytes >= truth && x.bytes - x.error <= truth) bounded++;
  }
  t.equal(bounded, 64, 'truth within [bytes - error, bytes] for every slot');
  const reported = new Set(all.map((x) => x.address));
  const heavy = [...exact].filter(([, b]) => b > total / 64);
  t.ok(heavy.length > 0);
  t.ok(
    heavy.every(([a]) => reported.has(a)),
    `all ${heavy.length} addresses above total/capacity are present`,
  );
  const trueTop5 = [...exact].sort((a, b) => b[1] - a[1]).slice(0, 5).map(([a]) => a);
  t.same(
    tt.top(5).map((x) => x.address),
    trueTop5,
    'the top 5 come out in the true order on this stream',
  );
});

t.test('bursts of flows, source and destination in turn (the runs): exact when they fit, the guarantees when not, read any time', async (t) => {
  for (const capacity of [4096, 64]) {
    const tt = new TopTalkers(capacity);
    const exact = new Map<string, number>();
    const r = new Random(4242 + capacity);
    let total = 0;
    for (let burst = 0; burst < 20_000; burst++) {
      const a = Math.floor(2_000 ** (r.next() / 0x100000000)) - 1;
      const b = 2_000 + r.below(2_000);
      for (let k = 1 + r.below(20); k > 0; k--) {
        const bytes = 60 + r.below(1400);
        for (const i of [a, b]) {
          tt.add(v4(i), 0, 4, bytes);
          exact.set(text4(i), (exact.get(text4(i)) ?? 0) + bytes);
          total += bytes;
        }
      }
      // Read now and then, as /api/sessions does: the runs enter the table first.
      if (burst % 997 === 0) t.ok(tt.size > 0);
    }
    const all = tt.top(capacity);
    t.equal(all.reduce((sum, x) => sum + x.bytes, 0), total, `${capacity} slots: the counts add up to every byte seen`);
    if (capacity >= exact.size) {
      t.same(new Map(all.map((x) => [x.address, x.bytes])), exact, `${capacity} slots: every address exact`);
      t.ok(all.every((x) => x.error === 0));
    } else {
      t.ok(all.every((x) => x.bytes >= exact.get(x.address)! && x.bytes - x.error <= exact.get(x.address)!), `${capacity} slots: truth within [bytes - error, bytes] for every slot`);
      const heavy = [...exact].filter(([, n]) => n > total / capacity);
      t.ok(heavy.length > 0 && heavy.every(([addr]) => all.some((x) => x.address === addr)), `${capacity} slots: all ${heavy.length} addresses above total/capacity present`);
    }
  }
});

t.test('the index survives churn: every present address is found again, none is duplicated', async (t) => {
  const tt = new TopTalkers(8);
  const r = new Random(999);
  for (let n = 0; n < 100_000; n++) {
    const i = r.below(200);
    tt.add(i & 1 ? v4(i) : addr6(`2001:db8::${i.toString(16)}`), 0, i & 1 ? 4 : 16, 1 + r.below(100));
  }
  const before = tt.top(8);
  t.equal(new Set(before.map((x) => x.address)).size, 8);
  // Adding 1 byte to a present address must find its slot (the count grows by 1, nothing is evicted).
  const present = before[before.length - 1];
  const key = present.address.includes(':') ? addr6(present.address) : addr4(present.address);
  tt.add(key, 0, key.length, 1);
  const after = tt.top(8);
  t.same(new Set(after.map((x) => x.address)), new Set(before.map((x) => x.address)));
  t.equal(after.find((x) => x.address === present.address)?.bytes, present.bytes + 1);
});

t.test('reset forgets everything', async (t) => {
  const tt = new TopTalkers(2);
  for (let i = 0; i < 5; i++) tt.add(v4(i), 0, 4, 10 * (i + 1));
  tt.reset();
  t.equal(tt.size, 0);
  t.same(tt.top(10), []);
  tt.add(v4(7), 0, 4, 5);
  t.same(tt.top(10), [{ address: '10.0.0.7', bytes: 5, error: 0 }]);
});
