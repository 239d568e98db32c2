/**
 * The finished files on disk, per session: what /api/files lists, what the ring and the
 * budget trim. Filled from the output folder at start (files of earlier runs) and by writers
 * as they close files.
 *
 * A finished file may have steps still to run on it (post-rotate today; index, compression,
 * upload later). While any is pending the file is busy: the ring and the budget pass over it
 * and trim once it is free, so nothing is deleted before what must happen to it has happened.
 * A step may change what the file is on disk (gzip turns X.pcap into X.pcap.gz, an index adds
 * X.pcap.idx): when it ends the catalog reads the capture's names again, so what it lists,
 * counts and deletes is what exists.
 *
 *   writer closes X.pcap ─▶ add(X, steps) ─▶ busy ─▶ done(X, step) ─▶ read X.pcap* again ─▶ free ─▶ ring/budget may delete X.pcap*
 *                                             (ring and budget skip it)          (path, bytes)
 *
 * Flow-log files (flowlog.ts) are listed too, under `flows/<flow log id>`, so the budget
 * (--max-total-bytes) counts and trims them with the captures, oldest first. They are finished
 * files like the captures (kind 'flow-log'): busy while their steps run (post-rotate, upload),
 * their artefacts the file and what a step put beside it (X.log.gz.s3, its upload marker).
 *
 * Reading names and deleting are the only I/O it does; idle() waits for both.
 */
