/**
 * GENEVE through the real pipeline and router: VXLAN inside GENEVE keyed by the mirrored ENI
 * (the inner source) under vni+src, the GWLB ids kept by the session that a GENEVE packet made,
 * and fuzzed datagrams that are counted, never crash, and never hand the writer a byte outside
 * the datagram they came in.
 */
import t from 'tap';
import { resolveConfig, type SessionConfig } from '../../src/config.js';
import { GENEVE_PROTO_ETHERNET, GENEVE_PROTO_IPV4, writeGeneveHeader } from '../../src/decode/geneve.js';
import { writeVxlanHeader } from '../../src/decode/vxlan.js';
import { DROP_REASONS, newDropCounters } from '../../src/drops.js';
import { Batch } from '../../src/source/batch.js';
import { Pipeline } from '../../src/session/pipeline.js';
import { Router } from '../../src/session/router.js';
import { Session, type GwlbIds, type SessionOutput } from '../../src/session/session.js';
import { Random } from '../lib/random.js';

/** An output that keeps nothing but checks every frame lies inside the datagram being processed. */
class BoundsOutput implements SessionOutput {
  frames: string[] = [];
  outside = 0;
  window = { start: 0, end: 0 };
  saturated = false;
  append(src: Buffer, off: number, len: number, origLen: number): boolean {
    if (off < this.window.start || off + len > this.window.end || origLen < len) this.outside++;
    this.frames.push(src.subarray(off, off + len).toString('hex'));
    return true;
  }
  stats(): never {
    throw new Error('not used');
  }
  configure(): void {}
}

function setup(flags: string[] = []): { pipeline: Pipeline; router: Router; outputs: Map<string, BoundsOutput>; created: Array<{ name: string; gwlb: GwlbIds | null }>; window: { start: number; end: number } } {
  const map = new Map<string, { value: string; origin: string }>();
  for (let i = 0; i < flags.length; i += 2) map.set(flags[i]!, { value: flags[i + 1]!, origin: `--${flags[i]}` });
  const config = resolveConfig(map, {});
  const outputs = new Map<string, BoundsOutput>();
  const created: Array<{ name: string; gwlb: GwlbIds | null }> = [];
  const window = { start: 0, end: 0 };
  const router = new Router({ sessionKey: config.sessionKey, strict: config.strict, maxSessions: 64, configured: config.sessions, defaults: config }, (sc: SessionConfig, gwlb) => {
    const out = new BoundsOutput();
    out.window = window;
    outputs.set(sc.name, out);
    created.push({ name: sc.name, gwlb });
    return new Session(sc, newDropCounters(), out, gwlb);
  });
  return { pipeline: new Pipeline(router, null), router, outputs, created, window };
}

/** One datagram per batch, from 10.9.9.9, at offset 3 of a slab with bytes around it. */
function batchOf(datagram: Buffer, window: { start: number; end: number }, wire = datagram.length): Batch {
  const slab = Buffer.concat([Buffer.alloc(3, 0xee), datagram, Buffer.alloc(64, 0xee)]);
  const b = new Batch(1, slab);
  b.count = 1;
  b.offsets[0] = 3;
  b.lengths[0] = datagram.length;
  b.wireLengths[0] = wire;
  b.srcAddr.set([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 9, 9, 9]);
  window.start = 3;
  window.end = 3 + datagram.length;
  return b;
}

const FRAME = Buffer.from('ffffffffffff0200000000010800' + '4500001c0001000040110000' + '0a000005' + '0a000006' + '1111222200080000', 'hex');
const GWLB = { endpointId: '0123456789abcdef', attachmentId: 'fedcba9876543210', flowCookie: 7 };

/** GENEVE (GWLB options) → IPv4 from `src` → UDP to 4789 → VXLAN `vni` → FRAME. */
function wrapped(vni: number, src: number[]): Buffer {
  const vx = Buffer.alloc(8 + FRAME.length);
  writeVxlanHeader(vx, 0, vni);
  FRAME.copy(vx, 8);
  const udp = Buffer.alloc(8);
  udp.writeUInt16BE(40000, 0);
  udp.writeUInt16BE(4789, 2);
  udp.writeUInt16BE(8 + vx.length, 4);
  const ip = Buffer.from('4500000000000000ff110000' + '00000000' + '0a000002', 'hex');
  ip.writeUInt16BE(20 + 8 + vx.length, 2);
  ip.set(src, 12);
  const g = Buffer.alloc(64);
  const n = writeGeneveHeader(g, 0, GENEVE_PROTO_IPV4, 0, GWLB);
  return Buffer.concat([g.subarray(0, n), ip, udp, vx]);
}

