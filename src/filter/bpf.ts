/**
 * Classic BPF as libpcap builds it: opcodes (pcap/bpf.h), the statement and block structures
 * of its code generator and optimizer (gencode.h), and the linear instruction form the
 * optimizer's output is assembled into. Numbers are unsigned 32-bit, held in JS numbers.
 *
 * A block is a list of statements ending in a branch (or a return). While code is generated,
 * a block's jt/jf also thread the "unresolved exits" lists of gen_and/gen_or (see
 * gencode.ts); after finish, they are the flow graph's edges.
 */

// Instruction classes.
export const BPF_LD = 0x00;
export const BPF_LDX = 0x01;
export const BPF_ST = 0x02;
export const BPF_STX = 0x03;
export const BPF_ALU = 0x04;
export const BPF_JMP = 0x05;
export const BPF_RET = 0x06;
export const BPF_MISC = 0x07;
// Load sizes.
export const BPF_W = 0x00;
export const BPF_H = 0x08;
export const BPF_B = 0x10;
// Load modes.
export const BPF_IMM = 0x00;
export const BPF_ABS = 0x20;
export const BPF_IND = 0x40;
export const BPF_MEM = 0x60;
export const BPF_LEN = 0x80;
export const BPF_MSH = 0xa0;
// ALU and jump operations.
export const BPF_ADD = 0x00;
export const BPF_SUB = 0x10;
export const BPF_MUL = 0x20;
export const BPF_DIV = 0x30;
export const BPF_OR = 0x40;
export const BPF_AND = 0x50;
export const BPF_LSH = 0x60;
export const BPF_RSH = 0x70;
export const BPF_NEG = 0x80;
export const BPF_MOD = 0x90;
export const BPF_XOR = 0xa0;
export const BPF_JA = 0x00;
export const BPF_JEQ = 0x10;
export const BPF_JGT = 0x20;
export const BPF_JGE = 0x30;
export const BPF_JSET = 0x40;
// Operand source.
export const BPF_K = 0x00;
export const BPF_X = 0x08;
export const BPF_A = 0x10;
// Misc operations.
export const BPF_TAX = 0x00;
export const BPF_TXA = 0x80;

export const BPF_MEMWORDS = 16;
/** A statement the optimizer deleted. */
export const NOP = -1;

export const BPF_CLASS = (code: number): number => code & 0x07;
export const BPF_SIZE = (code: number): number => code & 0x18;
export const BPF_MODE = (code: number): number => code & 0xe0;
export const BPF_OP = (code: number): number => code & 0xf0;
export const BPF_SRC = (code: number): number => code & 0x08;
export const BPF_RVAL = (code: number): number => code & 0x18;
export const BPF_MISCOP = (code: number): number => code & 0xf8;

/** One instruction of the assembled program (struct bpf_insn). */
export interface Insn {
  readonly code: number;
  readonly jt: number;
  readonly jf: number;
  readonly k: number;
}

export interface Stmt {
  code: number;
  k: number;
}

export interface Slist {
  s: Stmt;
  next: Slist | null;
}

export function newStmt(code: number, k = 0): Slist {
  return { s: { code, k }, next: null };
}

/** Appends s1 to the end of list s0 (libpcap's sappend). */
export function sappend(s0: Slist, s1: Slist | null): void {
  let s = s0;
  while (s.next) s = s.next;
  s.next = s1;
}

/** Registers tracked by the optimizer: 16 scratch words, then A, then X. */
export const A_ATOM = BPF_MEMWORDS;
export const X_ATOM = BPF_MEMWORDS + 1;
export const N_ATOMS = BPF_MEMWORDS + 2;
/** Both A and X (a statement that uses the two). */
export const AX_ATOM = N_ATOMS;

export class Edge {
  id = 0;
  code = 0;
  edom: Uint32Array = new Uint32Array(0);
  succ: Block | null = null;
  next: Edge | null = null;
  constructor(readonly pred: Block) {}
}

export class Block {
  id = 0;
  stmts: Slist | null = null;
  /** The branch (or return) that ends the block. */
  readonly s: Stmt;
  mark = 0;
  longjt = 0;
  longjf = 0;
  level = 0;
  offset = 0;
  /** gen_and/gen_or bookkeeping: which of jt/jf is the unresolved-list link. */
  sense = false;
  readonly et: Edge;
  readonly ef: Edge;
  head: Block;
  link: Block | null = null;
  dom: Uint32Array = new Uint32Array(0);
  inEdges: Edge | null = null;
  kill = 0;
  inUse = 0;
  outUse = 0;
  oval = 0;
  readonly val = new Array<number>(N_ATOMS).fill(0);

  constructor(code: number, k = 0) {
    this.s = { code, k };
    this.et = new Edge(this);
    this.ef = new Edge(this);
    this.head = this;
  }

  get jt(): Block | null {
    return this.et.succ;
  }

  set jt(b: Block | null) {
    this.et.succ = b;
  }

  get jf(): Block | null {
    return this.ef.succ;
  }

  set jf(b: Block | null) {
    this.ef.succ = b;
  }
}
