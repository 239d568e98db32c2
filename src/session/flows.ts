/**
 * Flow records: every inner IPv4/IPv6 packet of a session counted under its direction-specific
 * 5-tuple, per aggregation interval, the way VPC Flow Logs aggregates an interface's traffic
 * (docs/flows.md has the semantics and AWS's documentation behind them).
 *
 *   add(decoder, tsSec, i)   ─▶ key (src, dst, ports, version + protocol) ─▶ hash ─▶ index ─▶ slot
 *     (hot path: no allocation,   read straight from the frame              open addressing,  counters,
 *      no event, no I/O)                                                     linear probing    first/last, flags
 *
 *   interval [start, start + I) ──packet at or past its end, tick() past end + grace, flush(), stop()──▶ seal
 *        │                                                                                         │
 *        └─ the table swaps in empty slots; the sealed interval goes to `sealed(interval)`  ◀──────┘
 *           (the flow-log writer), which hands it back with recycle() once written
 *
 * One table per session; one FlowBudget shared by all of them bounds the flows held in memory
 * (being counted, or sealed and waiting to be written). Storage starts at MIN_CAPACITY slots and
 * doubles when full, so a quiet session costs a few KiB and memory follows the traffic; a new
 * flow that the budget cannot hold is not counted: its packets are counted in `fullPackets` and
 * the interval is reported SKIPDATA. Flows leave when their interval is sealed: the table starts
 * every interval empty.
 *
 * Time: intervals are aligned to multiples of I in Unix seconds and chosen by the packets' own
 * timestamps, so offline decapsulation writes the same records as live capture. A packet at or
 * past the open interval's end seals it and opens the interval it belongs to. A packet from
 * before the open interval is late (a batch delivered after tick() sealed its interval, or a
 * small clock step back): it is counted in the open interval with its time clamped to the
 * interval's start. A packet more than one interval before it means the clock stepped back:
 * the open interval is sealed and the packet's own interval opened (`clockSteps`). tick()
 * seals quiet intervals (NODATA when nothing was seen) and opens the current one.
 */
import type { Decoder } from '../decode/packet.js';
import { formatIpv4 } from '../decode/ipv4.js';
import { formatIpv6 } from '../decode/ipv6.js';
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN } from '../decode/tcp.js';

export const DEFAULT_MAX_FLOWS = 1_000_000;
/** Slots a table starts with (and keeps while its traffic stays this small). */
export const MIN_CAPACITY = 64;
/** Seconds tick() waits past an interval's end before sealing it, for batches still in flight. */
export const DEFAULT_GRACE_SEC = 1;

/**
 * One flow is one 64-byte record (a cache line) of 16 words, times included; the index entry
 * that leads to it carries some bits of the hash, so a packet of a known flow reads one index
 * word and one record line:
 *
 *   word  0-3  source address (IPv4: word 0, the others 0)             |
 *         4-7  destination address                                     | the key
 *         8    source port << 16 | destination port                    |
 *         9    IP version << 8 | protocol  (bits 0-15, the key's part) |
 *              | TCP flags as on the wire << 16 (9 bits, OR of every packet)
 *              | AWS tcp-flags << 25 (5 bits, OR of every packet)
 *        10    first second, Unix time
 *        11    last second
 *     12-13    packets (float64)
 *     14-15    IP bytes (float64)
 *
 *   index entry: slot + 1 (low SLOT_BITS bits; 0 = empty) | top bits of the key's hash
 *
 * The hash itself is not stored: growing the table computes it again from the key (keyHash()).
 */
const REC_WORDS = 16;
const KEY_WORDS = 10;
const W_DST = 4;
const W_PORTS = 8;
const W_META = 9;
const W_FIRST = 10;
const W_LAST = 11;
/** Float64 slots of a record, counted in float64s from the record's start. */
const D_PACKETS = 6;
const D_BYTES = 7;
const META_MASK = 0xffff;
const RAW_FLAGS_SHIFT = 16;
const RAW_FLAGS_MASK = 0x1ff;
const AWS_FLAGS_SHIFT = 25;
const AWS_FLAGS_MASK = 0x1f;
const SLOT_BITS = 22;
const SLOT_MASK = (1 << SLOT_BITS) - 1;
/** Most flows one table holds in an interval (2^21: the index has room for 2^22 - 1 slot numbers). */
export const MAX_TABLE_FLOWS = 1 << (SLOT_BITS - 1);
/** FlowTable.scratch: the packet's time and key hash. */
const S_SEC = 0;
const S_HASH = 1;

