/**
 * The matching records of one capture file, in file order, for the merge. With a trusted
 * index it reads only the groups the planner kept whose times overlap the window, adjacent
 * groups coalesced into one read; without one (missing, stale, corrupt, or an open .part) it
 * scans the file. Either way each record read passes the time window and the filter before it
 * is handed on, so the index can only save reads, never change the answer. A compressed
 * capture (X.pcap.gz, X.pcap.zst) is read the same way through openRangeSource: a .gz of
 * ours decompresses only the blocks holding the ranges, a .zst is decompressed from its start
 * and what lies outside the ranges dropped.
 *
 *   ranges [start, end) ──pread ≤ 1 MiB──▶ layout.walk ──window, filter.match──▶ push() ──▶ merge
 */
import { readSync, statSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { compileFilter, type CompiledFilter, type LinkType } from '../filter/index.js';
import { before, IndexCorrupt, type IndexProblem, type IndexReader } from '../finish/index-format.js';
import { loadIndex } from '../finish/index-build.js';
import type { ClassicSink } from '../pcap/classic.js';
import { layoutOf, readLayout, type RecordLayout } from '../pcap/layout.js';
import { openPlainSync, openRangeSource, type ByteSource } from '../pcap/compressed.js';
import { RecordSource } from './merge.js';
import { planGroups } from './planner.js';

const READ = 1 << 20;
/** Index ranges read at once (libuv's thread pool has 4 threads by default). */
const PARALLEL = 8;

export type Time = readonly [sec: number, nsec: number];

export interface Window {
  readonly since: Time | null;
  readonly until: Time | null;
}

/** What a query saw of its files (the CLI prints it, HTTP sends it as a trailer). */
export interface QueryStats {
  files: number;
  /** Files answered through their index. */
  indexed: number;
  /** Files skipped whole: their index said no record can match. */
  skipped: number;
  /** Files scanned, by why: missing/stale/corrupt/version index, an open .part. */
  scanned: Record<IndexProblem | 'part', number>;
  bytesRead: number;
  /** Files that could not be read at all, or ended in a broken record (everything before it answered). */
  errors: string[];
}

export function newStats(): QueryStats {
  return { files: 0, indexed: 0, skipped: 0, scanned: { missing: 0, corrupt: 0, version: 0, stale: 0, part: 0 }, bytesRead: 0, errors: [] };
}

/** Compiles the expression once per link type met. */
export class Filters {
  private readonly byLink = new Map<number, CompiledFilter>();

  constructor(readonly text: string) {
    if (text !== '') this.byLink.set(1, compileFilter(text, 1));
  }

  /** Null: no expression, every record. Throws FilterError for a link type the filter module does not take. */
  forLink(linkType: number): CompiledFilter | null {
    if (this.text === '') return null;
    let f = this.byLink.get(linkType);
    if (f === undefined) this.byLink.set(linkType, (f = compileFilter(this.text, linkType as LinkType)));
    return f;
  }
}

export interface OpenOptions {
  readonly filters: Filters;
  readonly window: Window;
  readonly stats: QueryStats;
  /** A finished file whose index could not be trusted (to have it rebuilt). */
  readonly badIndex?: (path: string, why: IndexProblem) => void;
  /**
   * Read plain files with synchronous preads: a selective query is hundreds of small reads,
   * and each trip through the thread pool costs more than the read of cached pages itself.
   * For a process that does nothing else meanwhile (`mirrorcap query`); never inside the
   * appliance, whose event loop must not wait on the disk.
   */
  readonly syncReads?: boolean;
}

interface Plan {
  /** Size of the capture file as found. */
  readonly size: number;
  /** The capture's layout, from its index (null: read it from the file: a pcapng header is not in the index). */
  readonly header: RecordLayout | null;
  /** Uncompressed [start, end) pairs of whole records to read; null: the whole file. */
  readonly ranges: number[] | null;
  /** No record is earlier (from the index), for the merge. */
  readonly low: Time | null;
}

export class FileSource extends RecordSource {
  private range = 0;
  private pos: number;
  private fh: ByteSource | null;
  private readonly sink: ClassicSink;

  private constructor(
    readonly path: string,
    order: number,
    fh: ByteSource,
    /** Classic pcap or pcapng (one interface): where the records are, how they are walked. */
    readonly header: RecordLayout,
    private readonly ranges: readonly number[],
    low: Time | null,
    private readonly stats: QueryStats,
    filter: CompiledFilter | null,
    window: Window,
    /** A torn tail is expected (an open file), not an error. */
    private readonly open: boolean,
    /** The ranges come from the index: each is whole records. */
    private readonly whole: boolean,
    /** Plain file: ranges may be read side by side (a compressed one is read in order). */
    private readonly parallel: boolean,
    /** Plain file read with synchronous preads (OpenOptions.syncReads), else null. */
    private readonly syncFd: number | null,
  ) {
    super(order, low ?? [0, 0]);
    this.fh = fh;
    this.pos = ranges[0] ?? 0;
    const { since, until } = window;
    const match = filter?.match;
    this.sink = (buf, off, capLen, origLen, sec, nsec) => {
      if (since !== null && before(sec, nsec, since[0], since[1])) return;
      if (until !== null && !before(sec, nsec, until[0], until[1])) return;
      if (match !== undefined && !match(buf, off, capLen, origLen)) return;
      this.push(off, capLen, origLen, sec, nsec);
    };
  }

  /**
   * Opens `path` (an open .part when `part`) and plans what to read; null when nothing in it
   * can match (or it cannot be read: the reason is in stats.errors).
   */
  static async open(path: string, part: boolean, order: number, o: OpenOptions): Promise<FileSource | null> {
    const { stats } = o;
    stats.files++;
    let plan: Plan | null;
    try {
      plan = await FileSource.plan(path, part, o);
    } catch (err) {
      stats.errors.push(`${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      return null;
    }
    if (plan === null) return null;
    let src: ByteSource;
    let compressed: boolean;
    let syncFd: number | null = null;
    try {
      const plain = o.syncReads === true ? openPlainSync(path) : null;
      if (plain !== null) {
        ({ source: src, fd: syncFd } = plain);
        compressed = false;
      } else {
        const opened = await openRangeSource(path);
        src = opened.source;
        compressed = opened.container !== null;
      }
    } catch (err) {
      stats.errors.push(`${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      return null;
    }
    let keep = false;
    try {
      let header = plan.header;
      if (header === null) {
        const read = await readLayout(async (b, off, len, pos) => (await src.read(b, off, len, pos)).bytesRead);
        header = read.layout;
        if (header === null) {
          // An open file whose header is not whole yet holds no record; anything else is not ours to read.
          if (!part || read.whole) stats.errors.push(`${path}: neither classic pcap nor pcapng of one interface`);
          return null;
        }
      }
      const filter = o.filters.forLink(header.linkType);
      keep = true;
      // A compressed file is scanned to its (uncompressed) end, whatever that is.
      const ranges = plan.ranges ?? [header.dataStart, compressed ? Number.MAX_SAFE_INTEGER : plan.size];
      return new FileSource(path, order, src, header, ranges, plan.low, stats, filter, o.window, part, plan.ranges !== null, !compressed, syncFd);
    } catch (err) {
      stats.errors.push(`${path}: ${(err as Error).message}`);
      return null;
    } finally {
      if (!keep) await src.close();
    }
  }

  /**
   * What to read of `path`: through its index when it can be trusted (the ranges, and the
   * capture's header from the index, so a compressed file that cannot match is never opened),
   * else the whole file; null when the index says nothing in it can match.
   */
  private static async plan(path: string, part: boolean, o: OpenOptions): Promise<Plan | null> {
    const { stats, window } = o;
    const st = o.syncReads === true ? statSync(path) : await stat(path);
    const scan: Plan = { size: st.size, header: null, ranges: null, low: null };
    if (part) {
      stats.scanned.part++;
      return scan;
    }
    const index = await loadIndex(path, st.size, st.mtimeMs, o.syncReads === true);
    // A classic header is whole in the index; a pcapng one is read from the file when it is opened.
    const header = typeof index === 'string' ? null : layoutOf(index.summary.captureHeader);
    let ranges: number[] | null = null;
    if (typeof index !== 'string') {
      try {
        ranges = await FileSource.ranges(index, o.filters.forLink(index.summary.linkType), window);
      } catch (err) {
        if (!(err instanceof IndexCorrupt)) throw err;
      }
    }
    if (ranges === null) {
      const why = typeof index === 'string' ? index : 'corrupt';
      stats.scanned[why]++;
      o.badIndex?.(path, why);
      return scan;
    }
    stats.indexed++;
    if (ranges.length === 0) {
      stats.skipped++;
      return null;
    }
    return { size: st.size, header, ranges, low: (index as IndexReader).summary.min };
  }

  /** The index's groups that can hold a match in the window, adjacent ones coalesced up to READ bytes. */
  private static async ranges(index: IndexReader, filter: CompiledFilter | null, window: Window): Promise<number[]> {
    const { since, until } = window;
    const groups = filter === null ? null : await planGroups(filter.tree, index);
    const ranges: number[] = [];
    const n = groups === null ? index.groups : groups.length;
    for (let i = 0; i < n; i++) {
      const g = groups === null ? i : groups[i]!;
      if (!index.groupOverlaps(g, since, until)) continue;
      const start = index.groupOffset(g);
      const end = index.groupEnd(g);
      const last = ranges.length - 1;
      if (last > 0 && ranges[last] === start && end - ranges[last - 1]! <= READ) ranges[last] = end;
      else ranges.push(start, end);
    }
    return ranges;
  }

  /**
   * Index ranges (whole records each): up to PARALLEL of them that fit in READ bytes, read at
   * once (the thread pool serves them side by side: a selective query is many small reads).
   */
  private async readRanges(fh: ByteSource): Promise<boolean> {
    const ranges = this.ranges;
    let last = this.range;
    let total = 0;
    while (last < ranges.length && last - this.range < 2 * PARALLEL && total + ranges[last + 1]! - ranges[last]! <= READ) {
      total += ranges[last + 1]! - ranges[last]!;
      last += 2;
    }
    // Sized to what is read at once (a selective query's batch is far below READ): less to collect.
    if (this.chunk.length < total) this.chunk = Buffer.allocUnsafe(Math.max(total, 64 << 10));
    const buf = this.chunk;
    const reads: Array<Promise<{ bytesRead: number }> | { bytesRead: number }> = [];
    for (let r = this.range, at = 0; r < last; r += 2) {
      const len = ranges[r + 1]! - ranges[r]!;
      const read = this.syncFd !== null ? { bytesRead: readSync(this.syncFd, buf, at, len, ranges[r]!) } : fh.read(buf, at, len, ranges[r]!);
      // A compressed source is read in order, one range after the other.
      reads.push(this.parallel ? read : await read);
      at += len;
    }
    const done = await Promise.all(reads);
    for (let r = this.range, at = 0, i = 0; r < last; r += 2, i++) {
      const len = ranges[r + 1]! - ranges[r]!;
      this.stats.bytesRead += done[i]!.bytesRead;
      if (this.header.walk(buf, at, at + done[i]!.bytesRead, ranges[r]! - at, this.sink) !== at + len) {
        this.stats.errors.push(`${this.path}: records at offset ${ranges[r]!} do not match its index; records before them were read`);
        this.range = ranges.length;
        return true;
      }
      at += len;
    }
    this.range = last;
    this.pos = ranges[last] ?? 0;
    return true;
  }

  async close(): Promise<void> {
    const fh = this.fh;
    this.fh = null;
    await fh?.close();
  }

  protected async refill(): Promise<boolean> {
    const fh = this.fh;
    if (fh === null) return false;
    const ranges = this.ranges;
    if (this.whole && this.range < ranges.length && this.pos === ranges[this.range] && ranges[this.range + 1]! - this.pos <= READ) return this.readRanges(fh);
    while (this.range < ranges.length) {
      const end = ranges[this.range + 1]!;
      if (this.pos >= end) {
        this.range += 2;
        this.pos = ranges[this.range] ?? 0;
        continue;
      }
      const want = Math.min(READ, end - this.pos);
      const buf = this.chunk.length >= want ? this.chunk : Buffer.allocUnsafe(Math.max(want, READ));
      this.chunk = buf;
      const { bytesRead } = this.syncFd !== null ? { bytesRead: readSync(this.syncFd, buf, 0, want, this.pos) } : await fh.read(buf, 0, want, this.pos);
      this.stats.bytesRead += bytesRead;
      if (bytesRead === 0) {
        // The end: expected for a compressed file scanned to its end, not before a known one.
        if (end !== Number.MAX_SAFE_INTEGER) this.stats.errors.push(`${this.path}: ends at offset ${this.pos}, before its ${end} bytes`);
        this.range = ranges.length;
        return false;
      }
      const used = this.header.walk(buf, 0, bytesRead, this.pos, this.sink);
      if (used === 0) {
        // The file ends inside a record here (or holds an impossible one): what came before is the answer.
        if (!this.open) this.stats.errors.push(`${this.path}: broken or truncated record at offset ${this.pos}; records before it were read`);
        this.range = ranges.length;
        return false;
      }
      this.pos += used;
      return true;
    }
    return false;
  }
}
