/**
 * The flow table on hand-built frames: what each packet adds to which flow, TCP flags as AWS
 * reports them, start/end, ports of portless protocols and fragments, interval boundaries,
 * late packets and clock steps, NODATA/SKIPDATA causes, the budget, and growth checked
 * against a plain Map count.
 */
import t from 'tap';
import { Decoder } from '../../src/decode/packet.js';
import { awsTcpFlags, FlowBudget, FlowTable, MIN_CAPACITY, type FlowInterval } from '../../src/session/flows.js';
import { arp, ether, fragment, icmp, icmpv6, ipv4, ipv6, tcp, udp } from '../lib/frames.js';
import { addAt } from '../lib/flows.js';

const FIN = 0x01;
const SYN = 0x02;
const RST = 0x04;
const PSH = 0x08;
const ACK = 0x10;
const ECE = 0x40;

const d = new Decoder();

interface Flow {
  src: string;
  dst: string;
  sport: number;
  dport: number;
  proto: number;
  type: string;
  packets: number;
  bytes: number;
  start: number;
  end: number;
  flags: number;
  raw: number;
}

function flows(iv: FlowInterval): Flow[] {
  const out: Flow[] = [];
  const s = iv.slots;
  for (let i = 0; i < iv.count; i++) {
    out.push({
      src: s.srcAddr(i),
      dst: s.dstAddr(i),
      sport: s.srcPort(i),
      dport: s.dstPort(i),
      proto: s.protocol(i),
      type: s.ipVersion(i) === 4 ? 'IPv4' : 'IPv6',
      packets: s.packets(i),
      bytes: s.bytes(i),
      start: s.firstSec(i),
      end: s.lastSec(i),
      flags: s.awsTcpFlags(i),
      raw: s.rawTcpFlags(i),
    });
  }
  return out;
}

function setup(o: { interval?: number; max?: number; drops?: Float64Array; grace?: number } = {}): {
  table: FlowTable;
  sealed: FlowInterval[];
  budget: FlowBudget;
  feed: (frame: Buffer, sec: number) => void;
} {
  const sealed: FlowInterval[] = [];
  const budget = new FlowBudget(o.max ?? 1000);
  const table = new FlowTable({ intervalSec: o.interval ?? 60, budget, sealed: (iv) => sealed.push(iv), drops: o.drops, graceSec: o.grace ?? 1 });
  const feed = (frame: Buffer, sec: number): void => {
    d.decode(frame, 0, frame.length);
    addAt(table, d, sec);
  };
  return { table, sealed, budget, feed };
}

const T0 = 1_700_000_040; // 40 s into an aligned minute (1_700_000_000 is 20 s past one)
const MIN0 = Math.floor(T0 / 60) * 60;

const v4tcp = (src: string, dst: string, sport: number, dport: number, flags: number, payload = 0): Buffer =>
  ether(0x0800, ipv4(6, tcp({ sport, dport, flags }, Buffer.alloc(payload)), { src, dst }));

t.test('AWS tcp-flags: FIN, SYN, RST, and ACK only within SYN-ACK', async (t) => {
  t.equal(awsTcpFlags(SYN), 2);
  t.equal(awsTcpFlags(SYN | ACK), 18);
  t.equal(awsTcpFlags(ACK), 0, 'ACK alone is not reported');
  t.equal(awsTcpFlags(PSH | ACK), 0, 'PSH is not reported');
  t.equal(awsTcpFlags(FIN | ACK), 1);
  t.equal(awsTcpFlags(RST | ACK), 4);
  t.equal(awsTcpFlags(SYN | ECE), 2, 'SYN+ECE reports SYN');
  t.equal(awsTcpFlags(SYN | ACK | ECE), 18);
});

