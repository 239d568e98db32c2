/**
 * A seeded generator of pcap-filter expressions over the whole language mirrorcap supports,
 * plus the mistakes people make (wrong qualifiers, bad numbers, unknown names), for the
 * differential test against tcpdump. Values come from pools taken from the frames under test
 * where possible, so expressions match something and the comparison is not just "both empty".
 * The same seed gives the same expressions.
 */
import type { Random } from '../lib/random.js';

export interface Pools {
  readonly ipv4: readonly string[];
  readonly ipv6: readonly string[];
  readonly macs: readonly string[];
  readonly ports: readonly number[];
  readonly vlans: readonly number[];
}


const SERVICES = ['http', 'https', 'domain', 'ssh', 'ntp', 'bootps', 'syslog', 'www', 'kerberos', 'snmp', 'ftp', 'mdns', 'http-alt', 'nosuchservice'];
const IP_PROTOS = ['tcp', 'udp', 'icmp', 'igmp', 'gre', 'esp', 'ah', 'ipv6-icmp', 'sctp', 'pim', 'ospf', 'vrrp', 'nosuchproto'];
const ETHER_PROTOS = ['ip', 'ip6', 'arp', 'rarp', 'atalk', 'aarp', 'ipx', 'iso', 'stp', 'netbeui', 'decnet', 'lat', 'sca', 'loopback', 'mopdl', 'moprc'];
const ABBREVIATIONS = ['ip', 'ip6', 'arp', 'rarp', 'tcp', 'udp', 'icmp', 'icmp6', 'sctp', 'igmp', 'igrp', 'pim', 'vrrp', 'carp', 'ah', 'esp'];
const LAYERS = ['ether', 'link', 'ip', 'ip6', 'arp', 'rarp', 'tcp', 'udp', 'sctp', 'icmp', 'icmp6', 'igmp', 'igrp', 'pim', 'vrrp', 'carp'];
const CONSTANTS = ['tcpflags', 'tcp-fin', 'tcp-syn', 'tcp-rst', 'tcp-push', 'tcp-ack', 'tcp-urg', 'tcp-ece', 'tcp-cwr', 'icmptype', 'icmpcode', 'icmp-echo', 'icmp-echoreply', 'icmp-unreach', 'icmp6type', 'icmp6-echo', 'icmp6-neighborsolicit'];
const ARITH_OPS = ['+', '-', '*', '/', '%', '&', '|', '^', '<<', '>>'];
const RELOPS = ['=', '==', '!=', '<', '<=', '>', '>='];

export class ExpressionGenerator {
  constructor(
    private readonly random: Random,
    private readonly pools: Pools,
  ) {}

  private n(max: number): number {
    return this.random.below(max);
  }

  private pick<T>(list: readonly T[]): T {
    return list[this.n(list.length)]!;
  }

  private chance(percent: number): boolean {
    return this.n(100) < percent;
  }

  /** A whole expression: one to a few terms joined by and/or. */
  expression(depth = 0): string {
    const terms = 1 + this.n(depth > 1 ? 2 : 4);
    let s = this.term(depth);
    for (let i = 1; i < terms; i++) {
      const op = this.pick(['and', 'or', '&&', '||', 'and', 'or']);
      // After and/or libpcap accepts a bare id that inherits the qualifiers before it.
      s += ` ${op} ${this.chance(8) ? this.bareId() : this.term(depth)}`;
    }
    return s;
  }

  private term(depth: number): string {
    const r = this.n(100);
    if (r < 8) return `${this.pick(['not ', '!', '! '])}${this.term(depth)}`;
    if (r < 16 && depth < 3) return `(${this.expression(depth + 1)})`;
    return this.primitive();
  }

  primitive(): string {
    switch (this.n(16)) {
      case 0:
      case 1:
        return this.host();
      case 2:
        return this.net();
      case 3:
        return this.etherHost();
      case 4:
      case 5:
        return this.port();
      case 6:
        return this.proto();
      case 7:
      case 8:
        return this.pick(ABBREVIATIONS);
      case 9:
        return this.vlan();
      case 10:
        return `${this.pick(['less', 'greater'])} ${this.number(this.pick([60, 64, 100, 128, 576, 1000, 1514, 1518]))}`;
      case 11:
        return this.chance(10) ? this.pick(['ip6 broadcast', 'arp multicast', 'tcp broadcast']) : this.pick(['broadcast', 'multicast', 'ether broadcast', 'ether multicast', 'ip broadcast', 'ip multicast', 'ip6 multicast', 'link multicast']);
      default:
        return this.relation();
    }
  }

