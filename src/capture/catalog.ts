/**
 * The finished files on disk, per session: what /api/files lists, what the ring trims.
 * Filled from the output folder at start (files of earlier runs) and by writers as they
 * close files. Deletion is the only I/O it does.
 */
import { readdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { isValidSessionName } from '../config.js';
import { parseCaptureFileName } from './naming.js';
import type { CaptureFile } from './writer.js';

export interface FinishedFile {
  readonly session: string;
  readonly path: string;
  readonly seq: number;
  /** UTC second the file started (from its name): the age the budget goes by. */
  readonly start: number;
  readonly bytes: number;
  /** Unknown (null) for files an earlier run wrote. */
  readonly packets: number | null;
  readonly first: readonly [sec: number, nsec: number] | null;
  readonly last: readonly [sec: number, nsec: number] | null;
}

export type DeleteReason = 'ring' | 'budget';

export interface CatalogEvents {
  deleted(file: FinishedFile, reason: DeleteReason): void;
  deleteFailed(file: FinishedFile, err: NodeJS.ErrnoException): void;
}

export class Catalog {
  private readonly bySession = new Map<string, FinishedFile[]>();
  private readonly seqs = new Map<string, number>();
  readonly deleted: Record<DeleteReason, number> = { ring: 0, budget: 0 };
  /** Bytes of all finished files listed. */
  totalBytes = 0;

  constructor(
    private readonly outDir: string,
    /** Budget for all finished files together; 0 = none. */
    private readonly maxTotalBytes: number,
    private readonly events: CatalogEvents,
  ) {}

  /** Reads the finished files already in the output folder (oldest first per session). */
  async scan(): Promise<void> {
    let dirs: string[];
    try {
      dirs = (await readdir(this.outDir, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const session of dirs.filter(isValidSessionName)) {
      const dir = join(this.outDir, session);
      const found: FinishedFile[] = [];
      for (const name of await readdir(dir)) {
        const parsed = parseCaptureFileName(session, name);
        if (!parsed || parsed.part) continue;
        const path = join(dir, name);
        const st = await stat(path).catch(() => null);
        if (st?.isFile()) {
          found.push({ session, path, seq: parsed.seq, start: stampSeconds(parsed.stamp), bytes: st.size, packets: null, first: null, last: null });
          this.totalBytes += st.size;
        }
      }
      found.sort(olderFirst);
      if (found.length > 0) this.bySession.set(session, found);
    }
    this.trimBudget();
  }

  /** The next file sequence number of a session: one past the highest it ever used. */
  nextSeq(session: string): number {
    let next = this.seqs.get(session);
    if (next === undefined) {
      next = 0;
      for (const f of this.bySession.get(session) ?? []) if (f.seq >= next) next = f.seq + 1;
    }
    this.seqs.set(session, next + 1);
    return next;
  }

  /** Records a file a writer just closed, then trims the session's ring (0 = keep all). */
  add(file: CaptureFile, ring: number): void {
    const entry: FinishedFile = {
      session: file.session,
      path: file.path,
      seq: file.seq,
      start: file.firstSec,
      bytes: file.bytes,
      packets: file.packets,
      first: [file.firstSec, file.firstNsec],
      last: [file.lastSec, file.lastNsec],
    };
    let list = this.bySession.get(file.session);
    if (!list) this.bySession.set(file.session, (list = []));
    list.push(entry);
    this.totalBytes += entry.bytes;
    if (ring > 0) {
      while (list.length > ring) this.delete(list.shift()!, 'ring');
    }
    this.trimBudget();
  }

  /** Deletes the oldest finished files, whatever their session, until the total fits. */
  private trimBudget(): void {
    if (this.maxTotalBytes <= 0) return;
    while (this.totalBytes > this.maxTotalBytes) {
      let oldest: FinishedFile[] | null = null;
      for (const list of this.bySession.values()) {
        if (list.length > 0 && (oldest === null || olderFirst(list[0]!, oldest[0]!) < 0)) oldest = list;
      }
      if (oldest === null) return;
      this.delete(oldest.shift()!, 'budget');
    }
  }

  filesOf(session: string): readonly FinishedFile[] {
    return this.bySession.get(session) ?? [];
  }

  all(): FinishedFile[] {
    return [...this.bySession.values()].flat();
  }

  /** Forgets the file at once (so budgets count right) and removes it from disk. */
  private delete(file: FinishedFile, reason: DeleteReason): void {
    this.totalBytes -= file.bytes;
    unlink(file.path).then(
      () => {
        this.deleted[reason]++;
        this.events.deleted(file, reason);
      },
      (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return; // someone else removed it; nothing to trim
        this.events.deleteFailed(file, err);
      },
    );
  }
}

function olderFirst(a: FinishedFile, b: FinishedFile): number {
  return a.start - b.start || a.seq - b.seq || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);
}

/** "20261126T164500Z" → UTC seconds. */
function stampSeconds(stamp: string): number {
  const n = (from: number, len: number): number => Number(stamp.slice(from, from + len));
  return Date.UTC(n(0, 4), n(4, 2) - 1, n(6, 2), n(9, 2), n(11, 2), n(13, 2)) / 1000;
}
