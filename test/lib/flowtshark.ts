/**
 * tshark's view of flows, the oracle of the flow tests: one line of fields per packet (no
 * reassembly, no defragmentation), added up per interval and direction-specific 5-tuple as AWS
 * documents flow records (IP bytes, first/last second, tcp-flags of FIN, SYN, RST and SYN-ACK).
 * QUIRKS names the packets where tshark's view and a flow record cannot agree by construction.
 */
import { spawnSync } from 'node:child_process';

export interface Agg {
  packets: number;
  bytes: number;
  start: number;
  end: number;
  flags: number;
}

const TSHARK_FIELDS = [
  'frame.time_epoch',
  'ip.src',
  'ip.dst',
  'ip.proto',
  'ip.len',
  'ipv6.src',
  'ipv6.dst',
  'ipv6.plen',
  'ipv6.opt.jumbo',
  'ipv6.nxt',
  'ipv6.hopopts.nxt',
  'ipv6.routing.nxt',
  'ipv6.dstopts.nxt',
  'ipv6.fraghdr.nxt',
  'ah.next_header',
  'tcp.srcport',
  'tcp.dstport',
  'tcp.flags',
  'udp.srcport',
  'udp.dstport',
  'sctp.srcport',
  'sctp.dstport',
  'dccp.srcport',
  'dccp.dstport',
  '_ws.malformed',
  'frame.protocols',
];

/** IPv6 extension headers (and AH): their "next header" is not the transport. */
const EXT = new Set([0, 43, 44, 51, 60, 135, 139, 140, 253, 254]);

export interface TsharkPacket {
  readonly key: string | null;
  readonly epoch: number;
  readonly bytes: number;
  readonly flags: number;
  readonly malformed: boolean;
  readonly protocols: string;
  /** IPv6 payload length 0 and no hop-by-hop header (so no jumbo option). */
  readonly lengthZero: boolean;
  /** tshark could not read the destination address: the IP header is cut short. */
  readonly headerCut: boolean;
}

