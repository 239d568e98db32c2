/**
 * The outer parser's plain path (Ethernet, IPv4 without options, UDP: read at fixed offsets)
 * against what the decoder finds in the same bytes, stated here as the parser's contract (the
 * datagram is the decoder's UDP payload; fragments, non-UDP and other ports are counted).
 * Headers are mutated around every condition of the plain path (EtherType, version and header
 * length, total length, fragment bits, protocol, UDP length, the capture cut short).
 */
import t from 'tap';
import { OuterParser, SKIP_REASONS } from '../../src/source/outer.js';
import { ADDR_BYTES, Batch } from '../../src/source/batch.js';
import { Decoder } from '../../src/decode/packet.js';
import { L4_UDP, OK } from '../../src/decode/status.js';
import { LINKTYPE_ETHERNET } from '../../src/pcap/pcap.js';
import { ether, ipv4, udp, vxlan, udpFrame } from '../lib/frames.js';

const PORTS = { vxlan: [4789], geneve: 6081 };

interface Seen {
  readonly taken: boolean;
  readonly slot: readonly number[] | null;
  readonly skipped: readonly number[];
}

/** What the parser makes of one packet: its slot (offset relative to `base`) or the reason counted. */
function parse(p: OuterParser, buf: Buffer, off: number, capLen: number, origLen: number, linkType: number, base: number): Seen {
  const b = new Batch(4, buf);
  const before = [...p.skipped];
  const taken = p.add(b, buf, off, capLen, origLen, linkType, 1_790_000_000, 7);
  const slot = taken ? [b.offsets[0]! - base, b.lengths[0]!, b.wireLengths[0]!, b.geneve[0]!, b.srcPort[0]!, b.tsSec[0]!, b.tsNsec[0]!, ...b.srcAddr.subarray(0, ADDR_BYTES)] : null;
  return { taken, slot, skipped: [...p.skipped].map((n, i) => n - before[i]!) };
}

/** The contract: the decoder's reading of the frame, as the batch slot or the skip reason it means. */
function expected(buf: Buffer, off: number, capLen: number, origLen: number): Seen {
  const d = new Decoder();
  const status = d.decode(buf, off, capLen);
  const skipped = SKIP_REASONS.map(() => 0);
  const skip = (reason: (typeof SKIP_REASONS)[number]): Seen => {
    skipped[SKIP_REASONS.indexOf(reason)] = 1;
    return { taken: false, slot: null, skipped };
  };
  if (d.isFragment) return skip('fragment');
  if (d.l4 !== L4_UDP) return skip(status === OK || d.addrLen === 0 ? 'not_udp' : 'malformed');
  const port = d.dstPort;
  if (port !== 4789 && port !== 6081) return skip('other_port');
  const claimed = d.udpLength - 8;
  const wire = Math.max(d.payloadLen, d.payloadLen + origLen - capLen, claimed > 0 ? claimed : 0);
  const src = [...Buffer.alloc(10), 0xff, 0xff, ...buf.subarray(d.srcAddrOff, d.srcAddrOff + 4)];
  return { taken: true, slot: [d.payloadOff - off, d.payloadLen, wire, port === 6081 ? 1 : 0, d.srcPort, 1_790_000_000, 7, ...src], skipped };
}

t.test('plain IPv4/UDP read at fixed offsets: what the decoder finds, on headers mutated around every condition', async (t) => {
  let seed = 17;
  const next = (n: number): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) % n;
  const pick = <T>(xs: readonly T[]): T => xs[next(xs.length)]!;
  const plain = new OuterParser(PORTS);
  let plainTaken = 0;
  let cases = 0;
  for (let k = 0; k < 20_000; k++) {
    const inner = udpFrame(60 + next(1400), 1, k);
    const dport = pick([4789, 4789, 6081, 9999]);
    const frame = ether(0x0800, ipv4(17, udp(40_000 + next(1000), dport, vxlan(5, inner)), { src: `10.${next(256)}.0.${next(256)}`, dst: '10.0.0.2' }));
    const ipLen = frame.length - 14;
    switch (next(9)) {
      case 0:
        frame.writeUInt16BE(pick([0, 19, 20, 27, 28, ipLen - 1, ipLen + 1, 65535]), 16);
        break;
      case 1:
        frame[14] = pick([0x44, 0x46, 0x55, 0x65]);
        break;
      case 2:
        frame.writeUInt16BE(pick([0x2000, 0x0001, 0x4000, 0x8000, 0x1fff]), 20);
        break;
      case 3:
        frame[23] = pick([6, 1, 47, 132]);
        break;
      case 4:
        frame.writeUInt16BE(pick([0, 7, 8, 9, ipLen - 20, ipLen - 19, ipLen - 21, 65535]), 38);
        break;
      case 5:
        frame.writeUInt16BE(pick([0x8100, 0x86dd, 0x0806, 0x0801]), 12);
        break;
      default:
        break; // plain as sent
    }
    const capLen = next(4) === 0 ? pick([0, 13, 14, 33, 34, 41, 42, 43, 50, frame.length - 1]) : frame.length;
    const origLen = capLen + (next(3) === 0 ? next(100) : 0);
    // The same bytes at an offset in a larger buffer (a ring, a slab).
    const at = 64 + next(64);
    const buf = Buffer.alloc(at + frame.length + 64, 0xee);
    frame.copy(buf, at);
    const got = parse(plain, buf, at, capLen, origLen, LINKTYPE_ETHERNET, at);
    const want = expected(buf, at, capLen, origLen);
    cases++;
    if (got.taken) plainTaken++;
    if (JSON.stringify(got) !== JSON.stringify(want)) {
      t.same(got, want, `case ${k}: ${frame.subarray(12, 42).toString('hex')} capLen ${capLen} origLen ${origLen}`);
      return;
    }
  }
  t.equal(cases, 20_000, 'frames compared');
  t.ok(plainTaken > 6_000, `${plainTaken} of them datagrams to our ports`);
  t.same([...plain.skipped].map((n, i) => n > 0 || SKIP_REASONS[i] === 'unsupported_link_type'), SKIP_REASONS.map(() => true), 'every skip reason met (but the link type)');
});
