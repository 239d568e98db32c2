/**
 * The index builder's table of keys → the groups each occurs in, without a JS Map: open
 * addressing over typed arrays keyed by (kind, value), so adding a key of a packet allocates
 * nothing (a Map keyed by kind * 2^32 + value would box a number per lookup). A key's group
 * list grows only when the key shows up in a new group.
 *
 *   slot = hash(kind, value) & mask, linear probing; kinds[slot] = 0 means empty
 *   kinds | values | last group seen | id ──▶ lists[id] = [group, group, ...]
 */
import { key } from './index-keys.js';

export class KeyTable {
  private cap = 1 << 14;
  private kinds = new Uint8Array(this.cap);
  private values = new Uint32Array(this.cap);
  private last = new Int32Array(this.cap);
  private ids = new Int32Array(this.cap);
  private readonly lists: number[][] = [];
  /** The group keys are added to now. */
  group = 0;

  readonly add = (kind: number, value: number): void => {
    const mask = this.cap - 1;
    let slot = (Math.imul(value ^ (kind << 27), 0x9e3779b1) >>> 18) & mask;
    for (;;) {
      const k = this.kinds[slot]!;
      if (k === 0) break;
      if (k === kind && this.values[slot] === value) {
        if (this.last[slot] !== this.group) {
          this.last[slot] = this.group;
          this.lists[this.ids[slot]!]!.push(this.group);
        }
        return;
      }
      slot = (slot + 1) & mask;
    }
    this.kinds[slot] = kind;
    this.values[slot] = value;
    this.last[slot] = this.group;
    this.ids[slot] = this.lists.length;
    this.lists.push([this.group]);
    if (this.lists.length * 2 > this.cap) this.grow();
  };

  /** Every key (kind * 2^32 + value) with its groups, ascending. */
  entries(): Map<number, number[]> {
    const out: Array<[number, number[]]> = [];
    for (let s = 0; s < this.cap; s++) if (this.kinds[s] !== 0) out.push([key(this.kinds[s]!, this.values[s]!), this.lists[this.ids[s]!]!]);
    return new Map(out.sort((a, b) => a[0] - b[0]));
  }

  private grow(): void {
    const { kinds, values, last, ids } = this;
    this.cap *= 2;
    this.kinds = new Uint8Array(this.cap);
    this.values = new Uint32Array(this.cap);
    this.last = new Int32Array(this.cap);
    this.ids = new Int32Array(this.cap);
    const mask = this.cap - 1;
    for (let s = 0; s < kinds.length; s++) {
      const kind = kinds[s]!;
      if (kind === 0) continue;
      let slot = (Math.imul(values[s]! ^ (kind << 27), 0x9e3779b1) >>> 18) & mask;
      while (this.kinds[slot] !== 0) slot = (slot + 1) & mask;
      this.kinds[slot] = kind;
      this.values[slot] = values[s]!;
      this.last[slot] = last[s]!;
      this.ids[slot] = ids[s]!;
    }
  }
}
