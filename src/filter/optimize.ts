/**
 * libpcap 1.10's BPF optimizer (optimize.c), ported statement for statement, and the
 * assembler that turns its flow graph into linear instructions (icode_to_fcode).
 *
 * Why port it rather than write a cleaner one: the optimizer is part of libpcap's semantics.
 * It decides which loads run, and a load past the end of the packet makes the whole filter
 * fail there, so `ether[1000] & 0 = 0` matches every packet (the load is folded away) while
 * `ether[1000] = 0 or ip` matches nothing on a short frame. It also decides which filters are
 * refused ("expression rejects all packets": `tcp and udp`, `1 = 2`). Only its exact
 * behaviour gives tcpdump's answers.
 *
 * What it does, in passes until nothing changes (opt_loop), first on branches only, then on
 * statements too: value numbering per block with constants folded (opt_blk/opt_stmt/opt_peep),
 * dead stores removed, edges moved past tests whose outcome a dominating edge already
 * decided (opt_j/fold_edge), and "or"/"and" chains reordered (or_pullup/and_pullup); then
 * equal blocks are merged (intern_blocks) and the root trimmed (opt_root).
 */
import {
  A_ATOM,
  AX_ATOM,
  BPF_ADD,
  BPF_ALU,
  BPF_B,
  BPF_H,
  BPF_LEN,
  BPF_MSH,
  BPF_W,
  BPF_ABS,
  BPF_AND,
  BPF_CLASS,
  BPF_DIV,
  BPF_IMM,
  BPF_IND,
  BPF_JA,
  BPF_JEQ,
  BPF_JGE,
  BPF_JGT,
  BPF_JMP,
  BPF_JSET,
  BPF_K,
  BPF_LD,
  BPF_LDX,
  BPF_LSH,
  BPF_MEM,
  BPF_MISC,
  BPF_MISCOP,
  BPF_MOD,
  BPF_MODE,
  BPF_MUL,
  BPF_NEG,
  BPF_OP,
  BPF_OR,
  BPF_RET,
  BPF_RSH,
  BPF_RVAL,
  BPF_SIZE,
  BPF_SRC,
  BPF_ST,
  BPF_STX,
  BPF_SUB,
  BPF_TAX,
  BPF_TXA,
  BPF_X,
  BPF_XOR,
  BPF_A,
  type Block,
  type Edge,
  type Insn,
  N_ATOMS,
  NOP,
  sappend,
  type Slist,
  type Stmt,
  X_ATOM,
} from './bpf.js';
import { codedError, ErrorCode } from '../errors.js';

/** An optimizer error (libpcap's opt_error): division or modulus by a zero it computed, an oversized shift. */
export class OptimizeError extends Error {}

const ATOMMASK = (n: number): number => 1 << n;
const ATOMELEM = (d: number, n: number): boolean => (d & ATOMMASK(n)) !== 0;
const SET_MEMBER = (p: Uint32Array, a: number): boolean => (p[a >>> 5]! & (1 << (a & 31))) !== 0;
const SET_INSERT = (p: Uint32Array, a: number): void => {
  p[a >>> 5]! |= 1 << (a & 31);
};
const SET_INTERSECT = (a: Uint32Array, b: Uint32Array): void => {
  for (let i = 0; i < a.length; i++) a[i]! &= b[i]!;
};

/** Which register a statement reads (an atom, AX_ATOM for both A and X, or -1). */
function atomuse(s: Stmt): number {
  const c = s.code;
  if (c === NOP) return -1;
  switch (BPF_CLASS(c)) {
    case BPF_RET:
      return BPF_RVAL(c) === BPF_A ? A_ATOM : BPF_RVAL(c) === BPF_X ? X_ATOM : -1;
    case BPF_LD:
    case BPF_LDX:
      return BPF_MODE(c) === BPF_IND ? X_ATOM : BPF_MODE(c) === BPF_MEM ? s.k : -1;
    case BPF_ST:
      return A_ATOM;
    case BPF_STX:
      return X_ATOM;
    case BPF_JMP:
    case BPF_ALU:
      return BPF_SRC(c) === BPF_X ? AX_ATOM : A_ATOM;
    default:
      return BPF_MISCOP(c) === BPF_TXA ? X_ATOM : A_ATOM;
  }
}

/** Which register a statement writes, or -1. */
function atomdef(s: Stmt): number {
  if (s.code === NOP) return -1;
  switch (BPF_CLASS(s.code)) {
    case BPF_LD:
    case BPF_ALU:
      return A_ATOM;
    case BPF_LDX:
      return X_ATOM;
    case BPF_ST:
    case BPF_STX:
      return s.k;
    case BPF_MISC:
      return BPF_MISCOP(s.code) === BPF_TAX ? X_ATOM : A_ATOM;
    default:
      return -1;
  }
}

