/**
 * The one pcap a query answers with: records of many sources (files, appliances), each in its
 * own order, merged by timestamp as mergecap merges (the earliest head next; a tie goes to the
 * source listed first), written as nanosecond little-endian pcap, the format mirrorcap's files
 * have, so a record of ours comes out byte for byte as stored.
 *
 *   source 0 ─┐  heap of heads        PcapOut: 1 MiB buffer ──sink(chunk)──▶ stdout | file | HTTP response
 *   source 1 ─┼─▶ (sec, nsec, order) ─▶ header + records
 *   source n ─┘  a source not started yet sits in the heap at a lower bound of its first
 *                record (its index's earliest time) and is opened only when that comes up,
 *                so a store of many files holds open only those whose times overlap.
 */
import { PCAP_MAGIC_NS, FILE_HEADER_LEN, RECORD_HEADER_LEN } from '../pcap/pcap.js';

/**
 * Records of one source, in the source's order. The head (buf, off, capLen, origLen, sec,
 * nsec) is valid after next() returned true, until the next call. Before the first next(),
 * sec/nsec are a lower bound of the first record's time.
 */
export abstract class RecordSource {
  buf: Buffer = EMPTY;
  off = 0;
  capLen = 0;
  origLen = 0;
  sec = 0;
  nsec = 0;
  started = false;
  private n = 0;
  private i = 0;
  private offs = new Int32Array(256);
  private lens = new Uint32Array(512);
  private times = new Uint32Array(512);
  /** The buffer the records pushed since the last refill lie in. */
  protected chunk: Buffer = EMPTY;

  constructor(
    /** Tie-break: the lower comes first. */
    readonly order: number,
    low: readonly [number, number] = [0, 0],
  ) {
    [this.sec, this.nsec] = low;
  }

  /** Moves to the next record: true when there is one. Synchronous while the current chunk lasts. */
  next(): boolean | Promise<boolean> {
    this.started = true;
    if (this.i < this.n) return this.load();
    return this.refillNext();
  }

  /** Releases what the source holds (idempotent). */
  abstract close(): Promise<void>;

  /** Reads on and push()es the records of the next stretch into `chunk`; false once there is nothing more. */
  protected abstract refill(): Promise<boolean>;

  protected push(off: number, capLen: number, origLen: number, sec: number, nsec: number): void {
    const n = this.n;
    if (n === this.offs.length) {
      const grow = <T extends Int32Array | Uint32Array>(a: T, ctor: new (n: number) => T): T => {
        const b = new ctor(a.length * 2);
        b.set(a);
        return b;
      };
      this.offs = grow(this.offs, Int32Array);
      this.lens = grow(this.lens, Uint32Array);
      this.times = grow(this.times, Uint32Array);
    }
    this.offs[n] = off;
    this.lens[2 * n] = capLen;
    this.lens[2 * n + 1] = origLen;
    this.times[2 * n] = sec;
    this.times[2 * n + 1] = nsec;
    this.n = n + 1;
  }

  private load(): true {
    const i = this.i++;
    this.buf = this.chunk;
    this.off = this.offs[i]!;
    this.capLen = this.lens[2 * i]!;
    this.origLen = this.lens[2 * i + 1]!;
    this.sec = this.times[2 * i]!;
    this.nsec = this.times[2 * i + 1]!;
    return true;
  }

  private async refillNext(): Promise<boolean> {
    for (;;) {
      this.n = 0;
      this.i = 0;
      if (!(await this.refill())) {
        this.chunk = EMPTY;
        this.buf = EMPTY;
        await this.close();
        return false;
      }
      if (this.n > 0) return this.load();
    }
  }
}

const EMPTY = Buffer.alloc(0);
const OUT_CHUNK = 1 << 20;
/** A stream that waits on a slow source still gets what is ready this often. */
const STALE_MS = 200;

/** Where the answer goes: resolves when the consumer can take more (backpressure). */
export type ChunkSink = (chunk: Buffer) => Promise<void>;

