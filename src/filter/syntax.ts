/**
 * The pcap-filter grammar (libpcap 1.10's grammar.y) as a recursive-descent parser that
 * accepts exactly what bison's LALR(1) parser accepts, producing a concrete syntax tree
 * (Syn*) that semantics.ts turns into the tree of tree.ts. The grammar, reduced to what
 * mirrorcap supports:
 *
 *   prog   := ε | expr
 *   expr   := term | expr (and|or) term | expr (and|or) id      and/or: equal precedence, left to right
 *   term   := rterm | not term
 *   rterm  := head id | ( expr ) | pname | arth relop arth | other
 *   head   := pname? (dqual aqual? | aqual) | pname? proto
 *   id     := nid | pnum | ( pid )
 *   nid    := ID | HID | HID/NUM | HID mask HID | HID6 | HID6/NUM | EID | not id
 *   pid    := nid | qid (and|or) id          qid := pnum | pid
 *   pnum   := NUM | ( pnum )
 *   other  := pname? broadcast | pname? multicast | less NUM | greater NUM | vlan | vlan pnum
 *   arth   := pnum | pname [ arth ] | pname [ arth : NUM ] | arth op arth | - arth | ( arth ) | len
 *
 * An `id` after and/or takes the qualifiers of what came before (semantics.ts does that), so
 * `host a or b` is two hosts and `tcp or b` is an error. The grammar has no conflicts except
 * in arithmetic: bison's 38 shift/reduce conflicts all come from '%' and '^', which were
 * given no precedence. Bison shifts, so '%' and '^' take the operand just before them as
 * their left side and everything up to the end of the arithmetic as their right side:
 * `a + b % c + d` is a + (b % (c + d)), `-a % b` is -(a % b). The other operators are
 * left-associative with the precedences | < & < << >> < + - < * / < unary minus.
 *
 * Where the grammar needs more than one token to choose (a '(' can open an expression, an
 * id list, a number or arithmetic), alternatives are tried in turn; results are memoized by
 * position, so nested parentheses cost linear time. The grammar is unambiguous, so at most
 * one alternative succeeds.
 */
import type { Token, TokenKind } from './lexer.js';

export type PName = 'ether' | 'ip' | 'arp' | 'rarp' | 'sctp' | 'tcp' | 'udp' | 'icmp' | 'igmp' | 'igrp' | 'pim' | 'vrrp' | 'carp' | 'ip6' | 'icmp6' | 'ah' | 'esp';
export type DQual = 'default' | 'src' | 'dst' | 'src or dst' | 'src and dst';
export type AQual = 'default' | 'host' | 'net' | 'port' | 'portrange' | 'proto';

/** libpcap's struct qual; null is its `qerr` (what follows a primitive without qualifiers, like `tcp`). */
export type Qual = { readonly proto: PName | 'default'; readonly dir: DQual; readonly addr: AQual } | null;

export type SynExpr =
  | { readonly t: 'and' | 'or'; readonly left: SynExpr; readonly right: SynExpr | SynId; readonly pos: number }
  | { readonly t: 'not'; readonly expr: SynExpr; readonly pos: number }
  | { readonly t: 'qualified'; readonly q: NonNullable<Qual>; readonly id: SynId; readonly pos: number }
  | { readonly t: 'paren'; readonly expr: SynExpr; readonly pos: number }
  | { readonly t: 'pname'; readonly name: PName; readonly pos: number }
  | { readonly t: 'relation'; readonly op: RelOp; readonly left: SynArith; readonly right: SynArith; readonly pos: number }
  | { readonly t: 'broadcast' | 'multicast'; readonly pqual: PName | 'default'; readonly pos: number }
  | { readonly t: 'less' | 'greater'; readonly value: number; readonly pos: number }
  | { readonly t: 'vlan'; readonly id: number | null; readonly pos: number };