function thisOp(s: Slist | null): Slist | null {
  while (s !== null && s.s.code === NOP) s = s.next;
  return s;
}

function slength(s: Slist | null): number {
  let n = 0;
  for (; s; s = s.next) if (s.s.code !== NOP) n++;
  return n;
}

/** A pointer to a block's jt or jf field (the C code's `struct block **`). */
interface Ref {
  readonly blk: Block;
  readonly jt: boolean;
}
const getRef = (r: Ref): Block | null => (r.jt ? r.blk.jt : r.blk.jf);
const setRef = (r: Ref, b: Block | null): void => {
  if (r.jt) r.blk.jt = b;
  else r.blk.jf = b;
};

/**
 * Depth first from root, as libpcap's recursive walks go: a block is entered the first time it
 * is reached (`enter`, which must make `seen` true for it), its children are walked (jt then
 * jf, or jf first), then it is left (`leave`; returning false stops the walk and makes dfs
 * return false). Iterative: a chain of thousands of blocks would overflow the call stack.
 */
function dfs(root: Block | null, seen: (b: Block) => boolean, enter: (b: Block) => void, leave: (b: Block) => boolean | void, jfFirst = false): boolean {
  if (root === null || seen(root)) return true;
  enter(root);
  const stack: Block[] = [root];
  const done: number[] = [0];
  while (stack.length > 0) {
    const top = stack.length - 1;
    const b = stack[top]!;
    if (done[top]! < 2) {
      const first = done[top]++ === 0;
      const child = first !== jfFirst ? b.jt : b.jf;
      if (child !== null && !seen(child)) {
        enter(child);
        stack.push(child);
        done.push(0);
      }
      continue;
    }
    stack.pop();
    done.pop();
    if (leave(b) === false) return false;
  }
  return true;
}

class Optimizer {
  private curMark = 0;
  private done = false;
  private nonBranchMovementPerformed = false;
  private blocks: Block[] = [];
  private edges: Edge[] = [];
  private levels: (Block | null)[] = [];
  private nodewords = 0;
  private edgewords = 0;
  // Value numbering (libpcap's hash table of valnodes, and vmap).
  private readonly values = new Map<number, Map<number, Map<number, number>>>();
  private curval = 0;
  private readonly isConst: boolean[] = [];
  private readonly constVal: number[] = [];

  constructor(public root: Block) {}

  run(): Block {
    this.init();
    this.loop(false);
    this.loop(true);
    this.internBlocks();
    this.optRoot();
    return this.root;
  }

  private unMarkAll(): void {
    this.curMark++;
  }

  private isMarked(b: Block): boolean {
    return b.mark === this.curMark;
  }

  private mark(b: Block): void {
    b.mark = this.curMark;
  }

  private init(): void {
    this.unMarkAll();
    const seen = (b: Block): boolean => this.isMarked(b);
    dfs(this.root, seen, (p) => {
      this.mark(p);
      p.id = this.blocks.length;
      this.blocks.push(p);
    }, () => {});
    const n = this.blocks.length;
    this.levels = new Array<Block | null>(n).fill(null);
    this.edges = new Array<Edge>(2 * n);
    this.edgewords = Math.floor((2 * n) / 32) + 1;
    this.nodewords = Math.floor(n / 32) + 1;
    for (let i = 0; i < n; i++) {
      const b = this.blocks[i]!;
      b.dom = new Uint32Array(this.nodewords);
      b.et.edom = new Uint32Array(this.edgewords);
      b.ef.edom = new Uint32Array(this.edgewords);
      b.et.id = i;
      b.ef.id = n + i;
      this.edges[i] = b.et;
      this.edges[n + i] = b.ef;
    }
  }

  private loop(doStmts: boolean): void {
    let loopCount = 0;
    for (;;) {
      this.done = true;
      this.nonBranchMovementPerformed = false;
      this.findLevels();
      this.findDom();
      this.findUd();
      this.findEdom();
      this.optBlks(doStmts);
      if (this.done) break;
      if (this.nonBranchMovementPerformed) loopCount = 0;
      else if (++loopCount >= 100) {
        // Only branches moved for 100 passes: libpcap takes that as a cycle and stops.
        this.done = true;
        break;
      }
    }
  }

