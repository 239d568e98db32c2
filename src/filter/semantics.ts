/**
 * Syntax tree -> the normalized tree of tree.ts: qualifier inheritance made explicit, names
 * resolved from the fixed tables, and every check libpcap's semantic actions make (gen_scode,
 * gen_ncode, gen_mcode, gen_mcode6, gen_ecode, gen_host, gen_proto, ...) made here with the
 * same outcome, so what libpcap refuses is refused and what it accepts means the same.
 *
 * Qualifier inheritance (grammar.y's $<blk>0): an id takes the qualifiers of the value just
 * before it. After `head`, the head's; after and/or, those of the expression so far, which
 * are those of its last primitive, or none (libpcap's qerr) after `tcp`, a relation, `vlan`,
 * `less`...; through `not` and `(`, whatever was before them. A parenthesized expression
 * passes on the qualifiers from before its '(' (so in `host a and (tcp) or b`, b is a host).
 */
import { parseAddr } from '../addr.js';
import { FilterError } from './errors.js';
import { LINKTYPE_RAW, type LinkType } from './gencode.js';
import type { Token } from './lexer.js';
import { ETHER_PROTOCOLS, IP_PROTOCOLS, SERVICES } from './names.js';
import type { DQual, PName, Qual, SynArith, SynExpr, SynId } from './syntax.js';
import type { ArithNode, BroadcastNode, Direction, EtherHostNode, FilterNode, HostNode, Layer, LoadNode, MulticastNode, PortNode, ProtoNode, Transport } from './tree.js';

type Q = NonNullable<Qual>;

/** What an abbreviation like `tcp` compiles to in libpcap (gen_proto_abbrev). */
const ABBREVIATIONS: Partial<Record<PName, { layer: ProtoNode['layer']; protocol: number }>> = {
  ip: { layer: 'ether', protocol: 0x0800 },
  ip6: { layer: 'ether', protocol: 0x86dd },
  arp: { layer: 'ether', protocol: 0x0806 },
  rarp: { layer: 'ether', protocol: 0x8035 },
  tcp: { layer: null, protocol: 6 },
  udp: { layer: null, protocol: 17 },
  sctp: { layer: null, protocol: 132 },
  pim: { layer: null, protocol: 103 },
  ah: { layer: null, protocol: 51 },
  esp: { layer: null, protocol: 50 },
  icmp: { layer: 'ip', protocol: 1 },
  igmp: { layer: 'ip', protocol: 2 },
  igrp: { layer: 'ip', protocol: 9 },
  vrrp: { layer: 'ip', protocol: 112 },
  carp: { layer: 'ip', protocol: 112 },
  icmp6: { layer: 'ip6', protocol: 58 },
};

const DIRECTIONS: Record<DQual, Direction> = { default: 'src or dst', src: 'src', dst: 'dst', 'src or dst': 'src or dst', 'src and dst': 'src and dst' };

interface Result {
  readonly node: FilterNode;
  readonly q: Qual;
}

export class Semantics {
  /** `vlan` primitives met so far, in text order (the order libpcap generates code in). */
  private vlans = 0;

  constructor(
    private readonly linkType: LinkType,
    private readonly tokens: readonly Token[],
  ) {}

  tree(s: SynExpr | null): FilterNode {
    return s === null ? { kind: 'all', pos: 0 } : this.expr(s, null).node;
  }

  private fail(pos: number, detail: string, reason: 'syntax' | 'unsupported' | 'name' = 'syntax'): never {
    const tok = this.tokens.find((t) => t.pos === pos);
    throw new FilterError(reason, pos, tok?.raw ?? '', detail);
  }

