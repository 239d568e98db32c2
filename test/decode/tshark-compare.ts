/**
 * Compares our Decoder with tshark, frame by frame and field by field.
 *
 * tshark prints, per frame, the protocol chain (frame.protocols, e.g.
 * "eth:ethertype:vlan:ethertype:ip:tcp") and every occurrence of each field
 * in dissection order, comma-separated. We walk the layers our decoder
 * parsed in the same order, check that tshark's chain starts with ours, and
 * take field occurrences from the front as each layer is checked. An ICMP
 * error's quoted header comes after its ICMP layer, so it is never taken.
 * On VXLAN outer frames the inner frame is decoded from the UDP payload and
 * checked against the next occurrences (the second eth.type, ip.src, ...).
 *
 * Where our chain ends, tshark must not have gone on into a layer we decode
 * (or, if we stopped with an error, it must have flagged that layer too).
 * Differences we judge to be tshark's choice rather than our bug are named in
 * QUIRKS with the reason, and reported as excused rather than failing.
 */
import { ETHERTYPE_MIN } from '../../src/decode/ethernet.js';
import { formatIpv4 } from '../../src/decode/ipv4.js';
import { formatIpv6 } from '../../src/decode/ipv6.js';
import { Decoder, LAYER_NAMES, STATUS_NAMES } from '../../src/decode/packet.js';
import {
  ERR_EXT_LIMIT,
  ERR_VLAN_LIMIT,
  L4_ICMP,
  L4_ICMPV6,
  L4_TCP,
  L4_UDP,
  LAYER_ARP,
  LAYER_ETHERNET,
  LAYER_ICMP,
  LAYER_ICMPV6,
  LAYER_IPV4,
  LAYER_IPV6,
  LAYER_IP_EXT,
  LAYER_TCP,
  LAYER_UDP,
  LAYER_VLAN,
  OK,
} from '../../src/decode/status.js';
import { ETHER_ARP, ETHER_IPV4, ETHER_IPV6, ETHER_KIND, ETHERTYPE_QINQ } from '../../src/decode/tables.js';
import { readCapture } from '../../src/pcap/reader.js';
import { LINKTYPE_ETHERNET } from '../../src/pcap/pcap.js';
import { tool } from '../lib/tools.js';

export const TSHARK_FIELDS = [
  'frame.number',
  'frame.cap_len',
  'frame.protocols',
  '_ws.malformed',
  '_ws.short',
  '_ws.expert.severity',
  'eth.type',
  'eth.len',
  'vlan.id',
  'vlan.priority',
  'vlan.dei',
  'vlan.etype',
  'ieee8021ad.id',
  'ieee8021ad.priority',
  'ieee8021ad.dei',
  'arp.opcode',
  'arp.src.proto_ipv4',
  'arp.dst.proto_ipv4',
  'ip.version',
  'ip.hdr_len',
  'ip.len',
  'ip.id',
  'ip.flags.mf',
  'ip.frag_offset',
  'ip.ttl',
  'ip.proto',
  'ip.src',
  'ip.dst',
  'ipv6.version',
  'ipv6.plen',
  'ipv6.nxt',
  'ipv6.hlim',
  'ipv6.src',
  'ipv6.dst',
  'ipv6.hopopts.nxt',
  'ipv6.routing.nxt',
  'ipv6.fraghdr.nxt',
  'ipv6.dstopts.nxt',
  'ah.next_header',
  'mip6.proto',
  'ipv6.fraghdr.offset',
  'ipv6.fraghdr.more',
  'ipv6.fraghdr.ident',
  'tcp.srcport',
  'tcp.dstport',
  'tcp.seq_raw',
  'tcp.ack_raw',
  'tcp.hdr_len',
  'tcp.flags',
  'tcp.window_size_value',
  'udp.srcport',
  'udp.dstport',
  'udp.length',
  'icmp.type',
  'icmp.code',
  'icmpv6.type',
  'icmpv6.code',
] as const;

/** Reassembly off, so every frame shows its own headers; 8472 is the Linux VXLAN port. */
const TSHARK_OPTS = [
  '-n',
  '-o',
  'ip.defragment:FALSE',
  '-o',
  'ipv6.defragment:FALSE',
  '-o',
  'tcp.analyze_sequence_numbers:FALSE',
  '-d',
  'udp.port==8472,vxlan',
];