  private findLevels(): void {
    this.levels.fill(null);
    this.unMarkAll();
    dfs(
      this.root,
      (b) => this.isMarked(b),
      (b) => {
        this.mark(b);
        b.link = null;
      },
      (b) => {
        const level = b.jt ? Math.max(b.jt.level, b.jf!.level) + 1 : 0;
        b.level = level;
        b.link = this.levels[level]!;
        this.levels[level] = b;
      },
    );
  }

  private findDom(): void {
    for (const b of this.blocks) b.dom.fill(0xffffffff);
    this.root.dom.fill(0);
    for (let level = this.root.level; level >= 0; --level) {
      for (let b = this.levels[level] ?? null; b; b = b.link) {
        SET_INSERT(b.dom, b.id);
        if (b.jt === null) continue;
        SET_INTERSECT(b.jt.dom, b.dom);
        SET_INTERSECT(b.jf!.dom, b.dom);
      }
    }
  }

  private findEdom(): void {
    for (const e of this.edges) e.edom.fill(0xffffffff);
    this.root.et.edom.fill(0);
    this.root.ef.edom.fill(0);
    const propedom = (ep: Edge): void => {
      SET_INSERT(ep.edom, ep.id);
      if (ep.succ) {
        SET_INTERSECT(ep.succ.et.edom, ep.edom);
        SET_INTERSECT(ep.succ.ef.edom, ep.edom);
      }
    };
    for (let level = this.root.level; level >= 0; --level) {
      for (let b = this.levels[level] ?? null; b; b = b.link) {
        propedom(b.et);
        propedom(b.ef);
      }
    }
  }

  private computeLocalUd(b: Block): void {
    let def = 0;
    let use = 0;
    let killed = 0;
    const used = (atom: number): void => {
      if (atom < 0) return;
      if (atom === AX_ATOM) {
        if (!ATOMELEM(def, X_ATOM)) use |= ATOMMASK(X_ATOM);
        if (!ATOMELEM(def, A_ATOM)) use |= ATOMMASK(A_ATOM);
      } else if (!ATOMELEM(def, atom)) use |= ATOMMASK(atom);
    };
    for (let s = b.stmts; s; s = s.next) {
      if (s.s.code === NOP) continue;
      used(atomuse(s.s));
      const atom = atomdef(s.s);
      if (atom >= 0) {
        if (!ATOMELEM(use, atom)) killed |= ATOMMASK(atom);
        def |= ATOMMASK(atom);
      }
    }
    if (BPF_CLASS(b.s.code) === BPF_JMP) used(atomuse(b.s));
    b.kill = killed;
    b.inUse = use;
  }

  private findUd(): void {
    const maxlevel = this.root.level;
    for (let i = maxlevel; i >= 0; --i) {
      for (let p = this.levels[i] ?? null; p; p = p.link) {
        this.computeLocalUd(p);
        p.outUse = 0;
      }
    }
    for (let i = 1; i <= maxlevel; ++i) {
      for (let p = this.levels[i] ?? null; p; p = p.link) {
        p.outUse |= p.jt!.inUse | p.jf!.inUse;
        p.inUse |= p.outUse & ~p.kill;
      }
    }
  }

  // ---- value numbering --------------------------------------------------------------------

  private initVal(): void {
    this.curval = 0;
    this.values.clear();
    this.isConst.length = 0;
    this.constVal.length = 0;
  }

  /** The value number of `code` applied to v0 and v1 (libpcap's F()). */
  private F(code: number, v0: number, v1: number): number {
    let byV0 = this.values.get(code);
    if (!byV0) this.values.set(code, (byV0 = new Map()));
    let byV1 = byV0.get(v0);
    if (!byV1) byV0.set(v0, (byV1 = new Map()));
    const seen = byV1.get(v1);
    if (seen !== undefined) return seen;
    const val = ++this.curval;
    if (BPF_MODE(code) === BPF_IMM && (BPF_CLASS(code) === BPF_LD || BPF_CLASS(code) === BPF_LDX)) {
      this.constVal[val] = v0;
      this.isConst[val] = true;
    }
    byV1.set(v1, val);
    return val;
  }

  /** The value number of a constant. */
  private K(i: number): number {
    return this.F(BPF_LD | BPF_IMM, i, 0);
  }

  private known(v: number): boolean {
    return this.isConst[v] === true;
  }

  private changed(): void {
    this.nonBranchMovementPerformed = true;
    this.done = false;
  }

  private vstore(s: Stmt, val: number[], atom: number, newval: number, alter: boolean): void {
    if (alter && newval !== 0 && val[atom] === newval) s.code = NOP;
    else val[atom] = newval;
  }

