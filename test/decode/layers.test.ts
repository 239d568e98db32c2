/**
 * The decoder on byte arrays: real frames (expected values from tshark),
 * frames built field by field (builder output checked against the same
 * bytes, so the fixtures encode what they claim), every error's details, and
 * the promises the pipeline relies on: padding is not truncation, an ICMP
 * error's quoted header changes nothing, nothing carries over between frames.
 */
import t from 'tap';
import { formatMac } from '../../src/decode/ethernet.js';
import { formatIpv4 } from '../../src/decode/ipv4.js';
import { formatIpv6 } from '../../src/decode/ipv6.js';
import { Decoder } from '../../src/decode/packet.js';
import {
  ERR_EXT_LIMIT,
  ERR_HEADER_LEN,
  ERR_IP_LENGTH,
  ERR_SHORT,
  ERR_VERSION,
  ERR_VLAN_LIMIT,
  L3_ARP,
  L3_IPV4,
  L3_IPV6,
  L3_OTHER,
  L4_ICMP,
  L4_ICMPV6,
  L4_NONE,
  L4_OTHER,
  L4_TCP,
  L4_UDP,
  LAYER_ETHERNET,
  LAYER_IP_EXT,
  LAYER_IPV4,
  LAYER_IPV6,
  LAYER_TCP,
  LAYER_VLAN,
  LIMIT_IP_LENGTH,
  LIMIT_NONE,
  LIMIT_SLICE,
  OK,
} from '../../src/decode/status.js';
import { TCP_ACK, TCP_SYN } from '../../src/decode/tcp.js';
import { FIXTURES } from '../fixtures/catalog.js';
import {
  addr6,
  ether,
  extOpts,
  fragment,
  icmp,
  ipv4,
  ipv6,
  pad60,
  routing,
  tcp,
  TPID_8021AD,
  TPID_8021Q,
  udp,
  vxlan,
} from '../lib/frames.js';

const hex = (s: string): Buffer => Buffer.from(s, 'hex');
const frameNamed = (name: string): Buffer => {
  for (const f of FIXTURES) for (const fr of f.frames) if (fr.name === name) return fr.frame;
  throw new Error(name);
};

/** tcpdump tests/tfo-5c1fa7f9ae91.pcap frame 1: a TCP Fast Open SYN. */
const TFO_SYN = hex(
  '1c7ee54ca1cbb0750c00000108004500002c00060000ff06f4b3c0a800640303030332f732fe0d05af640000000060020578b9660000fe04f989',
);
/** zeek icmp6-ping frame 1: an ICMPv6 echo request. */
const ICMP6_ECHO = hex(
  'b0c69ada32800023aea00b3386dd6000000000283a80262000000e00400e0d1ddb370beb5aac2001486080060000000000000000006380002910000100036162636465666768696a6b6c6d6e6f7071727374757677616263646566676869',
);
/** tcpdump dns_udp frame 1: a DNS query with EDNS. */
const DNS_UDP = hex(
  '00112233446600112233445508004500005459cd0000401194aec0a8010bd157f912abbe003500407824593401200001000000000001037777770774637064756d70036f72670000010001000029100000000000000c000a000842f5d00996f90b13',
);

t.test('IPv4/TCP SYN from a real capture, every field', async (t) => {
  const d = new Decoder();
  t.equal(d.decode(TFO_SYN, 0, TFO_SYN.length), OK);
  t.equal(formatMac(TFO_SYN, d.ethernet.dstOff), '1c:7e:e5:4c:a1:cb');
  t.equal(formatMac(TFO_SYN, d.ethernet.srcOff), 'b0:75:0c:00:00:01');
  t.match(d, { l2Len: 14, etherType: 0x0800, vlanCount: 0, l3: L3_IPV4, l4: L4_TCP, l3Off: 14, l4Off: 34 });
  t.match(d, { ipVersion: 4, addrLen: 4, srcAddrOff: 26, dstAddrOff: 30, ipProto: 6, ipLength: 44, claimedFrameLength: 58 });
  t.equal(formatIpv4(TFO_SYN, d.srcAddrOff), '192.168.0.100');
  t.equal(formatIpv4(TFO_SYN, d.dstAddrOff), '3.3.3.3');
  t.match(d, { ttl: 255, isFragment: false, fragOffset: 0, moreFragments: false, fragId: 6, truncated: false });
  t.match(d, { srcPort: 13047, dstPort: 13054, tcpSeq: 218476388, tcpAck: 0, tcpFlags: TCP_SYN, tcpDataOffset: 6, tcpWindow: 1400 });
  t.match(d.tcp, { headerLen: 24, optionsLen: 4, checksum: 0xb966, urgentPointer: 0 });
  t.match(d.ipv4, { headerLen: 20, optionsLen: 0, tos: 0, dscp: 0, ecn: 0, flags: 0, dontFragment: false, checksum: 0xf4b3, totalLength: 44 });
  t.match(d, { payloadOff: 58, payloadLen: 0 });
});

