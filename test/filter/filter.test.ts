/**
 * The filter module's own contract, without tcpdump: the tree it returns (abbreviations
 * expanded, qualifiers explicit), printing, errors with their word and position, link types,
 * and matching on hand-built frames for the cases docs/filters.md calls surprising.
 * tcpdump.test.ts checks the answers against libpcap on thousands of expressions.
 */
import t from 'tap';
import { compileFilter, FilterError, LINKTYPE_RAW, MAX_FILTER_LENGTH, printFilter, type FilterNode } from '../../src/filter/index.js';
import { ether, filler, fragment, icmp, ipv4, ipv6, tcp, TPID_8021Q, udp } from '../lib/frames.js';

const tagged = ether(0x0800, ipv4(6, tcp({ dport: 80 }), { src: '10.0.0.1' }), { tags: [[TPID_8021Q, 100]] });
const plain = ether(0x0800, ipv4(6, tcp({ dport: 443 }), { src: '10.0.0.1', dst: '192.168.7.7' }));
const dns = ether(0x0800, ipv4(17, udp(40000, 53, filler(20)), { src: '10.9.9.9', dst: '8.8.8.8' }));
const v6frag = (offset: number): Buffer => ether(0x86dd, ipv6(44, Buffer.concat([fragment(6, offset, true, 1), tcp({ dport: 80 })])));

function matches(expr: string, frame: Buffer, wireLen = frame.length): boolean {
  return compileFilter(expr).match(frame, 0, frame.length, wireLen);
}

function refusal(expr: string, linkType?: 1 | 101): FilterError {
  try {
    compileFilter(expr, linkType);
  } catch (e) {
    if (e instanceof FilterError) return e;
    throw e;
  }
  throw new Error(`${expr} compiled`);
}

/** The tree without positions, for comparing shapes. */
function shape(n: unknown): unknown {
  if (Array.isArray(n)) return n.map(shape);
  if (n === null || typeof n !== 'object') return n;
  return Object.fromEntries(Object.entries(n).filter(([k]) => k !== 'pos').map(([k, v]) => [k, shape(v)]));
}

const host = (a: number[], extra: Partial<Record<string, unknown>> = {}): unknown => ({
  kind: 'host',
  vlan: 0,
  keyword: 'host',
  family: 4,
  proto: null,
  dir: 'src or dst',
  addr: a,
  mask: [255, 255, 255, 255],
  ...extra,
});

