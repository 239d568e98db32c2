/**
 * The index builder's table of keys → the groups each occurs in, without a JS Map or an array
 * per key: open addressing over typed arrays keyed by (kind, value), and each key's groups a
 * chain of nodes in one growing typed array. Adding a packet's key allocates nothing; a node
 * is added only when the key shows up in a new group. encode() writes the postings once.
 *
 *   slot = hash(kind, value) & mask, linear probing; kinds[slot] = 0 means empty
 *   kinds | values | last group | head, tail node ──▶ nodeGroup[n], nodeNext[n] (-1 ends)
 */
import { key } from './index-keys.js';

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

export class KeyTable {
  private cap = 1 << 14;
  private size = 0;
  private kinds = new Uint8Array(this.cap);
  private values = new Uint32Array(this.cap);
  private last = new Int32Array(this.cap);
  private head = new Int32Array(this.cap);
  private tail = new Int32Array(this.cap);
  private nodes = 0;
  private nodeGroup = new Int32Array(1 << 16);
  private nodeNext = new Int32Array(1 << 16);
  /** The group keys are added to now. */
  group = 0;

  readonly add = (kind: number, value: number): void => {
    const mask = this.cap - 1;
    let slot = hash(kind, value) & mask;
    for (;;) {
      const k = this.kinds[slot]!;
      if (k === 0) break;
      if (k === kind && this.values[slot] === value) {
        if (this.last[slot] !== this.group) {
          this.last[slot] = this.group;
          const n = this.node();
          this.nodeNext[this.tail[slot]!] = n;
          this.tail[slot] = n;
        }
        return;
      }
      slot = (slot + 1) & mask;
    }
    this.kinds[slot] = kind;
    this.values[slot] = value;
    this.last[slot] = this.group;
    const n = this.node();
    this.head[slot] = n;
    this.tail[slot] = n;
    if (++this.size * 2 > this.cap) this.grow();
  };

  encode(): EncodedPostings {
    const keys = new Float64Array(this.size);
    let i = 0;
    for (let s = 0; s < this.cap; s++) if (this.kinds[s] !== 0) keys[i++] = key(this.kinds[s]!, this.values[s]!);
    keys.sort();
    const starts = new Uint32Array(this.size);
    let out = Buffer.allocUnsafe(this.nodes * 2 + 16);
    let at = 0;
    const mask = this.cap - 1;
    keys.forEach((k, j) => {
      const kind = Math.floor(k / 2 ** 32);
      const value = k % 2 ** 32;
      let slot = hash(kind, value) & mask;
      while (this.kinds[slot] !== kind || this.values[slot] !== value) slot = (slot + 1) & mask;
      starts[j] = at;
      let prev = -1;
      for (let n = this.head[slot]!; n !== -1; n = this.nodeNext[n]!) {
        if (out.length - at < 5) {
          const grown = Buffer.allocUnsafe(out.length * 2);
          out.copy(grown, 0, 0, at);
          out = grown;
        }
        const g = this.nodeGroup[n]!;
        let gap = g - prev - 1;
        prev = g;
        while (gap >= 0x80) {
          out[at++] = (gap & 0x7f) | 0x80;
          gap >>>= 7;
        }
        out[at++] = gap;
      }
    });
    return { keys, starts, bytes: out.subarray(0, at) };
  }

  private node(): number {
    if (this.nodes === this.nodeGroup.length) {
      const g = new Int32Array(this.nodes * 2);
      const x = new Int32Array(this.nodes * 2);
      g.set(this.nodeGroup);
      x.set(this.nodeNext);
      this.nodeGroup = g;
      this.nodeNext = x;
    }
    const n = this.nodes++;
    this.nodeGroup[n] = this.group;
    this.nodeNext[n] = -1;
    return n;
  }

  private grow(): void {
    const { kinds, values, last, head, tail } = this;
    this.cap *= 2;
    this.kinds = new Uint8Array(this.cap);
    this.values = new Uint32Array(this.cap);
    this.last = new Int32Array(this.cap);
    this.head = new Int32Array(this.cap);
    this.tail = new Int32Array(this.cap);
    const mask = this.cap - 1;
    for (let s = 0; s < kinds.length; s++) {
      const kind = kinds[s]!;
      if (kind === 0) continue;
      let slot = hash(kind, values[s]!) & mask;
      while (this.kinds[slot] !== 0) slot = (slot + 1) & mask;
      this.kinds[slot] = kind;
      this.values[slot] = values[s]!;
      this.last[slot] = last[s]!;
      this.head[slot] = head[s]!;
      this.tail[slot] = tail[s]!;
    }
  }
}
