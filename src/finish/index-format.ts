/**
 * The index sidecar X.pcap.idx of a classic pcap capture X.pcap, or of its compressed twin
 * X.pcap.gz / X.pcap.zst (docs/query.md). All numbers little-endian; f64 holds integers below
 * 2^53 exactly. Offsets of records are offsets in the uncompressed capture.
 *
 *   0   magic "MCAPIDX\n"            8   version u32 (2)          12  header length u32 (128)
 *   16  capture size f64             24  capture mtime ms f64     32  covered bytes f64
 *   40  packets f64                  48  min ts sec u32, nsec u32  56  max ts sec u32, nsec u32
 *   64  groups u32                   68  packets per group u32    72  keys u32
 *   76  flags u32 (1 = keys present: an Ethernet capture)         80  link type u32
 *   84  head length u32              88  postings length u32      92  zero
 *   96  the capture's 24-byte pcap file header (a query of a compressed capture needs no
 *       decompression to plan)                                     120..128 zero
 *   the head, read whole by every query of the file:
 *   128 groups × 24:  first record's file offset f64 | min ts sec, nsec | max ts sec, nsec
 *       kinds:        8 × u32: how many keys of each kind (0..7) there are, in kind order
 *       key pages:    per KEY_PAGE keys: its first key's value u32, postings start u32, CRC-32 of its entries u32
 *       postings pages: per POSTINGS_PAGE bytes of postings: CRC-32 u32
 *       CRC-32 (zlib) of every byte of the head before it
 *   then, read a page at a time by the lookups that need them:
 *       keys × 8:     value u32 | postings start u32 (from the start of the postings)   sorted by kind, value
 *       postings:     per key, the groups it occurs in: LEB128 varints of the gap to the previous
 *                     group (the first from -1), its end being the next key's start
 *
 * A group is `packets per group` consecutive records (the last may have fewer); it ends where
 * the next begins, the last at `covered` (the end of the last whole record when indexed).
 * A query reads the head (groups and times: about 0.4 % of the capture) and only the key and
 * postings pages its lookups need, not the whole sidecar (about 2.1 %): each part is checked
 * by its own CRC when read. The sidecar is trusted only when its magic, version and lengths
 * hold, the head's CRC holds, and the capture's size and mtime are those it records; a page
 * whose CRC fails makes the whole index untrusted (the file is scanned instead).
 */
import { endianness } from 'node:os';
import { crc32 } from 'node:zlib';
import { KINDS, keyKind, keyValue } from './index-keys.js';
import { indexMemory } from './index-memory.js';
import type { EncodedPostings } from './key-table.js';
export const INDEX_VERSION = 2;
const MAGIC = Buffer.from('MCAPIDX\n', 'latin1');
export const HEADER_LEN = 128;
const GROUP_LEN = 24;
const KEY_LEN = 8;
const KINDS_LEN = KINDS * 4;
const FLAG_KEYS = 1;
/** Keys per key page (2 KiB): one read of a lookup. */
const KEY_PAGE = 256;
const KEY_PAGE_ENTRY = 12;
/** Postings bytes per checked page. */
const POSTINGS_PAGE = 4096;
const AT_CAPTURE_SIZE = 16;
const AT_CAPTURE_MTIME = 24;
const AT_HEAD_LEN = 84;
const AT_POSTINGS_LEN = 88;
const AT_CAPTURE_HEADER = 96;
const CAPTURE_HEADER_LEN = 24;
const LITTLE_ENDIAN = endianness() === 'LE';

export interface IndexSummary {
  readonly captureSize: number;
  readonly captureMtimeMs: number;
  /** End of the last whole record indexed. */
  readonly covered: number;
  readonly packets: number;
  readonly min: readonly [number, number];
  readonly max: readonly [number, number];
  readonly linkType: number;
  /** The capture's pcap file header. */
  readonly captureHeader: Buffer;
}