  private expr(s: SynExpr, ctx: Qual): Result {
    switch (s.t) {
      case 'and':
      case 'or': {
        const l = this.expr(s.left, ctx);
        const r = isId(s.right) ? this.id(s.right, l.q) : this.expr(s.right, l.q);
        return { node: { kind: s.t, pos: s.pos, left: l.node, right: r.node }, q: r.q };
      }
      case 'not': {
        const inner = this.expr(s.expr, ctx);
        return { node: { kind: 'not', pos: s.pos, expr: inner.node }, q: inner.q };
      }
      case 'qualified':
        return this.id(s.id, s.q);
      case 'paren':
        return { node: this.expr(s.expr, ctx).node, q: ctx };
      case 'pname':
        return { node: this.abbreviation(s.name, s.pos), q: null };
      case 'relation':
        return { node: { kind: 'compare', pos: s.pos, op: s.op, left: this.arith(s.left), right: this.arith(s.right) }, q: null };
      case 'broadcast':
        return { node: this.broadcast(s.pqual, s.pos), q: null };
      case 'multicast':
        return { node: this.multicast(s.pqual, s.pos), q: null };
      case 'less':
      case 'greater':
        return { node: { kind: 'length', pos: s.pos, op: s.t === 'less' ? '<=' : '>=', value: s.value }, q: null };
      case 'vlan':
        if (this.linkType === LINKTYPE_RAW) this.fail(s.pos, 'no VLAN support for raw IP (linktype 101)');
        if (s.id !== null && s.id > 0x0fff) this.fail(s.pos, `VLAN tag ${s.id} greater than maximum 4095`);
        return { node: { kind: 'vlan', pos: s.pos, vlan: this.vlans++, id: s.id }, q: null };
    }
  }

  private id(s: SynId, q: Qual): Result {
    switch (s.t) {
      case 'idnot': {
        const inner = this.id(s.id, q);
        return { node: { kind: 'not', pos: s.pos, expr: inner.node }, q: inner.q };
      }
      case 'idlist': {
        let acc = this.id(s.first, q);
        for (const { op, id } of s.rest) {
          const r = this.id(id, acc.q);
          acc = { node: { kind: op, pos: id.pos, left: acc.node, right: r.node }, q: r.q };
        }
        return acc;
      }
      case 'pnum':
        return { node: this.ncode(null, s.value, q, s.pos), q };
      case 'hid':
        if (s.masklen !== null || s.mask !== null) return { node: this.mcode(s.text, s.mask, s.masklen ?? 0, q, s.pos), q };
        if (q?.addr === 'port' || q?.addr === 'portrange' || q?.addr === 'proto') this.fail(s.pos, `'${q.addr}' modifier applied to ip host`);
        return { node: this.ncode(s.text, 0, q, s.pos), q };
      case 'hid6':
        return { node: this.mcode6(s.text, s.masklen, q, s.pos), q };
      case 'eid':
        return { node: this.ecode(s.text, q, s.pos), q };
      case 'name':
        return { node: this.scode(s.text, q, s.pos), q };
    }
  }

  // ---- addresses and numbers (gen_ncode, gen_mcode, gen_mcode6, gen_ecode) ----------------

  /** A number or a dotted address after a qualifier: a host, net, port, port range or protocol. */
  private ncode(s: string | null, v: number, q: Qual, pos: number): FilterNode {
    let vlen = 32;
    if (s !== null) {
      const a = atoin(s);
      if (a === null) this.fail(pos, `invalid IPv4 address '${s}'`);
      [v, vlen] = a;
    }
    if (q === null) this.fail(pos, 'syntax error: an address or number here needs a qualifier (host, port, ...) before it');
    switch (q.addr) {
      case 'default':
      case 'host':
      case 'net': {
        if (q.proto === 'ether') this.fail(pos, 'illegal link layer address');
        let mask = 0xffffffff;
        if (s === null && q.addr === 'net') {
          // "net 10" is 10.0.0.0/8: a short network number is left-justified.
          while (v !== 0 && (v & 0xff000000) === 0) {
            v = (v << 8) >>> 0;
            mask = (mask << 8) >>> 0;
          }
        } else {
          // "host 10.1" is 10.1.0.0/16: a short dotted address covers a network.
          v = (v << (32 - vlen)) >>> 0;
          mask = (mask << (32 - vlen)) >>> 0;
        }
        return this.host4(v, mask, q, pos);
      }
      case 'port':
      case 'portrange': {
        const transport = this.transportOf(q, pos);
        if (v > 65535) this.fail(pos, `illegal port number ${v} > 65535`);
        return this.port(q, transport, v, v, pos);
      }
      case 'proto':
        return this.proto(v, q.proto, pos);
    }
  }

