/**
 * A BPF program as `tcpdump -d` lists it (libpcap's bpf_image.c), so a test can compare our
 * compiler's output with libpcap's line for line.
 */
import type { Insn } from '../../src/filter/bpf.js';

const hex = (k: number): string => `#0x${k.toString(16)}`;
const dec = (k: number): string => `#${k | 0}`;

const OPS: Record<number, [string, (k: number, n: number) => string]> = {
  0x06: ['ret', dec],
  0x16: ['ret', () => ''],
  0x20: ['ld', (k) => `[${k | 0}]`],
  0x28: ['ldh', (k) => `[${k | 0}]`],
  0x30: ['ldb', (k) => `[${k | 0}]`],
  0x80: ['ld', () => '#pktlen'],
  0x40: ['ld', (k) => `[x + ${k | 0}]`],
  0x48: ['ldh', (k) => `[x + ${k | 0}]`],
  0x50: ['ldb', (k) => `[x + ${k | 0}]`],
  0x00: ['ld', hex],
  0x01: ['ldx', hex],
  0xb1: ['ldxb', (k) => `4*([${k | 0}]&0xf)`],
  0x60: ['ld', (k) => `M[${k}]`],
  0x61: ['ldx', (k) => `M[${k}]`],
  0x02: ['st', (k) => `M[${k}]`],
  0x03: ['stx', (k) => `M[${k}]`],
  0x05: ['ja', (k, n) => String(n + 1 + k)],
  0x25: ['jgt', hex],
  0x35: ['jge', hex],
  0x15: ['jeq', hex],
  0x45: ['jset', hex],
  0x2d: ['jgt', () => 'x'],
  0x3d: ['jge', () => 'x'],
  0x1d: ['jeq', () => 'x'],
  0x4d: ['jset', () => 'x'],
  0x0c: ['add', () => 'x'],
  0x1c: ['sub', () => 'x'],
  0x2c: ['mul', () => 'x'],
  0x3c: ['div', () => 'x'],
  0x9c: ['mod', () => 'x'],
  0x5c: ['and', () => 'x'],
  0x4c: ['or', () => 'x'],
  0xac: ['xor', () => 'x'],
  0x6c: ['lsh', () => 'x'],
  0x7c: ['rsh', () => 'x'],
  0x04: ['add', dec],
  0x14: ['sub', dec],
  0x24: ['mul', dec],
  0x34: ['div', dec],
  0x94: ['mod', dec],
  0x54: ['and', hex],
  0x44: ['or', hex],
  0xa4: ['xor', hex],
  0x64: ['lsh', dec],
  0x74: ['rsh', dec],
  0x84: ['neg', () => ''],
  0x07: ['tax', () => ''],
  0x87: ['txa', () => ''],
};

export function bpfImage(program: readonly Insn[]): string {
  return program
    .map((p, n) => {
      const [op, operand] = OPS[p.code] ?? ['unimp', () => `0x${p.code.toString(16)}`];
      const num = String(n).padStart(3, '0');
      const o = operand(p.k, n);
      if ((p.code & 7) === 5 && (p.code & 0xf0) !== 0) return `(${num}) ${op.padEnd(8)} ${o.padEnd(16)} jt ${n + 1 + p.jt}\tjf ${n + 1 + p.jf}`;
      return `(${num}) ${op.padEnd(8)} ${o}`;
    })
    .join('\n');
}
