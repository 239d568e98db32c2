/**
 * Assembled BPF -> one JavaScript function, built once per filter with `new Function`, so a
 * packet costs a function call and straight-line loads and compares: no interpreter loop, no
 * allocation, no closure lookups.
 *
 *   match(buf, off, capLen, wireLen): boolean
 *     buf      the bytes (a Buffer or Uint8Array); the frame starts at off
 *     capLen   bytes of the frame that are there (off + capLen <= buf.length)
 *     wireLen  the frame's length on the wire (what `len`, `less`, `greater` see)
 *
 * Semantics are libpcap's bpf_filter.c (the userland interpreter tcpdump -r runs): A and X
 * are unsigned 32-bit, a load that does not fit in capLen makes the whole filter return
 * "no match" at that point, so do a division or modulo by an X of 0; a shift by X >= 32
 * gives 0 (a constant shift is always below 32: the compiler refuses others). A, X and the
 * scratch words hold the 32 bits as a signed int32 (V8 keeps those in registers; about a
 * third faster than uint32 doubles), converted with >>> 0 where the sign matters: unsigned
 * comparisons, division, modulo, right shifts and offsets.
 *
 * BPF only jumps forward, so the program is a DAG laid out in order; every jump target gets
 * a labelled block that encloses all instructions before it, and a jump is `break label`:
 *
 *   L7: { L4: { insn 0 .. 3 (jumps to 4: break L4; to 7: break L7) } insn 4 .. 6 } insn 7 ..
 *
 * Only numbers the compiler produced are written into the source.
 */
import {
  BPF_A,
  BPF_ABS,
  BPF_ADD,
  BPF_ALU,
  BPF_AND,
  BPF_B,
  BPF_CLASS,
  BPF_DIV,
  BPF_H,
  BPF_IMM,
  BPF_IND,
  BPF_JA,
  BPF_JEQ,
  BPF_JGE,
  BPF_JGT,
  BPF_JMP,
  BPF_JSET,
  BPF_LD,
  BPF_LDX,
  BPF_LEN,
  BPF_LSH,
  BPF_MEM,
  BPF_MISC,
  BPF_MISCOP,
  BPF_MOD,
  BPF_MODE,
  BPF_MSH,
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
  BPF_W,
  BPF_X,
  BPF_XOR,
  type Insn,
} from './bpf.js';
import { codedError, ErrorCode } from '../errors.js';

export type MatchFunction = (buf: Uint8Array, off: number, capLen: number, wireLen: number) => boolean;

/** Code that leaves in A the `size` bytes at index expression `at` (already bounds-checked). */
function read(size: number, at: string): string {
  if (size === BPF_B) return `buf[${at}]`;
  if (size === BPF_H) return `((buf[${at}] << 8) | buf[${at} + 1])`;
  return `((buf[${at}] << 24) | (buf[${at} + 1] << 16) | (buf[${at} + 2] << 8) | buf[${at} + 3])`;
}

/** A constant as the int32 that has its bits. */
const int = (k: number): string => String(k | 0);

const WIDTH: Record<number, number> = { [BPF_W]: 4, [BPF_H]: 2, [BPF_B]: 1 };

/** An ALU operation on A with X (isX) or the constant k. */
function alu(op: number, isX: boolean, k: number): string {
  const signed = isX ? 'X' : int(k);
  const unsigned = isX ? '(X >>> 0)' : String(k);
  switch (op) {
    case BPF_ADD:
      return `A = (A + ${signed}) | 0;`;
    case BPF_SUB:
      return `A = (A - ${signed}) | 0;`;
    case BPF_MUL:
      return `A = Math.imul(A, ${signed});`;
    case BPF_DIV:
      return `${isX ? 'if (X === 0) return false; ' : ''}A = ((A >>> 0) / ${unsigned}) | 0;`;
    case BPF_MOD:
      return `${isX ? 'if (X === 0) return false; ' : ''}A = ((A >>> 0) % ${unsigned}) | 0;`;
    case BPF_AND:
      return `A = A & ${signed};`;
    case BPF_OR:
      return `A = A | ${signed};`;
    case BPF_XOR:
      return `A = A ^ ${signed};`;
    case BPF_LSH:
      return isX ? 'A = (X >>> 0) < 32 ? A << X : 0;' : `A = A << ${k};`;
    case BPF_RSH:
      return isX ? 'A = (X >>> 0) < 32 ? (A >>> X) | 0 : 0;' : `A = (A >>> ${k}) | 0;`;
    case BPF_NEG:
      return 'A = -A | 0;';
    default:
      throw codedError(ErrorCode.INTERNAL, `unsupported ALU operation ${op}`);
  }
}