  private mcode(s1: string, s2: string | null, masklen: number, q: Qual, pos: number): FilterNode {
    const a = atoin(s1);
    if (a === null) this.fail(pos, `invalid IPv4 address '${s1}'`);
    const n = (a[0] << (32 - a[1])) >>> 0;
    let m: number;
    if (s2 !== null) {
      const b = atoin(s2);
      if (b === null) this.fail(pos, `invalid IPv4 address '${s2}'`);
      m = (b[0] << (32 - b[1])) >>> 0;
      if ((n & ~m) !== 0) this.fail(pos, `non-network bits set in "${s1} mask ${s2}"`);
    } else {
      if (masklen > 32) this.fail(pos, 'mask length must be <= 32');
      m = masklen === 0 ? 0 : (0xffffffff << (32 - masklen)) >>> 0;
      if ((n & ~m) !== 0) this.fail(pos, `non-network bits set in "${s1}/${masklen}"`);
    }
    if (q?.addr !== 'net') this.fail(pos, 'Mask syntax for networks only');
    return this.host4(n, m, q, pos);
  }

  private mcode6(s: string, masklen: number, q: Qual, pos: number): FilterNode {
    const parsed = new Uint8Array(16);
    parseAddr(s, parsed, 0);
    const addr = [...parsed];
    if (masklen > 128) this.fail(pos, 'mask length must be <= 128');
    const mask = Array.from({ length: 16 }, (_, i) => (i < masklen >> 3 ? 0xff : i === masklen >> 3 && masklen % 8 ? (0xff << (8 - (masklen % 8))) & 0xff : 0));
    if (addr.some((b, i) => (b & ~mask[i]!) !== 0)) this.fail(pos, `non-network bits set in "${s}/${masklen}"`);
    if (q === null || (q.addr !== 'default' && q.addr !== 'host' && q.addr !== 'net')) this.fail(pos, 'invalid qualifier against IPv6 address');
    if (q.addr !== 'net' && masklen !== 128) this.fail(pos, 'Mask syntax for networks only');
    if (q.proto !== 'default' && q.proto !== 'ip6') {
      this.fail(pos, q.proto === 'ether' ? 'link-layer modifier applied to ip6 host' : `'${q.proto}' modifier applied to ip6 ${q.addr === 'net' ? 'net' : 'host'}`);
    }
    return this.vlanned<HostNode>({ kind: 'host', pos, keyword: q.addr === 'net' ? 'net' : 'host', family: 6, proto: 'ip6', dir: DIRECTIONS[q.dir], addr, mask });
  }

  private ecode(s: string, q: Qual, pos: number): FilterNode {
    if (q === null || (q.addr !== 'host' && q.addr !== 'default') || q.proto !== 'ether') this.fail(pos, 'ethernet address used in non-ether expression');
    if (this.linkType === LINKTYPE_RAW) this.fail(pos, 'ethernet addresses are not supported on raw IP (linktype 101)');
    return this.vlanned<EtherHostNode>({ kind: 'ether-host', pos, dir: DIRECTIONS[q.dir], addr: etherAton(s) });
  }

  private host4(addr: number, mask: number, q: Q, pos: number): FilterNode {
    const keyword = q.addr === 'net' ? 'net' : 'host';
    if (q.proto !== 'default' && q.proto !== 'ip' && q.proto !== 'arp' && q.proto !== 'rarp') {
      this.fail(pos, q.proto === 'ether' ? `link-layer modifier applied to ${keyword}` : q.proto === 'ip6' ? "'ip6' modifier applied to ip host" : `'${q.proto}' modifier applied to ${keyword}`);
    }
    return this.vlanned<HostNode>({
      kind: 'host',
      pos,
      keyword,
      family: 4,
      proto: q.proto === 'default' ? null : q.proto,
      dir: DIRECTIONS[q.dir],
      addr: bytes(addr),
      mask: bytes(mask),
    });
  }

  // ---- names (gen_scode) ------------------------------------------------------------------

