/**
 * Top talkers by bytes in fixed memory: the space-saving algorithm (Metwally,
 * Agrawal, El Abbadi, "Efficient computation of frequent and top-k elements
 * in data streams", 2005), weighted by bytes.
 *
 * Every address seen gets a slot while slots are free. When none is free, the
 * slot with the smallest count is taken over: the newcomer inherits that count
 * (an over-estimate, kept as its `error`) plus its own bytes. So a reported
 * count is never below the truth and never more than `error` above it, and any
 * address with more than total/capacity bytes is guaranteed to hold a slot.
 *
 *   slots    keys[16 s .. 16 s + keyLen[s])  the address bytes, copied in
 *            counts[s], errors[s]            bytes, and how many of them may be someone else's
 *   index    open addressing over slot numbers (slot + 1; 0 = empty), linear
 *            probing, deletion by backward shift: finds a key without hashing
 *            into a string or a Map
 *   heap     slot numbers as a min-heap on counts; where[s] is s's heap position:
 *            the eviction victim is heap[0]
 *
 *   runs     the last two addresses added, with the bytes added to them since:
 *            a flow's packets come in bursts and each adds its source and its
 *            destination, so most add() calls only add to a run; a run enters the
 *            table when a third address needs its place, or before the table is
 *            read (top, size). Space-saving holds for a weighted item as for its
 *            parts, in any order: the guarantees stay.
 *
 * add() allocates nothing and costs O(address length), O(log capacity) when a
 * run enters the table; top() allocates its answer when called. Both are
 * synchronous and never throw on input from the wire (a bad address length is
 * ignored).
 */
import { formatIpv4 } from '../decode/ipv4.js';
import { formatIpv6 } from '../decode/ipv6.js';
import { codedError, ErrorCode } from '../errors.js';

const KEY_BYTES = 16;
const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

export interface Talker {
  address: string;
  /** Upper bound on the bytes this address sent and received. */
  bytes: number;
  /** bytes - error is a lower bound. 0 while the address has held its slot from the start. */
  error: number;
}

export class TopTalkers {
  private readonly keys: Uint8Array;
  private readonly keyLen: Uint8Array;
  private readonly hashes: Uint32Array;
  private readonly counts: Float64Array;
  private readonly errors: Float64Array;
  private readonly index: Uint32Array;
  private readonly mask: number;
  private readonly heap: Uint32Array;
  private readonly where: Uint32Array;
  private used = 0;
  /** The two runs: address bytes, length (0: none), bytes not yet in the table; `older` is the one a new address replaces. */
  private readonly runKeys = new Uint8Array(2 * KEY_BYTES);
  private readonly runLen = new Uint8Array(2);
  private readonly runBytes = new Float64Array(2);
  private older = 0;