t.test('a TCP connection: two directions, flags OR-ed as in AWS examples, times, IP bytes', async (t) => {
  const { table, sealed, feed } = setup();
  const c = '52.213.180.42';
  const s = '10.0.0.62';
  feed(v4tcp(c, s, 43638, 5001, SYN), T0);
  feed(v4tcp(s, c, 5001, 43638, SYN | ACK), T0);
  feed(v4tcp(c, s, 43638, 5001, ACK), T0 + 1);
  feed(v4tcp(c, s, 43638, 5001, PSH | ACK, 100), T0 + 2);
  feed(v4tcp(s, c, 5001, 43638, ACK), T0 + 2);
  feed(v4tcp(c, s, 43638, 5001, FIN | ACK), T0 + 5);
  feed(v4tcp(s, c, 5001, 43638, FIN | ACK), T0 + 6);
  t.equal(table.flows, 2);
  t.equal(sealed.length, 0, 'nothing sealed inside the interval');
  table.flush(T0 + 10);
  t.equal(sealed.length, 1);
  const [up, down] = flows(sealed[0]!);
  // The AWS example: "3 for SYN and FIN" from the client, "19 for SYN-ACK and FIN" from the server.
  t.match(up, { src: c, dst: s, sport: 43638, dport: 5001, proto: 6, type: 'IPv4', packets: 4, bytes: 40 * 4 + 100, start: T0, end: T0 + 5, flags: 3 });
  t.equal(up!.raw, SYN | ACK | PSH | FIN, 'raw flags keep everything seen');
  t.match(down, { src: s, dst: c, sport: 5001, dport: 43638, packets: 3, bytes: 120, start: T0, end: T0 + 6, flags: 19 });
});

t.test('ports 0 for ICMP, ICMPv6 and other protocols; ports of SCTP; UDP; IPv6', async (t) => {
  const { table, sealed, feed } = setup();
  feed(ether(0x0800, ipv4(1, icmp(8, 0, 1, Buffer.alloc(56)), { src: '203.0.113.12', dst: '172.31.16.139' })), T0);
  feed(ether(0x86dd, ipv6(58, icmpv6(128, 0, Buffer.alloc(60)), { src: '2001:db8::1', dst: '2001:db8::2' })), T0);
  feed(ether(0x0800, ipv4(47, Buffer.alloc(24), { src: '10.0.0.1', dst: '10.0.0.2' })), T0);
  const sctp = Buffer.alloc(12);
  sctp.writeUInt16BE(2905, 0);
  sctp.writeUInt16BE(36412, 2);
  feed(ether(0x0800, ipv4(132, sctp, { src: '10.0.0.1', dst: '10.0.0.2' })), T0);
  feed(ether(0x86dd, ipv6(17, udp(5353, 53, Buffer.alloc(30)), { src: 'fe80::1', dst: 'ff02::fb' })), T0);
  feed(ether(0x86dd, ipv6(6, tcp({ sport: 34892, dport: 22, flags: SYN }), { src: '2001:db8:1234:a100:8d6e:3477:df66:f105', dst: '2001:db8:1234:a102:3304:8879:34cf:4071' })), T0);
  table.flush(T0 + 1);
  const f = flows(sealed[0]!);
  t.match(f[0], { proto: 1, sport: 0, dport: 0, bytes: 84, type: 'IPv4', flags: 0 });
  t.match(f[1], { proto: 58, sport: 0, dport: 0, bytes: 104, type: 'IPv6', src: '2001:db8::1' });
  t.match(f[2], { proto: 47, sport: 0, dport: 0, bytes: 44 });
  t.match(f[3], { proto: 132, sport: 2905, dport: 36412 });
  t.match(f[4], { proto: 17, sport: 5353, dport: 53, bytes: 78, src: 'fe80::1', dst: 'ff02::fb', flags: 0 });
  t.match(f[5], { proto: 6, sport: 34892, dport: 22, flags: 2, src: '2001:db8:1234:a100:8d6e:3477:df66:f105' });
});

