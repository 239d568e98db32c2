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
  readonly bytes: number;
  /** Unknown (null) for files an earlier run wrote. */
  readonly packets: number | null;
  readonly first: readonly [sec: number, nsec: number] | null;
  readonly last: readonly [sec: number, nsec: number] | null;
}

export interface CatalogEvents {
  deleted(file: FinishedFile, reason: 'ring'): void;
  deleteFailed(file: FinishedFile, err: NodeJS.ErrnoException): void;
}

export class Catalog {
  private readonly bySession = new Map<string, FinishedFile[]>();
  private readonly seqs = new Map<string, number>();
  deletedFiles = 0;

  constructor(
    private readonly outDir: string,
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
        if (st?.isFile()) found.push({ session, path, seq: parsed.seq, bytes: st.size, packets: null, first: null, last: null });
      }
      found.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
      if (found.length > 0) this.bySession.set(session, found);
    }
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
      bytes: file.bytes,
      packets: file.packets,
      first: [file.firstSec, file.firstNsec],
      last: [file.lastSec, file.lastNsec],
    };
    let list = this.bySession.get(file.session);
    if (!list) this.bySession.set(file.session, (list = []));
    list.push(entry);
    if (ring > 0) {
      while (list.length > ring) this.delete(list.shift()!, 'ring');
    }
  }

  filesOf(session: string): readonly FinishedFile[] {
    return this.bySession.get(session) ?? [];
  }

  all(): FinishedFile[] {
    return [...this.bySession.values()].flat();
  }

  private delete(file: FinishedFile, reason: 'ring'): void {
    unlink(file.path).then(
      () => {
        this.deletedFiles++;
        this.events.deleted(file, reason);
      },
      (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return; // someone else removed it; nothing to trim
        this.events.deleteFailed(file, err);
      },
    );
  }
}