t.test('the tree: abbreviations expanded, qualifiers explicit', async (t) => {
  const tree = (e: string): unknown => shape(compileFilter(e).tree);
  t.same(tree('host 10.0.0.1 or 10.0.0.2'), { kind: 'or', left: host([10, 0, 0, 1]), right: host([10, 0, 0, 2]) });
  t.same(tree('src host 10.0.0.1 and not 10.0.0.2'), {
    kind: 'and',
    left: host([10, 0, 0, 1], { dir: 'src' }),
    right: { kind: 'not', expr: host([10, 0, 0, 2], { dir: 'src' }) },
  });
  t.same(tree('tcp port 80 or 443'), {
    kind: 'or',
    left: { kind: 'port', vlan: 0, keyword: 'port', transport: 'tcp', dir: 'src or dst', from: 80, to: 80 },
    right: { kind: 'port', vlan: 0, keyword: 'port', transport: 'tcp', dir: 'src or dst', from: 443, to: 443 },
  });
  t.same(tree('dst or src port 53'), { kind: 'port', vlan: 0, keyword: 'port', transport: null, dir: 'src or dst', from: 53, to: 53 });
  t.same(tree('src and dst portrange 2000-1000'), { kind: 'port', vlan: 0, keyword: 'portrange', transport: null, dir: 'src and dst', from: 1000, to: 2000 });
  t.same(tree('port http'), { kind: 'port', vlan: 0, keyword: 'port', transport: 'tcp', dir: 'src or dst', from: 80, to: 80 }, 'http is a TCP service');
  t.same(tree('port domain'), { kind: 'port', vlan: 0, keyword: 'port', transport: null, dir: 'src or dst', from: 53, to: 53 }, 'domain is TCP and UDP');
  t.same(tree('tcp'), { kind: 'proto', vlan: 0, layer: null, protocol: 6 });
  t.same(tree('icmp'), { kind: 'proto', vlan: 0, layer: 'ip', protocol: 1 });
  t.same(tree('ip6'), { kind: 'proto', vlan: 0, layer: 'ether', protocol: 0x86dd });
  t.same(tree('ip proto \\udp'), { kind: 'proto', vlan: 0, layer: 'ip', protocol: 17 });
  t.same(tree('host 10.1'), host([10, 1, 0, 0], { mask: [255, 255, 0, 0] }), 'a short address is a network');
  t.same(tree('host 10'), host([0, 0, 0, 10]), 'a bare number is a host');
  t.same(tree('net 10'), host([10, 0, 0, 0], { keyword: 'net', mask: [255, 0, 0, 0] }), 'but a network number is left-justified');
  t.same(tree('arp src net 10.0.0.0 mask 255.0.255.0'), host([10, 0, 0, 0], { keyword: 'net', proto: 'arp', dir: 'src', mask: [255, 0, 255, 0] }));
  t.same(tree('ether src 0:1:2:3:4:5'), { kind: 'ether-host', vlan: 0, dir: 'src', addr: [0, 1, 2, 3, 4, 5] });
  t.same(tree('vlan 100 and host 10.0.0.1'), { kind: 'and', left: { kind: 'vlan', vlan: 0, id: 100 }, right: host([10, 0, 0, 1], { vlan: 1 }) }, 'primitives after vlan say so');
  t.same(tree('host 10.0.0.1 and (tcp) or 10.0.0.2'), {
    kind: 'or',
    left: { kind: 'and', left: host([10, 0, 0, 1]), right: { kind: 'proto', vlan: 0, layer: null, protocol: 6 } },
    right: host([10, 0, 0, 2]),
  }, 'a parenthesized term passes on the qualifiers from before it');
  t.same(tree('tcp[tcpflags] & tcp-syn != 0'), {
    kind: 'compare',
    op: '!=',
    left: { kind: 'binary', op: '&', left: { kind: 'load', vlan: 0, layer: 'tcp', offset: { kind: 'number', value: 13 }, size: 1 }, right: { kind: 'number', value: 2 } },
    right: { kind: 'number', value: 0 },
  });
  t.same(tree('ip[0] + 1 % 2 + 3 = 4'), {
    kind: 'compare',
    op: '=',
    left: {
      kind: 'binary',
      op: '+',
      left: { kind: 'load', vlan: 0, layer: 'ip', offset: { kind: 'number', value: 0 }, size: 1 },
      right: { kind: 'binary', op: '%', left: { kind: 'number', value: 1 }, right: { kind: 'binary', op: '+', left: { kind: 'number', value: 2 }, right: { kind: 'number', value: 3 } } },
    },
    right: { kind: 'number', value: 4 },
  }, "'%' takes everything after it (libpcap gives it no precedence)");
  t.same(tree('less 100 or greater 1000'), { kind: 'or', left: { kind: 'length', op: '<=', value: 100 }, right: { kind: 'length', op: '>=', value: 1000 } });
  t.same(tree(''), { kind: 'all' });
  const node: FilterNode = compileFilter('ip broadcast').tree;
  t.equal(node.kind, 'broadcast');
});

t.test('printFilter writes every qualifier out, and the text compiles to the same program', async (t) => {
  const cases: [string, string][] = [
    ['host 10.0.0.1 or 10.0.0.2', 'host 10.0.0.1 or host 10.0.0.2'],
    ['net 10.1 or 10.2.0.0/16 and port http', '(net 10.1.0.0/16 or net 10.2.0.0/16) and tcp port 80'],
    ['tcp port 80 or 443 and not src 10.0.0.1', '(tcp port 80 or tcp port 443) and not src host 10.0.0.1'],
    ['host 10.1', 'net 10.1.0.0/16'],
    ['vlan 100 and ip6 src net 2001:db8::/32', 'vlan 100 and ip6 src net 2001:db8::/32'],
    ['ether dst ff:ff:ff:ff:ff:ff || arp', 'ether dst ff:ff:ff:ff:ff:ff or arp'],
    ['not (tcp or udp) && icmp6', 'not (tcp or udp) and icmp6'],
    ['ip[0] & 0xf0 = 0x40 and -ip[1] % 5 != 2', '(ip[0] & 240) = 64 and -(ip[1] % 5) != 2'],
    ['- - len = 5', '-(-len) = 5'],
    ['net 10.0.0.0 mask 255.0.255.0', 'net 10.0.0.0 mask 255.0.255.0'],
    ['ether proto 0x800 or ip proto 50 or proto 99', 'ip or ip proto 50 or proto 99'],
    ['less 60 or greater 1500 or len < 100', 'less 60 or greater 1500 or len < 100'],
    ['', ''],
  ];
  for (const [expr, want] of cases) {
    const c = compileFilter(expr);
    const printed = printFilter(c.tree);
    t.equal(printed, want, expr);
    t.same(compileFilter(printed).program, c.program, `${JSON.stringify(printed)} compiles like ${JSON.stringify(expr)}`);
  }
  t.throws(() => compileFilter('tcp port 80 or 443 and not 10.0.0.1'), FilterError, "a bare 10.0.0.1 inherits 'tcp port': refused, as by libpcap");
});

