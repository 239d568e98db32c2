/**
 * --dedup through the real pipeline: a stream of distinct packets where some are sent again as
 * the other end's mirror would send them (TTL / hop limit lowered, IPv4 checksum recomputed,
 * other MAC addresses), some within the window and some after it; the test counts its own
 * duplicates as it sends them, and the session must drop exactly those and write the rest.
 */
import t from 'tap';
import { resolveConfig, type SessionConfig } from '../../src/config.js';
import { newDropCounters } from '../../src/drops.js';
import { Batch } from '../../src/source/batch.js';
import { Pipeline } from '../../src/session/pipeline.js';
import { Router } from '../../src/session/router.js';
import { Session, type OutputStats, type SessionOutput } from '../../src/session/session.js';
import { arp, ether, ipv4, ipv6, tcp, udp, vxlan } from '../lib/frames.js';
import { Random } from '../lib/random.js';

class KeepOutput implements SessionOutput {
  frames: Buffer[] = [];
  readonly saturated = false;
  append(src: Buffer, off: number, len: number): boolean {
    this.frames.push(Buffer.from(src.subarray(off, off + len)));
    return true;
  }
  stats(): OutputStats {
    return { writtenPackets: this.frames.length, writtenBytes: 0, filesClosed: 0, filesLeftPart: 0, heldBytes: 0, current: null };
  }
  configure(): void {}
}

function rig(dedup: string): { pipeline: Pipeline; sessions: Session[]; out: KeepOutput } {
  const config = resolveConfig(new Map([['dedup', { value: dedup, origin: '--dedup' }]]), {});
  const out = new KeepOutput();
  const sessions: Session[] = [];
  const router = new Router({ sessionKey: 'vni', strict: false, maxSessions: 4, configured: [], defaults: config }, (sc: SessionConfig) => {
    const s = new Session(sc, newDropCounters(), out);
    sessions.push(s);
    return s;
  });
  return { pipeline: new Pipeline(router, null), sessions, out };
}

/** Sends one VXLAN datagram (VNI 9) received at `ns` nanoseconds. */
function send(p: Pipeline, frame: Buffer, ns: number): void {
  const d = vxlan(9, frame);
  const b = new Batch(1, d);
  b.count = 1;
  b.lengths[0] = d.length;
  b.wireLengths[0] = d.length;
  b.tsSec[0] = 1_700_000_000 + Math.floor(ns / 1e9);
  b.tsNsec[0] = ns % 1e9;
  p.process(b);
}

/** A packet as the other end's mirror sees it: one hop later, other MACs. */
function otherCopy(rng: Random, kind: 'v4' | 'v6', l4: Buffer, a: string, b: string, id: number, ttl: number): Buffer {
  return kind === 'v4'
    ? ether(0x0800, ipv4(6, l4, { src: a, dst: b, id, ttl: ttl - 1 - rng.below(3) }), { src: '02:bb:00:00:00:01', dst: '02:bb:00:00:00:02' })
    : ether(0x86dd, ipv6(17, l4, { src: a, dst: b, hopLimit: ttl - 1 - rng.below(3) }), { src: '02:bb:00:00:00:01', dst: '02:bb:00:00:00:02' });
}