export interface IndexContent extends IndexSummary {
  readonly groupPackets: number;
  /** Per group: file offset of its first record, min and max timestamp. */
  readonly groupOffsets: ArrayLike<number>;
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
  const postingsLen = p === null ? 0 : p.bytes.length;
  const keyPages = Math.ceil(keyCount / KEY_PAGE);
  const postingsPages = Math.ceil(postingsLen / POSTINGS_PAGE);
  const headLen = HEADER_LEN + groups * GROUP_LEN + KINDS_LEN + keyPages * KEY_PAGE_ENTRY + postingsPages * 4 + 4;
  const len = headLen + keyCount * KEY_LEN + postingsLen;
  // Reused memory (index-memory.ts): zeroed, for the bytes left zero (reserved, no kinds).
  const b = Buffer.from(indexMemory.take(len), 0, len).fill(0);
  MAGIC.copy(b, 0);
  b.writeUInt32LE(INDEX_VERSION, 8);
  b.writeUInt32LE(HEADER_LEN, 12);
  b.writeDoubleLE(c.captureSize, AT_CAPTURE_SIZE);
  b.writeDoubleLE(c.captureMtimeMs, AT_CAPTURE_MTIME);
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
  b.writeUInt32LE(headLen, AT_HEAD_LEN);
  b.writeUInt32LE(postingsLen, AT_POSTINGS_LEN);
  c.captureHeader.copy(b, AT_CAPTURE_HEADER, 0, CAPTURE_HEADER_LEN);
  let at = HEADER_LEN;
  for (let g = 0; g < groups; g++, at += GROUP_LEN) {
    b.writeDoubleLE(c.groupOffsets[g]!, at);
    for (let i = 0; i < 4; i++) b.writeUInt32LE(c.groupTimes[g * 4 + i]!, at + 8 + 4 * i);
  }
  const keysAt = headLen;
  if (p !== null) {
    const counts = new Uint32Array(KINDS);
    for (const k of p.keys) counts[keyKind(k)]!++;
    counts.forEach((n, i) => b.writeUInt32LE(n, at + 4 * i));
    for (let i = 0; i < keyCount; i++) {
      b.writeUInt32LE(keyValue(p.keys[i]!), keysAt + i * KEY_LEN);
      b.writeUInt32LE(p.starts[i]!, keysAt + i * KEY_LEN + 4);
    }
    p.bytes.copy(b, keysAt + keyCount * KEY_LEN);
  }
  at += KINDS_LEN;
  for (let pg = 0; pg < keyPages; pg++, at += KEY_PAGE_ENTRY) {
    const first = keysAt + pg * KEY_PAGE * KEY_LEN;
    b.writeUInt32LE(b.readUInt32LE(first), at);
    b.writeUInt32LE(b.readUInt32LE(first + 4), at + 4);
    b.writeUInt32LE(crc32(b.subarray(first, Math.min(first + KEY_PAGE * KEY_LEN, keysAt + keyCount * KEY_LEN))), at + 8);
  }
  const postingsAt = keysAt + keyCount * KEY_LEN;
  for (let pg = 0; pg < postingsPages; pg++, at += 4) {
    const from = postingsAt + pg * POSTINGS_PAGE;
    b.writeUInt32LE(crc32(b.subarray(from, Math.min(from + POSTINGS_PAGE, b.length))), at);
  }
  b.writeUInt32LE(crc32(b.subarray(0, at)), at);
  return b;
}

/**
 * The head of `index` (an encoded sidecar's first bytes, at least its head) bound to another
 * capture file: the compressed twin the index step's capture became. Returns the new head.
 */
export function rebindHead(head: Buffer, captureSize: number, captureMtimeMs: number): Buffer {
  const headLen = head.readUInt32LE(AT_HEAD_LEN);
  const b = Buffer.from(head.subarray(0, headLen));
  b.writeDoubleLE(captureSize, AT_CAPTURE_SIZE);
  b.writeDoubleLE(captureMtimeMs, AT_CAPTURE_MTIME);
  b.writeUInt32LE(crc32(b.subarray(0, headLen - 4)), headLen - 4);
  return b;
}

/** Reads the fixed header; null when it cannot be one of ours of this version. */
export function readSummary(b: Buffer): IndexSummary | null {
  if (b.length < HEADER_LEN || !b.subarray(0, 8).equals(MAGIC) || b.readUInt32LE(8) !== INDEX_VERSION || b.readUInt32LE(12) !== HEADER_LEN) return null;
  return {
    captureSize: b.readDoubleLE(16),
    captureMtimeMs: b.readDoubleLE(24),
    covered: b.readDoubleLE(32),
    packets: b.readDoubleLE(40),
    min: [b.readUInt32LE(48), b.readUInt32LE(52)],
    max: [b.readUInt32LE(56), b.readUInt32LE(60)],
    linkType: b.readUInt32LE(80),
    captureHeader: Buffer.from(b.subarray(AT_CAPTURE_HEADER, AT_CAPTURE_HEADER + CAPTURE_HEADER_LEN)),
  };
}

