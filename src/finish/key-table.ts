/**
 * The index builder's keys → the groups each occurs in. It runs for every record a writer
 * appends, so adding a key touches no memory that grows with the traffic: no hash table of
 * every key seen (with tens of thousands of flows each lookup there missed the cache, ~1 µs a
 * record). A key is appended, with its group, to its kind's log; a small direct-mapped cache
 * of (kind, value, group) drops the repeats within a group, which are most of them.
 * encodePostings() sorts each log by value (LSD radix, stable: the groups of a value stay
 * ascending), drops what the cache let through twice, and writes the postings once; it takes
 * the logs alone (logs(): typed arrays, each its own memory), so that it can run on the index
 * thread (index-worker.ts) with the logs transferred there, not copied. The table's arrays and
 * the encoding's scratch come from this thread's indexMemory and go back to it (release(),
 * the encoding's lease), so that each file does not touch new pages (index-memory.ts).
 *
 *   add(kind, value) ──seen in this group? (cache, 4096 slots)──no──▶ log[kind]: values[], groups[] (appended, grown by doubling)
 *   encodePostings: per kind, radix sort by value ─▶ keys (kind, value) ascending, postings: LEB128 gaps of distinct groups
 */
import { ipv4Keys, key, KINDS, type FlowSink } from './index-keys.js';
import { indexMemory, type Lease } from './index-memory.js';

/** Slots of the repeat cache (a power of two): small enough to stay in the CPU's cache. */
const SEEN = 4096;
/** Radix digits of 11 bits: three passes for a 32-bit value, buckets that fit the cache. */
const DIGIT = 11;
const BUCKETS = 1 << DIGIT;

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

/**
 * A KeyTable's logs: per kind its values and their groups (the first lengths[kind] of each are
 * used); and the IPv4 flows handed over whole, FLOW ints each (group, protocol word, source,
 * destination, ports: FlowSink), the first `flows` of them used.
 */
export interface KeyLogs {
  readonly values: readonly Int32Array[];
  readonly groups: readonly Int32Array[];
  readonly lengths: Int32Array;
  readonly flowLog: Int32Array;
  readonly flows: number;
}

/** Ints per flow in the flow log. */
const FLOW = 5;
/** Keys per kind an IPv4 flow has at most: a TCP flow's, as ipv4Keys makes them (so withFlows's room follows it). */
const FLOW_KEYS = new Int32Array(KINDS);
ipv4Keys(6, 0, 0, 0, { add: (kind) => void FLOW_KEYS[kind]!++ });
const KEYS_PER_FLOW = FLOW_KEYS.reduce((a, b) => a + b, 0);

export class KeyTable implements FlowSink {
  /** The group keys are added to now. */
  group = 0;
  /** Per kind, its log: values (as int32) and the group of each, lengths[kind] long. */
  private readonly values: Int32Array[] = [];
  private readonly groups: Int32Array[] = [];
  private readonly lengths = new Int32Array(KINDS);
  private seenKind = indexMemory.uint8(SEEN);
  private seenValue = indexMemory.int32(SEEN);
  /** Reused memory: filled, so that no slot holds a group of this table before it is written. */
  private seenGroup = indexMemory.int32(SEEN).fill(-1);
  private flowLog = indexMemory.int32(FLOW * 1024);
  private flows = 0;

  constructor() {
    for (let k = 0; k < KINDS; k++) {
      this.values.push(indexMemory.int32(1024));
      this.groups.push(indexMemory.int32(1024));
    }
  }

  add(kind: number, value: number): void {
    const v = value | 0;
    const g = this.group;
    const h = hash(kind, value) & (SEEN - 1);
    if (this.seenGroup[h] === g && this.seenValue[h] === v && this.seenKind[h] === kind) return;
    this.seenKind[h] = kind;
    this.seenValue[h] = v;
    this.seenGroup[h] = g;
    const n = this.lengths[kind]!;
    if (n === this.values[kind]!.length) this.grow(kind);
    this.values[kind]![n] = v;
    this.groups[kind]![n] = g;
    this.lengths[kind] = n + 1;
  }

  /** Appends a flow to the flow log: its keys are made when the logs are encoded (withFlows). */
  addIpv4(group: number, proto: number, src: number, dst: number, ports: number): void {
    let at = this.flows * FLOW;
    if (at + FLOW > this.flowLog.length) this.flowLog = indexMemory.grow(this.flowLog);
    const f = this.flowLog;
    f[at++] = group;
    f[at++] = proto;
    f[at++] = src;
    f[at++] = dst;
    f[at] = ports;
    this.flows++;
  }

  /** Entries in all logs, a flow counted as its keys (at most KEYS_PER_FLOW). */
  get entries(): number {
    let n = this.flows * KEYS_PER_FLOW;
    for (let k = 0; k < KINDS; k++) n += this.lengths[k]!;
    return n;
  }

  /** The logs as they are (not copied): the table is done with them once they are handed on. */
  logs(): KeyLogs {
    return { values: this.values, groups: this.groups, lengths: this.lengths, flowLog: this.flowLog, flows: this.flows };
  }

  /**
   * Gives the table's memory back to indexMemory: after its logs were encoded on this thread
   * (memory that went to the index thread comes back through IndexEncoder). The table holds
   * nothing afterwards.
   */
  release(): void {
    const arrays = [...this.values, ...this.groups, this.flowLog, this.seenKind, this.seenValue, this.seenGroup];
    for (const a of arrays) indexMemory.give(a.buffer as ArrayBuffer);
    const none = new Int32Array(0);
    this.values.fill(none);
    this.groups.fill(none);
    this.lengths.fill(0);
    this.flowLog = none;
    this.flows = 0;
    this.seenKind = new Uint8Array(0);
    this.seenValue = none;
    this.seenGroup = none;
  }