import { readdir, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { FLOWS_FOLDER, isValidSessionName } from '../config.js';
import { parseFlowLogName } from './flowlog.js';
import { CORRUPT_SUFFIX, isCaptureData, isFinishedArtefact, parseCaptureFileName, PART_SUFFIX, TEMP_SUFFIX } from './naming.js';
import type { CaptureFile } from './writer.js';

/** What a finished file holds: packets (X.pcap and what is made of it), or flow records (X.log.gz). */
export type FileKind = 'capture' | 'flow-log';

export interface FinishedFile {
  readonly kind: FileKind;
  /** The session, or flowLogKey(id) for a flow-log file. */
  readonly session: string;
  readonly seq: number;
  /** UTC second the file started (from its name): the age the budget goes by. */
  readonly start: number;
  /** Unknown (null) for files an earlier run wrote. */
  readonly packets: number | null;
  readonly first: readonly [sec: number, nsec: number] | null;
  readonly last: readonly [sec: number, nsec: number] | null;
  /** The capture as it is now: X.pcap, or what a step made of it (X.pcap.gz). */
  readonly path: string;
  /** Every name of this capture on disk, path included (X.pcap, X.pcap.idx, ...), in name order. */
  readonly artefacts: readonly string[];
  /** Bytes of all of them. */
  readonly bytes: number;
  /** Steps not yet done on it: while any is, nothing deletes it. */
  readonly pending: readonly string[];
}

export type DeleteReason = 'ring' | 'budget';

export interface CatalogEvents {
  deleted(file: FinishedFile, reason: DeleteReason): void;
  deleteFailed(file: FinishedFile, err: NodeJS.ErrnoException): void;
}

interface Entry extends FinishedFile {
  path: string;
  artefacts: string[];
  bytes: number;
  pending: string[];
  /** The capture's own file name, which every artefact's name starts with. */
  readonly capture: string;
  readonly dir: string;
  /** Deleted by the ring or the budget: a step still under way must not count it again. */
  gone?: true;
}

interface Found {
  readonly path: string;
  readonly bytes: number;
  /** 2: the capture as written (X.pcap), 1: its packets compressed (X.pcap.gz), 0: something made from it. */
  readonly rank: number;
}

export class Catalog {
  private readonly bySession = new Map<string, Entry[]>();
  private readonly seqs = new Map<string, number>();
  /** Each session's ring, as its last added file said (0 = keep all). */
  private readonly rings = new Map<string, number>();
  /** Deletions and re-reads under way. */
  private readonly work = new Set<Promise<void>>();
  readonly deleted: Record<DeleteReason, number> = { ring: 0, budget: 0 };
  /** Bytes of all finished files listed. */
  totalBytes = 0;

  constructor(
    private readonly outDir: string,
    /** Budget for all finished files together; 0 = none. */
    private readonly maxTotalBytes: number,
    private readonly events: CatalogEvents,
    /**
     * Steps the budget may cut short when only busy files are left (the S3 upload: a store down
     * for days must not fill the disk); a file busy with any other step is never deleted.
     */
    private readonly budgetMayTake: ReadonlySet<string> = new Set(),
  ) {}

  /**
   * Reads the finished files already in the output folder (oldest first per session). The
   * budget is not applied yet: the caller first holds the ones that still need steps, then
   * calls keepBudget().
   */
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
      const list: Entry[] = [];
      for (const [capture, found] of await findCaptures(dir, session, null)) {
        const parsed = parseCaptureFileName(session, capture)!;
        const e: Entry = { kind: 'capture', session, seq: parsed.seq, start: stampSeconds(parsed.stamp), packets: null, first: null, last: null, path: '', artefacts: [], bytes: 0, pending: [], capture, dir };
        this.place(e, found);
        this.totalBytes += e.bytes;
        list.push(e);
      }
      list.sort(olderFirst);
      if (list.length > 0) this.bySession.set(session, list);
    }
    await this.scanFlowLogs();
  }

  /**
   * A flow-log file just written, with the steps still to run on it (as add()): listed under
   * flowLogKey(id), trimmed by the budget only.
   */
  addFlowLog(id: string, path: string, start: number, bytes: number, steps: readonly string[] = []): FinishedFile {
    const entry = this.listFlowLog(id, path, start, [{ path, bytes, rank: 2 }]);
    entry.pending.push(...steps);
    this.keepBudget();
    return entry;
  }

  private listFlowLog(id: string, path: string, start: number, found: readonly Found[]): Entry {
    const key = flowLogKey(id);
    const entry: Entry = { kind: 'flow-log', session: key, seq: 0, start, packets: null, first: null, last: null, path, artefacts: [], bytes: 0, pending: [], capture: basename(path), dir: dirname(path) };
    this.place(entry, found);
    let list = this.bySession.get(key);
    if (!list) this.bySession.set(key, (list = []));
    list.push(entry);
    this.totalBytes += entry.bytes;
    return entry;
  }

  /** The flow-log files earlier runs left under <out>/flows/ (the budget is applied by the caller, as for scan()). */
  private async scanFlowLogs(): Promise<void> {
    const root = join(this.outDir, FLOWS_FOLDER);
    let names: string[];
    try {
      names = (await readdir(root, { recursive: true })).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (let i = 0; i < names.length; i++) {
      const parsed = parseFlowLogName(basename(names[i]!));
      if (parsed === null) continue;
      // What a step made of X.log.gz is named X.log.gz.*: among the names starting with X, which follow it in name order.
      const main = names[i]!;
      const rels = [main];
      for (let j = i + 1; j < names.length && names[j]!.startsWith(main); j++) if (names[j]!.startsWith(`${main}.`)) rels.push(names[j]!);
      const found = await foundFiles(rels.filter(isFinishedFlowArtefact).map((rel) => join(root, rel)), join(root, main).length);
      if (found[0]?.rank !== 2) continue;
      this.listFlowLog(parsed.id, found[0].path, parsed.start, found);
    }
    for (const [key, list] of this.bySession) if (key.startsWith(`${FLOWS_FOLDER}/`)) list.sort(olderFirst);
  }

  /** Files of an earlier run that still need `steps`: busy until done() for each, like new files. */
  hold(file: FinishedFile, steps: readonly string[]): void {
    (file as Entry).pending.push(...steps);
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

  /**
   * Records a file a writer just closed, with the steps still to run on it, then trims the
   * session's ring (0 = keep all) and the budget. Report each step's end with done().
   */
  add(file: CaptureFile, ring: number, steps: readonly string[] = []): FinishedFile {
    const entry: Entry = {
      kind: 'capture',
      session: file.session,
      seq: file.seq,
      start: file.firstSec,
      packets: file.packets,
      first: [file.firstSec, file.firstNsec],
      last: [file.lastSec, file.lastNsec],
      path: file.path,
      artefacts: [file.path],
      bytes: file.bytes,
      pending: [...steps],
      capture: basename(file.path),
      dir: dirname(file.path),
    };
    let list = this.bySession.get(file.session);
    if (!list) this.bySession.set(file.session, (list = []));
    list.push(entry);
    this.totalBytes += entry.bytes;
    this.rings.set(file.session, ring);
    this.trim(file.session);
    return entry;
  }

  /**
   * A step on `file` has ended (well or not): reads what the file is now, and once no step
   * is pending lets the ring and the budget have it. Resolves when that is done.
   */
  done(file: FinishedFile, step: string): Promise<void> {
    const e = file as Entry;
    if (e.gone) return Promise.resolve();
    const read = e.kind === 'capture' ? findCaptures(e.dir, e.session, e.capture) : findFlowLog(e.dir, e.capture);
    return this.track(
      read.then(
        (found) => {
          this.totalBytes -= e.bytes;
          this.place(e, found.get(e.capture) ?? []);
          this.totalBytes += e.bytes;
          this.settle(e, step);
        },
        () => this.settle(e, step), // cannot read the folder now: keep what we knew
      ),
    );
  }

  /** Resolves once no deletion or step bookkeeping is under way. */
  async idle(): Promise<void> {
    while (this.work.size > 0) await Promise.allSettled([...this.work]);
  }

  filesOf(session: string): readonly FinishedFile[] {
    return this.bySession.get(session) ?? [];
  }

  all(): FinishedFile[] {
    return [...this.bySession.values()].flat();
  }

  private settle(e: Entry, step: string): void {
    const i = e.pending.indexOf(step);
    if (i >= 0) e.pending.splice(i, 1);
    if (e.artefacts.length === 0) {
      // The step took the file away (shipped it and removed it): nothing left to list or trim.
      const list = this.bySession.get(e.session)!;
      const at = list.indexOf(e);
      if (at >= 0) list.splice(at, 1);
    }
    this.trim(e.session);
  }

  /** Sets path, artefacts and bytes from what is on disk: the capture itself if there, else its compressed form, else its largest artefact. */
  private place(e: Entry, found: readonly Found[]): void {
    const main = found.reduce<Found | null>((a, b) => (a === null || b.rank > a.rank || (b.rank === a.rank && b.bytes > a.bytes) ? b : a), null);
    e.path = main?.path ?? e.path;
    e.artefacts = found.map((f) => f.path).sort();
    e.bytes = found.reduce((n, f) => n + f.bytes, 0);
  }

  /** Deletes the session's oldest free files beyond its ring (busy ones wait), then keeps the budget. */
  private trim(session: string): void {
    const ring = this.rings.get(session) ?? 0;
    const list = this.bySession.get(session);
    if (ring > 0 && list !== undefined) {
      let beyond = list.length - ring;
      for (let i = 0; i < beyond; ) {
        if (list[i]!.pending.length === 0) {
          this.delete(list.splice(i, 1)[0]!, 'ring');
          beyond--;
        } else i++;
      }
    }
    this.keepBudget();
  }

  /**
   * Deletes the oldest free files, whatever their session, until the total fits or only busy
   * ones are left (called after each change, and once after scan() and hold() at start); then
   * the oldest busy only with steps in budgetMayTake.
   */
  keepBudget(): void {
    if (this.maxTotalBytes <= 0) return;
    const free = (e: Entry): boolean => e.pending.length === 0;
    const takeable = (e: Entry): boolean => e.pending.every((step) => this.budgetMayTake.has(step));
    for (const may of [free, takeable]) this.deleteOldestWhile(may);
  }

  private deleteOldestWhile(may: (e: Entry) => boolean): void {
    while (this.totalBytes > this.maxTotalBytes) {
      let oldest: Entry[] | null = null;
      let at = -1;
      for (const list of this.bySession.values()) {
        const i = list.findIndex(may);
        if (i >= 0 && (oldest === null || olderFirst(list[i]!, oldest[at]!) < 0)) {
          oldest = list;
          at = i;
        }
      }
      if (oldest === null) return;
      this.delete(oldest.splice(at, 1)[0]!, 'budget');
    }
  }

  /** Forgets the file at once (so budgets count right) and removes all its names from disk. */
  private delete(e: Entry, reason: DeleteReason): void {
    this.totalBytes -= e.bytes;
    e.gone = true;
    const removed = e.artefacts.map((path) =>
      unlink(path).then(
        () => true,
        (err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') this.events.deleteFailed(e, err); // ENOENT: someone else removed it
          return false;
        },
      ),
    );
    void this.track(
      Promise.all(removed).then((done) => {
        if (!done.includes(true)) return;
        this.deleted[reason]++;
        this.events.deleted(e, reason);
      }),
    );
  }

  private track(p: Promise<void>): Promise<void> {
    this.work.add(p);
    void p.finally(() => this.work.delete(p));
    return p;
  }
}

/** The finished names of `session`'s captures in `dir` (of one capture when `only` is set), grouped by capture. */
async function findCaptures(dir: string, session: string, only: string | null): Promise<Map<string, Found[]>> {
  const names = await namesIn(dir);
  const byCapture = new Map<string, Found[]>();
  for (const name of names) {
    const parsed = parseCaptureFileName(session, name);
    if (parsed === null || !isFinishedArtefact(parsed) || (only !== null && parsed.capture !== only)) continue;
    const path = join(dir, name);
    const st = await stat(path).catch(() => null);
    if (!st?.isFile()) continue;
    let list = byCapture.get(parsed.capture);
    if (!list) byCapture.set(parsed.capture, (list = []));
    list.push({ path, bytes: st.size, rank: parsed.suffix === '' ? 2 : isCaptureData(parsed.suffix) ? 1 : 0 });
  }
  return byCapture;
}

/** The names in a folder; none when it is gone. */
async function namesIn(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** The finished names of flow-log file `name` in `dir` (itself, and what steps made beside it), keyed by its name. */
async function findFlowLog(dir: string, name: string): Promise<Map<string, Found[]>> {
  const mine = (await namesIn(dir)).filter((n) => (n === name || n.startsWith(`${name}.`)) && isFinishedFlowArtefact(n));
  return new Map([[name, await foundFiles(mine.map((n) => join(dir, n)), join(dir, name).length)]]);
}

/** The regular files among `paths`, the one `mainLength` long (the flow-log file itself) ranked 2. */
async function foundFiles(paths: readonly string[], mainLength: number): Promise<Found[]> {
  const found: Found[] = [];
  for (const path of paths) {
    const st = await stat(path).catch(() => null);
    if (st?.isFile()) found.push({ path, bytes: st.size, rank: path.length === mainLength ? 2 : 0 });
  }
  return found;
}

/** Not one being written or set aside (a marker's .tmp, a .part, a .corrupt). */
function isFinishedFlowArtefact(name: string): boolean {
  return ![PART_SUFFIX, TEMP_SUFFIX, CORRUPT_SUFFIX].some((suffix) => name.endsWith(suffix));
}

/** Where a flow log's files are listed: not a session name (it holds a slash), so never a session's. */
export function flowLogKey(id: string): string {
  return `${FLOWS_FOLDER}/${id}`;
}

function olderFirst(a: FinishedFile, b: FinishedFile): number {
  return a.start - b.start || a.seq - b.seq || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);
}

/** "20261126T164500Z" → UTC seconds. */
function stampSeconds(stamp: string): number {
  const n = (from: number, len: number): number => Number(stamp.slice(from, from + len));
  return Date.UTC(n(0, 4), n(4, 2) - 1, n(6, 2), n(9, 2), n(11, 2), n(13, 2)) / 1000;
}