/** Whether the sidecar's header says it was made of this capture as it is now (size and mtime). */
export function matchesCapture(s: IndexSummary, size: number, mtimeMs: number): boolean {
  return s.captureSize === size && s.captureMtimeMs === mtimeMs;
}

/** Reads `length` bytes of the sidecar at `position` (fewer at its end). */
export type ReadAt = (position: number, length: number) => Promise<Buffer>;

/** A page of the sidecar failed its CRC: the index is not to be trusted. */
export class IndexCorrupt extends Error {
  readonly code = 'ERR_MIRRORCAP_INDEX_CORRUPT';
  override readonly name = 'IndexCorrupt';
}

/**
 * An index whose head was read and checked; key and postings pages are read (and checked)
 * when a lookup needs them, and kept for the next.
 */
export class IndexReader {
  readonly groups: number;
  readonly hasKeys: boolean;
  private readonly keyCount: number;
  private readonly groupsAt = HEADER_LEN;
  private readonly keyPagesAt: number;
  private readonly postingsPagesAt: number;
  private readonly keysAt: number;
  private readonly postingsAt: number;
  private readonly postingsLen: number;
  /** Index of each kind's first key, and one past the last kind's. */
  private readonly kindStart = new Array<number>(KINDS + 1).fill(0);
  private readonly keyPages = new Map<number, Buffer>();
  private readonly postingsPages = new Map<number, Buffer>();

  private constructor(
    private readonly head: Buffer,
    readonly summary: IndexSummary,
    private readonly readAt: ReadAt,
  ) {
    const b = head;
    this.groups = b.readUInt32LE(64);
    this.keyCount = b.readUInt32LE(72);
    this.hasKeys = (b.readUInt32LE(76) & FLAG_KEYS) !== 0;
    this.postingsLen = b.readUInt32LE(AT_POSTINGS_LEN);
    const kindsAt = this.groupsAt + this.groups * GROUP_LEN;
    for (let k = 0; k < KINDS; k++) this.kindStart[k + 1] = this.kindStart[k]! + b.readUInt32LE(kindsAt + 4 * k);
    this.keyPagesAt = kindsAt + KINDS_LEN;
    this.postingsPagesAt = this.keyPagesAt + Math.ceil(this.keyCount / KEY_PAGE) * KEY_PAGE_ENTRY;
    this.keysAt = b.length;
    this.postingsAt = this.keysAt + this.keyCount * KEY_LEN;
  }

  /**
   * The index whose first bytes are `first` (a sidecar of `size` bytes; `readAt` reads the
   * rest), its head checked; or why it cannot be trusted (capture size and mtime are the
   * caller's to compare). When `first` holds the whole sidecar every page is checked at once.
   */
  static async open(first: Buffer, size: number, readAt: ReadAt): Promise<IndexReader | IndexProblem> {
    if (first.length >= 12 && first.subarray(0, 8).equals(MAGIC) && first.readUInt32LE(8) !== INDEX_VERSION) return 'version';
    const s = readSummary(first);
    if (s === null) return 'corrupt';
    const headLen = first.readUInt32LE(AT_HEAD_LEN);
    const groups = first.readUInt32LE(64);
    const keyCount = first.readUInt32LE(72);
    const postingsLen = first.readUInt32LE(AT_POSTINGS_LEN);
    const want = HEADER_LEN + groups * GROUP_LEN + KINDS_LEN + Math.ceil(keyCount / KEY_PAGE) * KEY_PAGE_ENTRY + Math.ceil(postingsLen / POSTINGS_PAGE) * 4 + 4;
    if (headLen !== want || size !== headLen + keyCount * KEY_LEN + postingsLen) return 'corrupt';
    // Read again whole rather than joined to `first`: a copy of the head costs more than the re-read of its start.
    const head = first.length >= headLen ? first.subarray(0, headLen) : await readAt(0, headLen);
    if (head.length !== headLen || crc32(head.subarray(0, headLen - 4)) !== head.readUInt32LE(headLen - 4)) return 'corrupt';
    const r = new IndexReader(head, s, readAt);
    if (r.kindStart[KINDS] !== r.keyCount) return 'corrupt';
    if (!r.offsetsAscend()) return 'corrupt';
    if (r.groups > 0 && !(r.groupOffset(r.groups - 1) < s.covered)) return 'corrupt';
    if (first.length >= size) {
      try {
        r.takeKeyPages(first, r.keysAt, 0, Math.ceil(keyCount / KEY_PAGE));
        r.takePostingsPages(first.subarray(r.postingsAt, size), 0);
      } catch (err) {
        if (err instanceof IndexCorrupt) return 'corrupt';
        throw err;
      }
    }
    return r;
  }

