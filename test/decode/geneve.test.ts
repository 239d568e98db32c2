/**
 * The GENEVE view (RFC 8926) on fixed bytes, both ways: the header an AWS Gateway Load
 * Balancer sent (copied from the shared real capture's first packet, as tshark dumps it),
 * our writer's bytes on a 0xa5-filled buffer, and every refusal; then fuzzed headers and
 * option lists, where the view's answer must never depend on a byte past the datagram.
 */
import t from 'tap';
import {
  ERR_OPTION_LENGTH,
  Geneve,
  GENEVE_HEADER_LEN,
  GENEVE_PROTO_ETHERNET,
  GENEVE_PROTO_IPV4,
  GWLB_GENEVE_HEADER_LEN,
  writeGeneveHeader,
} from '../../src/decode/geneve.js';
import { ERR_SHORT, ERR_VERSION, OK } from '../../src/decode/status.js';
import { Random } from '../lib/random.js';

/** suricata-verify-geneve-aws-gwlb-gre-http.pcap, frame 1, bytes 0x2a..0x52 (tshark -x). */
const AWS_GWLB = Buffer.from('0800080000000000' + '0108010231e129cdc0cd8633' + '0108020200000000' + '00000000' + '010803013dc956ac', 'hex');

/** A GENEVE header with these option bytes (Opt Len from their length). */
function header(options: Buffer, flags = 0, protocol = GENEVE_PROTO_ETHERNET, version = 0): Buffer {
  const h = Buffer.alloc(GENEVE_HEADER_LEN);
  h[0] = (version << 6) | (options.length / 4);
  h[1] = flags;
  h.writeUInt16BE(protocol, 2);
  h.writeUIntBE(0x123456, 4, 3);
  return Buffer.concat([h, options]);
}

function option(cls: number, type: number, data: Buffer): Buffer {
  const o = Buffer.alloc(4);
  o.writeUInt16BE(cls, 0);
  o[2] = type;
  o[3] = data.length / 4;
  return Buffer.concat([o, data]);
}

t.test('the AWS GWLB header: version 0, IPv4 payload, VNI 0, the three Amazon options', async (t) => {
  const g = new Geneve();
  t.equal(g.reset(AWS_GWLB, 0, AWS_GWLB.length), OK);
  t.equal(g.headerLen, 40);
  t.equal(g.optionsLen, 32);
  t.equal(g.protocol, GENEVE_PROTO_IPV4);
  t.equal(g.vni, 0);
  t.notOk(g.oam);
  t.notOk(g.critical);
  t.equal(g.options, 3);
  t.equal(g.criticalUnknown, 0);
  t.ok(g.hasEndpoint && g.hasAttachment && g.hasFlowCookie);
  t.equal(g.endpointHi.toString(16) + g.endpointLo.toString(16), '31e129cdc0cd8633');
  t.same([g.attachmentHi, g.attachmentLo], [0, 0]);
  t.equal(g.flowCookie, 0x3dc956ac);
});

t.test('writeGeneveHeader writes what the GWLB sent, byte for byte, and nothing past it', async (t) => {
  const buf = Buffer.alloc(GWLB_GENEVE_HEADER_LEN + 8, 0xa5);
  const n = writeGeneveHeader(buf, 4, GENEVE_PROTO_IPV4, 0, { endpointId: '31e129cdc0cd8633', attachmentId: '0000000000000000', flowCookie: 0x3dc956ac });
  t.equal(n, AWS_GWLB.length);
  t.same(buf.subarray(4, 4 + n), AWS_GWLB);
  t.ok(buf.subarray(0, 4).every((b) => b === 0xa5) && buf.subarray(4 + n).every((b) => b === 0xa5), 'the bytes around stay untouched');
  const plain = Buffer.alloc(12, 0xa5);
  t.equal(writeGeneveHeader(plain, 0, GENEVE_PROTO_ETHERNET, 0xabcdef, null), 8);
  t.same(plain.subarray(0, 8), Buffer.from('00006558abcdef00', 'hex'));
});

t.test('flags, critical options, zero-length and the longest option lists', async (t) => {
  const g = new Geneve();
  const oam = header(Buffer.alloc(0), 0x80);
  t.equal(g.reset(oam, 0, oam.length), OK);
  t.ok(g.oam, 'O bit');
  // An unknown critical option (type bit 7), whatever the header's C bit says.
  for (const flags of [0x40, 0x00]) {
    const crit = header(option(0x0000, 0x80, Buffer.alloc(8)), flags);
    t.equal(g.reset(crit, 0, crit.length), OK);
    t.equal(g.criticalUnknown, 1, `critical unknown option counted (C bit ${flags ? 'set' : 'clear'})`);
    t.equal(g.critical, flags !== 0);
  }
  // Amazon's class with a type or length we do not know, critical: still unknown.
  const oddAws = header(Buffer.concat([option(0x0108, 0x81, Buffer.alloc(8)), option(0x0108, 0x01, Buffer.alloc(4))]));
  t.equal(g.reset(oddAws, 0, oddAws.length), OK);
  t.equal(g.criticalUnknown, 1);
  t.notOk(g.hasEndpoint, 'an endpoint option of the wrong length is not read as one');
  // 63 words of zero-length options: 63 options walked.
  const many = header(Buffer.concat(Array.from({ length: 63 }, () => option(0x0103, 0x01, Buffer.alloc(0)))));
  t.equal(g.reset(many, 0, many.length), OK);
  t.equal(g.options, 63);
  t.equal(g.headerLen, 8 + 252);
  // One option of 31 words + one of 30 words: 63 words exactly.
  const big = header(Buffer.concat([option(1, 1, Buffer.alloc(124)), option(1, 2, Buffer.alloc(120))]));
  t.equal(g.reset(big, 0, big.length), OK);
  t.equal(g.options, 2);
  // Nothing is carried to the next packet.
  t.equal(g.reset(AWS_GWLB, 0, AWS_GWLB.length), OK);
  const none = header(Buffer.alloc(0));
  t.equal(g.reset(none, 0, none.length), OK);
  t.notOk(g.hasEndpoint || g.hasAttachment || g.hasFlowCookie, 'GWLB fields of the last packet are forgotten');
  t.equal(g.options, 0);
});