t.test('refusals carry the code, the reason, the word and its 0-based position', async (t) => {
  const e = refusal('tcp and');
  t.equal(e.code, 'ERR_MIRRORCAP_FILTER');
  t.equal(e.reason, 'syntax');
  t.equal(e.position, 7, 'at the end');
  t.equal(e.word, '');
  t.match(e.message, /at the end, position 7/);
  const cases: [string, FilterError['reason'], number, string][] = [
    ['tcp or llc', 'unsupported', 7, 'llc'],
    ['tcp and gateway 10.0.0.1', 'unsupported', 8, 'gateway'],
    ['ip6 protochain 6', 'unsupported', 4, 'protochain'],
    ['host example.com', 'name', 5, 'example.com'],
    ['host \\10.0.0.1', 'name', 5, '\\10.0.0.1'],
    ['port nosuchservice', 'name', 5, 'nosuchservice'],
    ['ip proto \\nosuchproto', 'name', 9, '\\nosuchproto'],
    ['tcp port 99999', 'syntax', 9, '99999'],
    ['tcp host 10.0.0.1', 'syntax', 9, '10.0.0.1'],
    ['udp port http', 'syntax', 9, 'http'],
    ['tcp or 10.0.0.1', 'syntax', 7, '10.0.0.1'],
    ['vlan 4096', 'syntax', 0, 'vlan'],
    ['ip[0:3] = 1', 'syntax', 0, 'ip'],
    ['ip[0] / 0 = 1', 'syntax', 6, '/'],
    ['host 1.2.3.4 and (', 'syntax', 18, ''],
    ['host 1::2::3', 'syntax', 5, '1::2::'],
    ['08 = 8', 'syntax', 0, '08'],
    ['ip # 1', 'syntax', 3, '#'],
  ];
  for (const [expr, reason, position, word] of cases) {
    const err = refusal(expr);
    t.same({ reason: err.reason, position: err.position, word: err.word }, { reason, position, word }, `${expr}: ${err.message}`);
  }
  t.match(refusal('tcp and udp').message, /expression rejects all packets/, 'what the optimizer proves empty is refused, as libpcap does');
  t.match(refusal('ip[0] / (1 - 1) = 0').message, /division by zero/, 'a zero the optimizer computes');
  const deep = `${'ip[0] + ('.repeat(17)}1${')'.repeat(17)} = 1`;
  t.match(refusal(deep).message, /too many registers/, 'BPF has 16 scratch registers');
  t.equal(refusal('x'.repeat(MAX_FILTER_LENGTH + 1)).reason, 'unsupported', 'an oversized filter');
  t.equal(refusal(`${'('.repeat(2000)}tcp${')'.repeat(2000)}`).reason, 'unsupported', 'parentheses nested too deep for the call stack');
  t.ok(compileFilter(`${'('.repeat(200)}tcp${')'.repeat(200)}`), 'but 200 levels are fine');
  t.equal(refusal('ip', 105 as 1).reason, 'unsupported', 'an unknown link type');
});

t.test('raw IP (link type 101): version nibble instead of EtherType, no link header', async (t) => {
  const v4 = ipv4(6, tcp({ dport: 80 }), { src: '10.0.0.1' });
  const v6 = ipv6(17, udp(1, 53, filler(8)));
  const raw = (e: string, p: Buffer): boolean => compileFilter(e, LINKTYPE_RAW).match(p, 0, p.length, p.length);
  t.ok(raw('ip and host 10.0.0.1 and tcp port 80', v4));
  t.notOk(raw('ip6', v4));
  t.ok(raw('ip6 and udp port 53', v6));
  t.ok(raw('ether[0] = 0x45', v4), 'ether[] is the start of the packet');
  t.equal(refusal('ether host 00:11:22:33:44:55', LINKTYPE_RAW).reason, 'syntax');
  t.equal(refusal('vlan', LINKTYPE_RAW).reason, 'syntax');
  t.equal(refusal('broadcast', LINKTYPE_RAW).reason, 'syntax');
  t.match(refusal('arp', LINKTYPE_RAW).message, /rejects all packets/, 'raw IP is never ARP');
});