  /** A kind's log twice as long (off the hot path of add(): rare). */
  private grow(kind: number): void {
    this.values[kind] = indexMemory.grow(this.values[kind]!);
    this.groups[kind] = indexMemory.grow(this.groups[kind]!);
  }
}

/**
 * The logs with the flow log's keys (ipv4Keys) appended to their kinds' logs, and no flows.
 * A kind's log then holds two runs each ascending by group, which encodePostings sorts by group
 * before it sorts by value. The logs are only read; the new ones are the lease's.
 */
export function withFlows(logs: KeyLogs, lease: Lease): KeyLogs {
  const n = logs.flows;
  if (n === 0) return logs;
  const lengths = Int32Array.from(logs.lengths);
  const values: Int32Array[] = [];
  const groups: Int32Array[] = [];
  for (let k = 0; k < KINDS; k++) {
    const v = lease.int32(lengths[k]! + n * FLOW_KEYS[k]!);
    const g = lease.int32(v.length);
    v.set(logs.values[k]!.subarray(0, lengths[k]!));
    g.set(logs.groups[k]!.subarray(0, lengths[k]!));
    values.push(v);
    groups.push(g);
  }
  let group = 0;
  const sink = {
    add(kind: number, value: number): void {
      const at = lengths[kind]!++;
      values[kind]![at] = value;
      groups[kind]![at] = group;
    },
  };
  const f = logs.flowLog;
  for (let i = 0; i < n * FLOW; i += FLOW) {
    group = f[i]!;
    ipv4Keys(f[i + 1]!, f[i + 2]!, f[i + 3]!, f[i + 4]!, sink);
  }
  return { values, groups, lengths, flowLog: new Int32Array(0), flows: 0 };
}

/** The keys of `logs` sorted, with their postings: the lease's memory, to be used before it ends. The logs are only read. */
export function encodePostings(given: KeyLogs, lease: Lease): EncodedPostings {
  const logs = withFlows(given, lease);
  let total = 0;
  for (let k = 0; k < KINDS; k++) total += logs.lengths[k]!;
  const keys = lease.float64(total);
  const starts = lease.uint32(total);
  let out = lease.buffer(total * 2 + 16);
  let at = 0;
  let count = 0;
  for (let kind = 0; kind < KINDS; kind++) {
    const n = logs.lengths[kind]!;
    if (n === 0) continue;
    let [values, groups] = [logs.values[kind]!.subarray(0, n), logs.groups[kind]!.subarray(0, n)];
    // A kind's log that holds keys of both kinds of entry is two runs ascending by group: sorted
    // by group first, the (stable) sort by value keeps each value's groups ascending.
    if (given.lengths[kind]! > 0 && n > given.lengths[kind]!) [groups, values] = sortByValue(groups, values, lease);
    [values, groups] = sortByValue(values, groups, lease);
    for (let i = 0; i < n; ) {
      const v = values[i]!;
      keys[count] = key(kind, v >>> 0);
      starts[count++] = at;
      let prev = -1;
      for (; i < n && values[i] === v; i++) {
        const g = groups[i]!;
        if (g === prev) continue; // a repeat the cache let through
        if (out.length - at < 5) {
          const grown = lease.buffer(out.length * 2);
          out.copy(grown, 0, 0, at);
          out = grown;
        }
        let gap = g - prev - 1;
        prev = g;
        while (gap >= 0x80) {
          out[at++] = (gap & 0x7f) | 0x80;
          gap >>>= 7;
        }
        out[at++] = gap;
      }
    }
  }
  return { keys: keys.subarray(0, count), starts: starts.subarray(0, count), bytes: out.subarray(0, at) };
}

/**
 * The pairs (values[i], groups[i]) sorted by value as unsigned 32 bits, stable (LSD radix, a
 * pass skipped when every value has the same digit there): the lease's arrays or the inputs, n long.
 */
function sortByValue(values: Int32Array, groups: Int32Array, lease: Lease): [Int32Array, Int32Array] {
  const n = values.length;
  let v = values;
  let g = groups;
  let v2: Int32Array | null = null;
  let g2: Int32Array | null = null;
  const counts = lease.int32(BUCKETS);
  for (let shift = 0; shift < 32; shift += DIGIT) {
    counts.fill(0);
    for (let i = 0; i < n; i++) counts[(v[i]! >>> shift) & (BUCKETS - 1)]!++;
    if (counts[(v[0]! >>> shift) & (BUCKETS - 1)] === n) continue;
    let sum = 0;
    for (let b = 0; b < BUCKETS; b++) {
      const c = counts[b]!;
      counts[b] = sum;
      sum += c;
    }
    v2 ??= lease.int32(n).subarray(0, n);
    g2 ??= lease.int32(n).subarray(0, n);
    for (let i = 0; i < n; i++) {
      const x = v[i]!;
      const to = counts[(x >>> shift) & (BUCKETS - 1)]!++;
      v2[to] = x;
      g2[to] = g[i]!;
    }
    [v, v2] = [v2, v];
    [g, g2] = [g2, g];
    // The inputs are the builder's logs: never written, only read.
    if (v2 === values) {
      v2 = null;
      g2 = null;
    }
  }
  return [v, g];
}