export type SynId =
  | { readonly t: 'name'; readonly text: string; readonly pos: number }
  | { readonly t: 'pnum'; readonly value: number; readonly pos: number }
  | { readonly t: 'hid'; readonly text: string; readonly masklen: number | null; readonly mask: string | null; readonly pos: number }
  | { readonly t: 'hid6'; readonly text: string; readonly masklen: number; readonly pos: number }
  | { readonly t: 'eid'; readonly text: string; readonly pos: number }
  | { readonly t: 'idnot'; readonly id: SynId; readonly pos: number }
  /** `( pid )`: ids joined by and/or, left to right. */
  | { readonly t: 'idlist'; readonly first: SynId; readonly rest: readonly { readonly op: 'and' | 'or'; readonly id: SynId }[]; readonly pos: number };

export type RelOp = '=' | '!=' | '<' | '<=' | '>' | '>=';
export type ArithOp = '+' | '-' | '*' | '/' | '%' | '&' | '|' | '^' | '<<' | '>>';

export type SynArith =
  | { readonly t: 'num'; readonly value: number; readonly pos: number }
  | { readonly t: 'len'; readonly pos: number }
  | { readonly t: 'load'; readonly pname: PName; readonly offset: SynArith; readonly size: number; readonly pos: number }
  | { readonly t: 'binary'; readonly op: ArithOp; readonly left: SynArith; readonly right: SynArith; readonly pos: number }
  | { readonly t: 'negate'; readonly expr: SynArith; readonly pos: number };

const PNAMES = new Set<TokenKind>(['ether', 'ip', 'arp', 'rarp', 'sctp', 'tcp', 'udp', 'icmp', 'igmp', 'igrp', 'pim', 'vrrp', 'carp', 'ip6', 'icmp6', 'ah', 'esp']);
const RELOPS = new Set<TokenKind>(['=', '!=', '<', '<=', '>', '>=']);
/** Binary operators with a precedence; '%' and '^' have none (see the header). */
const PRECEDENCE: Partial<Record<TokenKind, number>> = { '|': 1, '&': 2, '<<': 3, '>>': 3, '+': 4, '-': 4, '*': 5, '/': 5 };
const ID_STARTS = new Set<TokenKind>(['id', 'hid', 'hid6', 'eid']);

/** Thrown to backtrack; never leaves this module. */
class Fail {
  constructor(readonly at: number) {}
}

type Memo = Map<string, { value: unknown; end: number } | Fail>;

export class SyntaxParser {
  private i = 0;
  /** Index of the furthest token any alternative stopped at: where the error is reported. */
  furthest = 0;
  private readonly memo: Memo = new Map();

  constructor(private readonly toks: readonly Token[]) {}

  /** The whole expression, or null for an empty one. Throws Fail (caught by the caller) on a syntax error. */
  parse(): SynExpr | null {
    if (this.peek().kind === 'eof') return null;
    const e = this.expr();
    this.expect('eof');
    return e;
  }

  /** The token the error is at. */
  failedToken(): Token {
    return this.toks[Math.min(this.furthest, this.toks.length - 1)]!;
  }

  static isFail(e: unknown): boolean {
    return e instanceof Fail;
  }

  private peek(ahead = 0): Token {
    return this.toks[Math.min(this.i + ahead, this.toks.length - 1)]!;
  }

  private next(): Token {
    const t = this.peek();
    if (this.i < this.toks.length - 1) this.i++;
    return t;
  }

  private fail(): never {
    if (this.i > this.furthest) this.furthest = this.i;
    throw new Fail(this.i);
  }

  private expect(kind: TokenKind): Token {
    if (this.peek().kind !== kind) this.fail();
    return this.next();
  }

  /** Runs an alternative from the current position; on failure restores the position and returns null. */
  private attempt<T>(rule: string, fn: () => T): T | null {
    const key = `${rule}@${this.i}`;
    const seen = this.memo.get(key);
    if (seen instanceof Fail) return null;
    if (seen) {
      this.i = seen.end;
      return seen.value as T;
    }
    const start = this.i;
    try {
      const value = fn();
      this.memo.set(key, { value, end: this.i });
      return value;
    } catch (e) {
      if (!(e instanceof Fail)) throw e;
      this.memo.set(key, e);
      this.i = start;
      return null;
    }
  }

  private expr(): SynExpr {
    let e = this.termOrId(false) as SynExpr;
    for (;;) {
      const op = this.peek();
      if (op.kind !== 'and' && op.kind !== 'or') return e;
      this.next();
      e = { t: op.kind, left: e, right: this.termOrId(true), pos: op.pos };
    }
  }

