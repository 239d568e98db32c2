/**
 * The pcap-filter (tcpdump) language on a frame, with libpcap 1.10's exact answers.
 *
 *   text ──tokenize──▶ tokens ──SyntaxParser──▶ syntax tree ──Semantics──▶ tree (tree.ts)
 *        (lexer.ts)            (syntax.ts)                  (semantics.ts)     │
 *                                                                               ▼
 *   match() ◀──jit── instructions ◀──assemble── optimized graph ◀──optimize── CodeGen
 *          (jit.ts)                 (optimize.ts)                 (optimize.ts)  (gencode.ts)
 *
 * compileFilter() does all of that once; match() is then one generated function per packet,
 * allocation-free. The tree is for readers (the index planner, logs: printFilter); the
 * program is libpcap's, instruction for instruction (`tcpdump -d` prints the same), because
 * libpcap's code generator and optimizer decide corner cases (loads past the end of the
 * packet, "expression rejects all packets"). docs/filters.md lists what surprises.
 */
import { BPF_K, BPF_RET, type Block, type Insn } from './bpf.js';
import { FilterError } from './errors.js';
import { CodeGen, LINKTYPE_ETHERNET, LINKTYPE_RAW, type LinkType } from './gencode.js';
import { jit, type MatchFunction } from './jit.js';
import { tokenize } from './lexer.js';
import { assemble, optimize, OptimizeError } from './optimize.js';
import { Semantics } from './semantics.js';
import { SyntaxParser } from './syntax.js';
import type { FilterNode } from './tree.js';

export { FilterError } from './errors.js';
export { printFilter } from './print.js';
export { LINKTYPE_ETHERNET, LINKTYPE_RAW, type LinkType } from './gencode.js';
export type * from './tree.js';

/** Longer filters are refused: the optimizer's cost grows faster than the program (a 4 KiB list of ports takes seconds, in libpcap too). */
export const MAX_FILTER_LENGTH = 4096;

/** What libpcap's `ret` returns for a match (any non-zero value means match; this is tcpdump's default snaplen). */
const SNAPLEN = 262144;

export interface CompiledFilter {
  readonly text: string;
  readonly linkType: LinkType;
  /** The normalized parse tree (tree.ts). */
  readonly tree: FilterNode;
  /** The optimized BPF program, as `tcpdump -d` would list it. */
  readonly program: readonly Insn[];
  /** True when the frame matches; buf[off .. off + capLen) are the captured bytes, wireLen the length on the wire. */
  readonly match: MatchFunction;
}

/**
 * Compiles a filter for frames of the given link type: LINKTYPE_ETHERNET (1) or LINKTYPE_RAW
 * (101, the frame is an IPv4 or IPv6 packet). Throws FilterError (code ERR_MIRRORCAP_FILTER)
 * for anything libpcap would refuse and for anything mirrorcap does not support.
 */
export function compileFilter(text: string, linkType: LinkType = LINKTYPE_ETHERNET, snaplen = SNAPLEN): CompiledFilter {
  try {
    return compile(text, linkType, snaplen);
  } catch (e) {
    // Parentheses nested thousands deep outgrow the call stack of the recursive parts.
    if (e instanceof RangeError && /call stack/.test(e.message)) throw new FilterError('unsupported', 0, text, 'filter nested too deeply');
    throw e;
  }
}

function compile(text: string, linkType: LinkType, snaplen: number): CompiledFilter {
  if (linkType !== LINKTYPE_ETHERNET && linkType !== LINKTYPE_RAW) {
    throw new FilterError('unsupported', 0, text, `link type ${String(linkType)} is not supported (1 = Ethernet, 101 = raw IP)`);
  }
  if (text.length > MAX_FILTER_LENGTH) throw new FilterError('unsupported', MAX_FILTER_LENGTH, text.slice(MAX_FILTER_LENGTH), `filter longer than ${MAX_FILTER_LENGTH} characters`);
  const tokens = tokenize(text);
  const parser = new SyntaxParser(tokens);
  let syntax;
  try {
    syntax = parser.parse();
  } catch (e) {
    if (!SyntaxParser.isFail(e)) throw e;
    const at = parser.failedToken();
    if (at.kind === 'unsupported') throw new FilterError('unsupported', at.pos, at.raw, at.detail);
    if (at.kind === 'error') throw new FilterError('syntax', at.pos, at.raw, at.detail);
    throw new FilterError('syntax', at.pos, at.raw, at.kind === 'eof' ? 'syntax error: the expression ends too early' : 'syntax error');
  }
  const tree = new Semantics(linkType, tokens).tree(syntax);
  const wordAt = (pos: number): string => tokens.find((t) => t.pos === pos)?.raw ?? '';
  const program = compileTree(new CodeGen(linkType, snaplen, wordAt).compile(tree), text);
  return { text, linkType, tree, program, match: jit(program) };
}

/**
 * The match function of a program compileFilter() made elsewhere (a worker thread: compiling
 * a long expression takes the optimizer a while, running the JIT does not).
 */
export function matcherOf(program: readonly Insn[]): MatchFunction {
  return jit(program);
}

/** Flow graph -> optimized, assembled BPF, exactly as pcap_compile() with optimization does it. */
function compileTree(graph: Block, text: string): Insn[] {
  let root = graph;
  try {
    root = optimize(root);
  } catch (e) {
    if (e instanceof OptimizeError) throw new FilterError('syntax', 0, text, e.message);
    throw e;
  }
  if (root.s.code === (BPF_RET | BPF_K) && root.s.k === 0) throw new FilterError('syntax', 0, text, 'expression rejects all packets');
  return assemble(root);
}