t.test('fragments: the first carries the ports, the others count under ports 0', async (t) => {
  const { table, sealed, feed } = setup();
  const payload = udp(4444, 53, Buffer.alloc(2000));
  const first = payload.subarray(0, 1480);
  const second = payload.subarray(1480);
  feed(ether(0x0800, ipv4(17, first, { src: '10.0.0.1', dst: '10.0.0.2', mf: true, id: 7 })), T0);
  feed(ether(0x0800, ipv4(17, second, { src: '10.0.0.1', dst: '10.0.0.2', fragOffset: 1480, id: 7 })), T0);
  // IPv6: fragment header; the second fragment has no transport header.
  const p6 = udp(4444, 53, Buffer.alloc(100));
  feed(ether(0x86dd, ipv6(44, Buffer.concat([fragment(17, 0, true, 9), p6.subarray(0, 64)]))), T0);
  feed(ether(0x86dd, ipv6(44, Buffer.concat([fragment(17, 64, false, 9), p6.subarray(64)]))), T0);
  table.flush(T0 + 1);
  const f = flows(sealed[0]!);
  t.equal(f.length, 4);
  t.match(f[0], { proto: 17, sport: 4444, dport: 53, bytes: 1500 });
  t.match(f[1], { proto: 17, sport: 0, dport: 0, bytes: 20 + 2008 - 1480 });
  t.match(f[2], { proto: 17, sport: 4444, dport: 53, type: 'IPv6', bytes: 40 + 8 + 64 });
  t.match(f[3], { proto: 17, sport: 0, dport: 0, type: 'IPv6', bytes: 40 + 8 + 108 - 64 });
});

t.test('ports and flags are read when their bytes are there, even from a malformed header', async (t) => {
  const { table, sealed, feed } = setup();
  // Data offset 3 (below the minimum): the decoder refuses the header, the ports and flags are there.
  feed(ether(0x0800, ipv4(6, tcp({ sport: 7, dport: 9, flags: SYN, dataOffset: 3 }))), T0);
  // A TCP header cut after 6 bytes by the IP length: ports, no flags.
  feed(ether(0x0800, ipv4(6, tcp({ sport: 7, dport: 10, flags: SYN }).subarray(0, 6))), T0);
  // A UDP header of 4 bytes.
  feed(ether(0x0800, ipv4(17, udp(53, 53, Buffer.alloc(0)).subarray(0, 4))), T0);
  // 3 bytes: no ports.
  feed(ether(0x0800, ipv4(17, Buffer.from([0, 53, 0]))), T0);
  table.flush(T0 + 1);
  t.same(
    flows(sealed[0]!).map((f) => [f.proto, f.sport, f.dport, f.flags, f.bytes]),
    [
      [6, 7, 9, 2, 40],
      [6, 7, 10, 0, 26],
      [17, 53, 53, 0, 24],
      [17, 0, 0, 0, 23],
    ],
  );
});

t.test('truncated frames count the length their IP header gives; non-IP frames are not flows', async (t) => {
  const { table, sealed, feed } = setup();
  const full = v4tcp('10.0.0.1', '10.0.0.2', 1000, 80, ACK, 1400);
  feed(full.subarray(0, 64), T0);
  feed(ether(0x0806, arp(1, '02:00:00:00:00:01', '10.0.0.1', '00:00:00:00:00:00', '10.0.0.2')), T0);
  feed(ether(0x88cc, Buffer.alloc(40)), T0);
  // Version 5 in an IPv4 EtherType: the IP header does not parse.
  feed(ether(0x0800, ipv4(6, tcp(), { version: 5 })), T0);
  table.flush(T0 + 1);
  const f = flows(sealed[0]!);
  t.equal(f.length, 1);
  t.match(f[0], { packets: 1, bytes: 1440, sport: 1000, dport: 80 });
  t.equal(table.notIp, 3);
  t.equal(flows(sealed[0]!).length, 1);
});

t.test('IPv4 and IPv6 keys never merge; same addresses in different directions are two flows', async (t) => {
  const { table, sealed, feed } = setup();
  // 192.0.2.1 is c000:0201: the first word of the IPv6 address below.
  feed(ether(0x0800, ipv4(17, udp(1, 2, Buffer.alloc(0)), { src: '192.0.2.1', dst: '192.0.2.2' })), T0);
  feed(ether(0x86dd, ipv6(17, udp(1, 2, Buffer.alloc(0)), { src: 'c000:201::', dst: 'c000:202::' })), T0);
  feed(ether(0x0800, ipv4(17, udp(2, 1, Buffer.alloc(0)), { src: '192.0.2.2', dst: '192.0.2.1' })), T0);
  feed(ether(0x0800, ipv4(17, udp(1, 2, Buffer.alloc(0)), { src: '192.0.2.1', dst: '192.0.2.2' })), T0);
  table.flush(T0 + 1);
  const f = flows(sealed[0]!);
  t.same(
    f.map((x) => [x.src, x.dst, x.packets]),
    [
      ['192.0.2.1', '192.0.2.2', 2],
      ['c000:201::', 'c000:202::', 1],
      ['192.0.2.2', '192.0.2.1', 1],
    ],
  );
});