t.test('dedup at 2ms: exactly the copies sent within the window are dropped; late copies, retransmissions and ARP are written', async (t) => {
  const rng = new Random(0xd0d0);
  const { pipeline, sessions, out } = rig('2ms');
  let ns = 0;
  let originals = 0;
  let copiesInWindow = 0;
  let copiesLate = 0;
  let retransmissions = 0;
  const pending: Array<{ frame: Buffer; due: number }> = [];
  const flush = (until: number): void => {
    pending.sort((x, y) => x.due - y.due);
    while (pending.length > 0 && pending[0]!.due <= until) {
      const c = pending.shift()!;
      send(pipeline, c.frame, c.due);
    }
  };
  for (let i = 0; i < 4000; i++) {
    ns += 10_000 + rng.below(20_000); // 10-30 µs apart
    flush(ns);
    const kind = rng.below(4) === 0 ? 'v6' : 'v4';
    const a = kind === 'v4' ? `10.0.${rng.below(4)}.${1 + rng.below(200)}` : `fd00::${(1 + rng.below(200)).toString(16)}`;
    const b = kind === 'v4' ? '10.1.0.1' : 'fd00::1:1';
    const body = rng.bytes(rng.below(200));
    const l4 = kind === 'v4' ? tcp({ sport: 1024 + rng.below(60000), dport: 443, seq: rng.next(), flags: 0x18 }, body) : udp(1024 + rng.below(60000), 53, body);
    const id = rng.below(65536);
    const ttl = 64;
    const first = kind === 'v4' ? ether(0x0800, ipv4(6, l4, { src: a, dst: b, id, ttl })) : ether(0x86dd, ipv6(17, l4, { src: a, dst: b, hopLimit: ttl }));
    send(pipeline, first, ns);
    originals++;
    const r = rng.below(10);
    if (r < 5) {
      // The other end's copy, 0-1.5 ms later: a duplicate.
      pending.push({ frame: otherCopy(rng, kind, l4, a, b, id, ttl), due: ns + rng.below(1_500_000) });
      copiesInWindow++;
    } else if (r === 5) {
      // The other end's copy, 3-5 ms later: outside the window, written.
      pending.push({ frame: otherCopy(rng, kind, l4, a, b, id, ttl), due: ns + 3_000_000 + rng.below(2_000_000) });
      copiesLate++;
    } else if (r === 6) {
      // Two copies within the window: the second is a third identical packet, written (a retransmission).
      pending.push({ frame: otherCopy(rng, kind, l4, a, b, id, ttl), due: ns + 100_000 });
      pending.push({ frame: first, due: ns + 200_000 });
      copiesInWindow++;
      retransmissions++;
    }
  }
  flush(Infinity);
  // ARP seen twice: not IP, never a duplicate.
  const who = ether(0x0806, arp(1, '02:00:00:00:00:01', '10.0.0.1', '00:00:00:00:00:00', '10.0.0.2'));
  send(pipeline, who, ns + 1);
  send(pipeline, who, ns + 2);
  t.equal(sessions.length, 1);
  const snap = sessions[0]!;
  t.equal(snap.dedup!.deduplicated, copiesInWindow, `${copiesInWindow} duplicates sent within the window, all dropped`);
  t.equal(out.frames.length, originals + copiesLate + retransmissions + 2, `written: ${originals} originals, ${copiesLate} late copies, ${retransmissions} third copies, 2 ARP`);
  t.ok(copiesInWindow > 1500 && copiesLate > 300, 'both cases exercised');
});

t.test('dedup off: every copy is written; a reload turns it on, and off again keeping the count', async (t) => {
  const { pipeline, sessions, out } = rig('0');
  const f = ether(0x0800, ipv4(17, udp(1, 2, Buffer.from('x')), { src: '10.0.0.1', dst: '10.0.0.2', ttl: 9 }));
  const g = ether(0x0800, ipv4(17, udp(1, 2, Buffer.from('x')), { src: '10.0.0.1', dst: '10.0.0.2', ttl: 8 }));
  send(pipeline, f, 0);
  send(pipeline, g, 1000);
  t.equal(out.frames.length, 2);
  t.equal(sessions[0]!.dedup, null);
  const on = resolveConfig(new Map([['dedup', { value: '1ms', origin: '--dedup' }]]), {});
  sessions[0]!.reconfigure({ ...sessions[0]!.config, dedup: on.dedup });
  send(pipeline, f, 2_000_000);
  send(pipeline, g, 2_500_000);
  send(pipeline, f, 9_000_000);
  t.equal(out.frames.length, 4, 'the copy within 1 ms dropped, the one 7 ms later written');
  t.equal(sessions[0]!.snapshot().deduplicated, 1);
  sessions[0]!.reconfigure({ ...sessions[0]!.config, dedup: 0 });
  send(pipeline, f, 10_000_000);
  t.equal(out.frames.length, 5, 'off again: the copy is written');
  t.equal(sessions[0]!.snapshot().deduplicated, 1, 'the count survives turning it off');
});