  constructor(readonly capacity = 64) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > 65536) {
      throw codedError(ErrorCode.INVALID_ARGUMENT, `talker table capacity must be an integer in 1..65536, got ${capacity}`, RangeError);
    }
    this.keys = new Uint8Array(capacity * KEY_BYTES);
    this.keyLen = new Uint8Array(capacity);
    this.hashes = new Uint32Array(capacity);
    this.counts = new Float64Array(capacity);
    this.errors = new Float64Array(capacity);
    // At most a quarter full, so probe runs stay short.
    let size = 4;
    while (size < capacity * 4) size *= 2;
    this.index = new Uint32Array(size);
    this.mask = size - 1;
    this.heap = new Uint32Array(capacity);
    this.where = new Uint32Array(capacity);
  }

  get size(): number {
    this.settle();
    return this.used;
  }

  /** Counts `bytes` for the address at buf[addrOff .. addrOff + addrLen); addrLen is 4 or 16. */
  add(buf: Uint8Array, addrOff: number, addrLen: number, bytes: number): void {
    if ((addrLen !== 4 && addrLen !== 16) || !(bytes > 0)) return;
    const keys = this.runKeys;
    for (let r = 0; r < 2; r++) {
      if (this.runLen[r] !== addrLen) continue;
      const base = r * KEY_BYTES;
      let i = 0;
      while (i < addrLen && keys[base + i] === buf[addrOff + i]) i++;
      if (i === addrLen) {
        this.runBytes[r] += bytes;
        // The other run is now the older.
        this.older = r ^ 1;
        return;
      }
    }
    const r = this.older;
    this.older = r ^ 1;
    if (this.runLen[r] !== 0) this.count(keys, r * KEY_BYTES, this.runLen[r], this.runBytes[r]);
    for (let i = 0; i < addrLen; i++) keys[r * KEY_BYTES + i] = buf[addrOff + i];
    this.runLen[r] = addrLen;
    this.runBytes[r] = bytes;
  }

  /** The runs into the table. */
  private settle(): void {
    for (let r = 0; r < 2; r++) {
      if (this.runLen[r] === 0) continue;
      this.count(this.runKeys, r * KEY_BYTES, this.runLen[r], this.runBytes[r]);
      this.runLen[r] = 0;
    }
  }

  /** Counts `bytes` for the address at buf[addrOff .. addrOff + addrLen) in the table (space-saving). */
  private count(buf: Uint8Array, addrOff: number, addrLen: number, bytes: number): void {
    let h = FNV_OFFSET ^ addrLen;
    for (let i = 0; i < addrLen; i++) h = Math.imul(h ^ buf[addrOff + i], FNV_PRIME);
    h >>>= 0;
    const mask = this.mask;
    let i = h & mask;
    for (let e = this.index[i]; e !== 0; e = this.index[i]) {
      const s = e - 1;
      if (this.hashes[s] === h && this.sameKey(s, buf, addrOff, addrLen)) {
        this.counts[s] += bytes;
        this.siftDown(this.where[s]);
        return;
      }
      i = (i + 1) & mask;
    }
    let s: number;
    if (this.used < this.capacity) {
      s = this.used++;
      this.counts[s] = bytes;
      this.errors[s] = 0;
      this.heap[s] = s;
      this.where[s] = s;
      this.store(s, buf, addrOff, addrLen, h, i);
      this.siftUp(s);
      return;
    }
    s = this.heap[0];
    this.unindex(s);
    this.errors[s] = this.counts[s];
    this.counts[s] += bytes;
    // The removal may have shifted entries back into the run the lookup ended on: probe again.
    i = h & mask;
    while (this.index[i] !== 0) i = (i + 1) & mask;
    this.store(s, buf, addrOff, addrLen, h, i);
    this.siftDown(0);
  }

  /** The n heaviest addresses, heaviest first (ties by address text). Allocates. */
  top(n: number): Talker[] {
    this.settle();
    const out: Talker[] = [];
    for (let s = 0; s < this.used; s++) {
      const off = s * KEY_BYTES;
      out.push({
        address: this.keyLen[s] === 4 ? formatIpv4(this.keys, off) : formatIpv6(this.keys, off),
        bytes: this.counts[s],
        error: this.errors[s],
      });
    }
    out.sort((a, b) => b.bytes - a.bytes || (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
    return out.slice(0, Math.max(0, n));
  }

  reset(): void {
    this.runLen.fill(0);
    this.used = 0;
    this.index.fill(0);
  }

  private sameKey(s: number, buf: Uint8Array, off: number, len: number): boolean {
    if (this.keyLen[s] !== len) return false;
    const k = this.keys;
    const base = s * KEY_BYTES;
    for (let i = 0; i < len; i++) if (k[base + i] !== buf[off + i]) return false;
    return true;
  }

  private store(s: number, buf: Uint8Array, off: number, len: number, h: number, at: number): void {
    const base = s * KEY_BYTES;
    for (let i = 0; i < len; i++) this.keys[base + i] = buf[off + i];
    this.keyLen[s] = len;
    this.hashes[s] = h;
    this.index[at] = s + 1;
  }

  /** Removes slot s from the index; later entries of its probe run move back so lookups still find them. */
  private unindex(s: number): void {
    const mask = this.mask;
    let i = this.hashes[s] & mask;
    while (this.index[i] !== s + 1) i = (i + 1) & mask;
    for (let j = (i + 1) & mask; this.index[j] !== 0; j = (j + 1) & mask) {
      const home = this.hashes[this.index[j] - 1] & mask;
      // Entry j may fill the hole at i only if its home is not cyclically within (i, j].
      const stays = i <= j ? home > i && home <= j : home > i || home <= j;
      if (!stays) {
        this.index[i] = this.index[j];
        i = j;
      }
    }
    this.index[i] = 0;
  }

  private siftUp(p: number): void {
    const heap = this.heap;
    const counts = this.counts;
    const s = heap[p];
    while (p > 0) {
      const parent = (p - 1) >> 1;
      if (counts[heap[parent]] <= counts[s]) break;
      heap[p] = heap[parent];
      this.where[heap[p]] = p;
      p = parent;
    }
    heap[p] = s;
    this.where[s] = p;
  }

  private siftDown(p: number): void {
    const heap = this.heap;
    const counts = this.counts;
    const n = this.used;
    const s = heap[p];
    for (;;) {
      let c = 2 * p + 1;
      if (c >= n) break;
      if (c + 1 < n && counts[heap[c + 1]] < counts[heap[c]]) c++;
      if (counts[heap[c]] >= counts[s]) break;
      heap[p] = heap[c];
      this.where[heap[p]] = p;
      p = c;
    }
    heap[p] = s;
    this.where[s] = p;
  }
}