/** The test of a conditional jump against X (isX) or the constant k. */
function condition(op: number, isX: boolean, k: number): string {
  switch (op) {
    case BPF_JEQ:
      return `A === ${isX ? 'X' : int(k)}`;
    case BPF_JGT:
      return `(A >>> 0) > ${isX ? '(X >>> 0)' : k}`;
    case BPF_JGE:
      return `(A >>> 0) >= ${isX ? '(X >>> 0)' : k}`;
    case BPF_JSET:
      return `(A & ${isX ? 'X' : int(k)}) !== 0`;
    default:
      throw codedError(ErrorCode.INTERNAL, `unsupported jump ${op}`);
  }
}

/** One instruction; `goto` makes the code for a jump to instruction t. */
function statement(insn: Insn, i: number, goto: (t: number) => string): string {
  const { code, k } = insn;
  switch (BPF_CLASS(code)) {
    case BPF_RET:
      return BPF_RVAL(code) === BPF_A ? 'return A !== 0;' : `return ${k !== 0};`;
    case BPF_LD:
    case BPF_LDX: {
      const reg = BPF_CLASS(code) === BPF_LD ? 'A' : 'X';
      switch (BPF_MODE(code)) {
        case BPF_IMM:
          return `${reg} = ${int(k)};`;
        case BPF_LEN:
          return `${reg} = wireLen | 0;`;
        case BPF_MEM:
          return `${reg} = m${k};`;
        case BPF_ABS:
          return `if (${k + WIDTH[BPF_SIZE(code)]!} > capLen) return false; A = ${read(BPF_SIZE(code), `off + ${k}`)};`;
        case BPF_IND:
          return `t = (X >>> 0) + ${k}; if (t + ${WIDTH[BPF_SIZE(code)]!} > capLen) return false; t += off; A = ${read(BPF_SIZE(code), 't')};`;
        case BPF_MSH:
          return `if (${k} >= capLen) return false; X = (buf[off + ${k}] & 15) << 2;`;
        default:
          throw codedError(ErrorCode.INTERNAL, `unsupported load ${code}`);
      }
    }
    case BPF_ST:
      return `m${k} = A;`;
    case BPF_STX:
      return `m${k} = X;`;
    case BPF_ALU:
      return alu(BPF_OP(code), BPF_SRC(code) === BPF_X, k);
    case BPF_MISC:
      return BPF_MISCOP(code) === BPF_TAX ? 'X = A;' : 'A = X;';
    default: {
      // BPF_JMP
      if (BPF_OP(code) === BPF_JA) return goto(i + 1 + k);
      const test = condition(BPF_OP(code), BPF_SRC(code) === BPF_X, k);
      const t = i + 1 + insn.jt;
      const f = i + 1 + insn.jf;
      if (t === f) return goto(t);
      if (t === i + 1) return `if (!(${test})) ${goto(f)}`;
      if (f === i + 1) return `if (${test}) ${goto(t)}`;
      return `if (${test}) ${goto(t)} else ${goto(f)}`;
    }
  }
}

/** The JavaScript source of the function's body. */
function jitSource(program: readonly Insn[]): string {
  const targets = new Set<number>();
  const scratch = new Set<number>();
  program.forEach((insn, i) => {
    if (BPF_CLASS(insn.code) === BPF_JMP) {
      if (BPF_OP(insn.code) === BPF_JA) targets.add(i + 1 + insn.k);
      else targets.add(i + 1 + insn.jt).add(i + 1 + insn.jf);
    }
    if (BPF_CLASS(insn.code) === BPF_ST || BPF_CLASS(insn.code) === BPF_STX || BPF_MODE(insn.code) === BPF_MEM) scratch.add(insn.k);
  });
  // A jump to the next instruction needs no label unless something else jumps there too.
  const labels = [...targets].filter((t) => t < program.length).sort((a, b) => a - b);
  const labelled = new Set(labels);
  const lines: string[] = ['"use strict";', 'let A = 0, X = 0, t = 0;'];
  // BPF scratch memory starts as zeros here (libpcap's is uninitialized; its compiler never reads before writing).
  for (const m of [...scratch].sort((a, b) => a - b)) lines.push(`let m${m} = 0;`);
  for (let j = labels.length - 1; j >= 0; j--) lines.push(`L${labels[j]}: {`);
  const goto = (t: number): string => (labelled.has(t) ? `break L${t};` : '');
  program.forEach((insn, i) => {
    if (labelled.has(i)) lines.push('}');
    const next = i + 1;
    lines.push(statement(insn, i, (t) => (t === next && !isBranch(insn) ? '' : goto(t))));
  });
  return lines.join('\n');
}

function isBranch(insn: Insn): boolean {
  return BPF_CLASS(insn.code) === BPF_JMP && BPF_OP(insn.code) !== BPF_JA;
}

export function jit(program: readonly Insn[]): MatchFunction {
  return new Function('buf', 'off', 'capLen', 'wireLen', jitSource(program)) as MatchFunction;
}