t.test('interval boundaries follow packet time, aligned to the interval', async (t) => {
  const { table, sealed, feed } = setup({ interval: 60 });
  const f = v4tcp('10.0.0.1', '10.0.0.2', 1000, 80, ACK);
  feed(f, MIN0 + 59);
  t.same(table.openInterval, { start: MIN0, end: MIN0 + 60 });
  feed(f, MIN0 + 60);
  t.equal(sealed.length, 1, 'the first packet at the boundary seals the interval before');
  t.match(sealed[0], { start: MIN0, end: MIN0 + 60, closedAt: MIN0 + 60, partial: false, count: 1 });
  t.match(flows(sealed[0]!)[0], { packets: 1, start: MIN0 + 59, end: MIN0 + 59 });
  feed(f, MIN0 + 119);
  t.equal(sealed.length, 1);
  feed(f, MIN0 + 600);
  t.equal(sealed.length, 2, 'a gap: the open interval is sealed, the packet opens its own');
  t.match(sealed[1], { start: MIN0 + 60, count: 1 });
  t.match(flows(sealed[1]!)[0], { packets: 2, start: MIN0 + 60, end: MIN0 + 119 });
  t.same(table.openInterval, { start: MIN0 + 600, end: MIN0 + 660 });
  t.equal(table.intervals, 2);
});

t.test('late packets and clock steps', async (t) => {
  const { table, sealed, feed } = setup({ interval: 60 });
  const f = v4tcp('10.0.0.1', '10.0.0.2', 1000, 80, ACK);
  feed(f, MIN0 + 65);
  feed(f, MIN0 + 30);
  t.equal(table.latePackets, 1, 'within an interval before: late');
  t.equal(sealed.length, 0);
  feed(f, MIN0 + 70);
  // A step back of a day: the open interval is sealed and the packet's own interval opened.
  feed(f, MIN0 - 86_400 + 1);
  t.equal(table.clockSteps, 1);
  t.equal(sealed.length, 1);
  t.match(flows(sealed[0]!)[0], { packets: 3, start: MIN0 + 60, end: MIN0 + 70 }, 'the late packet counted at the interval start');
  t.same(table.openInterval, { start: MIN0 - 86_400, end: MIN0 - 86_400 + 60 });
  // And forward by a day: no NODATA for the day in between, just the next interval.
  feed(f, MIN0 + 2);
  t.equal(sealed.length, 2);
  t.match(sealed[1], { start: MIN0 - 86_400, count: 1 });
  t.equal(table.clockSteps, 1, 'forward jumps are gaps, not steps');
  table.flush(MIN0 + 3);
  t.match(sealed[2], { start: MIN0, closedAt: MIN0 + 3, partial: true, count: 1 });
  const total = sealed.reduce((n, iv) => n + flows(iv).reduce((m, x) => m + x.packets, 0), 0);
  t.equal(total, 5, 'every packet counted exactly once');
});

t.test('tick seals quiet intervals (NODATA material) after the grace and opens the current one', async (t) => {
  const { table, sealed } = setup({ interval: 60, grace: 2 });
  table.tick(MIN0 + 10.5);
  t.same(table.openInterval, { start: MIN0, end: MIN0 + 60 });
  table.tick(MIN0 + 61);
  t.equal(sealed.length, 0, 'within the grace');
  table.tick(MIN0 + 62);
  t.equal(sealed.length, 1);
  t.match(sealed[0], { start: MIN0, end: MIN0 + 60, count: 0, skippedPackets: 0, droppedPackets: 0, partial: false });
  t.same(table.openInterval, { start: MIN0 + 60, end: MIN0 + 120 });
  // A wall clock stepped back by a day.
  table.tick(MIN0 - 86_400);
  t.equal(sealed.length, 2);
  t.equal(table.clockSteps, 1);
  t.same(table.openInterval, { start: MIN0 - 86_400, end: MIN0 - 86_400 + 60 });
  table.flush(MIN0 - 86_400 + 30);
  t.match(sealed[2], { partial: true, closedAt: MIN0 - 86_400 + 30 });
  t.equal(table.openInterval, null);
  table.flush(MIN0);
  t.equal(sealed.length, 3, 'nothing open: flush does nothing');
});