  /** Every group starts after the one before it (read in one pass: a query checks every file's). */
  private offsetsAscend(): boolean {
    const b = this.head;
    const stride = GROUP_LEN / 8;
    // A large read's memory is 8-aligned, a pooled slice's may not be; and a
    // Float64Array reads in the machine's byte order, the sidecar's is little-endian.
    const at = b.byteOffset + this.groupsAt;
    const all = at % 8 === 0 && LITTLE_ENDIAN ? new Float64Array(b.buffer, at, this.groups * stride) : null;
    let prev = -1;
    for (let g = 0; g < this.groups; g++) {
      const o = all !== null ? all[g * stride]! : this.groupOffset(g);
      if (!(o > prev)) return false;
      prev = o;
    }
    return true;
  }

  groupOffset(g: number): number {
    return this.head.readDoubleLE(this.groupsAt + g * GROUP_LEN);
  }

  /** End of group g: the next group's start, or `covered`. */
  groupEnd(g: number): number {
    return g + 1 < this.groups ? this.groupOffset(g + 1) : this.summary.covered;
  }

  /** Whether any record of group g can lie in [from, to) (each a [sec, nsec] pair). */
  groupOverlaps(g: number, from: readonly [number, number] | null, to: readonly [number, number] | null): boolean {
    const at = this.groupsAt + g * GROUP_LEN + 8;
    const b = this.head;
    if (from !== null && before(b.readUInt32LE(at + 8), b.readUInt32LE(at + 12), from[0], from[1])) return false;
    if (to !== null && !before(b.readUInt32LE(at), b.readUInt32LE(at + 4), to[0], to[1])) return false;
    return true;
  }

  /** The keys in [lo, hi] (one kind), in order: for primitives that match a range of values (networks, port ranges). */
  async keysBetween(lo: number, hi: number): Promise<number[]> {
    const kind = keyKind(lo);
    const out: number[] = [];
    if (kind >= KINDS || keyKind(hi) !== kind) return out;
    const end = this.kindStart[kind + 1]!;
    for (let i = await this.firstAtLeast(kind, keyValue(lo)); i < end; i++) {
      const k = kind * 2 ** 32 + (await this.entry(i)).readUInt32LE(0);
      if (k > hi) break;
      out.push(k);
    }
    return out;
  }

  /** The groups `k` occurs in, ascending; empty when it occurs nowhere. Rejects with IndexCorrupt for a page that fails its CRC. */
  async lookup(k: number): Promise<number[]> {
    const kind = keyKind(k);
    if (kind >= KINDS) return [];
    const i = await this.firstAtLeast(kind, keyValue(k));
    if (i >= this.kindStart[kind + 1]! || (await this.entry(i)).readUInt32LE(0) !== keyValue(k)) return [];
    return this.postingsOf(i);
  }