/** tshark's name for each extension header we walk, and the field holding its next header. */
const EXT_TOKEN: Record<number, [string, string]> = {
  0: ['ipv6.hopopts', 'ipv6.hopopts.nxt'],
  43: ['ipv6.routing', 'ipv6.routing.nxt'],
  44: ['ipv6.fraghdr', 'ipv6.fraghdr.nxt'],
  60: ['ipv6.dstopts', 'ipv6.dstopts.nxt'],
  51: ['ah', 'ah.next_header'],
  135: ['mipv6', 'mip6.proto'],
  139: ['hip', ''],
  140: ['shim6', ''],
};

const EXT_TOKENS = new Set(Object.values(EXT_TOKEN).map(([t]) => t));

/**
 * Tokens of layers we decode at that depth: where our chain ended without an
 * error, tshark must not go on into one of these. (After an IP header, another
 * IP header is a tunnel, which we do not follow.)
 */
const DECODABLE_L3 = new Set(['vlan', 'ieee8021ad', 'ip', 'ipv6', 'arp']);
const DECODABLE_L4 = new Set(['tcp', 'udp', 'icmp', 'icmpv6', ...EXT_TOKENS]);

const LAYER_TOKEN: Record<number, string> = {
  [LAYER_ETHERNET]: 'eth',
  [LAYER_ARP]: 'arp',
  [LAYER_IPV4]: 'ip',
  [LAYER_IPV6]: 'ipv6',
  [LAYER_TCP]: 'tcp',
  [LAYER_UDP]: 'udp',
  [LAYER_ICMP]: 'icmp',
  [LAYER_ICMPV6]: 'icmpv6',
};

/** tshark severities (epan/proto.h): warnings and errors count as "tshark flagged the frame". */
const PI_WARN = 0x00600000;

export type DiffKind = 'chain' | 'field' | 'undissected' | 'unflagged';

export interface DiffContext {
  kind: DiffKind;
  d: Decoder;
  /** tshark's next token where ours stopped (or the token it had instead of ours). */
  next: string | undefined;
  /** The token before that, in both chains. */
  prev: string | undefined;
  /** For 'field': tshark's value, undefined when it has none. */
  theirs: string | undefined;
  /** tshark marked the frame malformed or cut short. */
  malformed: boolean;
  what: string;
}

export interface Quirk {
  id: string;
  reason: string;
  applies(c: DiffContext): boolean;
}

export const QUIRKS: readonly Quirk[] = [
  {
    id: 'vlan-tag-limit',
    reason:
      'we stop after 3 VLAN tags on purpose (a bounded loop, ERR_VLAN_LIMIT); tshark walks any number of tags without comment',
    applies: (c) => c.kind === 'unflagged' && c.d.status === ERR_VLAN_LIMIT,
  },
  {
    id: 'ipv6-ext-header-limit',
    reason:
      'we stop after 8 IPv6 extension headers on purpose (ERR_EXT_LIMIT); tshark walks any number without comment',
    applies: (c) => c.kind === 'unflagged' && c.d.status === ERR_EXT_LIMIT,
  },
  {
    id: 'ipv6-payload-length-zero',
    reason:
      'IPv6 payload length 0 without a jumbo option (a GSO/BIG TCP capture): tshark 4.0 gives the next layer an empty payload and calls it malformed; we take the payload to the end of the slice, as for IPv4 total length 0 (where tshark does the same) and as tcpdump does',
    applies: (c) =>
      c.d.ipVersion === 6 &&
      c.d.ipv6.lengthInferred &&
      ((c.kind === 'chain' && c.next === undefined) || (c.kind === 'field' && c.theirs === undefined && c.malformed)),
  },
  {
    id: 'ext-header-bad-option',
    reason:
      'an option inside an IPv6 options header runs past the header: tshark gives up on the whole frame; we skip the header by its own length, as a node that does not process the option does (RFC 8200 4.2), and decode the intact transport header behind it',
    applies: (c) => c.kind === 'chain' && c.next === undefined && c.malformed && c.prev !== undefined && EXT_TOKENS.has(c.prev),
  },
];

export interface Excuse {
  frame: number;
  quirk: string;
  what: string;
}