t.test('IPv6/ICMPv6 echo from a real capture', async (t) => {
  const d = new Decoder();
  t.equal(d.decode(ICMP6_ECHO, 0, ICMP6_ECHO.length), OK);
  t.match(d, { l3: L3_IPV6, l4: L4_ICMPV6, ipVersion: 6, addrLen: 16, ipProto: 58, ipLength: 80, claimedFrameLength: 94 });
  t.equal(formatIpv6(ICMP6_ECHO, d.srcAddrOff), '2620:0:e00:400e:d1d:db37:beb:5aac');
  t.equal(formatIpv6(ICMP6_ECHO, d.dstAddrOff), '2001:4860:8006::63');
  t.match(d, { ttl: 128, icmpType: 128, icmpCode: 0, srcPort: 0, dstPort: 0 });
  t.match(d.ipv6, { trafficClass: 0, flowLabel: 0, payloadLength: 40, nextHeader: 58, hopLimit: 128 });
  t.match(d, { l4Off: 54, payloadOff: 58, payloadLen: 36 });
});

t.test('IPv4/UDP DNS from a real capture', async (t) => {
  const d = new Decoder();
  t.equal(d.decode(DNS_UDP, 0, DNS_UDP.length), OK);
  t.match(d, { l3: L3_IPV4, l4: L4_UDP, srcPort: 43966, dstPort: 53, udpLength: 64, ipLength: 84 });
  t.match(d, { payloadOff: 42, payloadLen: 56 });
});

t.test('builders produce these very bytes (so the fixtures say what they claim)', async (t) => {
  const built = ether(
    0x0800,
    ipv4(
      6,
      tcp({ sport: 13047, dport: 13054, seq: 218476388, flags: TCP_SYN, window: 1400, options: hex('fe04f989') }),
      { src: '192.168.0.100', dst: '3.3.3.3', ttl: 255, id: 6 },
    ),
    { dst: '1c:7e:e5:4c:a1:cb', src: 'b0:75:0c:00:00:01' },
  );
  // The builder leaves the TCP checksum 0; everything else must match byte for byte.
  const want = Buffer.from(TFO_SYN);
  want.writeUInt16BE(0, 50);
  t.equal(built.toString('hex'), want.toString('hex'));
});

t.test('VLAN tags: 802.1Q, 802.1ad, PCP/DEI, and tags from decodeL3', async (t) => {
  const d = new Decoder();
  const f = ether(0x86dd, ipv6(17, udp(1, 2, Buffer.alloc(4))), {
    tags: [
      [TPID_8021AD, (3 << 13) | 100],
      [TPID_8021Q, (5 << 13) | (1 << 12) | 4095],
    ],
  });
  t.equal(d.decode(f, 0, f.length), OK);
  t.match(d, { vlanCount: 2, etherType: 0x86dd, l2Len: 22, l3Off: 22, l3: L3_IPV6, l4: L4_UDP });
  t.same([d.vlanId(0), d.vlan.pcp(0), d.vlan.dei(0), d.vlan.tpid(0)], [100, 3, 0, TPID_8021AD]);
  t.same([d.vlanId(1), d.vlan.pcp(1), d.vlan.dei(1), d.vlan.tpid(1)], [4095, 5, 1, TPID_8021Q]);
  // The same frame from a cooked capture's point of view: the TPID arrives as the protocol field.
  t.equal(d.decodeL3(f, 14, f.length - 14, TPID_8021AD), OK);
  t.match(d, { vlanCount: 2, l2Len: 8, l3Off: 22, l3: L3_IPV6, l4: L4_UDP, claimedFrameLength: 8 + 40 + 12 });
  t.equal(d.vlan.tpid(0), TPID_8021AD);
});