  /** What may follow and/or without qualifiers: an address, a number, a name, a parenthesized list. */
  private bareId(): string {
    switch (this.n(6)) {
      case 0:
        return this.pick(this.pools.ipv4);
      case 1:
        return String(this.pick(this.pools.ports));
      case 2:
        return this.pick(SERVICES);
      case 3:
        return `not ${this.pick(this.pools.ipv4)}`;
      case 4:
        return `(${this.pick(this.pools.ipv4)} or ${this.pick(this.pools.ipv4)})`;
      default:
        return this.pick(this.pools.ipv6);
    }
  }

  private dir(): string {
    return this.pick(['', '', 'src ', 'dst ', 'src or dst ', 'dst or src ', 'src and dst ', 'dst and src ']);
  }

  private host(): string {
    const proto = this.chance(5) ? this.pick(['tcp ', 'ether ', 'ip6 ']) : this.pick(['', '', '', '', 'ip ', 'ip ', 'arp ', 'rarp ']);
    const six = proto === 'ip6 ' || (proto === '' && this.chance(25));
    const addr = six ? this.pick(this.pools.ipv6) : this.ipv4();
    const keyword = this.chance(85) ? 'host ' : '';
    const dir = this.dir();
    if (keyword === '' && dir === '') return `${proto}host ${addr}`;
    return `${proto}${dir}${keyword}${addr}`;
  }

  /** Full, short and odd IPv4 forms, as libpcap lexes them. */
  private ipv4(): string {
    const a = this.pick(this.pools.ipv4);
    const parts = a.split('.');
    const r = this.n(20);
    if (r === 0) return parts.slice(0, 1 + this.n(3)).join('.');
    if (r === 1) return parts[0]!;
    if (r === 2) return `${a}.${this.n(3)}`;
    return a;
  }

  private net(): string {
    const proto = this.pick(['', '', '', 'ip ', 'arp ', 'ip6 ']);
    const dir = this.dir();
    if (proto === 'ip6 ' || (proto === '' && this.chance(25))) {
      const len = this.pick([0, 16, 32, 48, 64, 96, 120, 127, 128, 129]);
      return `${proto}${dir}net ${this.v6Prefix(len)}/${len}`;
    }
    const a = this.pick(this.pools.ipv4).split('.').map(Number);
    switch (this.n(5)) {
      case 0: {
        const len = this.pick([0, 8, 12, 16, 20, 24, 30, 32, 33]);
        const masked = this.chance(85) ? mask4(a, len) : a;
        return `${proto}${dir}net ${masked.join('.')}/${len}`;
      }
      case 1: {
        const len = this.pick([8, 16, 24, 32]);
        return `${proto}${dir}net ${mask4(a, len).join('.')} mask ${mask4([255, 255, 255, 255], len).join('.')}`;
      }
      case 2:
        return `${proto}${dir}net ${a.slice(0, 1 + this.n(3)).join('.')}`;
      case 3:
        return `${proto}${dir}net ${a[0]}`;
      default:
        return `${proto}${dir}net ${a.join('.')} mask ${this.pick(['255.255.0.0', '255.0.255.0', '0.0.0.0', '255.255.255.255'])}`;
    }
  }

  private v6Prefix(len: number): string {
    const a = this.pick(this.pools.ipv6);
    if (len >= 128 || !this.chance(85)) return a;
    const groups = expand6(a);
    const bits = groups.map((g) => g.toString(2).padStart(16, '0')).join('');
    const kept = bits.slice(0, len).padEnd(128, '0');
    const out: string[] = [];
    for (let i = 0; i < 8; i++) out.push(parseInt(kept.slice(16 * i, 16 * i + 16), 2).toString(16));
    return out.join(':');
  }

  private mac(): string {
    const m = this.pick(this.pools.macs);
    const bytes = m.split(':');
    switch (this.n(6)) {
      case 0:
        return bytes.join('-');
      case 1:
        return bytes.join('.');
      case 2:
        return bytes.join('');
      case 3:
        return `${bytes[0]}${bytes[1]}.${bytes[2]}${bytes[3]}.${bytes[4]}${bytes[5]}`;
      default:
        return m;
    }
  }

  private etherHost(): string {
    const q = this.pick(['ether host ', 'ether src ', 'ether dst ', 'ether src or dst ', 'ether src and dst ', 'link host ', 'host ', 'ether ']);
    return `${q}${this.mac()}`;
  }