/**
 * The key's hash: multiply-xor of each word with its own odd constant (independent, so the CPU
 * runs them in parallel), then murmur3's finaliser. add() computes the same from the frame.
 */
function keyHash(seed: number, k: Uint32Array, base: number): number {
  const v6 = ((k[base + W_META]! >>> 8) & 0xff) === 6;
  let h = Math.imul(k[base + W_PORTS]! ^ seed, 0xc2b2ae3d) ^ Math.imul((k[base + W_META]! & META_MASK) + seed, 0x27d4eb2f);
  h ^= Math.imul(k[base]! ^ seed, 0x9e3779b1) ^ Math.imul(k[base + W_DST]!, 0x85ebca77);
  if (v6) for (let w = 1; w < 4; w++) h = Math.imul(h ^ k[base + w]!, 0x9e3779b1) ^ Math.imul(k[base + W_DST + w]!, 0x85ebca77);
  return fmix(h);
}

function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/**
 * Protocols whose header starts with a 16-bit source and destination port: TCP, UDP, DCCP
 * (RFC 4340), SCTP (RFC 9260), UDP-Lite (RFC 3828). The ports are read whenever those four bytes
 * are in the frame, even if the rest of the header is cut off or malformed (as tshark shows them).
 */
const PORTED = new Uint8Array(256);
PORTED[6] = 1;
PORTED[17] = 1;
PORTED[33] = 1;
PORTED[132] = 1;
PORTED[136] = 1;
/** TCP flags are bytes 12-13 of the header (RFC 9293), read when they are in the frame. */
const TCP_FLAGS_END = 14;

/**
 * The flags AWS reports in tcp-flags: FIN, SYN, RST, and ACK only as part of a SYN-ACK
 * ("SYN-ACK 18"); other flags alone report 0.
 */
export function awsTcpFlags(flags: number): number {
  const v = flags & (TCP_FIN | TCP_SYN | TCP_RST);
  return (flags & (TCP_SYN | TCP_ACK)) === (TCP_SYN | TCP_ACK) ? v | TCP_ACK : v;
}

export class FlowError extends Error {
  readonly code = 'ERR_MIRRORCAP_FLOWS';
  override readonly name = 'FlowError';
}

/** Flows held in memory by all sessions' tables together, against --max-flows. */
export class FlowBudget {
  used = 0;

  constructor(readonly max = DEFAULT_MAX_FLOWS) {
    if (!Number.isSafeInteger(max) || max < 1) throw new FlowError(`max flows must be a whole number of at least 1, got ${max}`);
  }
}

const EMPTY = Buffer.alloc(0);
const EMPTY_VIEW: DataView = new DataView(new ArrayBuffer(0));

/**
 * One interval's flows: records (see REC_WORDS) dense in [0, count), and an index mapping a
 * key's hash to slot + 1, at most half full.
 */
export class FlowSlots {
  count = 0;
  capacity: number;
  /** The records as words, and the same memory as float64s (for the counters). */
  records: Uint32Array;
  counters: Float64Array;
  index: Uint32Array;
  mask: number;

  constructor(
    /** The hash seed of the table the slots belong to. */
    readonly seed: number,
    capacity = MIN_CAPACITY,
  ) {
    this.capacity = capacity;
    this.records = new Uint32Array(capacity * REC_WORDS);
    this.counters = new Float64Array(this.records.buffer);
    this.index = new Uint32Array(capacity * 2);
    this.mask = capacity * 2 - 1;
  }