  private scode(name: string, q: Qual, pos: number): FilterNode {
    if (q === null) this.fail(pos, `syntax error: '${name}' needs a qualifier (host, port, ...) before it`);
    switch (q.addr) {
      case 'net':
        return this.fail(pos, `network names are not supported (no /etc/networks lookup); write the network as an address`, 'name');
      case 'default':
      case 'host':
        return this.fail(pos, `${q.proto === 'ether' ? 'Ethernet host names (/etc/ethers)' : 'host names'} are not supported (no name resolution); write the address`, 'name');
      case 'port': {
        if (!['default', 'tcp', 'udp', 'sctp'].includes(q.proto)) this.fail(pos, "illegal qualifier of 'port'");
        const service = SERVICES.get(name);
        if (!service) this.fail(pos, `unknown service '${name}' (mirrorcap knows a fixed list, see docs/filters.md; write the port number)`, 'name');
        const port = service.tcp ?? service.udp!;
        const real: Transport = service.tcp !== null && service.udp !== null ? null : service.tcp !== null ? 'tcp' : 'udp';
        return this.port(q, this.reconcile(q, real, `port '${name}'`, pos), port, port, pos);
      }
      case 'portrange': {
        if (!['default', 'tcp', 'udp', 'sctp'].includes(q.proto)) this.fail(pos, "illegal qualifier of 'portrange'");
        const [from, to, real] = this.portRange(name, pos);
        const transport = this.reconcile(q, real, `port in range '${name}'`, pos);
        for (const p of [from, to]) {
          if (p < 0) this.fail(pos, `illegal port number ${p} < 0`);
          if (p > 65535) this.fail(pos, `illegal port number ${p} > 65535`);
        }
        return this.port(q, transport, from, to, pos);
      }
      case 'proto': {
        if (q.proto === 'ether') {
          const v = ETHER_PROTOCOLS.get(name);
          if (v === undefined) this.fail(pos, `unknown ether proto '${name}'`, 'name');
          return this.proto(v, q.proto, pos);
        }
        if (q.proto !== 'default' && q.proto !== 'ip' && q.proto !== 'ip6') this.fail(pos, `unknown protocol: ${name}`);
        const v = IP_PROTOCOLS.get(name);
        if (v === undefined) this.fail(pos, `unknown ip proto '${name}' (mirrorcap knows a fixed list, see docs/filters.md; write the number)`, 'name');
        return this.proto(v, q.proto, pos);
      }
    }
  }

  /**
   * pcap_nametoportrange(): "N-M" as sscanf("%d-%d") reads it (trailing text ignored, numbers
   * wrapped to 32 bits like glibc's %d), else two service names around the first '-'.
   */
  private portRange(name: string, pos: number): [number, number, Transport] {
    const m = /^([0-9]+)-(-?[0-9]+)/.exec(name);
    if (m) return [scanInt(m[1]!), scanInt(m[2]!), null];
    const dash = name.indexOf('-');
    if (dash < 0) this.fail(pos, `unknown port in range '${name}'`, 'name');
    const ends = [name.slice(0, dash), name.slice(dash + 1)].map((part) => {
      if (/^[0-9]+$/.test(part)) this.fail(pos, `a port range mixing a number and a service name ('${name}') is not supported; write both as numbers`, 'unsupported');
      const s = SERVICES.get(part);
      if (!s) this.fail(pos, `unknown service '${part}' in port range '${name}'`, 'name');
      const real: Transport = s.tcp !== null && s.udp !== null ? null : s.tcp !== null ? 'tcp' : 'udp';
      return { port: s.tcp ?? s.udp!, real };
    });
    return [ends[0]!.port, ends[1]!.port, ends[0]!.real === ends[1]!.real ? ends[0]!.real : null];
  }

  /** A `tcp`/`udp`/`sctp` qualifier against what a service name says (gen_scode's checks). */
  private reconcile(q: Q, real: Transport, what: string, pos: number): Transport {
    if (q.proto === 'default') return real;
    if (real !== null && real !== q.proto) this.fail(pos, `${what} is ${real}`);
    return q.proto as Transport;
  }

  private transportOf(q: Q, pos: number): Transport {
    if (q.proto === 'default') return null;
    if (q.proto === 'tcp' || q.proto === 'udp' || q.proto === 'sctp') return q.proto;
    return this.fail(pos, `illegal qualifier of '${q.addr}'`);
  }

  private port(q: Q, transport: Transport, from: number, to: number, pos: number): PortNode {
    const [lo, hi] = from > to ? [to, from] : [from, to];
    return this.vlanned<PortNode>({ kind: 'port', pos, keyword: q.addr === 'portrange' ? 'portrange' : 'port', transport, dir: DIRECTIONS[q.dir], from: lo, to: hi });
  }

  // ---- protocols --------------------------------------------------------------------------

  /** gen_proto: `proto N`, `ip proto N`, `ip6 proto N`, `ether proto N`. */
  private proto(v: number, pq: PName | 'default', pos: number): FilterNode {
    if (pq === 'arp' || pq === 'rarp') this.fail(pos, `${pq} does not encapsulate another protocol`);
    if (pq !== 'default' && pq !== 'ether' && pq !== 'ip' && pq !== 'ip6') this.fail(pos, `'${pq} proto' is bogus`);
    return this.vlanned<ProtoNode>({ kind: 'proto', pos, layer: pq === 'default' ? null : pq, protocol: v });
  }

