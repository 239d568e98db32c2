/**
 * Tree -> BPF flow graph: libpcap 1.10's gencode.c for the primitives mirrorcap supports,
 * function for function, so that the optimizer (optimize.ts) sees the very graph libpcap's
 * sees and the program comes out instruction for instruction the same (`tcpdump -d`; a test
 * compares them). Nodes are compiled in post-order, left to right, which is the order
 * libpcap's parser runs its actions in; that order matters because `vlan` changes the
 * offsets every later primitive uses (cstate below), exactly as in libpcap.
 *
 * Only link types DLT_EN10MB (Ethernet) and DLT_RAW (the frame is an IPv4 or IPv6 packet)
 * are handled; their offsets are constants, so none of libpcap's variable-offset code paths
 * (radiotap, PPI, 802.11) exist here.
 */
import {
  BPF_ABS,
  BPF_ADD,
  BPF_ALU,
  BPF_AND,
  BPF_B,
  BPF_DIV,
  BPF_H,
  BPF_IMM,
  BPF_IND,
  BPF_JEQ,
  BPF_JGE,
  BPF_JGT,
  BPF_JMP,
  BPF_JSET,
  BPF_K,
  BPF_LD,
  BPF_LDX,
  BPF_LEN,
  BPF_LSH,
  BPF_MEM,
  BPF_MEMWORDS,
  BPF_MISC,
  BPF_MOD,
  BPF_MSH,
  BPF_MUL,
  BPF_NEG,
  BPF_OR,
  BPF_RET,
  BPF_RSH,
  BPF_ST,
  BPF_SUB,
  BPF_TAX,
  BPF_W,
  BPF_X,
  BPF_XOR,
  Block,
  newStmt,
  sappend,
  type Slist,
} from './bpf.js';
import { FilterError } from './errors.js';
import type { ArithNode, Direction, FilterNode, Layer } from './tree.js';
import { codedError, ErrorCode } from '../errors.js';

export const LINKTYPE_ETHERNET = 1;
export const LINKTYPE_RAW = 101;
export type LinkType = typeof LINKTYPE_ETHERNET | typeof LINKTYPE_RAW;

const ETHERTYPE_IP = 0x0800;
const ETHERTYPE_ARP = 0x0806;
const ETHERTYPE_REVARP = 0x8035;
const ETHERTYPE_IPV6 = 0x86dd;
const ETHERTYPE_ATALK = 0x809b;
const ETHERTYPE_AARP = 0x80f3;
const ETHERTYPE_IPX = 0x8137;
const ETHERTYPE_8021Q = 0x8100;
const ETHERTYPE_8021AD = 0x88a8;
const ETHERTYPE_8021QINQ = 0x9100;
const ETHERMTU = 1500;
const LLCSAP_IP = 0x06;
const LLCSAP_IPX = 0xe0;
const LLCSAP_NETBEUI = 0xf0;
const LLCSAP_ISONS = 0xfe;
const LLCSAP_SNAP = 0xaa;
const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;
const IPPROTO_SCTP = 132;
const IPPROTO_FRAGMENT = 44;
/** libpcap's PROTO_UNDEF for ports: TCP, UDP and SCTP. */
const PROTO_UNDEF = -1;

// libpcap's qualifier codes, kept for the functions that switch on them.
const Q_DEFAULT = 0;
const Q_LINK = 1;
const Q_IP = 2;
const Q_ARP = 3;
const Q_RARP = 4;
const Q_SCTP = 5;
const Q_TCP = 6;
const Q_UDP = 7;
const Q_ICMP = 8;
const Q_IGMP = 9;
const Q_IGRP = 10;
const Q_IPV6 = 17;
const Q_ICMPV6 = 18;
const Q_PIM = 21;
const Q_VRRP = 22;
const Q_CARP = 39;
const Q_SRC = 1;
const Q_DST = 2;
const Q_OR = 3;
const Q_AND = 4;