  /** Doubles the storage (one copy, one rehash of the index): amortised, never per packet. */
  grow(): void {
    const cap = this.capacity * 2;
    const records = new Uint32Array(cap * REC_WORDS);
    records.set(this.records);
    this.records = records;
    this.counters = new Float64Array(records.buffer);
    this.capacity = cap;
    this.index = new Uint32Array(cap * 2);
    this.mask = cap * 2 - 1;
    for (let s = 0; s < this.count; s++) {
      const h = keyHash(this.seed, records, s * REC_WORDS);
      let i = h & this.mask;
      while (this.index[i] !== 0) i = (i + 1) & this.mask;
      this.index[i] = ((h & ~SLOT_MASK) | (s + 1)) >>> 0;
    }
  }

  /** Empties the slots for another interval (the arrays are kept). */
  reset(): void {
    this.count = 0;
    this.index.fill(0);
  }

  /** 4 or 6. */
  ipVersion(s: number): number {
    return (this.records[s * REC_WORDS + W_META]! >>> 8) & 0xff;
  }

  protocol(s: number): number {
    return this.records[s * REC_WORDS + W_META]! & 0xff;
  }

  srcPort(s: number): number {
    return this.records[s * REC_WORDS + W_PORTS]! >>> 16;
  }

  dstPort(s: number): number {
    return this.records[s * REC_WORDS + W_PORTS]! & 0xffff;
  }

  packets(s: number): number {
    return this.counters[s * (REC_WORDS / 2) + D_PACKETS]!;
  }

  /** IP bytes. */
  bytes(s: number): number {
    return this.counters[s * (REC_WORDS / 2) + D_BYTES]!;
  }

  /** OR of the TCP flags of every packet, as on the wire (decoder TCP_* bits, reserved bits left out). */
  rawTcpFlags(s: number): number {
    return (this.records[s * REC_WORDS + W_META]! >>> RAW_FLAGS_SHIFT) & RAW_FLAGS_MASK;
  }

  /** OR of awsTcpFlags() of every packet: the tcp-flags field. */
  awsTcpFlags(s: number): number {
    return (this.records[s * REC_WORDS + W_META]! >>> AWS_FLAGS_SHIFT) & AWS_FLAGS_MASK;
  }

  /** Unix seconds of the flow's first and last packet in the interval. */
  firstSec(s: number): number {
    return this.records[s * REC_WORDS + W_FIRST]!;
  }

  lastSec(s: number): number {
    return this.records[s * REC_WORDS + W_LAST]!;
  }

  /** Text form of the source address (allocates: for writers, not the hot path). */
  srcAddr(s: number): string {
    return this.addr(s * REC_WORDS, this.ipVersion(s));
  }

  dstAddr(s: number): string {
    return this.addr(s * REC_WORDS + W_DST, this.ipVersion(s));
  }

  private addr(w: number, version: number): string {
    const b = new Uint8Array(16);
    const n = version === 4 ? 1 : 4;
    for (let i = 0; i < n; i++) {
      const v = this.records[w + i]!;
      b[i * 4] = v >>> 24;
      b[i * 4 + 1] = (v >>> 16) & 0xff;
      b[i * 4 + 2] = (v >>> 8) & 0xff;
      b[i * 4 + 3] = v & 0xff;
    }
    return version === 4 ? formatIpv4(b, 0) : formatIpv6(b, 0);
  }
}

/** A sealed interval: its flows and what went wrong in it. Read-only for its consumer until recycled. */
export interface FlowInterval {
  readonly slots: FlowSlots;
  /** Flows in slots [0, count). */
  readonly count: number;
  /** Aligned start of the interval, Unix seconds. */
  readonly start: number;
  /** start + interval (exclusive). */
  readonly end: number;
  /** When it was sealed, Unix seconds: `end` unless flushed early (`partial`). */
  readonly closedAt: number;
  /** Sealed before its end by flush() or stop() (a reload, shutdown): the records cover [start, closedAt). */
  readonly partial: boolean;
  /** Packets of new flows not counted: the flow budget was spent, or the table held MAX_TABLE_FLOWS (SKIPDATA). */
  readonly skippedPackets: number;
  /** Packets the session dropped during the interval (SKIPDATA). */
  readonly droppedPackets: number;
}