t.test('stop within the grace: the ended interval sealed whole, the current one partial up to now', async (t) => {
  const { table, sealed, feed } = setup({ interval: 60, grace: 2 });
  feed(v4tcp('10.0.0.1', '10.0.0.2', 1, 2, ACK), MIN0 + 5);
  table.tick(MIN0 + 61);
  t.equal(sealed.length, 0, 'the grace is not over: no tick has sealed it');
  table.stop(MIN0 + 61);
  t.equal(sealed.length, 2);
  t.match(sealed[0], { start: MIN0, end: MIN0 + 60, closedAt: MIN0 + 60, partial: false, count: 1 });
  t.match(sealed[1], { start: MIN0 + 60, end: MIN0 + 120, closedAt: MIN0 + 61, partial: true, count: 0 }, 'the second since the boundary: NODATA material');
  t.equal(table.openInterval, null);
  // A reload's flush at the same moment seals only the open interval.
  const r = setup({ interval: 60, grace: 2 });
  r.table.tick(MIN0 + 1);
  r.table.flush(MIN0 + 61);
  t.equal(r.sealed.length, 1);
  t.match(r.sealed[0], { start: MIN0, closedAt: MIN0 + 60, partial: false });
  // Stopping right on the boundary: nothing of the next interval has passed.
  const b = setup({ interval: 60, grace: 2 });
  b.table.tick(MIN0 + 1);
  b.table.stop(MIN0 + 60);
  t.equal(b.sealed.length, 1);
  t.match(b.sealed[0], { start: MIN0, closedAt: MIN0 + 60, partial: false });
  // Offline (the packets' time is the clock): the open interval whole, nothing after it.
  const c = setup({ interval: 60 });
  c.feed(v4tcp('10.0.0.1', '10.0.0.2', 1, 2, ACK), MIN0 + 5);
  c.table.stop(Infinity);
  t.equal(c.sealed.length, 1);
  t.match(c.sealed[0], { start: MIN0, closedAt: MIN0 + 60, partial: false, count: 1 });
});

t.test('session drops between two seals mark the interval (SKIPDATA material)', async (t) => {
  const drops = new Float64Array(8);
  drops[5] = 3; // before the table existed: not this interval's
  const { table, sealed, feed } = setup({ drops });
  feed(v4tcp('10.0.0.1', '10.0.0.2', 1, 2, ACK), T0);
  drops[5]! += 2;
  drops[6]! += 1;
  table.flush(T0 + 1);
  t.equal(sealed[0]!.droppedPackets, 3);
  feed(v4tcp('10.0.0.1', '10.0.0.2', 1, 2, ACK), T0 + 60);
  table.flush(T0 + 61);
  t.equal(sealed[1]!.droppedPackets, 0);
});

