/**
 * The index builder's table of keys → the groups each occurs in, without a JS Map or an array
 * per key: open addressing over one typed array keyed by (kind, value), and one (key, group)
 * node each time a key shows up in a new group, appended to growing typed arrays. Adding a
 * packet's key allocates nothing and writes nothing but its own slot and the node it appends:
 * this runs for every record a writer appends, so a slot's four numbers share a cache line,
 * and a value repeated from the records just before skips the table altogether.
 * encode() sorts the nodes by key (counting sort: they are in group order already) and
 * writes the postings once.
 *
 *   slot = hash(kind, value) & mask, linear probing
 *   slots[4 * slot ..]: kind (0 = empty) | value | last group | key id ──▶ nodes: nodeKey[n] = id, nodeGroup[n]
 */
import { key, KINDS, type KeySink } from './index-keys.js';

/** Numbers per slot: kind, value, last group, key id. */
const SLOT = 4;

/** Multiplicative hash with the high bits folded down, so `& mask` sees all of them. */
function hash(kind: number, value: number): number {
  const h = Math.imul(value ^ Math.imul(kind, 0x85ebca6b), 0x9e3779b1);
  return (h ^ (h >>> 15)) >>> 0;
}

/** Keys sorted (kind * 2^32 + value), where each one's postings start, and the postings: LEB128 gaps. */
export interface EncodedPostings {
  readonly keys: Float64Array;
  readonly starts: Uint32Array;
  readonly bytes: Buffer;
}

export class KeyTable implements KeySink {
  private cap = 1 << 14;
  private size = 0;
  /** Values are kept as int32 (value | 0): one typed array for all four numbers. */
  private slots = new Int32Array(this.cap * SLOT);
  private nodes = 0;
  private nodeKey = new Int32Array(1 << 16);
  private nodeGroup = new Int32Array(1 << 16);
  /** The group keys are added to now. */
  group = 0;
  /**
   * Per kind, the last two values added and the group they were added in (a record's source
   * and destination): most records repeat the ones before them, and a repeat in the same
   * group has nothing to add, so it skips the table.
   */
  private readonly recentValue = new Int32Array(KINDS * 2);
  private readonly recentGroup = new Int32Array(KINDS * 2).fill(-1);
  private readonly recentNext = new Uint8Array(KINDS);

  add(kind: number, value: number): void {
    const v = value | 0;
    const r = kind * 2;
    const group = this.group;
    if ((this.recentValue[r] === v && this.recentGroup[r] === group) || (this.recentValue[r + 1] === v && this.recentGroup[r + 1] === group)) return;
    const w = r + this.recentNext[kind]!;
    this.recentNext[kind]! ^= 1;
    this.recentValue[w] = v;
    this.recentGroup[w] = group;
    const s = this.slots;
    const wrap = s.length - 1;
    let at = (hash(kind, value) & (this.cap - 1)) * SLOT;
    for (;;) {
      const k = s[at]!;
      if (k === 0) break;
      if (k === kind && s[at + 1] === v) {
        if (s[at + 2] !== this.group) {
          s[at + 2] = this.group;
          this.node(s[at + 3]!);
        }
        return;
      }
      at = (at + SLOT) & wrap;
    }
    const id = this.size;
    s[at] = kind;
    s[at + 1] = v;
    s[at + 2] = this.group;
    s[at + 3] = id;
    this.node(id);
    if (++this.size * 2 > this.cap) this.grow();
  }

  encode(): EncodedPostings {
    const s = this.slots;
    const wrap = s.length - 1;
    const keys = new Float64Array(this.size);
    let i = 0;
    for (let at = 0; at < s.length; at += SLOT) if (s[at] !== 0) keys[i++] = key(s[at]!, s[at + 1]! >>> 0);
    keys.sort();
    // rank[id]: the key's place in sorted order; first[r]: where its nodes start once sorted.
    const rank = new Int32Array(this.size);
    for (let r = 0; r < keys.length; r++) {
      const k = keys[r]!;
      const kind = Math.floor(k / 2 ** 32);
      const value = k % 2 ** 32;
      let at = (hash(kind, value) & (this.cap - 1)) * SLOT;
      while (s[at] !== kind || s[at + 1] !== (value | 0)) at = (at + SLOT) & wrap;
      rank[s[at + 3]!] = r;
    }
    const first = new Int32Array(this.size + 1);
    for (let n = 0; n < this.nodes; n++) first[rank[this.nodeKey[n]!]! + 1]!++;
    for (let r = 0; r < this.size; r++) first[r + 1]! += first[r]!;
    // Stable: each key's groups stay in the order they were added, which is ascending.
    const sorted = new Int32Array(this.nodes);
    const next = first.slice(0, this.size);
    for (let n = 0; n < this.nodes; n++) sorted[next[rank[this.nodeKey[n]!]!]!++] = this.nodeGroup[n]!;
    const starts = new Uint32Array(this.size);
    let out = Buffer.allocUnsafe(this.nodes * 2 + 16);
    let at = 0;
    for (let r = 0; r < this.size; r++) {
      starts[r] = at;
      let prev = -1;
      for (let x = first[r]!, end = first[r + 1]!; x < end; x++) {
        if (out.length - at < 5) {
          const grown = Buffer.allocUnsafe(out.length * 2);
          out.copy(grown, 0, 0, at);
          out = grown;
        }
        const g = sorted[x]!;
        let gap = g - prev - 1;
        prev = g;
        while (gap >= 0x80) {
          out[at++] = (gap & 0x7f) | 0x80;
          gap >>>= 7;
        }
        out[at++] = gap;
      }
    }
    return { keys, starts, bytes: out.subarray(0, at) };
  }

  /** Key `id` occurs in the current group. */
  private node(id: number): void {
    if (this.nodes === this.nodeGroup.length) {
      const k = new Int32Array(this.nodes * 2);
      const g = new Int32Array(this.nodes * 2);
      k.set(this.nodeKey);
      g.set(this.nodeGroup);
      this.nodeKey = k;
      this.nodeGroup = g;
    }
    const n = this.nodes++;
    this.nodeKey[n] = id;
    this.nodeGroup[n] = this.group;
  }

  private grow(): void {
    const old = this.slots;
    this.cap *= 2;
    const s = new Int32Array(this.cap * SLOT);
    const wrap = s.length - 1;
    for (let from = 0; from < old.length; from += SLOT) {
      const kind = old[from]!;
      if (kind === 0) continue;
      let at = (hash(kind, old[from + 1]! >>> 0) & (this.cap - 1)) * SLOT;
      while (s[at] !== 0) at = (at + SLOT) & wrap;
      s.set(old.subarray(from, from + SLOT), at);
    }
    this.slots = s;
  }
}