  private foldOp(s: Stmt, v0: number, v1: number): void {
    let a = this.constVal[v0]!;
    const b = this.constVal[v1]!;
    switch (BPF_OP(s.code)) {
      case BPF_ADD:
        a = (a + b) >>> 0;
        break;
      case BPF_SUB:
        a = (a - b) >>> 0;
        break;
      case BPF_MUL:
        a = Math.imul(a, b) >>> 0;
        break;
      case BPF_DIV:
        if (b === 0) throw new OptimizeError('division by zero');
        a = Math.floor(a / b);
        break;
      case BPF_MOD:
        if (b === 0) throw new OptimizeError('modulus by zero');
        a %= b;
        break;
      case BPF_AND:
        a = (a & b) >>> 0;
        break;
      case BPF_OR:
        a = (a | b) >>> 0;
        break;
      case BPF_XOR:
        a = (a ^ b) >>> 0;
        break;
      case BPF_LSH:
        a = b < 32 ? (a << b) >>> 0 : 0;
        break;
      default: // BPF_RSH
        a = b < 32 ? a >>> b : 0;
    }
    s.k = a;
    s.code = BPF_LD | BPF_IMM;
    this.changed();
  }

  private optStmt(s: Stmt, val: number[], alter: boolean): void {
    const code = s.code;
    switch (code) {
      case BPF_LD | BPF_ABS | BPF_W:
      case BPF_LD | BPF_ABS | BPF_H:
      case BPF_LD | BPF_ABS | BPF_B:
        this.vstore(s, val, A_ATOM, this.F(code, s.k, 0), alter);
        return;
      case BPF_LD | BPF_IND | BPF_W:
      case BPF_LD | BPF_IND | BPF_H:
      case BPF_LD | BPF_IND | BPF_B: {
        let v = val[X_ATOM]!;
        if (alter && this.known(v)) {
          s.code = BPF_LD | BPF_ABS | BPF_SIZE(code);
          s.k = (s.k + this.constVal[v]!) >>> 0;
          v = this.F(s.code, s.k, 0);
          this.changed();
        } else v = this.F(code, s.k, v);
        this.vstore(s, val, A_ATOM, v, alter);
        return;
      }
      case BPF_LD | BPF_LEN:
        this.vstore(s, val, A_ATOM, this.F(code, 0, 0), alter);
        return;
      case BPF_LD | BPF_IMM:
        this.vstore(s, val, A_ATOM, this.K(s.k), alter);
        return;
      case BPF_LDX | BPF_IMM:
        this.vstore(s, val, X_ATOM, this.K(s.k), alter);
        return;
      case BPF_LDX | BPF_MSH | BPF_B:
        this.vstore(s, val, X_ATOM, this.F(code, s.k, 0), alter);
        return;
      case BPF_ALU | BPF_NEG:
        if (alter && this.known(val[A_ATOM]!)) {
          s.code = BPF_LD | BPF_IMM;
          s.k = (0 - this.constVal[val[A_ATOM]!]!) >>> 0;
          val[A_ATOM] = this.K(s.k);
        } else val[A_ATOM] = this.F(code, val[A_ATOM]!, 0);
        return;
      case BPF_MISC | BPF_TXA:
        this.vstore(s, val, A_ATOM, val[X_ATOM]!, alter);
        return;
      case BPF_LD | BPF_MEM:
      case BPF_LDX | BPF_MEM: {
        const v = val[s.k]!;
        if (alter && this.known(v)) {
          s.code = (code === (BPF_LD | BPF_MEM) ? BPF_LD : BPF_LDX) | BPF_IMM;
          s.k = this.constVal[v]!;
          this.changed();
        }
        this.vstore(s, val, code === (BPF_LD | BPF_MEM) ? A_ATOM : X_ATOM, v, alter);
        return;
      }
      case BPF_MISC | BPF_TAX:
        this.vstore(s, val, X_ATOM, val[A_ATOM]!, alter);
        return;
      case BPF_ST:
        this.vstore(s, val, s.k, val[A_ATOM]!, alter);
        return;
      case BPF_STX:
        this.vstore(s, val, s.k, val[X_ATOM]!, alter);
        return;
    }
    if (BPF_CLASS(code) !== BPF_ALU) return;
    const op = BPF_OP(code);
    if (BPF_SRC(code) === BPF_K) {
      if (alter) {
        if (s.k === 0) {
          // Don't optimize away "sub #0": later passes may need it to fix up the math.
          if (op === BPF_ADD || op === BPF_LSH || op === BPF_RSH || op === BPF_OR || op === BPF_XOR) {
            s.code = NOP;
            return;
          }
          if (op === BPF_MUL || op === BPF_AND) {
            s.code = BPF_LD | BPF_IMM;
            val[A_ATOM] = this.K(s.k);
            return;
          }
          if (op === BPF_DIV) throw new OptimizeError('division by zero');
          if (op === BPF_MOD) throw new OptimizeError('modulus by zero');
        }
        if (this.known(val[A_ATOM]!)) {
          this.foldOp(s, val[A_ATOM]!, this.K(s.k));
          val[A_ATOM] = this.K(s.k);
          return;
        }
      }
      val[A_ATOM] = this.F(s.code, val[A_ATOM]!, this.K(s.k));
      return;
    }
    if (alter && this.known(val[X_ATOM]!)) {
      if (this.known(val[A_ATOM]!)) {
        this.foldOp(s, val[A_ATOM]!, val[X_ATOM]!);
        val[A_ATOM] = this.K(s.k);
      } else {
        s.code = BPF_ALU | BPF_K | op;
        s.k = this.constVal[val[X_ATOM]!]!;
        if ((op === BPF_LSH || op === BPF_RSH) && s.k > 31) throw new OptimizeError('shift by more than 31 bits');
        this.changed();
        val[A_ATOM] = this.F(s.code, val[A_ATOM]!, this.K(s.k));
      }
      return;
    }
    // An operation on an accumulator known to be 0 (libpcap: "may open up further optimizations").
    if (alter && this.known(val[A_ATOM]!) && this.constVal[val[A_ATOM]!] === 0) {
      if (op === BPF_ADD || op === BPF_OR || op === BPF_XOR) {
        s.code = BPF_MISC | BPF_TXA;
        this.vstore(s, val, A_ATOM, val[X_ATOM]!, alter);
        return;
      }
      if (op === BPF_MUL || op === BPF_DIV || op === BPF_MOD || op === BPF_AND || op === BPF_LSH || op === BPF_RSH) {
        s.code = BPF_LD | BPF_IMM;
        s.k = 0;
        this.vstore(s, val, A_ATOM, this.K(s.k), alter);
        return;
      }
    }
    val[A_ATOM] = this.F(s.code, val[A_ATOM]!, val[X_ATOM]!);
  }

