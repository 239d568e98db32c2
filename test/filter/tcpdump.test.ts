/**
 * Differential test of the filter module against libpcap itself: for every expression, the
 * set of frames compileFilter() matches must be exactly the set `tcpdump -r FILE -w - EXPR`
 * writes (each record has a unique timestamp, so the set is read back from tcpdump's output),
 * and an expression tcpdump refuses must be refused by us. The only allowed difference: words
 * mirrorcap deliberately does not support, which must be refused with that reason, the word
 * and its position. For one expression in three, the compiled program must also equal
 * `tcpdump -d`'s, instruction for instruction; and for every accepted expression, the printed
 * tree must compile to the same program.
 *
 * Expressions: a hand-written list of the tricky cases (precedence, abbreviations, fragments,
 * VLAN, IPv6 extension headers, truncated frames, loads past the end, arithmetic edge cases),
 * a shorter one for raw IP (LINKTYPE_RAW), then expressions from a seeded generator over the
 * whole supported grammar (one in five on raw IP): at least 200, then more until the test has
 * run MIRRORCAP_FILTER_SECONDS (default 60) or MIRRORCAP_FILTER_EXPRESSIONS (default 4000)
 * were generated. Each tcpdump run is a process start, 10-20 ms on a quiet machine and
 * 50-150 ms on a 2-core one shared by several test suites: the time bound keeps the test
 * around a minute (two at worst) and lets a quiet machine cover thousands. The log says how many ran and the seed; MIRRORCAP_FILTER_SEED and
 * MIRRORCAP_FILTER_EXPRESSIONS replay a run exactly.
 */