t.test('refusals: short header, other versions, options past the datagram or past Opt Len', async (t) => {
  const g = new Geneve();
  t.equal(g.reset(AWS_GWLB, 0, 7), ERR_SHORT);
  t.same([g.required, g.available], [8, 7]);
  t.equal(g.reset(AWS_GWLB, 0, 39), ERR_SHORT, 'options cut by the datagram end');
  t.same([g.required, g.available], [40, 39]);
  for (const version of [1, 2, 3]) {
    const v = header(Buffer.alloc(0), 0, GENEVE_PROTO_ETHERNET, version);
    t.equal(g.reset(v, 0, v.length), ERR_VERSION, `version ${version}`);
  }
  // An option claiming 8 bytes of data where Opt Len leaves 4.
  const over = header(Buffer.concat([option(1, 1, Buffer.alloc(4))]));
  over[8 + 3] = 2;
  t.equal(g.reset(over, 0, over.length), ERR_OPTION_LENGTH);
  t.same([g.required, g.available], [12, 8]);
  // Opt Len not a whole option: 2 words holding a 4-byte option header and half of another.
  const ragged = header(Buffer.concat([option(1, 1, Buffer.alloc(0)), Buffer.from([0, 1])]).subarray(0, 4));
  ragged[0] = 2;
  const withTail = Buffer.concat([ragged, Buffer.from([0, 1, 1, 0])]);
  t.equal(g.reset(withTail, 0, withTail.length), OK, 'two 4-byte option headers fit 2 words');
  const half = Buffer.concat([header(Buffer.alloc(0)), Buffer.from([0, 1, 1, 5])]);
  half[0] = 1;
  t.equal(g.reset(half, 0, half.length), ERR_OPTION_LENGTH, 'an option of 20 data bytes in a 1-word option area');
});

t.test('fuzz: random headers and option lists give the same answer whatever follows the datagram', async (t) => {
  const rng = new Random(0x6081);
  const rand = (): number => rng.next() / 2 ** 32;
  const a = new Geneve();
  const b = new Geneve();
  let ok = 0;
  let refused = 0;
  let differing = 0;
  for (let i = 0; i < 20_000; i++) {
    let datagram: Buffer;
    if (rand() < 0.4) {
      // A well-formed option list (random classes, types with or without the critical bit,
      // 0-5 words of data each), then maybe one length byte or the datagram end disturbed.
      const opts: Buffer[] = [];
      let words = 0;
      while (rand() < 0.8) {
        const w = Math.floor(rand() * 6);
        if (words + 1 + w > 63) break;
        opts.push(option(rand() < 0.3 ? 0x0108 : rng.below(0x10000), rng.below(256), rng.bytes(w * 4)));
        words += 1 + w;
      }
      datagram = Buffer.concat([header(Buffer.concat(opts), rng.below(256)), rng.bytes(rng.below(40))]);
      if (opts.length > 0 && rand() < 0.3) datagram[8 + 3] = rng.below(256);
      if (rand() < 0.2) datagram = datagram.subarray(0, rng.below(datagram.length + 1));
    } else datagram = rng.bytes(Math.floor(rand() * 300));
    const len = datagram.length;
    // Mostly plausible: version 0, an Opt Len that may or may not fit, options with random lengths.
    if (len > 0 && rand() < 0.8) datagram[0] = datagram[0]! & 0x3f;
    if (len > 8 && rand() < 0.5) datagram[0] = Math.min(63, Math.floor((len - 8) / 4) + Math.floor(rand() * 3) - 1) & 0x3f;
    const off = 5;
    const lo = Buffer.concat([Buffer.alloc(off, 0x00), datagram, Buffer.alloc(300, 0x00)]);
    const hi = Buffer.concat([Buffer.alloc(off, 0xff), datagram, Buffer.alloc(300, 0xff)]);
    const sa = a.reset(lo, off, len);
    const sb = b.reset(hi, off, len);
    const fields = (g: Geneve, s: number): unknown[] =>
      s === OK
        ? [s, g.headerLen, g.options, g.criticalUnknown, g.hasEndpoint, g.endpointHi, g.endpointLo, g.hasAttachment, g.hasFlowCookie, g.flowCookie, g.protocol, g.vni, g.oam]
        : [s, g.required, g.available];
    if (JSON.stringify(fields(a, sa)) !== JSON.stringify(fields(b, sb))) differing++;
    if (sa === OK) {
      ok++;
      if (a.headerLen > len) differing++;
    } else refused++;
  }
  t.equal(differing, 0, 'no answer read a byte outside the datagram');
  t.ok(ok > 1000 && refused > 1000, `both outcomes exercised (${ok} ok, ${refused} refused)`);
});
