/**
 * The index sidecar X.pcap.idx of a classic pcap capture X.pcap (docs/index.md). All numbers
 * little-endian; f64 holds integers below 2^53 exactly.
 *
 *   0   magic "MCAPIDX\n"            8   version u32 (1)          12  header length u32 (96)
 *   16  capture size f64             24  capture mtime ms f64     32  covered bytes f64
 *   40  packets f64                  48  min ts sec u32, nsec u32  56  max ts sec u32, nsec u32
 *   64  groups u32                   68  packets per group u32    72  keys u32
 *   76  flags u32 (1 = keys present: an Ethernet capture)         80  link type u32, 84..96 zero
 *   96  groups × 24:  first record's file offset f64 | min ts sec, nsec | max ts sec, nsec
 *       kinds:        8 × u32: how many keys of each kind (0..7) follow, in kind order
 *       keys × 8:     value u32 | postings start u32 (from the start of the postings)   sorted by kind, value
 *       postings:     per key, the groups it occurs in: LEB128 varints of the gap to the previous
 *                     group (the first from -1), its end being the next key's start
 *   end-4 CRC-32 (zlib) of every byte before it
 *
 * A group is `packets per group` consecutive records (the last may have fewer); it ends where
 * the next begins, the last at `covered` (the end of the last whole record when indexed).
 * The sidecar is trusted only when its magic, version, lengths and CRC hold and the capture's
 * size and mtime are those it records; anything else is a missing index.
 */
import { crc32 } from 'node:zlib';
import { KINDS, keyKind, keyValue } from './index-keys.js';
import type { EncodedPostings } from './key-table.js';
export const INDEX_VERSION = 1;
const MAGIC = Buffer.from('MCAPIDX\n', 'latin1');
export const HEADER_LEN = 96;
const GROUP_LEN = 24;
const KEY_LEN = 8;
const KINDS_LEN = KINDS * 4;
const FLAG_KEYS = 1;

export interface IndexSummary {
  readonly captureSize: number;
  readonly captureMtimeMs: number;
  /** End of the last whole record indexed. */
  readonly covered: number;
  readonly packets: number;
  readonly min: readonly [number, number];
  readonly max: readonly [number, number];
  readonly linkType: number;
}

export interface IndexContent extends IndexSummary {
  readonly groupPackets: number;
  /** Per group: file offset of its first record, min and max timestamp. */
  readonly groupOffsets: readonly number[];
  readonly groupTimes: Uint32Array;
  /** Null: no keys (not an Ethernet capture): only time narrows. */
  readonly postings: EncodedPostings | null;
}

/** Why a sidecar was not trusted. */
export type IndexProblem = 'missing' | 'corrupt' | 'version' | 'stale';

export function encodeIndex(c: IndexContent): Buffer {
  const groups = c.groupOffsets.length;
  const p = c.postings;
  const keyCount = p === null ? 0 : p.keys.length;
  const size = HEADER_LEN + groups * GROUP_LEN + KINDS_LEN + keyCount * KEY_LEN + (p === null ? 0 : p.bytes.length) + 4;
  const b = Buffer.alloc(size);
  MAGIC.copy(b, 0);
  b.writeUInt32LE(INDEX_VERSION, 8);
  b.writeUInt32LE(HEADER_LEN, 12);
  b.writeDoubleLE(c.captureSize, 16);
  b.writeDoubleLE(c.captureMtimeMs, 24);
  b.writeDoubleLE(c.covered, 32);
  b.writeDoubleLE(c.packets, 40);
  b.writeUInt32LE(c.min[0], 48);
  b.writeUInt32LE(c.min[1], 52);
  b.writeUInt32LE(c.max[0], 56);
  b.writeUInt32LE(c.max[1], 60);
  b.writeUInt32LE(groups, 64);
  b.writeUInt32LE(c.groupPackets, 68);
  b.writeUInt32LE(keyCount, 72);
  b.writeUInt32LE(p === null ? 0 : FLAG_KEYS, 76);
  b.writeUInt32LE(c.linkType, 80);
  let at = HEADER_LEN;
  for (let g = 0; g < groups; g++, at += GROUP_LEN) {
    b.writeDoubleLE(c.groupOffsets[g]!, at);
    for (let i = 0; i < 4; i++) b.writeUInt32LE(c.groupTimes[g * 4 + i]!, at + 8 + 4 * i);
  }
  if (p !== null) {
    const counts = new Uint32Array(KINDS);
    for (const k of p.keys) counts[keyKind(k)]!++;
    counts.forEach((n, i) => b.writeUInt32LE(n, at + 4 * i));
    at += KINDS_LEN;
    for (let i = 0; i < keyCount; i++, at += KEY_LEN) {
      b.writeUInt32LE(keyValue(p.keys[i]!), at);
      b.writeUInt32LE(p.starts[i]!, at + 4);
    }
    at += p.bytes.copy(b, at);
  } else at += KINDS_LEN;
  b.writeUInt32LE(crc32(b.subarray(0, at)), at);
  return b;
}

/** Reads the fixed header; null when it cannot be one of ours of this version. */
export function readSummary(b: Buffer): IndexSummary | null {
  if (b.length < HEADER_LEN + 4 || !b.subarray(0, 8).equals(MAGIC) || b.readUInt32LE(8) !== INDEX_VERSION || b.readUInt32LE(12) !== HEADER_LEN) return null;
  return {
    captureSize: b.readDoubleLE(16),
    captureMtimeMs: b.readDoubleLE(24),
    covered: b.readDoubleLE(32),
    packets: b.readDoubleLE(40),
    min: [b.readUInt32LE(48), b.readUInt32LE(52)],
    max: [b.readUInt32LE(56), b.readUInt32LE(60)],
    linkType: b.readUInt32LE(80),
  };
}