export interface CompareReport {
  file: string;
  frames: number;
  /** Inner frames of VXLAN packets decoded and compared as well. */
  innerFrames: number;
  fieldsCompared: number;
  diffs: string[];
  excused: Excuse[];
}

/** tshark's fields for every frame: one map of field -> occurrences per frame. */
async function tsharkRows(path: string): Promise<Map<string, string[]>[]> {
  const args = ['-r', path, ...TSHARK_OPTS, '-T', 'fields', '-E', 'separator=/t', '-E', 'occurrence=a', '-E', 'aggregator=,'];
  for (const f of TSHARK_FIELDS) args.push('-e', f);
  const out = await tool('tshark', args);
  return out
    .split('\n')
    .filter((l) => l !== '')
    .map((line) => {
      const cols = line.split('\t');
      const row = new Map<string, string[]>();
      TSHARK_FIELDS.forEach((f, i) => {
        const v = cols[i] ?? '';
        row.set(f, v === '' ? [] : v.split(','));
      });
      return row;
    });
}

class Abort extends Error {}

/** One frame's check: a cursor over tshark's chain and over each field's occurrences. */
class FrameCheck {
  private ti = 0;
  private readonly used = new Map<string, number>();
  private readonly tokens: string[];
  private readonly flagged: boolean;
  private readonly malformed: boolean;
  fields = 0;

  constructor(
    private readonly row: Map<string, string[]>,
    private readonly frameNo: number,
    private readonly report: CompareReport,
    private readonly inner: Decoder[],
  ) {
    this.tokens = (row.get('frame.protocols') ?? [])[0]?.split(':') ?? [];
    const sev = (row.get('_ws.expert.severity') ?? []).map(Number);
    this.malformed = (row.get('_ws.malformed') ?? []).length > 0 || (row.get('_ws.short') ?? []).length > 0;
    this.flagged = this.malformed || sev.some((s) => s >= PI_WARN);
  }

  run(d: Decoder, depth: number): void {
    try {
      this.frame(d, depth);
    } catch (e) {
      if (!(e instanceof Abort)) throw e;
    }
  }

  private diff(kind: DiffKind, d: Decoder, next: string | undefined, what: string, theirs?: string): void {
    const c = { kind, d, next, prev: this.tokens[this.ti - 1], theirs, malformed: this.malformed, what };
    const quirk = QUIRKS.find((q) => q.applies(c));
    if (quirk) this.report.excused.push({ frame: this.frameNo, quirk: quirk.id, what });
    else this.report.diffs.push(`${this.report.file} #${this.frameNo}: ${what}`);
  }

  private token(d: Decoder, tok: string): void {
    const have = this.tokens[this.ti];
    if (have !== tok) {
      this.diff('chain', d, have, `chain: we decoded ${tok} at position ${this.ti}, tshark has ${have ?? 'nothing'} (${this.tokens.join(':')})`);
      throw new Abort();
    }
    this.ti++;
  }

  private take(field: string): string | undefined {
    const i = this.used.get(field) ?? 0;
    this.used.set(field, i + 1);
    return this.row.get(field)?.[i];
  }

  private eq(d: Decoder, field: string, ours: number | string | boolean): void {
    const theirs = this.take(field);
    this.fields++;
    const same =
      typeof ours === 'string'
        ? theirs === ours
        : theirs !== undefined && Number(theirs) === (typeof ours === 'boolean' ? (ours ? 1 : 0) : ours);
    if (!same) this.diff('field', d, undefined, `${field}: ours ${String(ours)}, tshark ${theirs ?? '(absent)'}`, theirs);
  }

  /** Our walk ended without an error: tshark must not have decoded a layer we know how to decode there. */
  private end(d: Decoder): void {
    const next = this.tokens[this.ti];
    if (next !== undefined && (d.ipVersion === 0 ? DECODABLE_L3 : DECODABLE_L4).has(next)) {
      this.diff('undissected', d, next, `we stopped after ${this.tokens.slice(0, this.ti).join(':')}, tshark goes on into ${next}`);
    }
  }

  /** Our walk failed at the layer tshark calls `tok`: if tshark decoded it, it must have complained. */
  private stopAt(d: Decoder, tok: string): void {
    const next = this.tokens[this.ti];
    if (next === tok && !this.flagged) {
      this.diff(
        'unflagged',
        d,
        next,
        `we stopped at ${tok} (${STATUS_NAMES[d.status]} at ${LAYER_NAMES[d.errorLayer]}), tshark decoded it without a warning`,
      );
    }
  }