t.test('budget: a full table counts the packets of new flows and keeps counting known ones', async (t) => {
  const budget = new FlowBudget(3);
  const sealedA: FlowInterval[] = [];
  const sealedB: FlowInterval[] = [];
  const a = new FlowTable({ intervalSec: 60, budget, sealed: (iv) => sealedA.push(iv) });
  const b = new FlowTable({ intervalSec: 60, budget, sealed: (iv) => sealedB.push(iv) });
  const add = (tb: FlowTable, sport: number): void => {
    const f = v4tcp('10.0.0.1', '10.0.0.2', sport, 80, ACK);
    d.decode(f, 0, f.length);
    addAt(tb, d, T0);
  };
  add(a, 1);
  add(a, 2);
  add(b, 1);
  t.equal(budget.used, 3);
  add(b, 2);
  add(a, 3);
  add(a, 3);
  add(a, 1);
  t.equal(a.fullPackets, 2);
  t.equal(b.fullPackets, 1);
  a.flush(T0 + 1);
  b.flush(T0 + 1);
  t.match(sealedA[0], { count: 2, skippedPackets: 2 });
  t.match(sealedB[0], { count: 1, skippedPackets: 1 });
  t.same(flows(sealedA[0]!).map((f) => f.packets), [2, 1]);
  t.equal(budget.used, 3, 'sealed flows still hold the budget until written');
  add(b, 5);
  t.equal(b.fullPackets, 2, 'still full while nothing was recycled');
  a.recycle(sealedA[0]!);
  t.equal(budget.used, 1);
  add(b, 6);
  add(b, 7);
  t.equal(budget.used, 3);
  b.flush(T0 + 2);
  t.match(sealedB[1], { count: 2, skippedPackets: 1, start: Math.floor(T0 / 60) * 60 });
});

t.test('growth: many flows in one interval, exact against a Map; recycled storage is reused', async (t) => {
  const budget = new FlowBudget(100_000);
  const sealed: FlowInterval[] = [];
  const table = new FlowTable({ intervalSec: 60, budget, sealed: (iv) => sealed.push(iv), seed: 1 });
  const want = new Map<string, number>();
  let x = 0x12345678;
  const rnd = (): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
  const frames: Buffer[] = [];
  for (let i = 0; i < 300; i++) {
    const v6 = i % 3 === 0;
    const src = v6 ? `2001:db8::${(rnd() % 50).toString(16)}` : `10.0.${rnd() % 4}.${rnd() % 50}`;
    const dst = v6 ? '2001:db8::ffff' : '10.9.9.9';
    const sport = 1000 + (rnd() % 40);
    const l4 = udp(sport, 53, Buffer.alloc(i % 7));
    frames.push(v6 ? ether(0x86dd, ipv6(17, l4, { src, dst })) : ether(0x0800, ipv4(17, l4, { src, dst })));
  }
  for (let n = 0; n < 20_000; n++) {
    const f = frames[rnd() % frames.length]!;
    d.decode(f, 0, f.length);
    addAt(table, d, T0);
    const k = `${d.ipVersion}|${d.buf.subarray(d.srcAddrOff, d.srcAddrOff + d.addrLen).toString('hex')}|${d.srcPort}`;
    want.set(k, (want.get(k) ?? 0) + 1);
  }
  table.flush(T0 + 1);
  const iv = sealed[0]!;
  t.ok(iv.slots.capacity > MIN_CAPACITY, `grew to ${iv.slots.capacity} slots`);
  t.equal(iv.count, want.size);
  const got = new Map<string, number>();
  for (let s = 0; s < iv.count; s++) {
    const addr = iv.slots.srcAddr(s);
    const hex = iv.slots.ipVersion(s) === 4 ? Buffer.from(addr.split('.').map(Number)).toString('hex') : hexOf6(addr);
    got.set(`${iv.slots.ipVersion(s)}|${hex}|${iv.slots.srcPort(s)}`, iv.slots.packets(s));
  }
  t.same(got, want);
  t.equal(budget.used, want.size);
  table.recycle(iv);
  t.equal(budget.used, 0);
});

