/**
 * Builds the sidecar of a capture (classic pcap, or pcapng of one interface: what --format
 * writes; pcap/layout.ts walks both), and reads a sidecar back for a query, trusting it only
 * when whole and made of the capture as it is now. A file the appliance writes has its
 * builder fed by the writer while it is written (the builder is the writer's RecordTap,
 * capture/writer.ts), so closing it costs only the encoding (writeBuiltIndex); any other
 * capture is read again and walked (buildIndex): files of an earlier run, recovered .part
 * files, `mirrorcap index`, stale or corrupt sidecars, files a write error cut back. Both
 * feed the builder the same records with the same offsets, so both make the same bytes.
 * A compressed capture (X.pcap.gz, X.pcap.zst) has its sidecar X.pcap.idx too, holding
 * offsets in the uncompressed bytes: built before compression and rebound to the compressed
 * file (rebindIndex), or built from it.
 *
 *   SessionWriter.append ──────────────────────────────────────────┐ (while written)
 *   X.pcap[ng][.gz|.zst] ──read (decompressed) 4 MiB at a time──▶ layout.walk ──▶ IndexBuilder.add: groups of N records: offset, min/max time
 *                                         └──frameKeys──▶ key → groups it occurs in
 *   ──encode (index-encode.ts: on the loop, or on the index thread)──▶ X.pcap.idx.tmp ──rename──▶ X.pcap.idx   (a kill leaves a .tmp, never half an index)
 *
 * The capture is stat'ed before and after: if it changed while being read the index is
 * thrown away (it would be stale at once). A builder fed while writing is used only when it
 * covered exactly the bytes the finished file holds.
 */
