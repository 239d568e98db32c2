/**
 * Tree -> expression text, for logs, the API and docs: every qualifier written out, nothing
 * inherited, and parentheses wherever and/or change or an operand is compound, so the text
 * means the same to tcpdump and to mirrorcap and compiles to the same program as the
 * original (a test checks that on every generated expression).
 *
 *   printFilter(compileFilter('net 10.1 or 10.2.0.0/16 and port http').tree)
 *     -> '(net 10.1.0.0/16 or net 10.2.0.0/16) and tcp port 80'
 */
import { formatIpv4 } from '../decode/ipv4.js';
import { formatIpv6 } from '../decode/ipv6.js';
import { formatMac } from '../decode/ethernet.js';
import type { ArithNode, Direction, FilterNode, ProtoNode } from './tree.js';

const NAMES = new Map<string, string>([
  ['ether:2048', 'ip'],
  ['ether:34525', 'ip6'],
  ['ether:2054', 'arp'],
  ['ether:32821', 'rarp'],
  ['null:6', 'tcp'],
  ['null:17', 'udp'],
  ['null:132', 'sctp'],
  ['null:103', 'pim'],
  ['null:51', 'ah'],
  ['null:50', 'esp'],
  ['ip:1', 'icmp'],
  ['ip:2', 'igmp'],
  ['ip:9', 'igrp'],
  ['ip:112', 'vrrp'],
  ['ip6:58', 'icmp6'],
]);

export function printFilter(n: FilterNode): string {
  switch (n.kind) {
    case 'all':
      return '';
    case 'and':
    case 'or': {
      const side = (c: FilterNode, right: boolean): string =>
        (c.kind === 'and' || c.kind === 'or') && (right || c.kind !== n.kind) ? `(${printFilter(c)})` : printFilter(c);
      return `${side(n.left, false)} ${n.kind} ${side(n.right, true)}`;
    }
    case 'not':
      return `not ${n.expr.kind === 'and' || n.expr.kind === 'or' ? `(${printFilter(n.expr)})` : printFilter(n.expr)}`;
    case 'host': {
      const prefix = words(n.proto, n.dir);
      const addr = n.family === 4 ? formatIpv4(Uint8Array.from(n.addr), 0) : formatIpv6(Uint8Array.from(n.addr), 0);
      const len = prefixLength(n.mask);
      if (n.keyword === 'host' && len === n.mask.length * 8) return `${prefix}host ${addr}`;
      if (len !== null) return `${prefix}net ${addr}/${len}`;
      return `${prefix}net ${addr} mask ${formatIpv4(Uint8Array.from(n.mask), 0)}`;
    }
    case 'ether-host':
      return `ether ${n.dir === 'src' || n.dir === 'dst' ? n.dir : `${words(null, n.dir)}host`} ${formatMac(Buffer.from(n.addr), 0)}`;
    case 'port':
      return `${words(n.transport, n.dir)}${n.keyword} ${n.keyword === 'port' ? n.from : `${n.from}-${n.to}`}`;
    case 'proto':
      return protoText(n);
    case 'vlan':
      return n.id === null ? 'vlan' : `vlan ${n.id}`;
    case 'length':
      return `${n.op === '<=' ? 'less' : 'greater'} ${n.value}`;
    case 'broadcast':
      return `${n.layer} broadcast`;
    case 'multicast':
      return `${n.layer} multicast`;
    case 'compare':
      return `${arith(n.left)} ${n.op} ${arith(n.right)}`;
  }
}

/** "tcp src ", "ip ", "" ...: the qualifiers before host/port, default ones left out. */
function words(proto: string | null, dir: Direction): string {
  return `${proto === null ? '' : `${proto} `}${dir === 'src or dst' ? '' : `${dir} `}`;
}

function protoText(n: ProtoNode): string {
  const name = NAMES.get(`${n.layer}:${n.protocol}`);
  if (name) return name;
  return `${n.layer === null ? '' : `${n.layer} `}proto ${n.protocol}`;
}

/** The prefix length of a contiguous mask, or null. */
function prefixLength(mask: readonly number[]): number | null {
  let bits = 0;
  let ended = false;
  for (const byte of mask) {
    for (let b = 7; b >= 0; b--) {
      const set = ((byte >> b) & 1) === 1;
      if (set && ended) return null;
      if (set) bits++;
      else ended = true;
    }
  }
  return bits;
}

function arith(a: ArithNode): string {
  switch (a.kind) {
    case 'number':
      return String(a.value);
    case 'wirelen':
      return 'len';
    case 'load':
      return `${a.layer}[${arith(a.offset)}${a.size === 1 ? '' : `:${a.size}`}]`;
    case 'binary':
      return `(${arith(a.left)} ${a.op} ${arith(a.right)})`;
    case 'negate':
      // A binary operation prints its own parentheses; only "--" needs some.
      return a.expr.kind === 'negate' ? `-(${arith(a.expr)})` : `-${arith(a.expr)}`;
  }
}