/** Whether the sidecar's header says it was made of this capture as it is now (size and mtime). */
export function matchesCapture(s: IndexSummary, size: number, mtimeMs: number): boolean {
  return s.captureSize === size && s.captureMtimeMs === mtimeMs;
}

/** An index read whole and checked: its groups, and the groups each key occurs in. */
export class IndexReader {
  readonly groups: number;
  readonly hasKeys: boolean;
  private readonly keyCount: number;
  private readonly groupsAt = HEADER_LEN;
  private readonly keysAt: number;
  /** Index of each kind's first key, and one past the last kind's. */
  private readonly kindStart = new Array<number>(KINDS + 1).fill(0);
  private readonly postingsAt: number;
  private readonly postingsEnd: number;

  private constructor(
    private readonly b: Buffer,
    readonly summary: IndexSummary,
  ) {
    this.groups = b.readUInt32LE(64);
    this.keyCount = b.readUInt32LE(72);
    this.hasKeys = (b.readUInt32LE(76) & FLAG_KEYS) !== 0;
    const kindsAt = this.groupsAt + this.groups * GROUP_LEN;
    this.keysAt = kindsAt + KINDS_LEN;
    for (let k = 0; k < KINDS; k++) this.kindStart[k + 1] = this.kindStart[k]! + (kindsAt + KINDS_LEN <= b.length ? b.readUInt32LE(kindsAt + 4 * k) : 0);
    this.postingsAt = this.keysAt + this.keyCount * KEY_LEN;
    this.postingsEnd = b.length - 4;
  }

  /** The checked index in `b`, or why it cannot be trusted (size and mtime are the caller's to compare). */
  static parse(b: Buffer): IndexReader | IndexProblem {
    if (b.length >= 12 && b.subarray(0, 8).equals(MAGIC) && b.readUInt32LE(8) !== INDEX_VERSION) return 'version';
    const s = readSummary(b);
    if (s === null) return 'corrupt';
    if (crc32(b.subarray(0, b.length - 4)) !== b.readUInt32LE(b.length - 4)) return 'corrupt';
    const r = new IndexReader(b, s);
    if (r.postingsAt > r.postingsEnd || r.kindStart[KINDS] !== r.keyCount) return 'corrupt';
    for (let g = 1; g < r.groups; g++) if (!(r.groupOffset(g) > r.groupOffset(g - 1))) return 'corrupt';
    if (r.groups > 0 && !(r.groupOffset(r.groups - 1) < s.covered)) return 'corrupt';
    return r;
  }

  groupOffset(g: number): number {
    return this.b.readDoubleLE(this.groupsAt + g * GROUP_LEN);
  }

  /** End of group g: the next group's start, or `covered`. */
  groupEnd(g: number): number {
    return g + 1 < this.groups ? this.groupOffset(g + 1) : this.summary.covered;
  }

  /** Whether any record of group g can lie in [from, to) (each a [sec, nsec] pair). */
  groupOverlaps(g: number, from: readonly [number, number] | null, to: readonly [number, number] | null): boolean {
    const at = this.groupsAt + g * GROUP_LEN + 8;
    const b = this.b;
    if (from !== null && before(b.readUInt32LE(at + 8), b.readUInt32LE(at + 12), from[0], from[1])) return false;
    if (to !== null && !before(b.readUInt32LE(at), b.readUInt32LE(at + 4), to[0], to[1])) return false;
    return true;
  }

  /** Every key, in order (for primitives that match a range of values: networks, port ranges). */
  *keys(): Generator<number> {
    for (let kind = 0; kind < KINDS; kind++) {
      for (let i = this.kindStart[kind]!; i < this.kindStart[kind + 1]!; i++) yield kind * 2 ** 32 + this.b.readUInt32LE(this.keysAt + i * KEY_LEN);
    }
  }

  /** The groups `k` occurs in, ascending; empty when it occurs nowhere. A corrupt list ends early, never past the groups. */
  lookup(k: number): number[] {
    const kind = keyKind(k);
    if (kind >= KINDS) return [];
    const value = keyValue(k);
    let lo = this.kindStart[kind]!;
    let hi = this.kindStart[kind + 1]! - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const v = this.b.readUInt32LE(this.keysAt + mid * KEY_LEN);
      if (v < value) lo = mid + 1;
      else if (v > value) hi = mid - 1;
      else return this.postingsOf(mid);
    }
    return [];
  }

  private postingsOf(i: number): number[] {
    const b = this.b;
    const start = this.postingsAt + b.readUInt32LE(this.keysAt + i * KEY_LEN + 4);
    const end = i + 1 < this.keyCount ? this.postingsAt + b.readUInt32LE(this.keysAt + (i + 1) * KEY_LEN + 4) : this.postingsEnd;
    const out: number[] = [];
    let prev = -1;
    let at = Math.min(start, this.postingsEnd);
    const stop = Math.min(end, this.postingsEnd);
    while (at < stop) {
      let gap = 0;
      let shift = 0;
      let byte: number;
      do {
        byte = b[at++]!;
        gap += (byte & 0x7f) * 2 ** shift;
        shift += 7;
      } while (byte & 0x80 && at < stop);
      prev += gap + 1;
      if (prev >= this.groups) break;
      out.push(prev);
    }
    return out;
  }
}

/** a < b for [sec, nsec] timestamps given as four numbers. */
export function before(aSec: number, aNsec: number, bSec: number, bNsec: number): boolean {
  return aSec < bSec || (aSec === bSec && aNsec < bNsec);
}