t.test('decodeL3 on raw IP', async (t) => {
  const d = new Decoder();
  const raw4 = ipv4(17, udp(7, 9, Buffer.from('x')));
  t.equal(d.decodeL3(raw4, 0, raw4.length, 0x0800), OK);
  t.match(d, { l2Len: 0, l3Off: 0, l4Off: 20, l3: L3_IPV4, l4: L4_UDP, srcPort: 7, dstPort: 9, claimedFrameLength: 29 });
  const raw6 = ipv6(6, tcp({ flags: TCP_ACK }));
  t.equal(d.decodeL3(raw6, 0, raw6.length, 0x86dd), OK);
  t.match(d, { l3: L3_IPV6, l4: L4_TCP, l4Off: 40, tcpFlags: TCP_ACK });
  t.equal(d.decodeL3(raw6, 0, raw6.length, 0x1234), OK, 'an unknown type is a value, not an error');
  t.match(d, { l3: L3_OTHER, l4: L4_NONE, etherType: 0x1234, payloadOff: 0, payloadLen: raw6.length });
});

t.test('each error carries layer, required, available and who set the limit', async (t) => {
  const d = new Decoder();
  const cases: [string, number, number, number, number, number][] = [
    // frame name, status, layer, required, available, limit
    ['short-ethernet-10-bytes', ERR_SHORT, LAYER_ETHERNET, 14, 10, LIMIT_SLICE],
    ['short-dot1q-tag', ERR_SHORT, LAYER_VLAN, 4, 1, LIMIT_SLICE],
    ['four-tags-over-limit', ERR_VLAN_LIMIT, LAYER_VLAN, 3, 4, LIMIT_NONE],
    ['ipv4-ihl-4', ERR_HEADER_LEN, LAYER_IPV4, 20, 16, LIMIT_NONE],
    ['ipv4-ihl-past-end', ERR_SHORT, LAYER_IPV4, 60, 20, LIMIT_SLICE],
    ['ipv4-total-length-below-header', ERR_IP_LENGTH, LAYER_IPV4, 20, 12, LIMIT_NONE],
    ['ipv4-ethertype-version-6', ERR_VERSION, LAYER_IPV4, 4, 6, LIMIT_NONE],
    ['ipv6-ethertype-version-4', ERR_VERSION, LAYER_IPV6, 6, 4, LIMIT_NONE],
    ['short-ipv6-30-bytes', ERR_SHORT, LAYER_IPV6, 40, 30, LIMIT_SLICE],
    ['tcp-data-offset-3', ERR_HEADER_LEN, LAYER_TCP, 20, 12, LIMIT_NONE],
    ['tcp-data-offset-past-ip-length', ERR_SHORT, LAYER_TCP, 60, 28, LIMIT_IP_LENGTH],
    ['trunc-ipv4-tcp-inside-options', ERR_SHORT, LAYER_TCP, 32, 26, LIMIT_SLICE],
    ['ipv6-ext-length-past-end', ERR_SHORT, LAYER_IP_EXT, 168, 8, LIMIT_IP_LENGTH],
    ['ipv6-nine-ext-headers', ERR_EXT_LIMIT, LAYER_IP_EXT, 8, 9, LIMIT_NONE],
  ];
  for (const [name, status, layer, required, available, limit] of cases) {
    const f = frameNamed(name);
    t.equal(d.decode(f, 0, f.length), status, name);
    t.match(
      { status: d.status, errorLayer: d.errorLayer, errorRequired: d.errorRequired, errorAvailable: d.errorAvailable, errorLimit: d.errorLimit },
      { status, errorLayer: layer, errorRequired: required, errorAvailable: available, errorLimit: limit },
      name,
    );
  }
});