const DIRECTION: Record<Direction, number> = { src: Q_SRC, dst: Q_DST, 'src or dst': Q_OR, 'src and dst': Q_AND };
const LAYER: Record<Layer, number> = {
  ether: Q_LINK,
  ip: Q_IP,
  arp: Q_ARP,
  rarp: Q_RARP,
  ip6: Q_IPV6,
  sctp: Q_SCTP,
  tcp: Q_TCP,
  udp: Q_UDP,
  icmp: Q_ICMP,
  icmp6: Q_ICMPV6,
  igmp: Q_IGMP,
  igrp: Q_IGRP,
  pim: Q_PIM,
  vrrp: Q_VRRP,
  carp: Q_CARP,
};
/** gen_proto_abbrev_internal() for the protocols a load can be relative to. */
const ABBREV: Record<number, [number, number]> = {
  [Q_SCTP]: [IPPROTO_SCTP, Q_DEFAULT],
  [Q_TCP]: [IPPROTO_TCP, Q_DEFAULT],
  [Q_UDP]: [IPPROTO_UDP, Q_DEFAULT],
  [Q_ICMP]: [1, Q_IP],
  [Q_IGMP]: [2, Q_IP],
  [Q_IGRP]: [9, Q_IP],
  [Q_PIM]: [103, Q_DEFAULT],
  [Q_VRRP]: [112, Q_IP],
  [Q_CARP]: [112, Q_IP],
};
const LINKTYPE_OF: Partial<Record<number, number>> = { [Q_IP]: ETHERTYPE_IP, [Q_ARP]: ETHERTYPE_ARP, [Q_RARP]: ETHERTYPE_REVARP, [Q_IPV6]: ETHERTYPE_IPV6 };
const ALU: Record<string, number> = { '+': BPF_ADD, '-': BPF_SUB, '*': BPF_MUL, '/': BPF_DIV, '%': BPF_MOD, '&': BPF_AND, '|': BPF_OR, '^': BPF_XOR, '<<': BPF_LSH, '>>': BPF_RSH };
/** Relation -> [jump, reversed], as grammar.y's relop/irelop. */
const RELATION: Record<string, [number, boolean]> = {
  '>': [BPF_JGT, false],
  '>=': [BPF_JGE, false],
  '=': [BPF_JEQ, false],
  '<=': [BPF_JGT, true],
  '<': [BPF_JGE, true],
  '!=': [BPF_JEQ, true],
};

/** Where in the packet a comparison's field is counted from (gencode.c's enum e_offrel). */
const enum OffRel {
  LinkHdr,
  Llc,
  LinkPl,
  LinkType,
  TranIpv4,
  TranIpv6,
}

const JMP = (op: number): number => BPF_JMP | op | BPF_K;

/** An arithmetic value being built: statements that leave it in scratch register `regno`, and protocol checks. */
interface Arth {
  b: Block | null;
  s: Slist;
  regno: number;
}

// gen_and / gen_or / gen_not and their list plumbing, as in gencode.c: an unfinished block
// list threads its unresolved exits through jt or jf, `sense` saying which.
function backpatch(list: Block | null, target: Block): void {
  while (list) {
    let next: Block | null;
    if (!list.sense) {
      next = list.jt;
      list.jt = target;
    } else {
      next = list.jf;
      list.jf = target;
    }
    list = next;
  }
}

function merge(b0: Block, b1: Block): void {
  let p = b0;
  for (;;) {
    const next = !p.sense ? p.jt : p.jf;
    if (!next) break;
    p = next;
  }
  if (!p.sense) p.jt = b1;
  else p.jf = b1;
}

function genAnd(b0: Block, b1: Block): void {
  backpatch(b0, b1.head);
  b0.sense = !b0.sense;
  b1.sense = !b1.sense;
  merge(b1, b0);
  b1.sense = !b1.sense;
  b1.head = b0.head;
}

function genOr(b0: Block, b1: Block): void {
  b0.sense = !b0.sense;
  backpatch(b0, b1.head);
  b0.sense = !b0.sense;
  merge(b1, b0);
  b1.head = b0.head;
}

function genNot(b: Block): void {
  b.sense = !b.sense;
}

/** The code generator's state (libpcap's compiler_state_t, the parts that matter here). */
export class CodeGen {
  private offLinkhdr = 0;
  private offLinkpl: number;
  private offLinktype: number;
  private readonly offNl = 0;
  private readonly regused = new Array<boolean>(BPF_MEMWORDS).fill(false);
  private curreg = 0;

  /** wordAt(pos): the word of the expression at pos, for messages. */
  constructor(
    private readonly linkType: LinkType,
    private readonly snaplen: number,
    private readonly wordAt: (pos: number) => string,
  ) {
    if (linkType === LINKTYPE_ETHERNET) {
      this.offLinktype = 12;
      this.offLinkpl = 14;
    } else {
      this.offLinktype = 0xffffffff; // OFFSET_NOT_SET: never used on DLT_RAW
      this.offLinkpl = 0;
    }
  }

