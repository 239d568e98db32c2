/**
 * Builds the sidecar of a finished capture (classic pcap, or pcapng of one interface: what
 * --format writes; pcap/layout.ts walks both) by reading it again after it was closed (the
 * write path stays as it is), and reads a sidecar back for a query, trusting it only when
 * whole and made of the capture as it is now.
 *
 *   X.pcap ──read 4 MiB at a time──▶ walkRecords ──▶ groups of N records: offset, min/max time
 *                                         └──frameKeys──▶ key → groups it occurs in
 *   ──encodeIndex──▶ X.pcap.idx.tmp ──rename──▶ X.pcap.idx   (a kill leaves a .tmp, never half an index)
 *
 * The capture is stat'ed before and after: if it changed while being read the index is
 * thrown away (it would be stale at once).
 */
import { open, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { LAYOUT_HEAD_LEN, layoutOf, type RecordLayout } from '../pcap/layout.js';
import { INDEX_SUFFIX } from '../capture/naming.js';
import { before, encodeIndex, IndexReader, matchesCapture, readSummary, HEADER_LEN, type IndexProblem } from './index-format.js';
import { frameKeys } from './index-keys.js';
import { KeyTable } from './key-table.js';

/** Records per group: what a query reads at least around one match (about 11 KiB at IMIX). */
export const GROUP_PACKETS = 32;
const CHUNK = 4 << 20;
const LINKTYPE_ETHERNET = 1;

export function indexPathOf(capture: string): string {
  return capture + INDEX_SUFFIX;
}

export interface BuiltIndex {
  readonly packets: number;
  readonly groups: number;
  readonly bytes: number;
}

/** Why a capture cannot have an index: compressed, pcapng of several interfaces or sections, not a capture. */
export class NotIndexable extends Error {
  readonly code = 'ERR_MIRRORCAP_NOT_INDEXABLE';
  override readonly name = 'NotIndexable';
}

/** Accumulates records into groups and key postings. */
export class IndexBuilder {
  packets = 0;
  private inGroup = 0;
  private readonly offsets: number[] = [];
  private times: Uint32Array = new Uint32Array(1024);
  private readonly keys = new KeyTable();
  private readonly minTs: [number, number] = [0, 0];
  private readonly maxTs: [number, number] = [0, 0];
  private group = -1;
  readonly add: (buf: Buffer, off: number, capLen: number, origLen: number, sec: number, nsec: number, fileOffset: number) => void;

  constructor(
    private readonly withKeys: boolean,
    private readonly groupPackets = GROUP_PACKETS,
  ) {
    this.add = (buf, off, capLen, _origLen, sec, nsec, fileOffset) => {
      if (this.inGroup === 0) this.openGroup(fileOffset, sec, nsec);
      else {
        const t = this.times;
        const at = this.group * 4;
        if (before(sec, nsec, t[at]!, t[at + 1]!)) {
          t[at] = sec;
          t[at + 1] = nsec;
        }
        if (before(t[at + 2]!, t[at + 3]!, sec, nsec)) {
          t[at + 2] = sec;
          t[at + 3] = nsec;
        }
      }
      if (++this.inGroup === this.groupPackets) this.inGroup = 0;
      const min = this.minTs;
      const max = this.maxTs;
      if (this.packets === 0 || before(sec, nsec, min[0], min[1])) {
        min[0] = sec;
        min[1] = nsec;
      }
      if (this.packets === 0 || before(max[0], max[1], sec, nsec)) {
        max[0] = sec;
        max[1] = nsec;
      }
      this.packets++;
      if (this.withKeys) frameKeys(buf, off, capLen, this.keys.add);
    };
  }

  private openGroup(fileOffset: number, sec: number, nsec: number): void {
    this.group++;
    this.keys.group = this.group;
    this.offsets.push(fileOffset);
    if (this.times.length < (this.group + 1) * 4) {
      const grown = new Uint32Array(this.times.length * 2);
      grown.set(this.times);
      this.times = grown;
    }
    this.times.set([sec, nsec, sec, nsec], this.group * 4);
  }

  encode(captureSize: number, captureMtimeMs: number, covered: number, linkType: number): Buffer {
    return encodeIndex({
      captureSize,
      captureMtimeMs,
      covered,
      packets: this.packets,
      min: this.minTs,
      max: this.maxTs,
      linkType,
      groupPackets: this.groupPackets,
      groupOffsets: this.offsets,
      groupTimes: this.times.subarray(0, this.offsets.length * 4),
      postings: this.withKeys ? this.keys.encode() : null,
    });
  }
}

export interface BuildOptions {
  /** Checked between reads: true abandons the build (no sidecar is written). */
  readonly aborted?: () => boolean;
}

/**
 * Indexes the capture at `path` into path.idx. Rejects with NotIndexable for what layoutOf()
 * does not walk; resolves null when aborted or when the capture changed while it was read.
 */
export async function buildIndex(path: string, options: BuildOptions = {}): Promise<BuiltIndex | null> {
  const before = await stat(path);
  const fh = await open(path, 'r');
  let builder: IndexBuilder;
  let covered: number;
  let header: RecordLayout;
  try {
    const buf = Buffer.allocUnsafe(CHUNK);
    const { bytesRead } = await fh.read(buf, 0, LAYOUT_HEAD_LEN, 0);
    const h = layoutOf(buf.subarray(0, bytesRead));
    if (h === null) throw new NotIndexable(`${path} is neither classic pcap nor pcapng of one interface`);
    header = h;
    builder = new IndexBuilder(h.linkType === LINKTYPE_ETHERNET);
    let base = h.dataStart;
    for (;;) {
      if (options.aborted?.() === true) return null;
      const { bytesRead: n } = await fh.read(buf, 0, CHUNK, base);
      const pos = h.walk(buf, 0, n, base, builder.add);
      base += pos;
      // A record that is not whole at the end of a full buffer needs the next read; otherwise the file ends (or breaks) here.
      if (n < CHUNK || pos === 0 || h.impossible(buf, pos, n)) break;
    }
    covered = base;
  } finally {
    await fh.close();
  }
  const tmp = `${indexPathOf(path)}.tmp`;
  const body = builder.encode(before.size, before.mtimeMs, covered, header.linkType);
  await writeFile(tmp, body);
  const after = await stat(path).catch(() => null);
  if (after === null || after.size !== before.size || after.mtimeMs !== before.mtimeMs) {
    await unlink(tmp).catch(() => {});
    return null;
  }
  await rename(tmp, indexPathOf(path));
  return { packets: builder.packets, groups: Math.ceil(builder.packets / GROUP_PACKETS), bytes: body.length };
}

/** The sidecar of `path`, read whole and checked against the capture as it is now; or why not. */
export async function loadIndex(path: string, size: number, mtimeMs: number): Promise<IndexReader | IndexProblem> {
  let b: Buffer;
  try {
    b = await readFile(indexPathOf(path));
  } catch {
    return 'missing';
  }
  const r = IndexReader.parse(b);
  if (typeof r === 'string') return r;
  return matchesCapture(r.summary, size, mtimeMs) ? r : 'stale';
}

/** Cheap check for start: the sidecar's header only (its CRC is checked when a query reads it). */
export async function indexProblem(path: string): Promise<IndexProblem | null> {
  const [cap, head] = await Promise.all([
    stat(path).catch(() => null),
    open(indexPathOf(path), 'r').then(
      async (fh) => {
        try {
          const b = Buffer.alloc(HEADER_LEN + 4);
          const { bytesRead } = await fh.read(b, 0, b.length, 0);
          return b.subarray(0, bytesRead);
        } finally {
          await fh.close();
        }
      },
      () => null,
    ),
  ]);
  if (head === null || cap === null) return 'missing';
  const s = readSummary(head);
  if (s === null) return 'corrupt';
  return matchesCapture(s, cap.size, cap.mtimeMs) ? null : 'stale';
}