t.test('VXLAN inside GENEVE: routed by its VNI, and under vni+src by the mirrored ENI, not the GWLB', async (t) => {
  const { pipeline, outputs, created, window } = setup(['session-key', 'vni+src']);
  pipeline.processGeneve(batchOf(wrapped(77, [172, 31, 0, 5]), window));
  pipeline.processGeneve(batchOf(wrapped(77, [172, 31, 0, 6]), window));
  pipeline.processGeneve(batchOf(wrapped(77, [172, 31, 0, 5]), window));
  t.same([...outputs.keys()].sort(), ['vni-77-172.31.0.5', 'vni-77-172.31.0.6']);
  t.same(outputs.get('vni-77-172.31.0.5')!.frames, [FRAME.toString('hex'), FRAME.toString('hex')], 'the inner Ethernet frame, twice');
  t.same(created[0]!.gwlb, { endpointId: GWLB.endpointId, attachmentId: GWLB.attachmentId }, 'the session keeps the GWLB ids');
  // A plain VXLAN datagram of that VNI from the ENI itself lands in the same session.
  const direct = Buffer.alloc(8 + FRAME.length);
  writeVxlanHeader(direct, 0, 77);
  FRAME.copy(direct, 8);
  const b = batchOf(direct, window);
  b.srcAddr.set([172, 31, 0, 6], 12);
  pipeline.process(b);
  t.equal(outputs.get('vni-77-172.31.0.6')!.frames.length, 2);
});

t.test('GENEVE with Ethernet to geneve-<vni>; OAM, critical and unknown payloads counted', async (t) => {
  const eth = Buffer.alloc(8 + FRAME.length);
  writeGeneveHeader(eth, 0, GENEVE_PROTO_ETHERNET, 4242, null);
  FRAME.copy(eth, 8);
  const oam = Buffer.from(eth);
  oam[1] = 0x80;
  // One word of options: class 0, type 0x80 (critical, unknown to us), no data.
  const crit = Buffer.concat([Buffer.from('0100655800109200' + '00008000', 'hex'), FRAME]);
  const other = Buffer.from(eth);
  other.writeUInt16BE(0x88cc, 2);
  const v1 = Buffer.from(eth);
  v1[0] = 0x40;
  const s = setup();
  for (const d of [eth, oam, crit, other, v1, eth.subarray(0, 8 + 13)]) s.pipeline.processGeneve(batchOf(d, s.window));
  t.same([...s.outputs.keys()], ['geneve-4242']);
  t.equal(s.outputs.get('geneve-4242')!.frames.length, 1);
  const drops = Object.fromEntries(DROP_REASONS.map((r, i) => [r, s.pipeline.drops[i]!] as const).filter(([, n]) => n > 0));
  t.same(drops, { geneve_oam: 1, geneve_critical_option: 1, unsupported_protocol: 1, bad_geneve: 1, short: 1 });
});

t.test('fuzz: mutated GENEVE datagrams are all counted, and no frame reaches past its datagram', async (t) => {
  const rng = new Random(0x8926);
  const s = setup();
  const seeds = [wrapped(5, [10, 0, 0, 1]), (() => {
    const e = Buffer.alloc(8 + FRAME.length);
    writeGeneveHeader(e, 0, GENEVE_PROTO_ETHERNET, 9, null);
    FRAME.copy(e, 8);
    return e;
  })()];
  let written = 0;
  const N = 30_000;
  for (let i = 0; i < N; i++) {
    let d = Buffer.from(seeds[i % 2]!);
    const edits = 1 + rng.below(4);
    for (let k = 0; k < edits; k++) d[rng.below(Math.min(d.length, 80))] = rng.below(256);
    if (rng.below(4) === 0) d = d.subarray(0, rng.below(d.length + 1));
    const before = [...s.outputs.values()].reduce((a, o) => a + o.frames.length, 0);
    s.pipeline.processGeneve(batchOf(d, s.window, d.length + rng.below(3)));
    written += [...s.outputs.values()].reduce((a, o) => a + o.frames.length, 0) - before;
  }
  const dropped = s.pipeline.drops.reduce((a, n) => a + n, 0);
  t.equal(written + dropped, N, `every datagram written (${written}) or counted (${dropped})`);
  t.equal([...s.outputs.values()].reduce((a, o) => a + o.outside, 0), 0, 'no frame outside its datagram, no orig_len below the bytes kept');
  t.ok(written > 1000 && dropped > 1000, 'both outcomes exercised');
});