t.test('a failed layer keeps the layers before it', async (t) => {
  const d = new Decoder();
  const f = frameNamed('trunc-ipv4-tcp-inside-options');
  d.decode(f, 0, f.length);
  t.match(d, { l3: L3_IPV4, l4: L4_OTHER, ipProto: 6, ipLength: 1452, claimedFrameLength: 1466, truncated: true, l4Off: 34, l4Len: 26 });
  t.equal(formatIpv4(f, d.srcAddrOff), '10.0.0.1');
});

t.test('Ethernet padding is not truncation; a short frame is', async (t) => {
  const d = new Decoder();
  const padded = pad60(ether(0x0800, ipv4(17, udp(1000, 2000, Buffer.from('hi')))), 0xee);
  t.equal(d.decode(padded, 0, padded.length), OK);
  t.match(d, { ipLength: 30, claimedFrameLength: 44, frameLen: 60, truncated: false, payloadLen: 2, l4Len: 10 });
  const whole = ether(0x0800, ipv4(6, tcp({ flags: TCP_ACK }, Buffer.alloc(1400))));
  const cut = whole.subarray(0, 96);
  t.equal(d.decode(cut, 0, cut.length), OK);
  t.match(d, { ipLength: 1440, claimedFrameLength: 1454, truncated: true, payloadLen: 96 - 54 });
  const tagged = ether(0x0800, ipv4(6, tcp({ flags: TCP_ACK }, Buffer.alloc(1400))), { tags: [[TPID_8021Q, 1]] }).subarray(0, 64);
  d.decode(tagged, 0, tagged.length);
  t.match(d, { claimedFrameLength: 1458, truncated: true }, 'the tag counts in the original length');
});

t.test("an ICMP error's quoted IP header changes none of the packet's own fields", async (t) => {
  const d = new Decoder();
  for (const name of ['icmp-port-unreachable-quoting-ipv4-udp', 'icmpv6-packet-too-big-quoting-ipv6-tcp']) {
    const f = frameNamed(name);
    t.equal(d.decode(f, 0, f.length), OK, name);
    t.equal(d.claimedFrameLength, f.length, `${name}: claimed length is the outer packet's`);
    t.equal(d.truncated, false);
    t.equal(d.srcAddrOff, d.l3Off + (d.ipVersion === 4 ? 12 : 8), `${name}: addresses are the outer header's`);
    t.match(d, { srcPort: 0, dstPort: 0 });
  }
  const f = frameNamed('icmp-port-unreachable-quoting-ipv4-udp');
  d.decode(f, 0, f.length);
  t.match(d, { l4: L4_ICMP, icmpType: 3, icmpCode: 3, payloadOff: 42 });
});

t.test('fragments: only the first has a transport header', async (t) => {
  const d = new Decoder();
  const f4 = frameNamed('ipv4-frag-udp-offset-480');
  t.equal(d.decode(f4, 0, f4.length), OK);
  t.match(d, { l3: L3_IPV4, l4: L4_NONE, ipProto: 17, isFragment: true, fragOffset: 480, moreFragments: true, fragId: 0xbeef, srcPort: 0 });
  t.match(d, { l4Off: 34, payloadOff: 34, payloadLen: 480 });
  const first6 = frameNamed('ipv6-frag-udp-offset-0');
  d.decode(first6, 0, first6.length);
  t.match(d, { l4: L4_UDP, isFragment: true, fragOffset: 0, moreFragments: true, fragId: 0xcafe0001, srcPort: 40001, l4Off: 62 });
  const last6 = frameNamed('ipv6-frag-udp-offset-960');
  d.decode(last6, 0, last6.length);
  t.match(d, { l4: L4_NONE, ipProto: 17, isFragment: true, fragOffset: 960, moreFragments: false, payloadLen: 240 });
  const atomic = frameNamed('ipv6-atomic-fragment-tcp');
  d.decode(atomic, 0, atomic.length);
  t.match(d, { l4: L4_TCP, isFragment: false, fragId: 0x11 }, 'an atomic fragment is whole');
});