  private optPeep(b: Block): void {
    let s = b.stmts;
    if (s === null) return;
    let last: Slist = s;
    let next: Slist | null;
    for (; ; s = next) {
      s = thisOp(s);
      if (s === null) break;
      next = thisOp(s.next);
      if (next === null) break;
      last = next;
      // st M[k]; ldx M[k]  ->  st M[k]; tax
      if (s.s.code === BPF_ST && next.s.code === (BPF_LDX | BPF_MEM) && s.s.k === next.s.k) {
        this.changed();
        next.s.code = BPF_MISC | BPF_TAX;
      }
      // ld #k; tax  ->  ldx #k; txa
      if (s.s.code === (BPF_LD | BPF_IMM) && next.s.code === (BPF_MISC | BPF_TAX)) {
        s.s.code = BPF_LDX | BPF_IMM;
        next.s.code = BPF_MISC | BPF_TXA;
        this.changed();
      }
      // ld #k; [ldxms]; addx; tax; ild [x+n]  ->  ...; ild [x+n+k]  (tcp[k] with a constant k)
      if (s.s.code === (BPF_LD | BPF_IMM)) {
        if (ATOMELEM(b.outUse, X_ATOM)) continue;
        const add = next.s.code !== (BPF_LDX | BPF_MSH | BPF_B) ? next : thisOp(next.next);
        if (add === null || add.s.code !== (BPF_ALU | BPF_ADD | BPF_X)) continue;
        const tax = thisOp(add.next);
        if (tax === null || tax.s.code !== (BPF_MISC | BPF_TAX)) continue;
        const ild = thisOp(tax.next);
        if (ild === null || BPF_CLASS(ild.s.code) !== BPF_LD || BPF_MODE(ild.s.code) !== BPF_IND) continue;
        ild.s.k = (ild.s.k + s.s.k) >>> 0;
        s.s.code = NOP;
        add.s.code = NOP;
        tax.s.code = NOP;
        this.changed();
      }
    }
    // A comparison with a constant after arithmetic nobody else needs can absorb the arithmetic.
    if (b.s.code === (BPF_JMP | BPF_JEQ | BPF_K) && !ATOMELEM(b.outUse, A_ATOM)) {
      if (last.s.code === (BPF_ALU | BPF_SUB | BPF_X)) {
        const val = b.val[X_ATOM]!;
        if (this.known(val)) {
          // sub x; jeq #y  ->  jeq #(x+y)
          b.s.k = (b.s.k + this.constVal[val]!) >>> 0;
          last.s.code = NOP;
          this.changed();
        } else if (b.s.k === 0) {
          // sub x; jeq #0  ->  jeq x
          last.s.code = NOP;
          b.s.code = BPF_JMP | BPF_JEQ | BPF_X;
          this.changed();
        }
      } else if (last.s.code === (BPF_ALU | BPF_SUB | BPF_K)) {
        // sub #x; jeq #y  ->  jeq #(x+y)
        last.s.code = NOP;
        b.s.k = (b.s.k + last.s.k) >>> 0;
        this.changed();
      } else if (last.s.code === (BPF_ALU | BPF_AND | BPF_K) && b.s.k === 0) {
        // and #k; jeq #0  ->  jset #k (branches swapped)
        b.s.k = last.s.k;
        b.s.code = BPF_JMP | BPF_K | BPF_JSET;
        last.s.code = NOP;
        this.changed();
        const tmp = b.jt;
        b.jt = b.jf;
        b.jf = tmp;
      }
    }
    // jset #0 never jumps, jset #0xffffffff always does.
    if (b.s.code === (BPF_JMP | BPF_K | BPF_JSET)) {
      if (b.s.k === 0) b.jt = b.jf;
      if (b.s.k === 0xffffffff) b.jf = b.jt;
    }
    // A comparison with X when X is a known constant is one with that constant.
    let val = b.val[X_ATOM]!;
    if (this.known(val) && BPF_SRC(b.s.code) === BPF_X) {
      b.s.code &= ~BPF_X;
      b.s.k = this.constVal[val]!;
    }
    // A comparison of a known A is decided now.
    val = b.val[A_ATOM]!;
    if (this.known(val) && BPF_SRC(b.s.code) === BPF_K) {
      let v = this.constVal[val]!;
      switch (BPF_OP(b.s.code)) {
        case BPF_JEQ:
          v = v === b.s.k ? 1 : 0;
          break;
        case BPF_JGT:
          v = v > b.s.k ? 1 : 0;
          break;
        case BPF_JGE:
          v = v >= b.s.k ? 1 : 0;
          break;
        case BPF_JSET:
          v = (v & b.s.k) >>> 0;
          break;
        default:
          throw codedError(ErrorCode.INTERNAL, `unexpected branch code ${b.s.code}`);
      }
      if (b.jf !== b.jt) this.changed();
      if (v) b.jf = b.jt;
      else b.jt = b.jf;
    }
  }

