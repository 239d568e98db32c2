/**
 * The matching records of one capture file, in file order, for the merge. With a trusted
 * index it reads only the groups the planner kept whose times overlap the window, adjacent
 * groups coalesced into one read; without one (missing, stale, corrupt, or an open .part) it
 * scans the file. Either way each record read passes the time window and the filter before it
 * is handed on, so the index can only save reads, never change the answer.
 *
 *   ranges [start, end) ──pread ≤ 1 MiB──▶ walkRecords ──window, filter.match──▶ push() ──▶ merge
 */
import { open, type FileHandle } from 'node:fs/promises';
import { compileFilter, type CompiledFilter, type LinkType } from '../filter/index.js';
import { before, type IndexProblem } from '../finish/index-format.js';
import { loadIndex } from '../finish/index-build.js';
import type { ClassicSink } from '../pcap/classic.js';
import { LAYOUT_HEAD_LEN, layoutOf, type RecordLayout } from '../pcap/layout.js';
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
}

export class FileSource extends RecordSource {
  private range = 0;
  private pos: number;
  private fh: FileHandle | null;
  private readonly sink: ClassicSink;

  private constructor(
    readonly path: string,
    order: number,
    fh: FileHandle,
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
    const { stats, window } = o;
    stats.files++;
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (err) {
      stats.errors.push(`${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      return null;
    }
    let keep = false;
    try {
      const st = await fh.stat();
      const head = Buffer.alloc(Math.min(LAYOUT_HEAD_LEN, st.size));
      const { bytesRead } = await fh.read(head, 0, head.length, 0);
      const header = layoutOf(head.subarray(0, bytesRead));
      if (header === null) {
        // An open file whose header is not whole yet holds no record; anything else is not ours to read.
        if (!part || bytesRead >= LAYOUT_HEAD_LEN) stats.errors.push(`${path}: neither classic pcap nor pcapng of one interface`);
        return null;
      }
      const filter = o.filters.forLink(header.linkType);
      let ranges: number[] = [header.dataStart, st.size];
      let low: Time | null = null;
      if (part) stats.scanned.part++;
      else {
        const index = await loadIndex(path, st.size, st.mtimeMs);
        if (typeof index === 'string') {
          stats.scanned[index]++;
          o.badIndex?.(path, index);
        } else {
          stats.indexed++;
          const { since, until } = window;
          const groups = filter === null ? null : planGroups(filter.tree, index);
          ranges = [];
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
          if (ranges.length === 0) {
            stats.skipped++;
            return null;
          }
          low = index.summary.min;
        }
      }
      keep = true;
      return new FileSource(path, order, fh, header, ranges, low, stats, filter, window, part, low !== null);
    } catch (err) {
      stats.errors.push(`${path}: ${(err as Error).message}`);
      return null;
    } finally {
      if (!keep) await fh.close();
    }
  }

  /**
   * Index ranges (whole records each): up to PARALLEL of them that fit in READ bytes, read at
   * once (the thread pool serves them side by side: a selective query is many small reads).
   */
  private async readRanges(fh: FileHandle): Promise<boolean> {
    const ranges = this.ranges;
    let last = this.range;
    let total = 0;
    while (last < ranges.length && last - this.range < 2 * PARALLEL && total + ranges[last + 1]! - ranges[last]! <= READ) {
      total += ranges[last + 1]! - ranges[last]!;
      last += 2;
    }
    if (this.chunk.length < READ) this.chunk = Buffer.allocUnsafe(READ);
    const buf = this.chunk;
    const reads: Array<Promise<{ bytesRead: number }>> = [];
    for (let r = this.range, at = 0; r < last; r += 2) {
      const len = ranges[r + 1]! - ranges[r]!;
      reads.push(fh.read(buf, at, len, ranges[r]!));
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
      const { bytesRead } = await fh.read(buf, 0, want, this.pos);
      this.stats.bytesRead += bytesRead;
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