t.test('the IPv6 extension chain is walked and recorded', async (t) => {
  const d = new Decoder();
  const f = frameNamed('ipv6-chain-hbh-dst-routing-frag-dst-tcp');
  t.equal(d.decode(f, 0, f.length), OK);
  const ext = d.ipExt;
  t.same(
    Array.from({ length: ext.count }, (_, i) => ext.type(i)),
    [0, 60, 43, 44, 60],
  );
  t.equal(ext.offset(0), 54);
  t.equal(d.l4Off, 54 + ext.headerLen);
  t.match(d, { ipProto: 6, l4: L4_TCP, isFragment: true, moreFragments: true, fragId: 0x99 });
  const esp = frameNamed('ipv6-dstopts-esp');
  d.decode(esp, 0, esp.length);
  t.match(d, { ipProto: 50, l4: L4_OTHER, status: OK }, 'ESP ends the walk');
  const ah = frameNamed('ipv4-ah-udp');
  d.decode(ah, 0, ah.length);
  t.match(d, { l3: L3_IPV4, ipProto: 17, l4: L4_UDP, srcPort: 500 }, 'AH after IPv4 is walked too');
  t.equal(d.ipv4.protocol, 51);
  const srh = ether(0x86dd, ipv6(43, Buffer.concat([routing(59, 4, 0, ['::1']), Buffer.alloc(0)])));
  d.decode(srh, 0, srh.length);
  t.match(d, { ipProto: 59, l4: L4_NONE, status: OK });
});

t.test('length fields of 0: segmentation offload and jumbograms run to the end of the slice', async (t) => {
  const d = new Decoder();
  const tso = frameNamed('ipv4-total-length-zero-tso');
  t.equal(d.decode(tso, 0, tso.length), OK);
  t.match(d, { ipLength: tso.length - 14, claimedFrameLength: tso.length, truncated: false, l4: L4_TCP });
  t.equal(d.ipv4.lengthInferred, true);
  const jumbo = ether(0x86dd, ipv6(0, Buffer.concat([extOpts(17, hex('c204000186a0')), udp(1, 2, Buffer.alloc(100), 0)]), { payloadLength: 0 }));
  t.equal(d.decode(jumbo, 0, jumbo.length), OK);
  t.match(d, { ipLength: jumbo.length - 14, l4: L4_UDP, udpLength: 0, payloadLen: 100 });
});

t.test('UDP payload: the length field when sane, else what the IP payload holds', async (t) => {
  const d = new Decoder();
  const short = ether(0x0800, ipv4(17, Buffer.concat([udp(1, 2, Buffer.alloc(4)), Buffer.alloc(6, 0xaa)])));
  d.decode(short, 0, short.length);
  t.match(d, { udpLength: 12, payloadLen: 4, l4Len: 18 });
  const bad = frameNamed('udp-length-field-4');
  d.decode(bad, 0, bad.length);
  t.match(d, { status: OK, l4: L4_UDP, udpLength: 4, payloadLen: 12 });
});

t.test('the outer frame of a VXLAN capture leads to the inner frame', async (t) => {
  const d = new Decoder();
  const inner = new Decoder();
  const innerFrame = ether(0x0800, ipv4(6, tcp({ sport: 50000, dport: 22 }), { src: '172.31.5.5' }));
  const outer = ether(0x86dd, ipv6(17, udp(50123, 4789, vxlan(5569041, innerFrame)), { src: '2001:db8:a::1' }));
  t.equal(d.decode(outer, 0, outer.length), OK);
  t.match(d, { l4: L4_UDP, dstPort: 4789, payloadOff: 62, payloadLen: 8 + innerFrame.length });
  t.equal(outer[d.payloadOff], 0x08, 'the VXLAN flags byte');
  t.equal(outer.readUIntBE(d.payloadOff + 4, 3), 5569041);
  t.equal(inner.decode(outer, d.payloadOff + 8, d.payloadLen - 8), OK);
  t.match(inner, { l3: L3_IPV4, l4: L4_TCP, srcPort: 50000, dstPort: 22, l3Off: 70 + 14, claimedFrameLength: innerFrame.length });
  t.equal(formatIpv4(outer, inner.srcAddrOff), '172.31.5.5');
});