t.test('the surprises of libpcap, as mirrorcap reproduces them', async (t) => {
  t.notOk(matches('host 10.0.0.1', tagged), 'a primitive without vlan does not look inside a tag');
  t.ok(matches('vlan and host 10.0.0.1', tagged), 'after vlan it does');
  t.ok(matches('vlan 100 and tcp port 80', tagged));
  t.notOk(matches('vlan and host 10.0.0.1', plain));
  t.notOk(matches('(vlan and ip) or ip', plain), 'vlan moves the offsets of everything after it, in either branch');
  t.ok(matches('ip or (vlan and ip)', plain));
  t.ok(matches('ether[1000] & 0 = 0', plain), 'a load the optimizer folds away never fails');
  t.notOk(matches('ether[1000] = 0 or ip', plain), 'a load past the end fails the whole filter');
  t.ok(matches('ip or ether[1000] = 0', plain), 'unless the filter decided before reaching it');
  t.notOk(matches('ip[0] / (ip[1] - ip[1]) = 0 or tcp', plain), 'a division by zero at run time fails the whole filter');
  t.ok(matches('ip[0] / (ip[1] - ip[1]) = 0 or ip', plain), 'unless the optimizer drops the division (it implies ip, which the or accepts anyway)');
  t.ok(matches('tcp', v6frag(0)), 'tcp looks through an IPv6 fragment header right after the fixed header');
  t.ok(matches('tcp', v6frag(8)), 'even in a later fragment');
  t.notOk(matches('tcp port 80', v6frag(0)), 'but port does not: an IPv6 first fragment has no port for libpcap');
  t.ok(matches('ip6[40] = 6 and ip6[50:2] = 80', v6frag(0)), 'write it by hand if you need it');
  t.ok(matches('port 53', dns));
  t.notOk(matches('port domain', dns) === false, 'domain is both TCP and UDP');
  t.notOk(matches('port http', ether(0x0800, ipv4(17, udp(1, 80, filler(4))))), 'http is TCP only');
  t.ok(matches('net 10', dns), 'net 10 is 10.0.0.0/8');
  t.notOk(matches('host 10', dns), 'host 10 is 0.0.0.10');
  t.ok(matches('host 10.9', dns), 'host 10.9 is 10.9.0.0/16');
  t.ok(matches('len > 100', plain, 1500), 'len is the length on the wire, not the bytes captured');
  t.ok(matches('greater 1500', plain, 1500));
  t.notOk(matches('icmp', ether(0x86dd, ipv6(1, icmp(8, 0, 0, filler(8))))), 'icmp is IPv4 only');
  t.notOk(matches('tcp[13] != 0', ether(0x86dd, ipv6(6, tcp()))), 'tcp[] is IPv4 only');
});

t.test('long programs: branches farther than 255 instructions go through ja', async (t) => {
  const f = compileFilter(Array.from({ length: 200 }, (_, i) => `ether[${i}] = ${i + 1}`).join(' or '));
  t.ok(f.program.some((i) => i.code === 0x05), 'the program has ja instructions');
  const frame = Buffer.alloc(200);
  t.notOk(f.match(frame, 0, 200, 200));
  frame[0] = 1;
  t.ok(f.match(frame, 0, 200, 200), 'the first test');
  frame[0] = 0;
  frame[199] = 200;
  t.ok(f.match(frame, 0, 200, 200), 'the last test');
  t.notOk(f.match(frame, 0, 199, 200), 'the last test past the captured end');
});

t.test('match() reads the frame where it is, and only the captured bytes', async (t) => {
  const f = compileFilter('tcp dst port 443 and host 192.168.7.7');
  const slab = Buffer.concat([Buffer.alloc(100, 0xee), plain, Buffer.alloc(50, 0xee)]);
  t.ok(f.match(slab, 100, plain.length, plain.length), 'at an offset in a larger buffer');
  t.notOk(f.match(slab, 100, 36, plain.length), 'cut before the ports: no match, whatever follows in the buffer');
  t.notOk(f.match(slab, 0, plain.length, plain.length), 'the bytes before it are not a frame');
  t.equal(typeof f.match, 'function');
  t.equal(f.text, 'tcp dst port 443 and host 192.168.7.7');
  t.equal(f.linkType, 1);
  t.ok(f.program.length > 5);
  t.ok(compileFilter('').match(Buffer.alloc(0), 0, 0, 0), 'the empty filter matches everything, even nothing');
});