  private frame(d: Decoder, depth: number): void {
    const failed = d.status === OK ? -1 : d.errorLayer;
    if (failed === LAYER_ETHERNET) return this.stopAt(d, 'eth');
    this.token(d, 'eth');
    const first = d.ethernet.etherType;
    if (first < ETHERTYPE_MIN) {
      this.eq(d, 'eth.len', first);
      return;
    }
    this.eq(d, 'eth.type', first);
    const vlan = d.vlan;
    const tags = d.vlanCount + (failed === LAYER_VLAN ? 1 : 0);
    for (let i = 0; i < tags; i++) {
      this.token(d, 'ethertype');
      const ad = vlan.tpid(i) === ETHERTYPE_QINQ;
      const tok = ad ? 'ieee8021ad' : 'vlan';
      if (i === d.vlanCount) return this.stopAt(d, tok);
      this.token(d, tok);
      this.eq(d, `${tok}.id`, vlan.id(i));
      this.eq(d, `${tok}.priority`, vlan.pcp(i));
      this.eq(d, `${tok}.dei`, vlan.dei(i));
      if (!ad) this.eq(d, 'vlan.etype', i + 1 < tags ? vlan.tpid(i + 1) : d.etherType);
    }
    this.token(d, 'ethertype');
    switch (ETHER_KIND[d.etherType]) {
      case ETHER_ARP:
        return this.arp(d, failed);
      case ETHER_IPV4:
        if (failed === LAYER_IPV4) return this.stopAt(d, 'ip');
        this.ipv4(d);
        return this.extensions(d, failed, depth);
      case ETHER_IPV6:
        if (failed === LAYER_IPV6) return this.stopAt(d, 'ipv6');
        this.ipv6(d);
        return this.extensions(d, failed, depth);
      default:
        return this.end(d);
    }
  }

  private arp(d: Decoder, failed: number): void {
    if (failed === LAYER_ARP) return this.stopAt(d, 'arp');
    this.token(d, 'arp');
    const a = d.arp;
    this.eq(d, 'arp.opcode', a.opcode);
    if (a.protocolType === 0x0800 && a.protocolLen === 4) {
      this.eq(d, 'arp.src.proto_ipv4', formatIpv4(d.buf, a.senderProtocolOff));
      this.eq(d, 'arp.dst.proto_ipv4', formatIpv4(d.buf, a.targetProtocolOff));
    }
  }

  private ipv4(d: Decoder): void {
    this.token(d, 'ip');
    const ip = d.ipv4;
    this.eq(d, 'ip.version', 4);
    this.eq(d, 'ip.hdr_len', ip.headerLen);
    this.eq(d, 'ip.len', d.ipLength);
    this.eq(d, 'ip.id', ip.id);
    this.eq(d, 'ip.flags.mf', d.moreFragments);
    this.eq(d, 'ip.frag_offset', d.fragOffset / 8);
    this.eq(d, 'ip.ttl', d.ttl);
    this.eq(d, 'ip.proto', ip.protocol);
    this.eq(d, 'ip.src', formatIpv4(d.buf, d.srcAddrOff));
    this.eq(d, 'ip.dst', formatIpv4(d.buf, d.dstAddrOff));
  }

  private ipv6(d: Decoder): void {
    this.token(d, 'ipv6');
    const ip = d.ipv6;
    // tshark's IPv6 dissector adds an ip.version of its own.
    this.eq(d, 'ip.version', 6);
    this.eq(d, 'ipv6.version', 6);
    this.eq(d, 'ipv6.plen', ip.payloadLength);
    this.eq(d, 'ipv6.nxt', ip.nextHeader);
    this.eq(d, 'ipv6.hlim', d.ttl);
    this.eq(d, 'ipv6.src', formatIpv6(d.buf, d.srcAddrOff));
    this.eq(d, 'ipv6.dst', formatIpv6(d.buf, d.dstAddrOff));
  }