  private optDeadstores(b: Block): void {
    const last = new Array<Stmt | null>(N_ATOMS).fill(null);
    const deadstmt = (s: Stmt): void => {
      let atom = atomuse(s);
      if (atom >= 0) {
        if (atom === AX_ATOM) {
          last[X_ATOM] = null;
          last[A_ATOM] = null;
        } else last[atom] = null;
      }
      atom = atomdef(s);
      if (atom >= 0) {
        if (last[atom]) {
          this.changed();
          last[atom]!.code = NOP;
        }
        last[atom] = s;
      }
    };
    for (let s = b.stmts; s; s = s.next) deadstmt(s.s);
    deadstmt(b.s);
    for (let atom = 0; atom < N_ATOMS; ++atom) {
      if (last[atom] && !ATOMELEM(b.outUse, atom)) {
        last[atom]!.code = NOP;
        this.changed();
      }
    }
  }

  private optBlk(b: Block, doStmts: boolean): void {
    let p = b.inEdges;
    if (p === null) b.val.fill(0);
    else {
      for (let i = 0; i < N_ATOMS; i++) b.val[i] = p.pred.val[i]!;
      // Where merging paths leave a register with different values, it is unknown.
      while ((p = p.next) !== null) {
        for (let i = 0; i < N_ATOMS; ++i) if (b.val[i] !== p.pred.val[i]) b.val[i] = 0;
      }
    }
    const aval = b.val[A_ATOM]!;
    const xval = b.val[X_ATOM]!;
    for (let s = b.stmts; s; s = s.next) this.optStmt(s.s, b.val, doStmts);
    // Nothing used downstream and A and X unchanged (or a return): the statements are useless.
    if (
      doStmts &&
      ((b.outUse === 0 && aval !== 0 && b.val[A_ATOM] === aval && xval !== 0 && b.val[X_ATOM] === xval) || BPF_CLASS(b.s.code) === BPF_RET)
    ) {
      if (b.stmts !== null) {
        b.stmts = null;
        this.changed();
      }
    } else {
      this.optPeep(b);
      this.optDeadstores(b);
    }
    b.oval = BPF_SRC(b.s.code) === BPF_K ? this.K(b.s.k) : b.val[X_ATOM]!;
    b.et.code = b.s.code;
    b.ef.code = -b.s.code;
  }