  /** Index of the first key of `kind` whose value is ≥ value (the kind's end when none). */
  private async firstAtLeast(kind: number, value: number): Promise<number> {
    let lo = this.kindStart[kind]!;
    let hi = this.kindStart[kind + 1]!;
    if (lo >= hi) return hi;
    // The page: the last one after the kind's first page that starts at or below value.
    let page = Math.floor(lo / KEY_PAGE);
    for (let a = page + 1, z = Math.floor((hi - 1) / KEY_PAGE); a <= z; ) {
      const mid = (a + z) >>> 1;
      if (this.head.readUInt32LE(this.keyPagesAt + mid * KEY_PAGE_ENTRY) <= value) {
        page = mid;
        a = mid + 1;
      } else z = mid - 1;
    }
    lo = Math.max(lo, page * KEY_PAGE);
    hi = Math.min(hi, (page + 1) * KEY_PAGE);
    const entries = await this.keyPage(page);
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (entries.readUInt32LE((mid - page * KEY_PAGE) * KEY_LEN) < value) lo = mid + 1;
      else hi = mid;
    }
    // lo may be the page's end: the next page's first key (or the kind's end) is then the answer.
    return lo;
  }

  /** Key entry i (value u32, postings start u32). */
  private async entry(i: number): Promise<Buffer> {
    const page = Math.floor(i / KEY_PAGE);
    const at = (i - page * KEY_PAGE) * KEY_LEN;
    return (await this.keyPage(page)).subarray(at, at + KEY_LEN);
  }

  private async keyPage(page: number): Promise<Buffer> {
    const have = this.keyPages.get(page);
    if (have !== undefined) return have;
    const from = page * KEY_PAGE;
    const n = Math.min(KEY_PAGE, this.keyCount - from);
    const b = await this.readAt(this.keysAt + from * KEY_LEN, n * KEY_LEN);
    this.takeKeyPages(b, 0, page, page + 1);
    return this.keyPages.get(page)!;
  }

  /** Checks key pages [from, to), whose entries start at `at` in `b`, and keeps them. */
  private takeKeyPages(b: Buffer, at: number, from: number, to: number): void {
    for (let page = from; page < to; page++) {
      const start = at + (page - from) * KEY_PAGE * KEY_LEN;
      const len = Math.min(KEY_PAGE, this.keyCount - page * KEY_PAGE) * KEY_LEN;
      const entries = b.subarray(start, start + len);
      if (entries.length !== len || crc32(entries) !== this.head.readUInt32LE(this.keyPagesAt + page * KEY_PAGE_ENTRY + 8)) {
        throw new IndexCorrupt(`key page ${page} fails its CRC`);
      }
      this.keyPages.set(page, entries);
    }
  }

  /** Checks the postings pages in `b` (postings bytes from page `from` on) and keeps them. */
  private takePostingsPages(b: Buffer, from: number): void {
    for (let at = 0, page = from; at < b.length; at += POSTINGS_PAGE, page++) {
      const bytes = b.subarray(at, Math.min(at + POSTINGS_PAGE, b.length));
      if (crc32(bytes) !== this.head.readUInt32LE(this.postingsPagesAt + page * 4)) throw new IndexCorrupt(`postings page ${page} fails its CRC`);
      this.postingsPages.set(page, bytes);
    }
  }

  /** Postings bytes [start, end), from the pages that hold them (read and checked when not yet). */
  private async postings(start: number, end: number): Promise<Buffer> {
    const first = Math.floor(start / POSTINGS_PAGE);
    const last = Math.floor((end - 1) / POSTINGS_PAGE);
    let missing = first;
    while (missing <= last && this.postingsPages.has(missing)) missing++;
    if (missing <= last) {
      let upto = last;
      while (this.postingsPages.has(upto)) upto--;
      const from = missing * POSTINGS_PAGE;
      const to = Math.min((upto + 1) * POSTINGS_PAGE, this.postingsLen);
      const b = await this.readAt(this.postingsAt + from, to - from);
      if (b.length !== to - from) throw new IndexCorrupt('the postings end early');
      this.takePostingsPages(b, missing);
    }
    const parts: Buffer[] = [];
    for (let p = first; p <= last; p++) parts.push(this.postingsPages.get(p)!);
    const joined = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    return joined.subarray(start - first * POSTINGS_PAGE, end - first * POSTINGS_PAGE);
  }

  private async postingsOf(i: number): Promise<number[]> {
    const start = (await this.entry(i)).readUInt32LE(4);
    // The next key's start: in this page, or the next page's first (in the head), or the end.
    const next = i + 1;
    const end =
      next >= this.keyCount
        ? this.postingsLen
        : next % KEY_PAGE === 0
          ? this.head.readUInt32LE(this.keyPagesAt + (next / KEY_PAGE) * KEY_PAGE_ENTRY + 4)
          : (await this.entry(next)).readUInt32LE(4);
    const out: number[] = [];
    if (!(start < end && end <= this.postingsLen)) return out;
    const b = await this.postings(start, end);
    let prev = -1;
    let at = 0;
    while (at < b.length) {
      let gap = 0;
      let shift = 0;
      let byte: number;
      do {
        byte = b[at++]!;
        gap += (byte & 0x7f) * 2 ** shift;
        shift += 7;
      } while (byte & 0x80 && at < b.length);
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