  private extensions(d: Decoder, failed: number, depth: number): void {
    const ext = d.ipExt;
    const walked = d.fragOffset === 0 || d.ipVersion === 6;
    for (let i = 0; walked && i < ext.count; i++) {
      const [tok, nxt] = EXT_TOKEN[ext.type(i)];
      this.token(d, tok);
      if (nxt) this.eq(d, nxt, i + 1 < ext.count ? ext.type(i + 1) : d.ipProto);
      if (ext.type(i) === 44) {
        this.eq(d, 'ipv6.fraghdr.offset', d.fragOffset / 8);
        this.eq(d, 'ipv6.fraghdr.more', d.moreFragments);
        this.eq(d, 'ipv6.fraghdr.ident', d.fragId);
      }
    }
    if (failed === LAYER_IP_EXT) return this.stopAt(d, EXT_TOKEN[d.ipProto]?.[0] ?? '?');
    this.transport(d, failed, depth);
  }

  private transport(d: Decoder, failed: number, depth: number): void {
    if (d.fragOffset !== 0) return this.end(d);
    if (failed >= 0) return this.stopAt(d, LAYER_TOKEN[failed] ?? '?');
    switch (d.l4) {
      case L4_TCP:
        this.token(d, 'tcp');
        this.eq(d, 'tcp.srcport', d.srcPort);
        this.eq(d, 'tcp.dstport', d.dstPort);
        this.eq(d, 'tcp.seq_raw', d.tcpSeq);
        this.eq(d, 'tcp.ack_raw', d.tcpAck);
        this.eq(d, 'tcp.hdr_len', d.tcp.headerLen);
        this.eq(d, 'tcp.flags', d.tcpFlags);
        this.eq(d, 'tcp.window_size_value', d.tcpWindow);
        return;
      case L4_UDP:
        this.token(d, 'udp');
        this.eq(d, 'udp.srcport', d.srcPort);
        this.eq(d, 'udp.dstport', d.dstPort);
        this.eq(d, 'udp.length', d.udpLength);
        return this.vxlan(d, depth);
      case L4_ICMP:
        this.token(d, 'icmp');
        this.eq(d, 'icmp.type', d.icmpType);
        this.eq(d, 'icmp.code', d.icmpCode);
        return;
      case L4_ICMPV6:
        this.token(d, 'icmpv6');
        this.eq(d, 'icmpv6.type', d.icmpType);
        this.eq(d, 'icmpv6.code', d.icmpCode);
        return;
      default:
        return this.end(d);
    }
  }

  /** Where tshark saw VXLAN in the UDP payload, decode the inner frame after the 8-byte header. */
  private vxlan(d: Decoder, depth: number): void {
    if (this.tokens[this.ti] !== 'vxlan' || d.payloadLen < 8 || depth >= this.inner.length) return;
    this.token(d, 'vxlan');
    const inner = this.inner[depth];
    inner.decode(d.buf, d.payloadOff + 8, d.payloadLen - 8);
    this.report.innerFrames++;
    this.frame(inner, depth + 1);
  }
}

/** Decodes every frame of an Ethernet capture (read with the project's CaptureReader) and compares it with tshark. */
export async function compareCapture(path: string, name = path): Promise<CompareReport> {
  const report: CompareReport = { file: name, frames: 0, innerFrames: 0, fieldsCompared: 0, diffs: [], excused: [] };
  const rows = await tsharkRows(path);
  const outer = new Decoder();
  const inner = [new Decoder(), new Decoder(), new Decoder(), new Decoder()];
  const otherLinks = new Set<number>();
  let records = 0;
  await readCapture(path, (buf, off, capLen, _orig, _sec, _nsec, linkType) => {
    const i = records++;
    const row = rows[i];
    if (linkType !== LINKTYPE_ETHERNET) otherLinks.add(linkType);
    if (linkType !== LINKTYPE_ETHERNET || row === undefined) return;
    const check = new FrameCheck(row, i + 1, report, inner);
    if (Number(row.get('frame.cap_len')?.[0]) !== capLen) {
      report.diffs.push(`${name} #${i + 1}: frame.cap_len ${row.get('frame.cap_len')?.[0]}, we read ${capLen}`);
    }
    outer.decode(buf, off, capLen);
    check.run(outer, 0);
    report.fieldsCompared += check.fields;
    report.frames++;
  });
  for (const lt of otherLinks) report.diffs.push(`${name}: link type ${lt}, not Ethernet`);
  if (rows.length !== records) report.diffs.push(`${name}: tshark has ${rows.length} frames, the file ${records}`);
  return report;
}