import { spawn, spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { compileFilter, FilterError, LINKTYPE_ETHERNET, LINKTYPE_RAW, printFilter, type LinkType } from '../../src/filter/index.js';
import { bpfImage } from './bpf-image.js';
import { buildPcap } from '../lib/captures.js';
import { Random } from '../lib/random.js';
import { withTempDir } from '../lib/tools.js';
import { buildCorpus, poolsOf, type Frame } from './corpus.js';
import { ExpressionGenerator } from './generate.js';

const MAX_GENERATED = Number(process.env.MIRRORCAP_FILTER_EXPRESSIONS ?? 4000);
const SECONDS = Number(process.env.MIRRORCAP_FILTER_SECONDS ?? 60);
const MIN_GENERATED = Math.min(200, MAX_GENERATED);
/** Generated expressions per tcpdump batch (between batches the clock is checked). */
const BATCH = 100;
const SEED = Number(process.env.MIRRORCAP_FILTER_SEED ?? 0x5eed);
const CONCURRENCY = Math.max(8, availableParallelism() * 4);
/** Expressions whose program is also compared with tcpdump -d: one in this many (it costs a second tcpdump run). */
const PROGRAM_SAMPLE = 3;

/** The tricky cases, written by hand, on Ethernet frames. */
const HAND_WRITTEN = [
  // Precedence: and/or equal and left to right, not tightest.
  'tcp or udp and icmp',
  'tcp and udp or icmp',
  'not tcp or udp',
  'not (tcp or udp)',
  '! tcp && ! udp || icmp',
  'not not ip6',
  'tcp and not port 80 or udp',
  // Abbreviations and qualifier inheritance.
  'host 10.0.0.1 or 10.0.0.2',
  'host 10.0.0.1 or 192.168.1.10 and 10.0.0.2',
  'src host 10.0.0.1 or 192.168.1.10',
  'ip src 10.0.0.1 or dst 192.168.1.10',
  'port 80 or 443',
  'tcp port 80 or 443 or 22',
  'udp port 53 or domain',
  'port 80 or http',
  'src or dst port 53',
  'dst or src port 53',
  'src and dst port 53',
  'host 10.0.0.1 and not 192.168.1.10',
  'host 10.0.0.1 and (192.168.1.10 or 10.0.0.2)',
  'host (10.0.0.1 or 192.168.1.10)',
  'host (10.0.0.1 or (192.168.1.10 or 10.0.0.2))',
  'host ((10.0.0.1 or 192.168.1.10) or 10.0.0.2)',
  'host ((10.0.0.1))',
  'port (80 or 443)',
  'port ((80) or 443)',
  'port ((80))',
  'host not 10.0.0.1',
  'host (not 10.0.0.1)',
  'not 10.0.0.1',
  'host 10.0.0.1 and (tcp) or 192.168.1.10',
  'host 10.0.0.1 and not (tcp) or 192.168.1.10',
  '(host 10.0.0.1) or 192.168.1.10',
  'tcp or 10.0.0.1',
  'vlan 100 or 200',
  'ether host 00:11:22:33:44:55 or 66:77:88:99:aa:bb',
  'ether src 00:11:22:33:44:55 or dst ff:ff:ff:ff:ff:ff',
  'net 10 or 192.168',
  'ip proto 6 or 17',
  'proto \\tcp or \\udp',
  'ip host 10.0.0.1 or ip6 host 2001:db8::1 or 192.168.1.10',
  // Addresses: short forms, masks, IPv6, odd lexing.
  'host 10',
  'net 10',
  'host 10.0',
  'net 10.0',
  'host 192.168.1',
  'net 192.168.1.0/24',
  'net 10/8',
  'net 10.0.0.0 mask 255.0.0.0',
  'net 10.0.0.0 mask 255.0.255.0',
  'net 192.168.1.10/24',
  'net 0.0.0.0/0',
  'net 10.0.0.0/33',
  'host 10.0.0.1/32',
  'src net 192.168.0.0/16 and dst net 10.0.0.0/8',
  'arp host 10.0.0.1',
  'rarp host 10.0.0.9',
  'ip host 10.0.0.1',
  'host 2001:db8::1',
  'ip6 host 2001:db8::1',
  'host 2001:db8::1/128',
  'host 2001:db8::/64',
  'net 2001:db8::/32',
  'ip6 net ff02::/16',
  'net 2001:db8::1/64',
  'net ::/0',
  'ip host 2001:db8::1',
  'host ::ffff:10.0.0.1',
  'host ::1.2.3.256',
  'host 1:2:3:4:5:6:7',
  'host 123456789012',
  'host 1.2.3.4.5',
  'ether host 0011.2233.4455',
  'ether host 00-11-22-33-44-55',
  'ether host 001122334455',
  'ether host 0:11:22:33:44:55',
  'ether src and dst 00:11:22:33:44:55',
  'host 00:11:22:33:44:55',
  'ether host 10.0.0.1',
  // Ports and port ranges, service names (the table against this machine's /etc/services).
  'port 80',
  'tcp port 80',
  'udp port 53',
  'sctp port 5000',
  'tcp src port 40000',
  'port 0',
  'port 65535',
  'port 65536',
  'port 0x50',
  'port 0120',
  'portrange 1-1024',
  'tcp portrange 5000-5100',
  'portrange 443-80',
  'portrange 80',
  'portrange 10-20-30',
  'portrange 80--5',
  'portrange 4294967376-4294967377',
  'portrange ftp-ssh',
  'portrange domain-http',
  'port http',
  'port https',
  'port domain',
  'port www',
  'port syslog',
  'port ssh',
  'port ntp',
  'udp port http',
  'tcp port ntp',
  'sctp port domain',
  'sctp port http',
  'tcp port domain',
  'ip port 80',
  'icmp port 80',
  // Protocols.
  'ip',
  'ip6',
  'arp',
  'rarp',
  'tcp',
  'udp',
  'icmp',
  'icmp6',
  'sctp',
  'igmp',
  'igrp',
  'pim',
  'vrrp',
  'carp',
  'ah',
  'esp',
  'ether',
  'proto 6',
  'ip proto 1',
  'ip6 proto 58',
  'ip6 proto 44',
  'ip6 proto 0',
  'ip proto \\tcp',
  'ip6 proto \\ipv6-icmp',
  'proto \\gre',
  'ether proto 0x800',
  'ether proto 0x86dd',
  'ether proto 0x8100',
  'ether proto \\ip',
  'ether proto \\arp',
  'ether proto \\ipx',
  'ether proto \\atalk',
  'ether proto \\aarp',
  'ether proto \\stp',
  'ether proto \\iso',
  'ether proto \\netbeui',
  'ether proto 6',
  'ether proto 66',
  'ether proto 1500',
  'ether proto 1501',
  'ether proto 0x10000',
  'ip proto 300',
  'arp proto 6',
  'tcp proto 6',
  'ip6 and tcp',
  'ip and udp',
  'ip6 and ip',
  'tcp and udp',
  'ip and not ip',
  // VLAN: offsets move for everything after it.
  'vlan',
  'vlan 100',
  'vlan 200',
  'vlan 0',
  'vlan 4095',
  'vlan 4096',
  'vlan (100)',
  'vlan and vlan',
  'vlan 100 and vlan 200',
  'vlan 300 and vlan 1 and udp',
  'vlan and host 10.0.0.1',
  'host 10.0.0.1',
  'host 10.0.0.1 and vlan',
  'vlan and tcp port 80',
  'vlan and ip6 and tcp',
  'vlan and arp',
  'vlan or ip',
  'ip or vlan',
  '(vlan and ip) or ip',
  'not vlan and tcp',
  'vlan and not vlan',
  'vlan and ether host 00:11:22:33:44:55',
  'vlan and ether[12:2] = 0x8100',
  'vlan and ip[9] = 6',
  'vlan and ether proto 0x800',
  'vlan and broadcast',
  'ether proto 0x88a8 or ether proto 0x9100',
  // Fragments and IPv6 extension headers: where libpcap looks.
  'ip[6:2] & 0x1fff != 0',
  'ip[6:2] & 0x2000 != 0',
  'tcp and ip[6:2] & 0x1fff = 0',
  'tcp[0:2] = 40000',
  'tcp[2:2] = 80',
  'udp[2:2] = 53',
  'ip6 and udp port 53',
  'ip6[6] = 0 and ip6[40] = 6',
  'ip6[6] = 44',
  'icmp6 and ip6[40] = 135',
  'icmp6[0] = 128',
  'icmp6[icmp6type] = icmp6-echo',
  'icmp6[icmp6type] = icmp6-neighborsolicit',
  'ip6 multicast',
  'ip6 dst net ff02::/16',
  // Multicast and broadcast.
  'broadcast',
  'ether broadcast',
  'ip broadcast',
  'ip6 broadcast',
  'multicast',
  'ether multicast',
  'link multicast',
  'ip multicast',
  'arp multicast',
  'tcp broadcast',
  'ether[0] & 1 != 0',
  // Lengths.
  'less 60',
  'less 64',
  'greater 1000',
  'greater 1514',
  'len = 60',
  'len > 1500',
  'len <= 64',
  'len - 14 > 1000',
  'less (100)',
  // Packet data, relations, named constants.
  'ip[0] = 0x45',
  'ip[0] & 0xf0 = 0x40',
  'ip[0] & 0xf0 == 0x60',
  'ip[2:2] > 576',
  'ip[9] = 6',
  'ip[12:4] = 0x0a000001',
  'tcp[tcpflags] & tcp-syn != 0',
  'tcp[tcpflags] & (tcp-syn|tcp-ack) = tcp-syn',
  'tcp[13] = 18',
  'tcp[tcpflags] & (tcp-fin|tcp-rst|tcp-push|tcp-urg|tcp-ece|tcp-cwr) != 0',
  'icmp[icmptype] = icmp-echo',
  'icmp[icmptype] != icmp-echo and icmp[icmptype] != icmp-echoreply',
  'icmp[icmpcode] = 3',
  'icmp[0] = icmp-unreach',
  'udp[8:4] != 0',
  'sctp[0:2] = 5000',
  'igmp[0] = 0x16',
  'pim[0] != 0',
  'vrrp[0] != 0',
  'arp[6:2] = 1',
  'arp[7] = 2',
  'rarp[7] = 3',
  'ether[12:2] = 0x0800',
  'link[12:2] = 0x86dd',
  'ether[6:4] = 0x00112233',
  'ip[0:3] = 1',
  'ip[0:0] = 1',
  'ah[0] = 1',
  'esp[0] = 1',
  'ip[2:2] - ((ip[0] & 0xf) << 2) - ((tcp[12] & 0xf0) >> 2) != 0',
  'udp[0:2] = udp[2:2]',
  'ip[12:4] = ip[16:4]',
  '1 + tcp[0] = 1',
  'tcp[0] + 1 = 1',
  'ip[9] + tcp[0] = 6',
  '-ip[0] = -69',
  '- - ip[0] = 69',
  '-ip[0] % 5 = 4',
  'ip[0] % 5 + 1 = 1',
  'ip[0] + 1 % 5 = 70',
  'ip[0] ^ 3 * 2 = 0x4b',
  'ip[0] | 1 ^ 2 & 3 = 0x47',
  '5 - 3 - 1 = 1',
  '2 * 3 + 4 * 5 = 26',
  'ip[0] << 2 >> 1 = 138',
  'ip[0] * 2 / 3 = 46',
  // Loads past the end of the packet make the whole filter fail, unless optimized away.
  'ether[1500] = 0',
  'ether[1500] = 0 or ip',
  'ip or ether[1500] = 0',
  'ether[1500] & 0 = 0',
  'ether[60000:4] * 0 = 0',
  'ether[1500] - ether[1500] = 0',
  'ether[1500] = ether[1500]',
  'ether[1500] != ether[1500]',
  'tcp[100:4] = 0',
  'tcp[100:4] = 0 or tcp',
  'not ether[1500] = 0',
  'ether[len] = 0',
  'ether[len - 1] = 0',
  'ether[len - 4:4] != 0',
  'ether[0xffffffff] = 0',
  'ether[0xfffffffe:2] = 0',
  'ether[4294967295:4] = 0 or ip',
  'ip[len] = 0 or ip',
  'ip[100000] = 1 and 1 = 1',
  'tcp[0xffffffff] = 0',
  'ether[ether[0]] != 300',
  'ether[ether[12:2]] = 0',
  'ether[12 - 13] = 0',
  // Arithmetic: division by zero, shifts, 32-bit wraparound.
  'ip[0] / 0 = 0',
  'ip[0] % 0 = 0',
  'ip[0] / (0 + 5) = 13',
  'ip[0] / (5 - 5) = 0',
  'ip[0] / (ip[1] - ip[1]) = 0',
  'ip[0] % (ip[0] & 0) = 0',
  'ip[0] / (ip[0] & 0) = 0 or ip',
  'ip[0] / ip[1] = 0',
  'ip[0] % ip[1] = 0',
  'len / (len - len) = 0 or 1 = 1',
  'ip[0] << 31 = 0x80000000',
  'ip[0] << 32 = 0',
  'ip[0] >> 31 = 0',
  'ip[0] >> 32 = 0',
  'ip[0] << ip[0] = 0',
  'ip[0] << (ip[1] + 32) = 0',
  'ip[0] >> (ip[0] - 37) = 0',
  'ip[0] << (30 + 2) = 0',
  '1 << 31 = 0x80000000',
  '1 << 31 << 1 = 0',
  '0xffffffff + 1 = 0',
  '0 - 1 = 0xffffffff',
  '-1 = 0xffffffff',
  '0x80000000 * 2 = 0',
  'ip[0:4] * ip[4:4] > 0',
  'len * len > 0xffff',
  '4294967295 = 0xffffffff',
  '4294967296 = 0',
  '0xfffffffff = 0',
  '037777777777 = 0xffffffff',
  '040000000000 = 0',
  '010 = 8',
  '08 = 8',
  '1 = 1',
  '1 = 2',
  '1 != 1 or tcp',
  'ip[0] = ip[0]',
  'ip[0] > 0xffffffff',
  'ip[0] >= 0',
  'ip[0] < 0',
  // Syntax errors and words libpcap refuses.
  '',
  'and',
  'tcp and',
  '(tcp',
  'tcp)',
  'host',
  'port',
  'port 80 80',
  'src',
  'src or',
  'src or host 10.0.0.1',
  'ip src proto 6',
  'host 10.0.0.1 host 10.0.0.2',
  'ip[0]',
  'ip[0] = ',
  'ip[0] == == 1',
  '5 = 5 = 5',
  'tcp[0',
  'foo',
  'host foo',
  'port nosuchservice',
  'net foo',
  'host $1',
  'ip # 1',
  // Words mirrorcap refuses on purpose (tcpdump may accept them).
  'gateway 10.0.0.1',
  'ip6 protochain 6',
  'mpls',
  'pppoes',
  'geneve',
  'inbound',
  'byte 12 = 8',
  'llc',
  'stp',
  'atalk',
  'wlan host 00:11:22:33:44:55',
  'host localhost',
  'ip proto \\TCP',
  // Programs long enough for branches that need a `ja` (offsets over 255).
  Array.from({ length: 200 }, (_, i) => `ether[${i}] = ${i % 7}`).join(' or '),
  Array.from({ length: 200 }, (_, i) => `ether[${i}] != ${(i * 5) % 11}`).join(' and '),
  `(${Array.from({ length: 60 }, (_, i) => `ip[${i}:2] = ${i * 3}`).join(' or ')}) and tcp`,
];

/** Cases where raw IP (no link header, version nibble instead of EtherType) answers differently. */
const HAND_WRITTEN_RAW = [
  '',
  'ip',
  'ip6',
  'arp',
  'not arp',
  'rarp or ip',
  'tcp',
  'udp port 53',
  'tcp port 80 or 443',
  'icmp6',
  'ip6 proto 44',
  'proto 17',
  'host 10.0.0.1',
  'host 10.0.0.1 or 192.168.1.10',
  'arp host 10.0.0.1',
  'ip6 host 2001:db8::1',
  'net 2001:db8::/32',
  'ether host 00:11:22:33:44:55',
  'ether proto 0x800',
  'ether proto 0x86dd',
  'ether proto 0x806',
  'ether proto 6',
  'ether proto \\ip',
  'ether[0] & 0xf0 = 0x40',
  'ether[0] = 0x60 or ip',
  'link[9] = 6',
  'ip[0] = 0x45',
  'ip6[6] = 58',
  'tcp[tcpflags] & tcp-syn != 0',
  'icmp[icmptype] = icmp-echo',
  'broadcast',
  'multicast',
  'ether broadcast',
  'ip broadcast',
  'ip multicast',
  'ip6 multicast',
  'vlan',
  'vlan 100',
  'less 40',
  'greater 100',
  'len < 21',
  'ip[1500] = 0 or ip',
  'ether[0] = 0',
  'ip or ip6',
  'not ip and not ip6',
];

interface Job {
  readonly expr: string;
  readonly linkType: LinkType;
  /** Also compare the compiled program with tcpdump -d's. */
  readonly compareProgram: boolean;
}

interface Outcome {
  readonly accepted: boolean;
  /** Matching frame indexes (accepted only), or tcpdump's message. */
  readonly matches: readonly number[];
  readonly message: string;
}

/**
 * Runs tcpdump once per call, through xargs: forking a big node process per call costs more
 * than tcpdump itself, forking xargs' sh does not. A 'match' call writes the matching records
 * (tcpdump -r FILE -w OUT -- EXPR), a 'program' call the compiled program (tcpdump -d); "--"
 * because an expression starting with '-' would otherwise be read as options.
 */
const SCRIPT =
  'if [ "$3" = program ]; then tcpdump -r "$2" -d -- "$4" > "$0/$1.out" 2> "$0/$1.err"; ' +
  'else tcpdump -r "$2" -w "$0/$1.out" -- "$4" 2> "$0/$1.err"; fi; echo $? > "$0/$1.rc"';

interface Call {
  readonly file: string;
  readonly mode: 'match' | 'program';
  readonly expr: string;
}

async function tcpdumpBatch(dir: string, calls: readonly Call[]): Promise<{ code: number; out: Buffer; err: string }[]> {
  const batch = await mkdtemp(join(dir, 'batch-'));
  await new Promise<void>((resolve, reject) => {
    const p = spawn('xargs', ['-0', '-n', '4', '-P', String(CONCURRENCY), 'sh', '-c', SCRIPT, batch], { stdio: ['pipe', 'ignore', 'inherit'] });
    p.on('error', reject);
    p.on('close', () => resolve());
    p.stdin.end(calls.map((c, i) => `${i}\0${c.file}\0${c.mode}\0${c.expr}\0`).join(''));
  });
  const results = await Promise.all(
    calls.map(async (_, i) => {
      const code = Number(await readFile(join(batch, `${i}.rc`), 'utf8'));
      const err = (await readFile(join(batch, `${i}.err`), 'utf8')).trim().split('\n').pop() ?? '';
      return { code, out: code === 0 ? await readFile(join(batch, `${i}.out`)) : Buffer.alloc(0), err };
    }),
  );
  await rm(batch, { recursive: true, force: true });
  return results;
}

/** The records tcpdump wrote, by timestamp: record i of the input has second i + 1. */
function recordsOf(out: Buffer): number[] {
  const le = out.readUInt32LE(0) === 0xa1b2c3d4;
  const matches: number[] = [];
  for (let pos = 24; pos + 16 <= out.length; ) {
    const sec = le ? out.readUInt32LE(pos) : out.readUInt32BE(pos);
    const capLen = le ? out.readUInt32LE(pos + 8) : out.readUInt32BE(pos + 8);
    matches.push(sec - 1);
    pos += 16 + capLen;
  }
  return matches;
}

function ours(expr: string, linkType: LinkType, frames: readonly Frame[]): Outcome & { error?: FilterError; program?: string } {
  let c;
  try {
    c = compileFilter(expr, linkType);
  } catch (e) {
    if (!(e instanceof FilterError)) throw e;
    return { accepted: false, matches: [], message: e.message, error: e };
  }
  const matches: number[] = [];
  frames.forEach((f, i) => {
    if (c.match(f.data, 0, f.data.length, f.wireLen)) matches.push(i);
  });
  // The printed tree must compile to the same program.
  const printed = printFilter(c.tree);
  const again = bpfImage(compileFilter(printed, linkType).program);
  const program = bpfImage(c.program);
  if (again !== program) return { accepted: true, matches, message: `printed as "${printed}", which compiles differently`, program };
  return { accepted: true, matches, message: '', program };
}

function pcapOf(frames: readonly Frame[], linkType: number): Buffer {
  return buildPcap({ linkType, records: frames.map((f, i) => ({ sec: i + 1, frac: 0, data: f.data, origLen: f.wireLen })) });
}

const tcpdumpMissing = spawnSync('tcpdump', ['--version']).status !== 0;

t.test('filters match exactly the frames tcpdump -r matches', { skip: tcpdumpMissing ? 'tcpdump is not installed' : false }, async (t) => {
  const deadline = performance.now() + SECONDS * 1000;
  await withTempDir(async (dir) => {
    const corpus = await buildCorpus(dir);
    t.comment(`frames from ${corpus.sources.length} sources: ${corpus.ethernet.length} Ethernet, ${corpus.raw.length} raw IP`);
    if (!corpus.sources.some((s) => s.startsWith('real/'))) t.comment('SKIP part: ../shared/pcaps/real not found; fixtures and hand-built frames only');
    const files = { [LINKTYPE_ETHERNET]: join(dir, 'ethernet.pcap'), [LINKTYPE_RAW]: join(dir, 'raw.pcap') };
    await writeFile(files[LINKTYPE_ETHERNET], pcapOf(corpus.ethernet, LINKTYPE_ETHERNET));
    await writeFile(files[LINKTYPE_RAW], pcapOf(corpus.raw, LINKTYPE_RAW));
    const framesOf = { [LINKTYPE_ETHERNET]: corpus.ethernet, [LINKTYPE_RAW]: corpus.raw };

    const problems: string[] = [];
    const tally = { accepted: 0, refusedByBoth: 0, unsupported: 0, matchedSome: 0, programs: 0 };
    /** Runs a batch of jobs through tcpdump and through us, and compares. */
    const check = async (jobs: readonly Job[]): Promise<void> => {
      const calls: Call[] = [];
      const at = jobs.map((j) => {
        const file = files[j.linkType];
        calls.push({ file, mode: 'match', expr: j.expr });
        if (j.compareProgram) calls.push({ file, mode: 'program', expr: j.expr });
        return calls.length - (j.compareProgram ? 2 : 1);
      });
      const pending = tcpdumpBatch(dir, calls);
      const mine = jobs.map((j) => ours(j.expr, j.linkType, framesOf[j.linkType]));
      const theirs = await pending;
      jobs.forEach(({ expr, linkType, compareProgram }, n) => {
        const r = theirs[at[n]!]!;
        const m = mine[n]!;
        const where = `[${linkType === LINKTYPE_RAW ? 'raw' : 'ethernet'}] ${JSON.stringify(expr)}`;
        const e = m.error;
        // Every refusal names the word and where it is.
        if (e && (e.code !== 'ERR_MIRRORCAP_FILTER' || !expr.startsWith(e.word, e.position) || e.position > expr.length)) problems.push(`${where}: bad error fields ${JSON.stringify(e)}`);
        const accepted = r.code === 0;
        if (!accepted && !m.accepted) {
          tally.refusedByBoth++;
          return;
        }
        if (accepted && !m.accepted && e && e.reason !== 'syntax') {
          tally.unsupported++;
          return;
        }
        if (accepted !== m.accepted) {
          problems.push(`${where}: tcpdump ${accepted ? 'accepts' : `refuses (${r.err})`}, we ${m.accepted ? 'accept' : `refuse (${m.message})`}`);
          return;
        }
        tally.accepted++;
        if (m.message) problems.push(`${where}: ${m.message}`);
        const want = recordsOf(r.out);
        if (want.length > 0 && want.length < framesOf[linkType].length) tally.matchedSome++;
        if (want.join(',') !== m.matches.join(',')) {
          const only = (x: readonly number[], y: readonly number[]): number[] => x.filter((i) => !y.includes(i)).slice(0, 5);
          problems.push(`${where}: tcpdump matches ${want.length} frames, we ${m.matches.length}; only tcpdump: [${only(want, m.matches)}], only us: [${only(m.matches, want)}]`);
        }
        if (compareProgram) {
          tally.programs++;
          const program = theirs[at[n]! + 1]!.out.toString().trim();
          if (program !== m.program) problems.push(`${where}: tcpdump -d differs:\n${program}\n-- ours --\n${m.program}`);
        }
      });
    };
    const hand: Job[] = [
      ...HAND_WRITTEN.map((expr, i): Job => ({ expr, linkType: LINKTYPE_ETHERNET, compareProgram: i % PROGRAM_SAMPLE === 0 })),
      ...HAND_WRITTEN_RAW.map((expr, i): Job => ({ expr, linkType: LINKTYPE_RAW, compareProgram: i % PROGRAM_SAMPLE === 0 })),
    ];
    await check(hand);

    // Generated expressions, in batches while time allows (see the header).
    const gen = new ExpressionGenerator(new Random(SEED), poolsOf(corpus.ethernet));
    let generated = 0;
    while (generated < MAX_GENERATED && (generated < MIN_GENERATED || performance.now() < deadline)) {
      const batch: Job[] = [];
      for (let i = 0; i < BATCH && generated < MAX_GENERATED; i++, generated++) {
        batch.push({ expr: gen.expression(), linkType: generated % 5 === 4 ? LINKTYPE_RAW : LINKTYPE_ETHERNET, compareProgram: generated % PROGRAM_SAMPLE === 0 });
      }
      await check(batch);
    }
    const total = hand.length + generated;
    t.comment(
      `${total} expressions (${hand.length} hand-written, ${generated} generated with seed ${SEED}): ` +
        `${tally.accepted} accepted by both (${tally.matchedSome} match some frames but not all), ${tally.refusedByBoth} refused by both, ` +
        `${tally.unsupported} refused by us only as unsupported words; ${tally.programs} programs compared with tcpdump -d`,
    );
    t.same(problems, [], 'no expression where mirrorcap and tcpdump disagree');
    t.ok(tally.accepted > total / 3, 'most expressions compile (the comparison is not just "both refuse")');
    t.ok(tally.matchedSome > tally.accepted / 4, 'many expressions select some frames and not others');
  });
});