export interface FlowTableOptions {
  /** Aggregation interval in whole seconds (AWS: 60 or 600). */
  readonly intervalSec: number;
  readonly budget: FlowBudget;
  /** Receives each sealed interval, synchronously (from add(), tick(), flush() or stop()); give it back with recycle(). */
  readonly sealed: (interval: FlowInterval) => void;
  /** The session's per-reason drop counters: an increase between two seals marks the interval SKIPDATA. */
  readonly drops?: Float64Array;
  /** Seconds tick() waits past an interval's end; default DEFAULT_GRACE_SEC. */
  readonly graceSec?: number;
  /** Hash seed; default random, so crafted traffic cannot aim at one probe run. */
  readonly seed?: number;
}

export class FlowTable {
  /** Frames that are not IPv4/IPv6, or whose IP header did not parse: not flows. */
  notIp = 0;
  /** Packets of new flows the budget could not hold (flow_table_full). */
  fullPackets = 0;
  /** Packets from before the open interval, counted in it at its start time. */
  latePackets = 0;
  /** Times the packet clock stepped back by more than an interval. */
  clockSteps = 0;
  /** Intervals sealed. */
  intervals = 0;

  private slots: FlowSlots;
  private spare: FlowSlots | null = null;
  private open = false;
  private start = 0;
  private end = 0;
  private skipped = 0;
  private dropsSeen = 0;
  private readonly key = new Uint32Array(KEY_WORDS);
  private readonly scratch = new Uint32Array(2);
  private viewed: Buffer = EMPTY;
  private view: DataView = EMPTY_VIEW;
  private readonly interval: number;
  private readonly grace: number;
  private readonly seed: number;

  constructor(private readonly opts: FlowTableOptions) {
    if (!Number.isSafeInteger(opts.intervalSec) || opts.intervalSec < 1) {
      throw new FlowError(`flow interval must be a whole number of seconds, at least 1, got ${opts.intervalSec}`);
    }
    this.interval = opts.intervalSec;
    this.grace = opts.graceSec ?? DEFAULT_GRACE_SEC;
    this.seed = opts.seed ?? (Math.random() * 0x100000000) | 0;
    this.slots = new FlowSlots(this.seed);
    this.dropsSeen = this.dropTotal();
  }

  /** Flows in the open interval. */
  get flows(): number {
    return this.slots.count;
  }

  /** [start, end) of the open interval, or null before the first packet or tick. */
  get openInterval(): { start: number; end: number } | null {
    return this.open ? { start: this.start, end: this.end } : null;
  }