  /** The whole program's root block (finish_parse), or a lone return for the empty filter. */
  compile(tree: FilterNode): Block {
    if (tree.kind === 'all') return new Block(BPF_RET | BPF_K, this.snaplen);
    const p = this.node(tree);
    backpatch(p, new Block(BPF_RET | BPF_K, this.snaplen));
    p.sense = !p.sense;
    backpatch(p, new Block(BPF_RET | BPF_K, 0));
    return p.head;
  }

  private node(n: FilterNode): Block {
    switch (n.kind) {
      case 'and':
      case 'or': {
        const b0 = this.node(n.left);
        const b1 = this.node(n.right);
        if (n.kind === 'and') genAnd(b0, b1);
        else genOr(b0, b1);
        return b1;
      }
      case 'not': {
        const b = this.node(n.expr);
        genNot(b);
        return b;
      }
      case 'host':
        if (n.family === 4) {
          const q = n.proto === null ? Q_DEFAULT : n.proto === 'ip' ? Q_IP : n.proto === 'arp' ? Q_ARP : Q_RARP;
          return this.host(word(n.addr), word(n.mask), q, DIRECTION[n.dir]);
        }
        return this.hostop6(n.addr, n.mask, DIRECTION[n.dir]);
      case 'ether-host':
        return this.ehostop(n.addr, DIRECTION[n.dir]);
      case 'port': {
        const proto = n.transport === 'tcp' ? IPPROTO_TCP : n.transport === 'udp' ? IPPROTO_UDP : n.transport === 'sctp' ? IPPROTO_SCTP : PROTO_UNDEF;
        const dir = DIRECTION[n.dir];
        if (n.keyword === 'port') {
          const b = this.portFamily(false, n.from, n.to, proto, dir, false);
          genOr(this.portFamily(true, n.from, n.to, proto, dir, false), b);
          return b;
        }
        const b = this.portFamily(false, n.from, n.to, proto, dir, true);
        genOr(this.portFamily(true, n.from, n.to, proto, dir, true), b);
        return b;
      }
      case 'proto':
        if (n.layer === 'ether') return this.linktype(n.protocol);
        return this.proto(n.protocol, n.layer === null ? Q_DEFAULT : n.layer === 'ip' ? Q_IP : Q_IPV6);
      case 'vlan':
        return this.vlan(n.id);
      case 'length': {
        const b = this.len(n.op === '<=' ? BPF_JGT : BPF_JGE, n.value);
        if (n.op === '<=') genNot(b);
        return b;
      }
      case 'broadcast':
        if (n.layer === 'ether') return this.bcmp(OffRel.LinkHdr, 0, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        return this.ipBroadcast();
      case 'multicast':
        return this.multicast(n.layer);
      case 'compare': {
        const a0 = this.arith(n.left);
        const a1 = this.arith(n.right);
        const [code, reversed] = RELATION[n.op]!;
        return this.relation(code, a0, a1, reversed);
      }
      case 'all':
        throw codedError(ErrorCode.INTERNAL, 'an empty filter cannot be part of an expression');
    }
  }

  // ---- loads and comparisons --------------------------------------------------------------

  private loadA(rel: OffRel, offset: number, size: number): Slist {
    const abs = (k: number): Slist => newStmt(BPF_LD | BPF_ABS | size, k >>> 0);
    switch (rel) {
      case OffRel.LinkHdr:
        return abs(this.offLinkhdr + offset);
      case OffRel.Llc:
        return abs(this.offLinkpl + offset);
      case OffRel.LinkPl:
        return abs(this.offLinkpl + this.offNl + offset);
      case OffRel.LinkType:
        return abs(this.offLinktype + offset);
      case OffRel.TranIpv4: {
        const s = this.loadxIphdrlen();
        sappend(s, newStmt(BPF_LD | BPF_IND | size, (this.offLinkpl + this.offNl + offset) >>> 0));
        return s;
      }
      case OffRel.TranIpv6:
        return abs(this.offLinkpl + this.offNl + 40 + offset);
    }
  }

  private loadxIphdrlen(): Slist {
    return newStmt(BPF_LDX | BPF_MSH | BPF_B, this.offLinkpl + this.offNl);
  }

  private ncmp(rel: OffRel, offset: number, size: number, mask: number, jtype: number, reverse: boolean, v: number): Block {
    const s = this.loadA(rel, offset, size);
    if (mask !== 0xffffffff) sappend(s, newStmt(BPF_ALU | BPF_AND | BPF_K, mask));
    const b = new Block(JMP(jtype), v >>> 0);
    b.stmts = s;
    if (reverse && (jtype === BPF_JGT || jtype === BPF_JGE)) genNot(b);
    return b;
  }

  private cmp(rel: OffRel, offset: number, size: number, v: number): Block {
    return this.ncmp(rel, offset, size, 0xffffffff, BPF_JEQ, false, v);
  }

  private mcmp(rel: OffRel, offset: number, size: number, v: number, mask: number): Block {
    return this.ncmp(rel, offset, size, mask, BPF_JEQ, false, v);
  }

  private bcmp(rel: OffRel, offset: number, v: readonly number[]): Block {
    // Compared from the end backwards, each test and-ed after the ones before it.
    const tests: Block[] = [];
    let size = v.length;
    for (; size >= 4; size -= 4) tests.push(this.cmp(rel, offset + size - 4, BPF_W, word(v.slice(size - 4, size))));
    for (; size >= 2; size -= 2) tests.push(this.cmp(rel, offset + size - 2, BPF_H, (v[size - 2]! << 8) | v[size - 1]!));
    if (size > 0) tests.push(this.cmp(rel, offset, BPF_B, v[0]!));
    for (let i = 1; i < tests.length; i++) genAnd(tests[i - 1]!, tests[i]!);
    return tests[tests.length - 1]!;
  }

  private uncond(rsense: boolean): Block {
    const b = new Block(JMP(BPF_JEQ));
    b.stmts = newStmt(BPF_LD | BPF_IMM, rsense ? 0 : 1);
    return b;
  }

  // ---- link layer -------------------------------------------------------------------------

  private linktype(llProto: number): Block {
    if (this.linkType === LINKTYPE_RAW) {
      // No type field: IPv4 and IPv6 are told by the version nibble, anything else is false.
      if (llProto === ETHERTYPE_IP) return this.mcmp(OffRel.LinkHdr, 0, BPF_B, 0x40, 0xf0);
      if (llProto === ETHERTYPE_IPV6) return this.mcmp(OffRel.LinkHdr, 0, BPF_B, 0x60, 0xf0);
      return this.uncond(false);
    }
    return this.etherLinktype(llProto);
  }

  private etherLinktype(llProto: number): Block {
    switch (llProto) {
      case LLCSAP_ISONS:
      case LLCSAP_IP:
      case LLCSAP_NETBEUI: {
        const b0 = this.ncmp(OffRel.LinkType, 0, BPF_H, 0xffffffff, BPF_JGT, false, ETHERMTU);
        genNot(b0);
        const b1 = this.cmp(OffRel.Llc, 0, BPF_H, (llProto << 8) | llProto);
        genAnd(b0, b1);
        return b1;
      }
      case LLCSAP_IPX: {
        let b0 = this.cmp(OffRel.Llc, 0, BPF_B, LLCSAP_IPX);
        const b1 = this.cmp(OffRel.Llc, 0, BPF_H, 0xffff);
        genOr(b0, b1);
        b0 = this.snap(0x000000, ETHERTYPE_IPX);
        genOr(b0, b1);
        b0 = this.ncmp(OffRel.LinkType, 0, BPF_H, 0xffffffff, BPF_JGT, false, ETHERMTU);
        genNot(b0);
        genAnd(b0, b1);
        b0 = this.cmp(OffRel.LinkType, 0, BPF_H, ETHERTYPE_IPX);
        genOr(b0, b1);
        return b1;
      }
      case ETHERTYPE_ATALK:
      case ETHERTYPE_AARP: {
        let b0 = this.ncmp(OffRel.LinkType, 0, BPF_H, 0xffffffff, BPF_JGT, false, ETHERMTU);
        genNot(b0);
        const b1 = llProto === ETHERTYPE_ATALK ? this.snap(0x080007, ETHERTYPE_ATALK) : this.snap(0x000000, ETHERTYPE_AARP);
        genAnd(b0, b1);
        b0 = this.cmp(OffRel.LinkType, 0, BPF_H, llProto);
        genOr(b0, b1);
        return b1;
      }
      default:
        if (llProto <= ETHERMTU) {
          const b0 = this.ncmp(OffRel.LinkType, 0, BPF_H, 0xffffffff, BPF_JGT, false, ETHERMTU);
          genNot(b0);
          const b1 = this.cmp(OffRel.LinkType, 2, BPF_B, llProto);
          genAnd(b0, b1);
          return b1;
        }
        return this.cmp(OffRel.LinkType, 0, BPF_H, llProto);
    }
  }

  private snap(orgcode: number, ptype: number): Block {
    return this.bcmp(OffRel.Llc, 0, [LLCSAP_SNAP, LLCSAP_SNAP, 0x03, (orgcode >> 16) & 0xff, (orgcode >> 8) & 0xff, orgcode & 0xff, (ptype >> 8) & 0xff, ptype & 0xff]);
  }

  private ehostop(eaddr: readonly number[], dir: number): Block {
    switch (dir) {
      case Q_SRC:
        return this.bcmp(OffRel.LinkHdr, 6, eaddr);
      case Q_DST:
        return this.bcmp(OffRel.LinkHdr, 0, eaddr);
      case Q_AND: {
        const b0 = this.ehostop(eaddr, Q_SRC);
        const b1 = this.ehostop(eaddr, Q_DST);
        genAnd(b0, b1);
        return b1;
      }
      default: {
        const b0 = this.ehostop(eaddr, Q_SRC);
        const b1 = this.ehostop(eaddr, Q_DST);
        genOr(b0, b1);
        return b1;
      }
    }
  }

  private vlan(id: number | null): Block {
    let b0 = this.linktype(ETHERTYPE_8021Q);
    let b1 = this.linktype(ETHERTYPE_8021AD);
    genOr(b0, b1);
    b0 = b1;
    b1 = this.linktype(ETHERTYPE_8021QINQ);
    genOr(b0, b1);
    b0 = b1;
    if (id !== null) {
      b1 = this.mcmp(OffRel.LinkPl, 0, BPF_H, id, 0x0fff);
      genAnd(b0, b1);
      b0 = b1;
    }
    // Everything generated after this looks 4 bytes further in (libpcap's "kludge").
    this.offLinkpl += 4;
    this.offLinktype += 4;
    return b0;
  }

  // ---- network layer ----------------------------------------------------------------------

  private hostop(addr: number, mask: number, dir: number, llProto: number, srcOff: number, dstOff: number): Block {
    if (dir === Q_AND || dir === Q_OR || dir === Q_DEFAULT) {
      const b0 = this.hostop(addr, mask, Q_SRC, llProto, srcOff, dstOff);
      const b1 = this.hostop(addr, mask, Q_DST, llProto, srcOff, dstOff);
      if (dir === Q_AND) genAnd(b0, b1);
      else genOr(b0, b1);
      return b1;
    }
    const b0 = this.linktype(llProto);
    const b1 = this.mcmp(OffRel.LinkPl, dir === Q_SRC ? srcOff : dstOff, BPF_W, addr, mask);
    genAnd(b0, b1);
    return b1;
  }

  private host(addr: number, mask: number, proto: number, dir: number): Block {
    switch (proto) {
      case Q_DEFAULT: {
        let b0 = this.host(addr, mask, Q_IP, dir);
        const b1 = this.host(addr, mask, Q_ARP, dir);
        genOr(b0, b1);
        b0 = this.host(addr, mask, Q_RARP, dir);
        genOr(b1, b0);
        return b0;
      }
      case Q_IP:
        return this.hostop(addr, mask, dir, ETHERTYPE_IP, 12, 16);
      case Q_RARP:
        return this.hostop(addr, mask, dir, ETHERTYPE_REVARP, 14, 24);
      default:
        return this.hostop(addr, mask, dir, ETHERTYPE_ARP, 14, 24);
    }
  }

  private hostop6(addr: readonly number[], mask: readonly number[], dir: number): Block {
    if (dir === Q_AND || dir === Q_OR) {
      const b0 = this.hostop6(addr, mask, Q_SRC);
      const b1 = this.hostop6(addr, mask, Q_DST);
      if (dir === Q_AND) genAnd(b0, b1);
      else genOr(b0, b1);
      return b1;
    }
    const offset = dir === Q_SRC ? 8 : 24;
    const w = (bytes: readonly number[], i: number): number => word(bytes.slice(4 * i, 4 * i + 4));
    const b1 = this.mcmp(OffRel.LinkPl, offset + 12, BPF_W, w(addr, 3), w(mask, 3));
    let b0 = this.mcmp(OffRel.LinkPl, offset + 8, BPF_W, w(addr, 2), w(mask, 2));
    genAnd(b0, b1);
    b0 = this.mcmp(OffRel.LinkPl, offset + 4, BPF_W, w(addr, 1), w(mask, 1));
    genAnd(b0, b1);
    b0 = this.mcmp(OffRel.LinkPl, offset + 0, BPF_W, w(addr, 0), w(mask, 0));
    genAnd(b0, b1);
    b0 = this.linktype(ETHERTYPE_IPV6);
    genAnd(b0, b1);
    return b1;
  }

  private proto(v: number, proto: number): Block {
    switch (proto) {
      case Q_DEFAULT: {
        const b0 = this.proto(v, Q_IP);
        const b1 = this.proto(v, Q_IPV6);
        genOr(b0, b1);
        return b1;
      }
      case Q_IP: {
        const b0 = this.linktype(ETHERTYPE_IP);
        const b1 = this.cmp(OffRel.LinkPl, 9, BPF_B, v);
        genAnd(b0, b1);
        return b1;
      }
      default: {
        // IPv6: the next header, or the one after a fragment header right behind the fixed header.
        const b0 = this.linktype(ETHERTYPE_IPV6);
        let b2 = this.cmp(OffRel.LinkPl, 6, BPF_B, IPPROTO_FRAGMENT);
        const b1 = this.cmp(OffRel.LinkPl, 40, BPF_B, v);
        genAnd(b2, b1);
        b2 = this.cmp(OffRel.LinkPl, 6, BPF_B, v);
        genOr(b2, b1);
        genAnd(b0, b1);
        return b1;
      }
    }
  }

  private protoAbbrev(q: number): Block {
    const linktype = LINKTYPE_OF[q];
    if (linktype !== undefined) return this.linktype(linktype);
    if (q === Q_ICMPV6) return this.proto(58, Q_IPV6);
    const [v, layer] = ABBREV[q]!;
    return this.proto(v, layer);
  }

  private ipfrag(): Block {
    // Not a fragment other than the first: the 13-bit offset is zero.
    const b = new Block(JMP(BPF_JSET), 0x1fff);
    b.stmts = this.loadA(OffRel.LinkPl, 6, BPF_H);
    genNot(b);
    return b;
  }

  // ---- ports ------------------------------------------------------------------------------

  /** gen_port/gen_portrange (IPv4, v6 false) and gen_port6/gen_portrange6 (IPv6). */
  private portFamily(v6: boolean, from: number, to: number, ipProto: number, dir: number, range: boolean): Block {
    const b0 = this.linktype(v6 ? ETHERTYPE_IPV6 : ETHERTYPE_IP);
    let b1: Block;
    if (ipProto !== PROTO_UNDEF) b1 = this.portOp(v6, from, to, ipProto, dir, range);
    else {
      let tmp = this.portOp(v6, from, to, IPPROTO_TCP, dir, range);
      b1 = this.portOp(v6, from, to, IPPROTO_UDP, dir, range);
      genOr(tmp, b1);
      tmp = this.portOp(v6, from, to, IPPROTO_SCTP, dir, range);
      genOr(tmp, b1);
    }
    genAnd(b0, b1);
    return b1;
  }

  private portOp(v6: boolean, from: number, to: number, proto: number, dir: number, range: boolean): Block {
    let b0: Block;
    if (v6) b0 = this.cmp(OffRel.LinkPl, 6, BPF_B, proto);
    else {
      const tmp = this.cmp(OffRel.LinkPl, 9, BPF_B, proto);
      b0 = this.ipfrag();
      genAnd(tmp, b0);
    }
    const atom = (off: number): Block => {
      const rel = v6 ? OffRel.TranIpv6 : OffRel.TranIpv4;
      if (!range) return this.cmp(rel, off, BPF_H, from);
      const [lo, hi] = from > to ? [to, from] : [from, to];
      const b1 = this.ncmp(rel, off, BPF_H, 0xffffffff, BPF_JGE, false, lo);
      const b2 = this.ncmp(rel, off, BPF_H, 0xffffffff, BPF_JGT, true, hi);
      genAnd(b1, b2);
      return b2;
    };
    let b1: Block;
    if (dir === Q_SRC) b1 = atom(0);
    else if (dir === Q_DST) b1 = atom(2);
    else {
      const tmp = atom(0);
      b1 = atom(2);
      if (dir === Q_AND) genAnd(tmp, b1);
      else genOr(tmp, b1);
    }
    genAnd(b0, b1);
    return b1;
  }

  // ---- other primitives -------------------------------------------------------------------

  private len(jmp: number, n: number): Block {
    const b = new Block(JMP(jmp), n >>> 0);
    b.stmts = newStmt(BPF_LD | BPF_LEN);
    return b;
  }

  /** `ip broadcast` with the netmask tcpdump -r passes (0): host part all zeros or all ones. */
  private ipBroadcast(): Block {
    const hostmask = 0xffffffff;
    const b0 = this.linktype(ETHERTYPE_IP);
    const b1 = this.mcmp(OffRel.LinkPl, 16, BPF_W, 0, hostmask);
    const b2 = this.mcmp(OffRel.LinkPl, 16, BPF_W, hostmask, hostmask);
    genOr(b1, b2);
    genAnd(b0, b2);
    return b2;
  }

  private multicast(layer: 'ether' | 'ip' | 'ip6'): Block {
    if (layer === 'ether') {
      const b = new Block(JMP(BPF_JSET), 1);
      b.stmts = this.loadA(OffRel.LinkHdr, 0, BPF_B);
      return b;
    }
    const b0 = this.linktype(layer === 'ip' ? ETHERTYPE_IP : ETHERTYPE_IPV6);
    const b1 = layer === 'ip' ? this.ncmp(OffRel.LinkPl, 16, BPF_B, 0xffffffff, BPF_JGE, false, 224) : this.cmp(OffRel.LinkPl, 24, BPF_B, 255);
    genAnd(b0, b1);
    return b1;
  }

  // ---- arithmetic -------------------------------------------------------------------------

  private allocReg(pos: number): number {
    for (let n = BPF_MEMWORDS; --n >= 0; ) {
      if (this.regused[this.curreg]) this.curreg = (this.curreg + 1) % BPF_MEMWORDS;
      else {
        this.regused[this.curreg] = true;
        return this.curreg;
      }
    }
    throw new FilterError('syntax', pos, this.wordAt(pos), 'too many registers needed to evaluate expression');
  }

  private freeReg(n: number): void {
    this.regused[n] = false;
  }

  private arith(a: ArithNode): Arth {
    switch (a.kind) {
      case 'number':
      case 'wirelen': {
        const regno = this.allocReg(a.pos);
        const s = a.kind === 'number' ? newStmt(BPF_LD | BPF_IMM, a.value) : newStmt(BPF_LD | BPF_LEN);
        s.next = newStmt(BPF_ST, regno);
        return { b: null, s, regno };
      }
      case 'load':
        return this.load(LAYER[a.layer], this.arith(a.offset), a.size, a.pos);
      case 'negate': {
        const inst = this.arith(a.expr);
        sappend(inst.s, newStmt(BPF_LD | BPF_MEM, inst.regno));
        sappend(inst.s, newStmt(BPF_ALU | BPF_NEG));
        sappend(inst.s, newStmt(BPF_ST, inst.regno));
        return inst;
      }
      case 'binary':
        return this.arth(ALU[a.op]!, this.arith(a.left), this.arith(a.right), a);
    }
  }

  private load(proto: number, inst: Arth, size: number, pos: number): Arth {
    const regno = this.allocReg(pos);
    this.freeReg(inst.regno);
    const sizeCode = size === 1 ? BPF_B : size === 2 ? BPF_H : BPF_W;
    if (proto === Q_LINK) {
      const s = newStmt(BPF_LDX | BPF_MEM, inst.regno);
      sappend(s, newStmt(BPF_LD | BPF_IND | sizeCode, this.offLinkhdr));
      sappend(inst.s, s);
    } else if (proto === Q_IP || proto === Q_ARP || proto === Q_RARP || proto === Q_IPV6) {
      const s = newStmt(BPF_LDX | BPF_MEM, inst.regno);
      sappend(s, newStmt(BPF_LD | BPF_IND | sizeCode, this.offLinkpl + this.offNl));
      sappend(inst.s, s);
      const b = this.protoAbbrev(proto);
      if (inst.b) genAnd(inst.b, b);
      inst.b = b;
    } else if (proto === Q_ICMPV6) {
      let b = this.protoAbbrev(Q_IPV6);
      if (inst.b) genAnd(inst.b, b);
      inst.b = b;
      b = this.cmp(OffRel.LinkPl, 6, BPF_B, 58);
      genAnd(inst.b, b);
      inst.b = b;
      const s = newStmt(BPF_LDX | BPF_MEM, inst.regno);
      sappend(s, newStmt(BPF_LD | BPF_IND | sizeCode, this.offLinkpl + this.offNl + 40));
      sappend(inst.s, s);
    } else {
      // Transport: relative to the end of the IPv4 header (IPv4 only), first fragments only.
      const s = this.loadxIphdrlen();
      sappend(s, newStmt(BPF_LD | BPF_MEM, inst.regno));
      sappend(s, newStmt(BPF_ALU | BPF_ADD | BPF_X));
      sappend(s, newStmt(BPF_MISC | BPF_TAX));
      sappend(s, newStmt(BPF_LD | BPF_IND | sizeCode, this.offLinkpl + this.offNl));
      sappend(inst.s, s);
      const b = this.ipfrag();
      genAnd(this.protoAbbrev(proto), b);
      if (inst.b) genAnd(inst.b, b);
      genAnd(this.protoAbbrev(Q_IP), b);
      inst.b = b;
    }
    inst.regno = regno;
    sappend(inst.s, newStmt(BPF_ST, regno));
    return inst;
  }

  /** gen_arth. Like libpcap it keeps only the left operand's protocol checks (a1.b is dropped). */
  private arth(code: number, a0: Arth, a1: Arth, at: ArithNode): Arth {
    // libpcap looks at the first statement of the right operand's code: a literal 0 (or a
    // literal shift > 31) there is refused even inside a larger expression like (0 + 5).
    const first = a1.s.s;
    const literal = first.code === (BPF_LD | BPF_IMM);
    if (literal && code === BPF_DIV && first.k === 0) throw new FilterError('syntax', at.pos, '/', 'division by zero');
    if (literal && code === BPF_MOD && first.k === 0) throw new FilterError('syntax', at.pos, '%', 'modulus by zero');
    if (literal && (code === BPF_LSH || code === BPF_RSH) && first.k > 31) throw new FilterError('syntax', at.pos, code === BPF_LSH ? '<<' : '>>', 'shift by more than 31 bits');
    const s0 = newStmt(BPF_LDX | BPF_MEM, a1.regno);
    const s1 = newStmt(BPF_LD | BPF_MEM, a0.regno);
    sappend(s1, newStmt(BPF_ALU | BPF_X | code));
    sappend(s0, s1);
    sappend(a1.s, s0);
    sappend(a0.s, a1.s);
    this.freeReg(a0.regno);
    this.freeReg(a1.regno);
    a0.regno = this.allocReg(at.pos);
    sappend(a0.s, newStmt(BPF_ST, a0.regno));
    return a0;
  }

  private relation(code: number, a0: Arth, a1: Arth, reversed: boolean): Block {
    const s0 = newStmt(BPF_LDX | BPF_MEM, a1.regno);
    const s1 = newStmt(BPF_LD | BPF_MEM, a0.regno);
    let b: Block;
    if (code === BPF_JEQ) {
      b = new Block(JMP(code));
      sappend(s1, newStmt(BPF_ALU | BPF_SUB | BPF_X));
    } else b = new Block(BPF_JMP | code | BPF_X);
    if (reversed) genNot(b);
    sappend(s0, s1);
    sappend(a1.s, s0);
    sappend(a0.s, a1.s);
    b.stmts = a0.s;
    this.freeReg(a0.regno);
    this.freeReg(a1.regno);
    let tmp: Block | null;
    if (a0.b) {
      if (a1.b) {
        tmp = a1.b;
        genAnd(a0.b, tmp);
      } else tmp = a0.b;
    } else tmp = a1.b;
    if (tmp) genAnd(tmp, b);
    return b;
  }
}

/** Four bytes, big-endian, as an unsigned 32-bit number. */
function word(bytes: readonly number[]): number {
  return ((bytes[0]! << 24) | (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!) >>> 0;
}