/** tshark's view, packet by packet; key is null for a frame without IPv4/IPv6. */
export function tsharkPackets(pcap: string): TsharkPacket[] {
  const args = ['-r', pcap, '-n', '-o', 'ip.defragment:FALSE', '-o', 'ipv6.defragment:FALSE', '-T', 'fields', '-E', 'occurrence=a', '-E', 'aggregator=,', '-E', 'separator=/t'];
  for (const f of TSHARK_FIELDS) args.push('-e', f);
  const r = spawnSync('tshark', args, { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`tshark failed: ${r.stderr}`);
  return r.stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((line) => {
      const all = Object.fromEntries(line.split('\t').map((x, i) => [TSHARK_FIELDS[i]!, x === '' ? [] : x.split(',')]));
      // The first occurrence is the packet's own header; later ones are quoted (ICMP errors) or tunnelled.
      const v = Object.fromEntries(Object.entries(all).map(([k, x]) => [k, x[0] ?? '']));
      const epoch = Number(v['frame.time_epoch']);
      const malformed = v['_ws.malformed'] !== '';
      const protocols = v['frame.protocols']!;
      let src: string, dst: string, proto: number, bytes: number, type: string;
      if (v['ip.src'] !== '' && protocols.split(':').find((p) => p === 'ip' || p === 'ipv6') === 'ip') {
        src = v['ip.src']!;
        dst = v['ip.dst']!;
        proto = Number(v['ip.proto']);
        // AH authenticates and hides nothing: like the decoder (and RFC 4302), the flow is what it protects.
        if (proto === 51 && v['ah.next_header'] !== '') proto = Number(v['ah.next_header']);
        bytes = Number(v['ip.len']);
        type = 'IPv4';
      } else if (v['ipv6.src'] !== '') {
        src = v['ipv6.src']!;
        dst = v['ipv6.dst']!;
        // The transport follows the extension headers: the first next-header value that is not one.
        const chain = [v['ipv6.nxt']!, ...['ipv6.hopopts.nxt', 'ipv6.routing.nxt', 'ipv6.dstopts.nxt', 'ipv6.fraghdr.nxt', 'ah.next_header'].flatMap((f) => all[f]!)].filter((x) => x !== '').map(Number);
        proto = chain.find((n) => !EXT.has(n)) ?? chain[chain.length - 1]!;
        // A jumbogram (RFC 2675) has payload length 0 and its length in the jumbo payload option.
        bytes = 40 + (v['ipv6.plen'] === '0' && v['ipv6.opt.jumbo'] !== '' ? Number(v['ipv6.opt.jumbo']) : Number(v['ipv6.plen']));
        type = 'IPv6';
      } else {
        return { key: null, epoch, bytes: 0, flags: 0, malformed, protocols, lengthZero: false, headerCut: false };
      }
      const ports = (p: string): [string, string] => [v[`${p}.srcport`] || '0', v[`${p}.dstport`] || '0'];
      const [sport, dport] = proto === 6 ? ports('tcp') : proto === 17 ? ports('udp') : proto === 132 ? ports('sctp') : proto === 33 ? ports('dccp') : ['0', '0'];
      // AWS: FIN 1, SYN 2, RST 4, and SYN-ACK 18; ACK alone and the other flags are not reported.
      const raw = proto === 6 && v['tcp.flags'] !== '' ? Number(v['tcp.flags']) : 0;
      const flags = (raw & 7) | ((raw & 0x12) === 0x12 ? 16 : 0);
      const lengthZero = type === 'IPv6' && v['ipv6.plen'] === '0' && v['ipv6.opt.jumbo'] === '';
      return { key: `${src} ${dst} ${sport} ${dport} ${proto}|${type}`, epoch, bytes, flags, malformed, protocols, lengthZero, headerCut: dst === '' };
    });
}

export function aggregate(packets: readonly TsharkPacket[], interval: number, keep: (i: number) => boolean = () => true): Map<string, Agg> {
  const flows = new Map<string, Agg>();
  packets.forEach((p, i) => {
    if (p.key === null || !keep(i)) return;
    const sec = Math.floor(p.epoch);
    const key = `${Math.floor(sec / interval) * interval} ${p.key.split('|')[0]}`;
    const a = flows.get(key);
    if (a === undefined) flows.set(key, { packets: 1, bytes: p.bytes, start: sec, end: sec, flags: p.flags });
    else {
      a.packets++;
      a.bytes += p.bytes;
      a.start = Math.min(a.start, sec);
      a.end = Math.max(a.end, sec);
      a.flags |= p.flags;
    }
  });
  return flows;
}

/**
 * Packets where tshark's view is not comparable with a flow record, each with the reason; they are
 * left out on both sides (the same frame index), counted and shown.
 */
export const QUIRKS: ReadonlyArray<{ id: string; reason: string; applies: (p: TsharkPacket) => boolean }> = [
  {
    id: 'ipv6-length-zero',
    reason: 'IPv6 payload length 0 without a jumbo option (Linux BIG TCP): tshark stops at the IPv6 header; the decoder takes the bytes the frame holds and reads the transport',
    applies: (p) => p.lengthZero,
  },
  {
    id: 'ip-header-cut',
    reason: 'an IP header cut short or with an impossible length: tshark shows the fields it could read; for us it is not an IP packet (not a flow, counted in notIp)',
    applies: (p) => p.key !== null && p.headerCut,
  },
  {
    id: 'malformed-ip-layer',
    reason:
      'tshark flags an IP extension header or AH as malformed (Mobile IPv6 options in destination options, a header past the IP length): the decoder walks a header by its length, or reports the header it could not walk as the protocol',
    applies: (p) => p.malformed && /:(ip|ipv6|ipv6\.[a-z]+|ah)$/.test(p.protocols),
  },
  {
    id: 'ext-limit',
    reason: 'more than eight IPv6 extension headers: the decoder walks eight (its fixed cap) and reports the ninth as the protocol',
    applies: (p) => (p.protocols.match(/:ipv6\.[a-z]+(?=:|$)/g) ?? []).length > 8,
  },
  {
    id: 'vlan-limit',
    reason: 'more than three VLAN tags: the decoder walks three (its fixed cap), tshark all of them',
    applies: (p) => (p.protocols.match(/(^|:)(vlan|ieee8021ad)(?=:|$)/g) ?? []).length > 3,
  },
  {
    id: 'mpls',
    reason: 'IP inside an MPLS label stack: the decoder does not walk MPLS (mirrored ENI traffic carries none)',
    applies: (p) => /(^|:)mpls(:|$)/.test(p.protocols),
  },
];