t.test("storage: a small interval's slots are reused, a poorly used big one is let go", async (t) => {
  const budget = new FlowBudget(10_000);
  const sealed: FlowInterval[] = [];
  const table = new FlowTable({ intervalSec: 1, budget, sealed: (iv) => sealed.push(iv) });
  const burst = (sec: number, n: number): void => {
    for (let i = 0; i < n; i++) {
      const f = v4tcp('10.0.0.1', '10.0.0.2', 1000 + i, 80, ACK);
      d.decode(f, 0, f.length);
      addAt(table, d, sec);
    }
  };
  burst(T0, 1);
  burst(T0 + 1, 1);
  table.recycle(sealed[0]!);
  burst(T0 + 2, 1);
  t.equal(sealed.length, 2);
  table.recycle(sealed[1]!);
  burst(T0 + 3, 1);
  t.equal(sealed[2]!.slots, sealed[0]!.slots, "the first interval's storage came back");
  // A burst grows the storage to 4096 slots, well used: it is kept, over a small spare.
  burst(T0 + 4, 3000);
  // The same 3000 TCP flows (flags set) again: found after six doublings, none added twice.
  burst(T0 + 4, 3000);
  t.equal(table.flows, 3000);
  burst(T0 + 5, 1);
  const big = sealed[4]!.slots;
  t.equal(big.capacity, 4096);
  t.equal(big.packets(2999), 2);
  t.equal(big.rawTcpFlags(2999), ACK);
  for (const iv of sealed.slice(2, 5)) table.recycle(iv);
  t.equal(budget.used, 1, 'only the open interval holds a flow');
  burst(T0 + 6, 1);
  burst(T0 + 7, 1);
  t.equal(sealed[6]!.slots, big, 'the well-used big storage came back');
  // Used by one flow this time: let go.
  table.recycle(sealed[5]!);
  table.recycle(sealed[6]!);
  burst(T0 + 8, 1);
  burst(T0 + 9, 1);
  burst(T0 + 10, 1);
  for (const iv of sealed.slice(7)) t.equal(iv.slots.capacity, MIN_CAPACITY);
});

function hexOf6(text: string): string {
  const [head, tail] = text.split('::');
  const h = head ? head.split(':') : [];
  const tl = tail ? tail.split(':') : [];
  const words = [...h, ...new Array<string>(8 - h.length - tl.length).fill('0'), ...tl];
  return words.map((w) => w.padStart(4, '0')).join('');
}

t.test('bad options are refused with a code', async (t) => {
  t.throws(() => new FlowBudget(0), { code: 'ERR_MIRRORCAP_FLOWS' });
  t.throws(() => new FlowTable({ intervalSec: 0.5, budget: new FlowBudget(), sealed: () => undefined }), { code: 'ERR_MIRRORCAP_FLOWS' });
});

t.test('every fixture frame cut at every length, and random bytes: counted or not IP, never a throw', async (t) => {
  const { readCapture } = await import('../../src/pcap/reader.js');
  const { fileURLToPath } = await import('node:url');
  const { dirname, join } = await import('node:path');
  const root = join(dirname(fileURLToPath(import.meta.url)), '../../..');
  const frames: Buffer[] = [];
  for (const f of ['ethernet-vlan.pcap', 'ipv4.pcap', 'ipv6.pcap', 'malformed.pcap', 'truncated.pcap']) {
    await readCapture(join(root, 'pcaps', f), (buf, off, len) => frames.push(Buffer.from(buf.subarray(off, off + len))));
  }
  t.ok(frames.length > 50, `${frames.length} fixture frames`);
  const { table, sealed } = setup({ max: 1_000_000 });
  let fed = 0;
  let ip = 0;
  // Each cut ends its buffer (after 7 bytes of something else), so a read past the frame would throw.
  for (const f of frames) {
    for (let len = 0; len <= f.length; len++) {
      const buf = Buffer.concat([Buffer.alloc(7, 0xa5), f.subarray(0, len)]);
      d.decode(buf, 7, len);
      if (d.addrLen !== 0) ip++;
      addAt(table, d, T0);
      fed++;
    }
  }
  let x = 0x9e3779b9;
  for (let n = 0; n < 20_000; n++) {
    const len = 14 + (n % 120);
    const buf = Buffer.alloc(len);
    for (let k = 0; k < len; k++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      buf[k] = x & 0xff;
    }
    // Half of them claim IPv4 or IPv6, so the IP paths see garbage too.
    if (n % 2 === 0) buf.writeUInt16BE(n % 4 === 0 ? 0x0800 : 0x86dd, 12);
    if (n % 4 === 0) buf[14] = 0x45;
    if (n % 4 === 2) buf[14] = 0x60;
    d.decode(buf, 0, len);
    if (d.addrLen !== 0) ip++;
    addAt(table, d, T0);
    fed++;
  }
  table.flush(T0 + 1);
  const counted = flows(sealed[0]!).reduce((n, f) => n + f.packets, 0);
  t.equal(counted + table.notIp, fed, 'every frame is a packet of some flow or not IP');
  t.equal(counted, ip);
});