  /** A term, or (after and/or, allowId) an id; an id is told apart by its `t`. */
  private termOrId(allowId: boolean): SynExpr | SynId {
    const tok = this.peek();
    const after = this.peek(1).kind;
    switch (tok.kind) {
      case '!': {
        this.next();
        const inner = this.termOrId(allowId);
        return isId(inner) ? { t: 'idnot', id: inner, pos: tok.pos } : { t: 'not', expr: inner, pos: tok.pos };
      }
      case '(':
        return (
          this.attempt('relation', () => this.relation()) ??
          this.attempt('paren', () => {
            this.next();
            const e = this.expr();
            this.expect(')');
            return { t: 'paren', expr: e, pos: tok.pos } as const;
          }) ??
          (allowId ? this.id() : this.fail())
        );
      case 'num':
        return this.attempt('relation', () => this.relation()) ?? (allowId ? this.id() : this.fail());
      case '-':
      case 'len':
        return this.relation();
      case 'src':
      case 'dst':
      case 'host':
      case 'net':
      case 'port':
      case 'portrange':
      case 'proto':
        return this.qualified('default', tok.pos);
      case 'broadcast':
      case 'multicast':
        this.next();
        return { t: tok.kind, pqual: 'default', pos: tok.pos };
      case 'less':
      case 'greater':
        this.next();
        return { t: tok.kind, value: this.expect('num').num, pos: tok.pos };
      case 'vlan':
        this.next();
        return { t: 'vlan', id: this.peek().kind === 'num' || this.peek().kind === '(' ? this.pnum() : null, pos: tok.pos };
      default:
        if (PNAMES.has(tok.kind)) {
          const name = tok.kind as PName;
          if (after === '[') return this.relation();
          if (after === 'broadcast' || after === 'multicast') {
            this.next();
            this.next();
            return { t: after, pqual: name, pos: tok.pos };
          }
          if (['src', 'dst', 'host', 'net', 'port', 'portrange', 'proto'].includes(after)) {
            this.next();
            return this.qualified(name, tok.pos);
          }
          this.next();
          return { t: 'pname', name, pos: tok.pos };
        }
        if (allowId && ID_STARTS.has(tok.kind)) return this.id();
        return this.fail();
    }
  }

  /** head id, from the token after the optional pname. */
  private qualified(proto: PName | 'default', pos: number): SynExpr {
    let dir: DQual = 'default';
    let addr: AQual = 'default';
    const d = this.peek().kind;
    if (d === 'src' || d === 'dst') {
      this.next();
      dir = d;
      const joiner = this.peek().kind;
      if (joiner === 'or' || joiner === 'and') {
        this.next();
        this.expect(d === 'src' ? 'dst' : 'src');
        dir = joiner === 'or' ? 'src or dst' : 'src and dst';
      }
    }
    const a = this.peek().kind;
    if (a === 'host' || a === 'net' || a === 'port' || a === 'portrange' || (a === 'proto' && dir === 'default')) {
      this.next();
      addr = a;
    } else if (dir === 'default') this.fail();
    return { t: 'qualified', q: { proto, dir, addr }, id: this.id(), pos };
  }

  private id(): SynId {
    const tok = this.peek();
    switch (tok.kind) {
      case '!':
        this.next();
        return { t: 'idnot', id: this.id(), pos: tok.pos };
      case 'num':
        return { t: 'pnum', value: this.pnum(), pos: tok.pos };
      case '(': {
        const n = this.attempt('pnum', () => this.pnum());
        if (n !== null) return { t: 'pnum', value: n, pos: tok.pos };
        this.next();
        const list = this.pid(tok.pos);
        this.expect(')');
        return list;
      }
      default:
        return this.nid();
    }
  }

  /** The inside of `( pid )`: a nid, or a pnum followed by at least one and/or id. */
  private pid(pos: number): SynId {
    const startsWithNumber = this.peek().kind === 'num' || this.peek().kind === '(';
    const first: SynId = startsWithNumber ? { t: 'pnum', pos: this.peek().pos, value: this.pnum() } : this.nid();
    const rest: { op: 'and' | 'or'; id: SynId }[] = [];
    for (;;) {
      const op = this.peek().kind;
      if (op !== 'and' && op !== 'or') break;
      this.next();
      rest.push({ op, id: this.id() });
    }
    if (startsWithNumber && rest.length === 0) this.fail();
    return { t: 'idlist', first, rest, pos };
  }