import { closeSync, fstatSync, openSync, readSync, type Stats } from 'node:fs';
import { open, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { FILE_HEADER_LEN, LINKTYPE_ETHERNET } from '../pcap/pcap.js';
import type { ClassicSink } from '../pcap/classic.js';
import { readLayout } from '../pcap/layout.js';
import { openByteSource } from '../pcap/compressed.js';
import { CaptureError } from '../pcap/errors.js';
import { COMPRESSED_SUFFIX, INDEX_SUFFIX } from '../capture/naming.js';
import type { RecordTap } from '../capture/writer.js';
import { codedError, ErrorCode } from '../errors.js';
import { encodeParts, type IndexParts } from './index-encode.js';
import { IndexReader, matchesCapture, readSummary, rebindHead, HEADER_LEN, type IndexProblem } from './index-format.js';
import { KeyFeed } from './index-keys.js';
import { indexMemory } from './index-memory.js';
import { KeyTable } from './key-table.js';

/**
 * Records per group: what a query reads at least around one match (about 6 KiB at IMIX). A
 * query reads every file's group table whole (24 bytes a group) and each group a lookup
 * names: for a flow of under 0.1 % of the packets the two weigh the same near 10 records a
 * group; 16 reads a third fewer bytes than 32 did, for an index about 0.2 % of the capture
 * larger (docs/performance.md).
 */
export const GROUP_PACKETS = 16;
const CHUNK = 4 << 20;

/**
 * First bytes a query reads of a sidecar: its header and, for a small capture, all of it; the
 * rest of a larger one's head (about 270 KiB for a 64 MiB capture) is read next, no more.
 */
const FIRST_READ = 16 << 10;

/** X.pcap.idx, for X.pcap and for its compressed twins X.pcap.gz and X.pcap.zst alike. */
export function indexPathOf(capture: string): string {
  for (const suffix of Object.values(COMPRESSED_SUFFIX)) if (capture.endsWith(suffix)) return capture.slice(0, -suffix.length) + INDEX_SUFFIX;
  return capture + INDEX_SUFFIX;
}

export interface BuiltIndex {
  readonly packets: number;
  readonly groups: number;
  readonly bytes: number;
}

/** Why a capture cannot have an index: not classic pcap (pcapng, compressed, not a capture). */
export class NotIndexable extends Error {
  readonly code = 'ERR_MIRRORCAP_NOT_INDEXABLE';
  override readonly name = 'NotIndexable';
}

/**
 * Accumulates records into groups and key postings: fed by a capture's writer (as its
 * RecordTap) or by the walk of buildIndex. add() allocates nothing but when a group opens
 * (its offset pushed, the times grown by doubling) or a key first occurs in a group. The
 * open group's times are kept in plain fields and the file's range is taken from the groups
 * at encode(): per record, add() compares two times and hands the frame to its KeyFeed (frameKeys).
 */
export class IndexBuilder implements RecordTap {
  packets = 0;
  /** End of the last whole record fed (end()); -1 until the file ends. */
  covered = -1;
  private readonly withKeys: boolean;
  private readonly captureHeader: Buffer;
  private inGroup = 0;
  /** Per group: file offset of its first record. */
  private offsets = indexMemory.float64(512);
  /** Per group: min sec, nsec, max sec, nsec; the open group's are in the fields below until it closes. */
  private times = indexMemory.uint32(2048);
  private readonly keys = new KeyTable();
  private readonly feed = new KeyFeed(this.keys);
  private group = -1;
  private minSec = 0;
  private minNsec = 0;
  private maxSec = 0;
  private maxNsec = 0;
  /** `header`: the capture's first bytes (the sidecar keeps its first 24), `linkType` its link type. */
  constructor(
    header: Buffer,
    private readonly linkType: number,
    readonly groupPackets = GROUP_PACKETS,
  ) {
    this.withKeys = linkType === LINKTYPE_ETHERNET;
    // Kept in the index so that a query of a compressed classic capture need not open it; a
    // pcapng header is longer, and the query reads it from the file (see query/file-source.ts).
    // Its own memory (not the pool's), so that it can go to the index thread as it is.
    this.captureHeader = Buffer.alloc(Math.min(FILE_HEADER_LEN, header.length));
    header.copy(this.captureHeader, 0, 0, this.captureHeader.length);
  }

  add(buf: Buffer, off: number, capLen: number, _origLen: number, sec: number, nsec: number, fileOffset: number): void {
    if (this.inGroup === 0) this.openGroup(fileOffset, sec, nsec);
    else if (sec < this.minSec || (sec === this.minSec && nsec < this.minNsec)) {
      this.minSec = sec;
      this.minNsec = nsec;
    } else if (sec > this.maxSec || (sec === this.maxSec && nsec > this.maxNsec)) {
      this.maxSec = sec;
      this.maxNsec = nsec;
    }
    if (++this.inGroup === this.groupPackets) this.inGroup = 0;
    this.packets++;
    if (this.withKeys) this.feed.add(buf, off, capLen, this.group);
  }

  private openGroup(fileOffset: number, sec: number, nsec: number): void {
    if (this.group >= 0) this.closeGroup();
    this.group++;
    this.keys.group = this.group;
    if (this.group === this.offsets.length) this.offsets = indexMemory.grow(this.offsets);
    this.offsets[this.group] = fileOffset;
    this.minSec = this.maxSec = sec;
    this.minNsec = this.maxNsec = nsec;
  }

  /** The open group's times into `times`. */
  private closeGroup(): void {
    if (this.times.length < (this.group + 1) * 4) this.times = indexMemory.grow(this.times);
    const t = this.times;
    const at = this.group * 4;
    t[at] = this.minSec;
    t[at + 1] = this.minNsec;
    t[at + 2] = this.maxSec;
    t[at + 3] = this.maxNsec;
  }

  /** The capture ends at `bytes`: no record follows. */
  end(bytes: number): void {
    this.covered = bytes;
  }

  /**
   * What encodeParts needs, as the builder holds it (not copied): the builder is done once the
   * file has ended. Handed to the index thread, its memory goes there (spent turns true).
   */
  parts(): IndexParts {
    if (this.spent) throw codedError(ErrorCode.INVALID_STATE, 'the index builder\'s memory went to the index thread');
    if (this.group >= 0) this.closeGroup();
    return {
      captureHeader: this.captureHeader,
      linkType: this.linkType,
      groupPackets: this.groupPackets,
      packets: this.packets,
      covered: this.covered,
      groups: this.group + 1,
      offsets: this.offsets,
      times: this.times,
      keys: this.withKeys ? this.keys.logs() : null,
    };
  }

  /** How much encoding there is: groups and key log entries (the radix sort and postings run over those). */
  get entries(): number {
    return this.group + 1 + this.keys.entries;
  }

  /** Its parts were transferred to a thread (their memory detached here) or encoded here (released): never empty otherwise. */
  get spent(): boolean {
    return this.times.length === 0;
  }

  /** The sidecar, encoded on this thread; the builder's memory goes back to indexMemory. */
  encode(captureSize: number, captureMtimeMs: number): Buffer {
    const body = encodeParts(this.parts(), captureSize, captureMtimeMs);
    this.release();
    return body;
  }

  /** Gives its memory back to indexMemory (encode() does): the builder holds nothing afterwards. */
  private release(): void {
    indexMemory.give(this.offsets.buffer as ArrayBuffer);
    indexMemory.give(this.times.buffer as ArrayBuffer);
    this.keys.release();
    this.offsets = new Float64Array(0);
    this.times = new Uint32Array(0);
  }
}

/** Makes the sidecar's bytes of a builder for the capture's size and mtime: on the loop (IndexBuilder.encode) or on the index thread. */
export type SidecarEncoder = (builder: IndexBuilder, captureSize: number, captureMtimeMs: number) => Buffer | Promise<Buffer>;

const onLoop: SidecarEncoder = (builder, size, mtimeMs) => builder.encode(size, mtimeMs);

export interface BuildOptions {
  /** Checked between reads: true abandons the build (no sidecar is written). */
  readonly aborted?: () => boolean;
  /** How the sidecar is encoded once the file is walked; default on the event loop. */
  readonly encode?: SidecarEncoder;
}

/**
 * Indexes the classic pcap at `path` into path.idx. Rejects with NotIndexable for anything
 * else; resolves null when aborted or when the capture changed while it was read.
 */
export async function buildIndex(path: string, options: BuildOptions = {}): Promise<BuiltIndex | null> {
  const before = await stat(path);
  let opened;
  try {
    opened = await openByteSource(path);
  } catch (err) {
    if (err instanceof CaptureError) throw new NotIndexable(err.message);
    throw err;
  }
  const source = opened.source;
  let builder: IndexBuilder;
  let buf: Buffer | null = null;
  try {
    const { layout: h, head } = await readLayout(async (b, off, len, pos) => (await source.read(b, off, len, pos)).bytesRead);
    if (h === null) throw new NotIndexable(`${path} is neither classic pcap nor pcapng of one interface`);
    buf = Buffer.from(indexMemory.take(CHUNK), 0, CHUNK);
    const b = new IndexBuilder(head, h.linkType);
    builder = b;
    const add: ClassicSink = (frame, off, capLen, origLen, sec, nsec, fileOffset) => b.add(frame, off, capLen, origLen, sec, nsec, fileOffset);
    // buf[0, kept) holds the bytes from `base` on not yet walked (a record cut by the last read).
    let base = h.dataStart;
    let kept = 0;
    let readPos = h.dataStart;
    for (;;) {
      if (options.aborted?.() === true) return null;
      const { bytesRead: n } = await source.read(buf, kept, CHUNK - kept, readPos);
      readPos += n;
      const end = kept + n;
      const pos = h.walk(buf, 0, end, base, add);
      base += pos;
      // A record that is not whole at the end of a full buffer needs the next read; otherwise the file ends (or breaks) here.
      if (n === 0 || h.impossible(buf, pos, end) || (pos === 0 && end === CHUNK)) break;
      buf.copy(buf, 0, pos, end);
      kept = end - pos;
    }
    builder.end(base);
  } finally {
    await source.close();
    if (buf !== null) indexMemory.give(buf.buffer as ArrayBuffer);
  }
  return writeSidecar(path, builder, before, options.encode ?? onLoop);
}

/**
 * Writes the sidecar of the capture at `path` from the builder its writer fed while writing
 * it. Null when that builder did not see the file as it is now (a write error cut it back,
 * something changed it since): then buildIndex reads it back.
 */
export async function writeBuiltIndex(path: string, builder: IndexBuilder, encode: SidecarEncoder = onLoop): Promise<BuiltIndex | null> {
  const before = await stat(path);
  if (builder.covered !== before.size) return null;
  return writeSidecar(path, builder, before, encode);
}

/** The sidecar encoded for the capture as `before` found it, written beside it (tmp, rename); null if the capture changed meanwhile. */
async function writeSidecar(path: string, builder: IndexBuilder, before: Stats, encode: SidecarEncoder): Promise<BuiltIndex | null> {
  const tmp = `${indexPathOf(path)}.tmp`;
  const packets = builder.packets;
  const body = await encode(builder, before.size, before.mtimeMs);
  try {
    await writeFile(tmp, body);
  } finally {
    // Written (or not): its memory serves the next sidecar (a body indexMemory did not make is left alone).
    indexMemory.give(body.buffer as ArrayBuffer);
  }
  const after = await stat(path).catch(() => null);
  if (after === null || after.size !== before.size || after.mtimeMs !== before.mtimeMs) {
    await unlink(tmp).catch(() => {});
    return null;
  }
  await rename(tmp, indexPathOf(path));
  return { packets, groups: Math.ceil(packets / builder.groupPackets), bytes: body.length };
}

/**
 * Binds the sidecar of `capture` (X.pcap) to its compressed twin `compressed` (X.pcap.gz or
 * .zst, which holds the same bytes): the offsets stay, the size and mtime become the twin's.
 * False when there is no good sidecar of `capture` to rebind (the twin is indexed later).
 */
export async function rebindIndex(capture: string, compressed: string): Promise<boolean> {
  if ((await indexChecked(capture)) !== null) return false;
  const b = await readFile(indexPathOf(capture));
  const twin = await stat(compressed);
  const head = rebindHead(b, twin.size, twin.mtimeMs);
  const tmp = `${indexPathOf(capture)}.tmp`;
  await writeFile(tmp, Buffer.concat([head, b.subarray(head.length)]));
  await rename(tmp, indexPathOf(capture));
  return true;
}

/**
 * The sidecar of `path`, its head read and checked against the capture as it is now; or why
 * not. Key and postings pages are read when a lookup needs them (opening the sidecar again:
 * nothing stays open), and checked then. `sync`: with synchronous calls, for `mirrorcap
 * query`, which has no event loop to keep free: a selective query opens every file's sidecar
 * and a few of its pages, and each thread-pool round trip would cost more than the read.
 */
export async function loadIndex(path: string, size: number, mtimeMs: number, sync = false): Promise<IndexReader | IndexProblem> {
  const idx = indexPathOf(path);
  const readAt = sync ? syncReadAt(idx) : asyncReadAt(idx);
  let first: Buffer;
  let total: number;
  try {
    ({ first, total } = await readAt(0, FIRST_READ, true));
  } catch {
    return 'missing';
  }
  const r = await IndexReader.open(first, total, async (position, length) => (await readAt(position, length, false)).first);
  if (typeof r === 'string') return r;
  return matchesCapture(r.summary, size, mtimeMs) ? r : 'stale';
}

/** Up to `length` bytes of `idx` at `position` (fewer at its end), and its size when `sized` (else -1). */
type SidecarRead = (position: number, length: number, sized: boolean) => Promise<{ first: Buffer; total: number }>;

function asyncReadAt(idx: string): SidecarRead {
  return async (position, length, sized) => {
    const fh = await open(idx, 'r');
    try {
      const total = sized ? (await fh.stat()).size : -1;
      const b = Buffer.allocUnsafe(sized ? Math.min(length, total) : length);
      return { first: b.subarray(0, (await fh.read(b, 0, b.length, position)).bytesRead), total };
    } finally {
      await fh.close();
    }
  };
}

function syncReadAt(idx: string): SidecarRead {
  return (position, length, sized) => {
    try {
      const fd = openSync(idx, 'r');
      try {
        const total = sized ? fstatSync(fd).size : -1;
        const b = Buffer.allocUnsafe(sized ? Math.min(length, total) : length);
        return Promise.resolve({ first: b.subarray(0, readSync(fd, b, 0, b.length, position)), total });
      } finally {
        closeSync(fd);
      }
    } catch (err) {
      return Promise.reject(err as Error);
    }
  };
}

/** Full check (`mirrorcap index`): the whole sidecar read, every page's CRC, against the capture as it is now. */
export async function indexChecked(path: string): Promise<IndexProblem | null> {
  const [cap, b] = await Promise.all([stat(path).catch(() => null), readFile(indexPathOf(path)).catch(() => null)]);
  if (cap === null || b === null) return 'missing';
  const r = await IndexReader.open(b, b.length, () => Promise.reject(new Error('read whole')));
  if (typeof r === 'string') return r;
  return matchesCapture(r.summary, cap.size, cap.mtimeMs) ? null : 'stale';
}

/** Cheap check for start: the sidecar's header only (its CRC is checked when a query reads it). */
export async function indexProblem(path: string): Promise<IndexProblem | null> {
  const [cap, head] = await Promise.all([
    stat(path).catch(() => null),
    open(indexPathOf(path), 'r').then(
      async (fh) => {
        try {
          const b = Buffer.alloc(HEADER_LEN);
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