  private port(): string {
    const proto = this.chance(4) ? this.pick(['ip ', 'icmp ']) : this.pick(['', '', 'tcp ', 'udp ', 'sctp ', 'tcp ', 'udp ']);
    const dir = this.dir();
    if (this.chance(30)) {
      const a = this.pick(this.pools.ports);
      const b = this.chance(80) ? a + this.n(2000) : Math.max(0, a - this.n(100));
      return `${proto}${dir}portrange ${this.chance(90) ? `${a}-${b}` : this.pick(['ftp-ssh', 'domain-http', 'http-https', '1-65535', '0-70000'])}`;
    }
    const v = this.chance(20) ? this.pick(SERVICES) : this.number(this.chance(95) ? this.pick(this.pools.ports) : 70000);
    return `${proto}${dir}port ${v}`;
  }

  private proto(): string {
    switch (this.n(5)) {
      case 0:
        return `ether proto ${this.chance(60) ? this.number(this.pick([0x0800, 0x86dd, 0x0806, 0x8035, 0x8100, 0x88a8, 0x9100, 6, 0x42, 0xfe, 1500, 1501])) : `\\${this.pick(ETHER_PROTOS)}`}`;
      case 1:
        return `${this.chance(5) ? this.pick(['tcp ', 'arp ']) : this.pick(['ip ', 'ip6 ', ''])}proto ${this.chance(60) ? this.number(this.pick([1, 2, 6, 17, 41, 44, 47, 50, 51, 58, 59, 60, 103, 132, 256])) : `\\${this.pick(IP_PROTOS)}`}`;
      default:
        return `${this.pick(['ip ', 'ip6 ', ''])}proto ${this.number(this.pick([1, 6, 17, 58, 132]))}`;
    }
  }

  private vlan(): string {
    if (this.chance(40)) return 'vlan';
    const id = this.chance(95) ? this.pick(this.pools.vlans) : this.pick([0, 4095, 4096]);
    return this.chance(10) ? `vlan (${id})` : `vlan ${this.number(id)}`;
  }

  /** A number in decimal, hex or octal, as scanner.l reads them. */
  private number(v: number): string {
    const r = this.n(10);
    if (r === 0) return `0x${v.toString(16)}`;
    if (r === 1 && v > 0) return `0${v.toString(8)}`;
    return String(v);
  }

  relation(): string {
    const left = this.arith(0);
    const right = this.chance(70) ? this.number(this.pick([0, 1, 2, 4, 6, 17, 0x40, 0x45, 0x60, 0x800, 0xff, 0xffff, 0xffffffff, 2, 8, 64])) : this.arith(1);
    return `${left} ${this.pick(RELOPS)} ${right}`;
  }

  private arith(depth: number): string {
    const r = this.n(100);
    if (r < 40 || depth > 2) return this.load(depth);
    if (r < 55) return this.chance(50) ? this.pick(CONSTANTS) : this.number(this.n(70));
    if (r < 60) return 'len';
    if (r < 65) return `-${this.arith(depth + 1)}`;
    if (r < 72) return `(${this.arith(depth + 1)})`;
    const op = this.pick(ARITH_OPS);
    const rhs = op === '<<' || op === '>>' ? this.number(this.n(34)) : this.chance(70) ? this.number(this.n(300)) : this.arith(depth + 1);
    return `${this.arith(depth + 1)} ${op} ${rhs}`;
  }

  private load(depth: number): string {
    const layer = this.pick(LAYERS);
    const offset = depth < 2 && this.chance(15) ? this.arith(depth + 1) : this.chance(50) ? this.pick(CONSTANTS) : String(this.pick([0, 1, 2, 6, 9, 12, 13, 14, 16, 20, 23, 24, 30, 40, 54, 100, 1500, 70000]));
    const size = this.chance(3) ? ':3' : this.pick(['', '', ':1', ':2', ':4']);
    return `${layer}[${offset}${size}]`;
  }
}

function mask4(a: readonly number[], len: number): number[] {
  const m = len === 0 ? 0 : (0xffffffff << (32 - Math.min(len, 32))) >>> 0;
  const v = (((a[0]! << 24) | (a[1]! << 16) | (a[2]! << 8) | a[3]!) & m) >>> 0;
  return [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255];
}

function expand6(a: string): number[] {
  const [head, tail] = a.includes('::') ? a.split('::') : [a, undefined];
  const g = (s: string | undefined): number[] => (s ? s.split(':').map((x) => parseInt(x, 16)) : []);
  const h = g(head);
  const t = g(tail);
  return tail === undefined ? h : [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
}