  private nid(): SynId {
    const tok = this.peek();
    if (tok.kind !== 'id' && tok.kind !== 'eid' && tok.kind !== 'hid' && tok.kind !== 'hid6' && tok.kind !== '!') this.fail();
    this.next();
    switch (tok.kind) {
      case 'id':
        return { t: 'name', text: tok.text, pos: tok.pos };
      case 'eid':
        return { t: 'eid', text: tok.text, pos: tok.pos };
      case 'hid':
        if (this.peek().kind === '/') {
          this.next();
          return { t: 'hid', text: tok.text, masklen: this.expect('num').num, mask: null, pos: tok.pos };
        }
        if (this.peek().kind === 'mask') {
          this.next();
          return { t: 'hid', text: tok.text, masklen: null, mask: this.expect('hid').text, pos: tok.pos };
        }
        return { t: 'hid', text: tok.text, masklen: null, mask: null, pos: tok.pos };
      case 'hid6':
        if (this.peek().kind === '/') {
          this.next();
          return { t: 'hid6', text: tok.text, masklen: this.expect('num').num, pos: tok.pos };
        }
        return { t: 'hid6', text: tok.text, masklen: 128, pos: tok.pos };
      default:
        return { t: 'idnot', id: this.id(), pos: tok.pos };
    }
  }

  private pnum(): number {
    if (this.peek().kind === 'num') return this.next().num;
    this.expect('(');
    const v = this.pnum();
    this.expect(')');
    return v;
  }

  private relation(): SynExpr {
    const pos = this.peek().pos;
    const left = this.arith(0);
    const op = this.peek();
    if (!RELOPS.has(op.kind)) this.fail();
    this.next();
    return { t: 'relation', op: op.kind as RelOp, left, right: this.arith(0), pos };
  }

  /** Binary operators of precedence >= min, left-associative. */
  private arith(min: number): SynArith {
    let left = this.operand();
    for (;;) {
      const op = this.peek();
      const prec = PRECEDENCE[op.kind];
      if (prec === undefined || prec < min) return left;
      this.next();
      left = { t: 'binary', op: op.kind as ArithOp, left, right: this.arith(prec + 1), pos: op.pos };
    }
  }

  /** A unary minus or a primary, with any '%' or '^' right after it (which takes the rest). */
  private operand(): SynArith {
    const tok = this.peek();
    let e: SynArith;
    if (tok.kind === '-') {
      this.next();
      e = { t: 'negate', expr: this.operand(), pos: tok.pos };
    } else e = this.primary();
    for (;;) {
      const op = this.peek();
      if (op.kind !== '%' && op.kind !== '^') return e;
      this.next();
      e = { t: 'binary', op: op.kind, left: e, right: this.arith(0), pos: op.pos };
    }
  }

  private primary(): SynArith {
    const tok = this.peek();
    const isLoad = PNAMES.has(tok.kind) && this.peek(1).kind === '[';
    if (tok.kind !== 'num' && tok.kind !== 'len' && tok.kind !== '(' && !isLoad) this.fail();
    this.next();
    switch (tok.kind) {
      case 'num':
        return { t: 'num', value: tok.num, pos: tok.pos };
      case 'len':
        return { t: 'len', pos: tok.pos };
      case '(': {
        const e = this.arith(0);
        this.expect(')');
        return e;
      }
      default: {
        this.next();
        const offset = this.arith(0);
        let size = 1;
        if (this.peek().kind === ':') {
          this.next();
          size = this.expect('num').num;
        }
        this.expect(']');
        return { t: 'load', pname: tok.kind as PName, offset, size, pos: tok.pos };
      }
    }
  }
}

function isId(n: SynExpr | SynId): n is SynId {
  return n.t === 'name' || n.t === 'pnum' || n.t === 'hid' || n.t === 'hid6' || n.t === 'eid' || n.t === 'idnot' || n.t === 'idlist';
}