  /**
   * Counts one decoded frame received in second tsSec[i] (Unix time: a batch's array and the
   * datagram's index). Call once per inner frame after Decoder.decode(); frames without an IP
   * header are counted in `notIp`. The second is read here, not passed as a number: a value
   * above 2^30 would be boxed at every call.
   */
  add(d: Decoder, tsSec: Uint32Array, i: number): void {
    let sec = tsSec[i]!;
    const addrLen = d.addrLen;
    if (addrLen === 0) {
      this.notIp++;
      return;
    }
    if (sec >= this.end || sec < this.start) {
      this.scratch[S_SEC] = sec;
      if (!this.place()) sec = this.start;
    }
    let dv = this.view;
    if (d.buf !== this.viewed) dv = this.viewFrame(d.buf);
    const proto = d.ipProto;
    let ports = 0;
    let flags = 0;
    // A later fragment (offset > 0) starts in the middle of the transport payload: no ports.
    if (PORTED[proto] === 1 && d.fragOffset === 0) {
      const o = d.l4Off;
      const len = d.l4Len;
      if (len >= 4) ports = dv.getInt32(o);
      if (proto === 6 && len >= TCP_FLAGS_END) flags = dv.getUint16(o + 12) & RAW_FLAGS_MASK;
    }
    const meta = (d.ipVersion << 8) | proto;
    const key = this.key;
    const seed = this.seed;
    // keyHash(), from the frame: see there.
    let h = Math.imul(ports ^ seed, 0xc2b2ae3d) ^ Math.imul(meta + seed, 0x27d4eb2f);
    const so = d.srcAddrOff;
    const to = d.dstAddrOff;
    const a0 = dv.getInt32(so);
    const b0 = dv.getInt32(to);
    h ^= Math.imul(a0 ^ seed, 0x9e3779b1) ^ Math.imul(b0, 0x85ebca77);
    key[0] = a0;
    key[W_DST] = b0;
    // IPv4 leaves words 1-3 of each address as an earlier IPv6 packet left them: the version in
    // the key keeps IPv4 from ever being compared with them, and insert() zeroes them in the record.
    if (addrLen === 16) {
      for (let w = 1; w < 4; w++) {
        const a = dv.getInt32(so + 4 * w);
        const b = dv.getInt32(to + 4 * w);
        key[w] = a;
        key[W_DST + w] = b;
        h = Math.imul(h ^ a, 0x9e3779b1) ^ Math.imul(b, 0x85ebca77);
      }
    }
    key[W_PORTS] = ports;
    key[W_META] = meta;
    h = fmix(h);
    const bytes = d.ipLength;
    const t = this.slots;
    const rec = t.records;
    const mask = t.mask;
    const tag = h & ~SLOT_MASK;
    let at = h & mask;
    for (let e = t.index[at]!; e !== 0; e = t.index[at]!) {
      if ((e & ~SLOT_MASK) === tag) {
        const s = (e & SLOT_MASK) - 1;
        const base = s * REC_WORDS;
        const m = rec[base + W_META]!;
        // Compared against the locals (int32, as read), IPv6's other words last.
        if (
          (m & META_MASK) === meta &&
          (rec[base + W_PORTS]! | 0) === ports &&
          (rec[base]! | 0) === a0 &&
          (rec[base + W_DST]! | 0) === b0 &&
          (addrLen === 4 || this.sameV6(rec, base))
        ) {
          // Counted in place (not in a helper: the second, above 2^30, would be boxed as an argument).
          const c = t.counters;
          const cd = s * (REC_WORDS / 2);
          c[cd + D_PACKETS]!++;
          c[cd + D_BYTES]! += bytes;
          if (flags !== 0) rec[base + W_META] = m | (flags << RAW_FLAGS_SHIFT) | (awsTcpFlags(flags) << AWS_FLAGS_SHIFT);
          // Packets of one interval may come out of order (several sources, late batches).
          if (sec > rec[base + W_LAST]!) rec[base + W_LAST] = sec;
          else if (sec < rec[base + W_FIRST]!) rec[base + W_FIRST] = sec;
          return;
        }
      }
      at = (at + 1) & mask;
    }
    // A new flow: the second and the hash reach insert() through a typed array, for the same reason.
    this.scratch[S_SEC] = sec;
    this.scratch[S_HASH] = h;
    this.insert(t, at, addrLen, bytes, flags);
  }

  /** Once a second or so (wall clock, Unix seconds): seals the open interval once nowSec is past its end + grace; opens the current one. */
  tick(nowSec: number): void {
    this.release();
    if (!this.open) {
      this.openAt(nowSec);
      return;
    }
    if (nowSec >= this.end + this.grace) {
      this.seal(this.end);
      this.openAt(nowSec);
    } else if (nowSec < this.start - this.interval) {
      this.clockSteps++;
      this.seal(this.end);
      this.openAt(nowSec);
    }
  }

  /** Seals the open interval now (a reload, a retired session): its records cover [start, nowSec). The next packet or tick opens a new one. */
  flush(nowSec: number): void {
    this.release();
    if (!this.open) return;
    this.seal(Math.max(this.start, Math.min(this.end, nowSec)));
    this.open = false;
    this.start = 0;
    this.end = 0;
  }

  /**
   * Shutdown at wall-clock nowSec: like flush(), but an open interval already past its end (in
   * its grace second, so no tick has sealed it) is sealed whole and the current one follows as
   * partial up to nowSec, so no second of the run is left without a record (NODATA when quiet).
   * Infinity (offline: the packets' time is the clock) seals the open one whole.
   */
  stop(nowSec: number): void {
    if (this.open && Number.isFinite(nowSec) && nowSec > this.end) {
      this.seal(this.end);
      this.openAt(nowSec);
    }
    this.flush(nowSec);
  }