  /** Whether a register live on exit from succ has a different value there than on exit from b. */
  private useConflict(b: Block, succ: Block): boolean {
    const use = succ.outUse;
    if (use === 0) return false;
    for (let atom = 0; atom < N_ATOMS; ++atom) if (ATOMELEM(use, atom) && b.val[atom] !== succ.val[atom]) return true;
    return false;
  }

  /** A child of `child` that the edge's successor can be replaced by, given dominating edge ep. */
  private foldEdge(child: Block, ep: Edge): Block | null {
    let code = ep.code;
    let sense = true;
    if (code < 0) {
      code = -code;
      sense = false;
    }
    if (child.s.code !== code) return null;
    if (child.val[A_ATOM] !== ep.pred.val[A_ATOM]) return null;
    if (child.oval === ep.pred.oval) return sense ? child.jt : child.jf;
    // After a true "jeq #k" A holds k, so a "jeq" against another constant is false.
    if (sense && code === (BPF_JMP | BPF_JEQ | BPF_K)) return child.jf;
    return null;
  }

  private optJ(ep: Edge): void {
    const succ = ep.succ!;
    if (succ.jt === null) return;
    if (succ.jt === succ.jf && !this.useConflict(ep.pred, succ.jt)) {
      this.changed();
      ep.succ = succ.jt;
    }
    top: for (;;) {
      for (let i = 0; i < this.edgewords; ++i) {
        let x = ep.edom[i]!;
        while (x !== 0) {
          const k = 31 - Math.clz32(x & -x);
          x = (x & ~(1 << k)) >>> 0;
          const target = this.foldEdge(ep.succ!, this.edges[k + i * 32]!);
          if (target !== null && !this.useConflict(ep.pred, target)) {
            this.done = false;
            ep.succ = target;
            if (target.jt !== null) continue top;
            return;
          }
        }
      }
      return;
    }
  }

  /** or_pullup (and = false) and and_pullup (and = true): the same walk with jt and jf swapped. */
  private pullup(b: Block, and: boolean): void {
    let ep = b.inEdges;
    if (ep === null) return;
    const val = ep.pred.val[A_ATOM];
    for (ep = ep.next; ep !== null; ep = ep.next) if (val !== ep.pred.val[A_ATOM]) return;
    const same = (x: Block): Block | null => (and ? x.jf : x.jt);
    const chain = (x: Block): Ref => ({ blk: x, jt: and });
    const firstPred = b.inEdges!.pred;
    let diffp: Ref = { blk: firstPred, jt: firstPred.jt === b };
    let atTop = true;
    for (;;) {
      const d = getRef(diffp);
      if (d === null) return;
      if (same(d) !== same(b)) return;
      if (!SET_MEMBER(d.dom, b.id)) return;
      if (d.val[A_ATOM] !== val) break;
      diffp = chain(d);
      atTop = false;
    }
    let samep = chain(getRef(diffp)!);
    for (;;) {
      const s = getRef(samep);
      if (s === null) return;
      if (same(s) !== same(b)) return;
      if (!SET_MEMBER(s.dom, b.id)) return;
      if (s.val[A_ATOM] === val) break;
      samep = chain(s);
    }
    const pull = getRef(samep)!;
    setRef(samep, getRef(chain(pull)));
    setRef(chain(pull), getRef(diffp));
    if (atTop) {
      for (ep = b.inEdges; ep !== null; ep = ep.next) {
        if (ep.pred.jt === b) ep.pred.jt = pull;
        else ep.pred.jf = pull;
      }
    } else setRef(diffp, pull);
    this.done = false;
  }

  private findInedges(): void {
    for (const b of this.blocks) b.inEdges = null;
    for (let level = this.root.level; level > 0; --level) {
      for (let b = this.levels[level] ?? null; b; b = b.link) {
        b.et.next = b.jt!.inEdges;
        b.jt!.inEdges = b.et;
        b.ef.next = b.jf!.inEdges;
        b.jf!.inEdges = b.ef;
      }
    }
  }

  private optBlks(doStmts: boolean): void {
    this.initVal();
    const maxlevel = this.root.level;
    this.findInedges();
    for (let i = maxlevel; i >= 0; --i) for (let p = this.levels[i] ?? null; p; p = p.link) this.optBlk(p, doStmts);
    if (doStmts) return;
    for (let i = 1; i <= maxlevel; ++i) {
      for (let p = this.levels[i] ?? null; p; p = p.link) {
        this.optJ(p.et);
        this.optJ(p.ef);
      }
    }
    this.findInedges();
    for (let i = 1; i <= maxlevel; ++i) {
      for (let p = this.levels[i] ?? null; p; p = p.link) {
        this.pullup(p, false);
        this.pullup(p, true);
      }
    }
  }