export class PcapOut {
  records = 0;
  bytes = 0;
  private buf = Buffer.allocUnsafe(OUT_CHUNK);
  private at = 0;
  private lastFlush = Date.now();

  constructor(private readonly sink: ChunkSink) {}

  header(snaplen: number, linkType: number): void {
    const b = this.buf;
    b.writeUInt32LE(PCAP_MAGIC_NS, 0);
    b.writeUInt16LE(2, 4);
    b.writeUInt16LE(4, 6);
    b.writeInt32LE(0, 8);
    b.writeUInt32LE(0, 12);
    b.writeUInt32LE(snaplen, 16);
    b.writeUInt32LE(linkType, 20);
    this.at = FILE_HEADER_LEN;
  }

  /** Appends one record; a promise when the buffer had to be handed to the sink first. */
  record(s: RecordSource): Promise<void> | undefined {
    const need = RECORD_HEADER_LEN + s.capLen;
    if (this.at + need > this.buf.length) return this.flush().then(() => void this.put(s));
    this.put(s);
    return undefined;
  }

  /** Hands what is buffered to the sink if it has waited long enough (before waiting on a source). */
  flushIfStale(): Promise<void> | undefined {
    return this.at > 0 && Date.now() - this.lastFlush >= STALE_MS ? this.flush() : undefined;
  }

  async flush(): Promise<void> {
    this.lastFlush = Date.now();
    if (this.at === 0) return;
    const chunk = this.buf.subarray(0, this.at);
    this.bytes += this.at;
    // The sink may hold the chunk until written: the next records go to a new buffer.
    this.buf = Buffer.allocUnsafe(OUT_CHUNK);
    this.at = 0;
    await this.sink(chunk);
  }

  private put(s: RecordSource): void {
    const b = this.buf;
    const at = this.at;
    b.writeUInt32LE(s.sec, at);
    b.writeUInt32LE(s.nsec, at + 4);
    b.writeUInt32LE(s.capLen, at + 8);
    b.writeUInt32LE(s.origLen, at + 12);
    s.buf.copy(b, at + RECORD_HEADER_LEN, s.off, s.off + s.capLen);
    this.at = at + RECORD_HEADER_LEN + s.capLen;
    this.records++;
  }
}

function less(a: RecordSource, b: RecordSource): boolean {
  return a.sec < b.sec || (a.sec === b.sec && (a.nsec < b.nsec || (a.nsec === b.nsec && a.order < b.order)));
}

/**
 * Writes every record of `sources` to `out` in merged order, at most `limit` (0 = all);
 * stops early when `stopped()` turns true. Closes every source.
 */
export async function mergeSources(sources: readonly RecordSource[], out: PcapOut, limit: number, stopped: () => boolean): Promise<void> {
  const heap = [...sources];
  for (let i = (heap.length >> 1) - 1; i >= 0; i--) down(heap, i);
  try {
    while (heap.length > 0 && !stopped()) {
      const s = heap[0]!;
      if (s.started) {
        const w = out.record(s);
        if (w !== undefined) await w;
        if (limit > 0 && out.records >= limit) break;
      }
      let more = s.next();
      if (more instanceof Promise) {
        const f = out.flushIfStale();
        if (f !== undefined) await f;
        more = await more;
      }
      if (more) down(heap, 0);
      else {
        const last = heap.pop()!;
        if (heap.length > 0) {
          heap[0] = last;
          down(heap, 0);
        }
      }
    }
  } finally {
    await Promise.all(sources.map((s) => s.close()));
  }
  await out.flush();
}

function down(h: RecordSource[], i: number): void {
  const n = h.length;
  for (;;) {
    const l = 2 * i + 1;
    if (l >= n) return;
    const r = l + 1;
    const m = r < n && less(h[r]!, h[l]!) ? r : l;
    if (!less(h[m]!, h[i]!)) return;
    [h[i], h[m]] = [h[m]!, h[i]!];
    i = m;
  }
}