  private abbreviation(name: PName, pos: number): FilterNode {
    const a = ABBREVIATIONS[name];
    if (!a) this.fail(pos, 'link layer applied in wrong context');
    return this.vlanned<ProtoNode>({ kind: 'proto', pos, ...a });
  }

  private broadcast(pq: PName | 'default', pos: number): FilterNode {
    if (pq === 'default' || pq === 'ether') {
      if (this.linkType === LINKTYPE_RAW) this.fail(pos, 'not a broadcast link');
      return this.vlanned<BroadcastNode>({ kind: 'broadcast', pos, layer: 'ether' });
    }
    if (pq === 'ip') return this.vlanned<BroadcastNode>({ kind: 'broadcast', pos, layer: 'ip' });
    return this.fail(pos, 'only link-layer/IP broadcast filters supported');
  }

  private multicast(pq: PName | 'default', pos: number): FilterNode {
    if ((pq === 'default' || pq === 'ether') && this.linkType !== LINKTYPE_RAW) return this.vlanned<MulticastNode>({ kind: 'multicast', pos, layer: 'ether' });
    if (pq === 'ip' || pq === 'ip6') return this.vlanned<MulticastNode>({ kind: 'multicast', pos, layer: pq });
    return this.fail(pos, 'link-layer multicast filters supported only on ethernet');
  }

  // ---- packet data ------------------------------------------------------------------------

  private arith(a: SynArith): ArithNode {
    switch (a.t) {
      case 'num':
        return { kind: 'number', pos: a.pos, value: a.value };
      case 'len':
        return { kind: 'wirelen', pos: a.pos };
      case 'binary':
        return { kind: 'binary', pos: a.pos, op: a.op, left: this.arith(a.left), right: this.arith(a.right) };
      case 'negate':
        return { kind: 'negate', pos: a.pos, expr: this.arith(a.expr) };
      case 'load': {
        const offset = this.arith(a.offset);
        if (a.size !== 1 && a.size !== 2 && a.size !== 4) this.fail(a.pos, 'data size must be 1, 2, or 4');
        if (a.pname === 'ah' || a.pname === 'esp') this.fail(a.pos, 'unsupported index operation');
        return this.vlanned<LoadNode>({ kind: 'load', pos: a.pos, layer: a.pname as Layer, offset, size: a.size });
      }
    }
  }

  /** Stamps a primitive with the number of `vlan`s before it. */
  private vlanned<T extends { vlan: number }>(n: Omit<T, 'vlan'>): T {
    return { ...n, vlan: this.vlans } as T;
  }
}

function isId(n: SynExpr | SynId): n is SynId {
  return n.t === 'name' || n.t === 'pnum' || n.t === 'hid' || n.t === 'hid6' || n.t === 'eid' || n.t === 'idnot' || n.t === 'idlist';
}

/**
 * __pcap_atoin(): a dotted address of 1 to 4 parts -> [value, bits]. Like libpcap, it reads
 * each character as a decimal digit (so hex parts like 0x1f come out as garbage or an error).
 */
function atoin(s: string): [number, number] | null {
  let addr = 0;
  let len = 0;
  for (const part of s.split('.')) {
    let n = 0;
    for (const c of part) {
      if (n > 25) return null;
      n = n * 10 + c.charCodeAt(0) - 48;
    }
    if (n > 255) return null;
    addr = ((addr << 8) | n) >>> 0;
    len += 8;
  }
  return [addr, len];
}

/** pcap_ether_aton(): 1-2 hex digits per byte, one optional separator before each. */
function etherAton(s: string): number[] {
  const out: number[] = [];
  let i = 0;
  const hex = (c: string | undefined): boolean => c !== undefined && /[0-9A-Fa-f]/.test(c);
  while (i < s.length) {
    if (s[i] === ':' || s[i] === '.' || s[i] === '-') i++;
    let d = parseInt(s[i++]!, 16);
    if (hex(s[i])) d = (d << 4) | parseInt(s[i++]!, 16);
    out.push(d);
  }
  return out;
}

/** glibc's %d: the value wrapped to 32 bits (saturated first past 64), as stored into an int. */
function scanInt(text: string): number {
  let v = BigInt(text);
  const max = (1n << 63n) - 1n;
  if (v > max) v = max;
  if (v < -max - 1n) v = -max - 1n;
  return Number(BigInt.asIntN(32, v));
}

function bytes(v: number): number[] {
  return [v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
}