  /** Takes back a sealed interval once it has been written (or has failed for good): its flows leave the budget. */
  recycle(interval: FlowInterval): void {
    const slots = interval.slots;
    this.opts.budget.used -= interval.count;
    // Keep the storage for a next interval when it was well used (the bigger of two such), so a
    // steady session stops allocating; arrays a burst grew and a quiet interval left empty go.
    const useful = slots.capacity === MIN_CAPACITY || interval.count * 4 >= slots.capacity;
    slots.reset();
    if (useful && (this.spare === null || slots.capacity > this.spare.capacity)) this.spare = slots;
  }

  /** Handles a packet (at scratch[S_SEC]) outside the open interval; false when it is late and belongs in the open one. */
  private place(): boolean {
    const sec = this.scratch[S_SEC]!;
    if (!this.open) {
      this.openAt(sec);
      return true;
    }
    if (sec >= this.end) {
      this.seal(this.end);
      this.openAt(sec);
      return true;
    }
    if (sec >= this.start - this.interval) {
      this.latePackets++;
      return false;
    }
    this.clockSteps++;
    this.seal(this.end);
    this.openAt(sec);
    return true;
  }

  private openAt(sec: number): void {
    this.start = Math.floor(sec / this.interval) * this.interval;
    this.end = this.start + this.interval;
    this.open = true;
  }

  private seal(closedAt: number): void {
    const drops = this.dropTotal();
    const interval: FlowInterval = {
      slots: this.slots,
      count: this.slots.count,
      start: this.start,
      end: this.end,
      closedAt,
      partial: closedAt < this.end,
      skippedPackets: this.skipped,
      droppedPackets: drops - this.dropsSeen,
    };
    this.dropsSeen = drops;
    this.skipped = 0;
    this.slots = this.spare ?? new FlowSlots(this.seed);
    this.spare = null;
    this.intervals++;
    this.opts.sealed(interval);
  }

  private dropTotal(): number {
    const d = this.opts.drops;
    if (d === undefined) return 0;
    let n = 0;
    for (let i = 0; i < d.length; i++) n += d[i]!;
    return n;
  }

  /** Words 1-3 of an IPv6 key's addresses (the rest was compared already). */
  private sameV6(rec: Uint32Array, base: number): boolean {
    const k = this.key;
    for (let w = 1; w < 4; w++) if (rec[base + w] !== k[w] || rec[base + W_DST + w] !== k[W_DST + w]) return false;
    return true;
  }

  /** A new flow in free index position i (budget permitting). */
  private insert(t: FlowSlots, i: number, addrLen: number, bytes: number, flags: number): void {
    const budget = this.opts.budget;
    if (budget.used >= budget.max || t.count === MAX_TABLE_FLOWS) {
      this.fullPackets++;
      this.skipped++;
      return;
    }
    budget.used++;
    const h = this.scratch[S_HASH]! | 0;
    const sec = this.scratch[S_SEC]!;
    if (t.count === t.capacity) {
      t.grow();
      i = h & t.mask;
      while (t.index[i] !== 0) i = (i + 1) & t.mask;
    }
    const s = t.count++;
    const base = s * REC_WORDS;
    const r = t.records;
    t.index[i] = ((h & ~SLOT_MASK) | (s + 1)) >>> 0;
    r.set(this.key, base);
    if (addrLen === 4) {
      for (let w = 1; w < 4; w++) {
        r[base + w] = 0;
        r[base + W_DST + w] = 0;
      }
    }
    r[base + W_META] = r[base + W_META]! | (flags << RAW_FLAGS_SHIFT) | (awsTcpFlags(flags) << AWS_FLAGS_SHIFT);
    r[base + W_FIRST] = sec;
    r[base + W_LAST] = sec;
    t.counters[s * (REC_WORDS / 2) + D_PACKETS] = 1;
    t.counters[s * (REC_WORDS / 2) + D_BYTES] = bytes;
  }

  /** A DataView of the frame buffer: 4-byte reads in one load. Re-made when the buffer changes. */
  private viewFrame(buf: Buffer): DataView {
    this.viewed = buf;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    return this.view;
  }

  /** Forgets the last frame buffer, so an idle table does not keep a source's old slab alive. */
  private release(): void {
    this.viewed = EMPTY;
    this.view = EMPTY_VIEW;
  }

}