  /** Merges equal blocks (same statements, same branch, same successors). */
  private internBlocks(): void {
    // Equal means: same branch, same successors, same statements (NOPs aside). libpcap compares
    // every pair; a signature per block finds the same partner (the first equal block after
    // it in numbering order) in linear time.
    const signature = (b: Block): string => {
      let sig = `${b.s.code} ${b.s.k} ${b.jt?.id ?? -1} ${b.jf?.id ?? -1}`;
      for (let x = thisOp(b.stmts); x; x = thisOp(x.next)) sig += ` ${x.s.code}:${x.s.k}`;
      return sig;
    };
    const n = this.blocks.length;
    for (let again = true; again; ) {
      again = false;
      for (const b of this.blocks) b.link = null;
      this.unMarkAll();
      dfs(this.root, (b) => this.isMarked(b), (b) => this.mark(b), () => {});
      // Walking down from the end, `first` holds the lowest-numbered marked block of each
      // signature seen so far: the partner libpcap's inner loop would find.
      const first = new Map<string, Block>();
      for (let i = n - 1; i >= 0; --i) {
        const bi = this.blocks[i]!;
        if (!this.isMarked(bi)) continue;
        const sig = signature(bi);
        const bj = first.get(sig);
        if (bj) bi.link = bj.link ?? bj;
        first.set(sig, bi);
      }
      for (const p of this.blocks) {
        if (p.jt === null) continue;
        if (p.jt.link) {
          again = true;
          p.jt = p.jt.link;
        }
        if (p.jf!.link) {
          again = true;
          p.jf = p.jf!.link;
        }
      }
    }
  }

  /** Skips root branches that go to the same place either way; a return needs no statements. */
  private optRoot(): void {
    const s = this.root.stmts;
    this.root.stmts = null;
    while (BPF_CLASS(this.root.s.code) === BPF_JMP && this.root.jt === this.root.jf) this.root = this.root.jt!;
    const tmp = this.root.stmts;
    if (s !== null && tmp !== null) sappend(s, tmp);
    this.root.stmts = s ?? tmp;
    if (BPF_CLASS(this.root.s.code) === BPF_RET) this.root.stmts = null;
  }
}

/** Runs libpcap's optimizer on the flow graph; returns the new root. Throws OptimizeError. */
export function optimize(root: Block): Block {
  return new Optimizer(root).run();
}

/**
 * icode_to_fcode(): lays the blocks out (false branch first, from the end backwards) and
 * resolves the branch offsets, adding a `ja` where an offset does not fit in 8 bits.
 */
export function assemble(root: Block): Insn[] {
  const marked = new Set<Block>();
  for (;;) {
    marked.clear();
    let n = 0;
    const seen = (b: Block): boolean => marked.has(b);
    dfs(root, seen, (b) => marked.add(b), (p) => void (n += slength(p.stmts) + 1 + p.longjt + p.longjf));
    const out: { code: number; jt: number; jf: number; k: number }[] = Array.from({ length: n }, () => ({ code: 0, jt: 0, jf: 0, k: 0 }));
    let ftail = n;
    marked.clear();
    const convert = (p: Block): boolean => {
      const slen = slength(p.stmts);
      ftail -= slen + 1 + p.longjt + p.longjf;
      p.offset = ftail;
      let dst = ftail;
      for (let src = p.stmts; src; src = src.next) {
        if (src.s.code === NOP) continue;
        out[dst] = { code: src.s.code, jt: 0, jf: 0, k: src.s.k };
        dst++;
      }
      const insn = out[dst]!;
      insn.code = p.s.code;
      insn.k = p.s.k;
      if (p.jt) {
        // An offset that does not fit in 8 bits goes through a `ja` after the branch; the
        // first time, the block is marked as needing one and the layout starts over.
        let extra = 0;
        for (const side of ['jt', 'jf'] as const) {
          const off = p[side]!.offset - (p.offset + slen) - 1;
          if (off < 256) {
            insn[side] = off;
            continue;
          }
          const long = side === 'jt' ? 'longjt' : 'longjf';
          if (p[long] === 0) {
            p[long]++;
            return false;
          }
          insn[side] = extra++;
          out[dst + extra] = { code: BPF_JMP | BPF_JA, jt: 0, jf: 0, k: off - extra };
        }
      }
      return true;
    };
    if (dfs(root, seen, (b) => marked.add(b), convert, true)) return out;
  }
}