t.test('nothing carries over from one frame to the next', async (t) => {
  const d = new Decoder();
  const frag = frameNamed('ipv6-frag-udp-offset-480');
  const arp = frameNamed('arp-request-padded');
  const tcpFrame = frameNamed('tcp-syn-options');
  const fresh = new Decoder();
  for (const f of [frag, arp, tcpFrame, frameNamed('four-tags-over-limit'), tcpFrame, frag, arp]) {
    d.decode(f, 0, f.length);
    fresh.decode(f, 0, f.length);
    const keys = Object.keys(fresh).filter((k) => typeof (fresh as unknown as Record<string, unknown>)[k] !== 'object');
    for (const k of keys) {
      t.equal((d as unknown as Record<string, unknown>)[k], (fresh as unknown as Record<string, unknown>)[k], k);
    }
    t.match(d, { srcPort: fresh.srcPort, dstPort: fresh.dstPort, truncated: fresh.truncated });
  }
  d.decode(arp, 0, arp.length);
  t.match(d, { l3: L3_ARP, l4: L4_NONE, ipVersion: 0, addrLen: 0, ipLength: 0, claimedFrameLength: 0, isFragment: false, fragId: 0 });
  t.equal(d.arp.opcode, 1);
  t.equal(formatIpv4(arp, d.arp.senderProtocolOff), '10.0.0.1');
  t.equal(formatIpv4(arp, d.arp.targetProtocolOff), '10.0.0.2');
  t.equal(formatMac(arp, d.arp.senderHardwareOff), '02:00:00:00:00:01');
  t.equal(formatMac(arp, d.arp.targetHardwareOff), '00:00:00:00:00:00');
  d.release();
  t.equal(d.buf.length, 0, 'release() drops the Buffer');
  t.equal(d.arp.buf.length + d.ipv4.buf.length + d.tcp.buf.length, 0, 'and so do the views');
});

t.test('decoding at an offset inside a larger buffer', async (t) => {
  const d = new Decoder();
  const f = frameNamed('dot1q-ipv4-tcp');
  const big = Buffer.concat([Buffer.alloc(1000, 0x45), f, Buffer.alloc(1000, 0x45)]);
  t.equal(d.decode(big, 1000, f.length), OK);
  t.match(d, { l3Off: 1018, l2Len: 18, srcPort: 40000, dstPort: 80, claimedFrameLength: f.length });
  d.decode(big, 1000, 17);
  t.match(d, { status: ERR_SHORT, errorLayer: LAYER_VLAN, errorAvailable: 3 });
});

t.test('RFC 5952 IPv6 text', async (t) => {
  const cases: [string, string][] = [
    ['0:0:0:0:0:0:0:0', '::'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['2001:db8:0:0:0:0:0:1', '2001:db8::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['fe80:0:0:0:0:0:0:0', 'fe80::'],
    ['0:0:0:0:0:ffff:102:304', '::ffff:1.2.3.4'],
    ['2001:DB8:AAAA:BBBB:CCCC:DDDD:EEEE:1', '2001:db8:aaaa:bbbb:cccc:dddd:eeee:1'],
  ];
  for (const [full, text] of cases) t.equal(formatIpv6(addr6(full), 0), text, full);
  t.equal(formatIpv4(Buffer.from([192, 0, 2, 255]), 0), '192.0.2.255');
});

t.test('an IPv6 fragment header cut short reports the extension layer', async (t) => {
  const d = new Decoder();
  const f = ether(0x86dd, ipv6(44, fragment(6, 0, true, 1))).subarray(0, 60);
  d.decode(f, 0, f.length);
  t.match(d, { status: ERR_SHORT, errorLayer: LAYER_IP_EXT, errorRequired: 8, errorAvailable: 6, errorLimit: LIMIT_SLICE, l3: L3_IPV6, l4: L4_OTHER });
  const icmpShort = ether(0x0800, ipv4(1, icmp(8, 0, 0, Buffer.alloc(0)).subarray(0, 6)));
  d.decode(icmpShort, 0, icmpShort.length);
  t.match(d, { l4: L4_OTHER, errorRequired: 8, errorAvailable: 6, errorLimit: LIMIT_IP_LENGTH });
});
