/**
 * One session's capture output: records are copied once into large chunks, chunks queue
 * up (bounded) and are written in order by one asynchronous drain loop; files rotate
 * by size, age or packet count and are renamed from .pcap.part to .pcap when closed.
 * With --format pcapng a file is X.pcapng, its records are enhanced packet blocks, and
 * its CLOSE carries the interface statistics block that ends it (see STATISTICS below).
 *
 *   append() ──▶ [current chunk] ──full/flush──▶ [queue: WRITE WRITE CLOSE WRITE …] ──drain──▶ fs
 *     (sync, hot path: no allocation,                (one op per chunk or file,        (async,
 *      no I/O, drops when memory is out)               never per packet)                in order)
 *
 * Rotation is decided in append() from counts kept there, so file boundaries are exact
 * and the record that would overflow a file starts the next one. A chunk belongs to one
 * file and holds only whole records, so every write ends on a record boundary: when a
 * write fails the file is cut back to its last whole record, closed and renamed.
 *
 * TAP. Each file may have a RecordTap (the recorder gives it the index builder): append()
 * hands it every record as the file will hold it (the frame cut to the snaplen, the time as
 * written, the offset where the record or block starts), and the file's length when it
 * closes, so the sidecar is made without reading the file back. A file cut back by a write
 * error loses its tap: its records are no longer what the tap saw.
 *
 * ZERO-COPY. A frame of a batch that carries a RecordHold (the native source's ring of
 * regions, source/slab-ring.ts) is not copied: its record header is written in place in
 * front of it, and the op that holds it lists its pieces in file order in typed arrays
 * (chunk bytes, held records), written by the addon with pwritev (writePieces) straight
 * from the chunk and the slab; each held record's region goes back to the receiver when its
 * write is done (or its op is dropped). Same bytes, same order, same rotation, snaplen,
 * budget and counters: only the copy is gone. Left to the copy: pcapng (its blocks need
 * padding and a trailer), frames under ZERO_COPY_MIN (a copy is cheaper than an iovec), every
 * other source. When the ring runs low, unpin() copies what an op still gathers into a chunk.
 */
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { SessionSettings } from '../config.js';
import type { OutputStats, SessionOutput } from '../session/session.js';
import { DROP_DISK_FULL, DROP_QUEUE_FULL, DROP_WRITE_ERROR } from '../drops.js';
import { LARGE_CHUNK, SMALL_CHUNK, type ChunkPool } from './chunks.js';
import { makeFolder } from './folder.js';
import { captureFileName, captureSuffix, PART_SUFFIX } from './naming.js';
import { rotationEnd, rotationOf, type Rotation } from './rotation.js';
import { dataViewOf, FILE_HEADER_LEN, LINKTYPE_ETHERNET, RECORD_HEADER_LEN, viewOf, writeFileHeader, writeRecordHeader, writeRecordViews } from '../pcap/pcap.js';
import { epbLength, fileHeader, NG_ISB_LEN, statisticsBlock, writeEpb, type SectionInfo } from '../pcap/pcapng-write.js';
import type { NativeBinding } from '../native/addon.js';
import type { ClassicSink } from '../pcap/classic.js';
import type { RecordHold } from '../source/batch.js';

export const FILE_MODE = 0o640;
/** Chunks gathered into one writev. */
const MAX_IOV = 16;
/** ZERO-COPY: frames of at least this many bytes (as written) stay where they were received. */
export const ZERO_COPY_MIN = 512;
/** ZERO-COPY: pieces of one op (a held record may add two: the chunk bytes before it, itself). */
const MAX_PIECES = 1024;
const NO_BYTES = Buffer.alloc(0);

/** A file as it is being written, and as reported once finished. */
export interface CaptureFile {
  readonly session: string;
  readonly seq: number;
  /** Final path (.pcap); while open the data lives at path + PART_SUFFIX. */
  readonly path: string;
  /** Bytes appended (file header included), whether or not they reached the disk yet. */
  bytes: number;
  packets: number;
  firstSec: number;
  firstNsec: number;
  lastSec: number;
  lastNsec: number;
  /** What saw every record of the file as it was appended (see TAP); null when none, or when a write error cut the file back. */
  readonly tap?: RecordTap | null;
}

/**
 * Sees the records of one file as they are appended (see TAP): add() gets each record's frame
 * bytes (capLen after the snaplen), its time exactly as a reader of the file gets it, and the
 * file offset of its record header (pcap) or block (pcapng), as pcap/layout.ts's walk does;
 * end() the bytes the file holds once closed (its pcapng statistics block included). add() is
 * called on the hot path: it must allocate nothing.
 */
export interface RecordTap {
  add(...record: Parameters<ClassicSink>): void;
  end(bytes: number): void;
}

/** Operations whose failure leaves the file as .part (the next start recovers it). */
export const FINISH_OPS: ReadonlySet<string> = new Set(['close', 'rename', 'unlink']);

export interface WriterEvents {
  /** A file was closed and renamed to its final name. */
  fileClosed(file: CaptureFile): void;
  /**
   * A file system operation failed; the writer has already recovered what it could.
   * `where` is the file's name on disk at the time (its .part name while open). For
   * FINISH_OPS the file stays .part (counted in filesLeftPart).
   */
  writeError(file: CaptureFile, where: string, op: string, err: NodeJS.ErrnoException): void;
}

export interface WriterOptions {
  readonly session: string;
  readonly dir: string;
  readonly rotation: Rotation;
  /** Bytes of each frame written; longer frames are cut (orig_len keeps the real length). */
  readonly snaplen: number;
  /** The file header's link type (pcap.ts LINKTYPE_*); Ethernet when absent. */
  readonly linkType?: number;
  /** File format; pcap when absent. */
  readonly format?: SessionSettings['format'];
  /** pcapng: the capture filter the interface description states (if_filter); null = none. */
  readonly filter?: string | null;
  /**
   * pcapng: what the section header says about the writer (application, OS, hardware), what
   * the interface description says about the session besides its name and filter (VNI,
   * outer source or GWLB endpoint), and the session's counters for the statistics block.
   */
  readonly pcapng?: {
    readonly section: SectionInfo;
    readonly describe: string;
    readonly counters: SpanCounters;
  };
  /** Bytes of chunks this session may hold (queued + being filled). */
  readonly queueSize: number;
  /** Hands out the sequence number of the next file (unique per session, across restarts). */
  readonly nextSeq: () => number;
  readonly pool: ChunkPool;
  readonly events: WriterEvents;
  /** Per-reason drop counters of the session (see drops.ts); the writer bumps its own reasons. */
  readonly drops: Float64Array;
  /** Shared low-disk state: while full, packets are dropped as disk_full. */
  readonly disk: { readonly full: boolean };
  /**
   * A record earlier than the one before it gets that one's time (live: a receive clock
   * stepped back). Off for a capture's own times, which are written as they are.
   */
  readonly clampTime: boolean;
  /**
   * Write-behind (see WRITE-BEHIND below): every this many bytes written, the kernel is told
   * to write them out now, and the window before them leaves the page cache. The function
   * is the addon's writeBehind; absent (or a window of 0) leaves it all to the kernel.
   */
  readonly writeBehind?: { readonly window: number; readonly run: NativeBinding['writeBehind'] } | undefined;
  /** Makes each new file's tap (see TAP) from the header the file starts with and its link type; absent: none. */
  readonly tap?: ((header: Buffer, linkType: number) => RecordTap) | undefined;
  /** The addon's writePieces (see ZERO-COPY); absent, every record is copied. */
  readonly writePieces?: NativeBinding['writePieces'] | undefined;
}

/** The session's running totals the statistics block of a pcapng file is made from. */
export interface SpanCounters {
  /** Packets the session received (before its capture filter). */
  readonly received: number;
  /** Packets its capture filter kept out. */
  readonly filtered: number;
}

/** Descriptions and filters longer than this are cut in the file's interface description. */
const MAX_DESCRIPTION = 16 * 1024;

const WRITE = 0;
const CLOSE = 1;
/** After a failed write, a new file is tried no sooner than this. */
const RETRY_AFTER_ERROR_SEC = 1;
/** How often an open file's name is looked for while it is written (relinkIfRemoved). */
const NAME_CHECK_MS = 1000;

interface Op {
  kind: typeof WRITE | typeof CLOSE;
  file: OpenFile;
  /** WRITE: a pool chunk (null when all its records are held); CLOSE: the block that ends the file (pcapng statistics), or null. */
  chunk: Buffer | null;
  /** Bytes the op adds to the file. */
  len: number;
  packets: number;
  /** ZERO-COPY: what the op writes, in order, when it holds records in receive memory; null: its chunk's first `len` bytes. */
  pieces: Pieces | null;
}

/**
 * ZERO-COPY: the pieces of one op in file order, as typed arrays the addon builds its iovecs
 * from: piece i is buffer which[i] (0: the op's chunk, k: holds[k - 1].slab) from offsets[i],
 * lengths[i] bytes; a held record's release token is tokens[i]. Reused from op to op.
 */
class Pieces {
  count = 0;
  /** Bytes of held records (the others are the chunk's, counted in its size). */
  heldBytes = 0;
  readonly which = new Uint8Array(MAX_PIECES);
  readonly offsets = new Uint32Array(MAX_PIECES);
  readonly lengths = new Uint32Array(MAX_PIECES);
  readonly tokens = new Int32Array(MAX_PIECES);
  readonly holds: RecordHold[] = [];

  push(which: number, off: number, len: number, token: number): void {
    const n = this.count++;
    this.which[n] = which;
    this.offsets[n] = off;
    this.lengths[n] = len;
    this.tokens[n] = token;
  }
}

interface OpenFile extends CaptureFile {
  tap: RecordTap | null;
  /** When it ends by age (rotationEnd), worked out when it opens or the rotation changes, not per packet. */
  endSec: number;
  handle: FileHandle | null;
  /** Bytes and packets that reached the file; always a record boundary. */
  durable: number;
  durablePackets: number;
  failed: boolean;
  /**
   * Write-behind: bytes the kernel was told to write out, where the window before the last
   * began, and bytes dropped from the page cache (dropped <= lagging <= behind).
   */
  behind: number;
  lagging: number;
  dropped: number;
  /** performance.now() when relinkIfRemoved last looked (-Infinity: not yet). */
  nameChecked: number;
}

export class SessionWriter implements SessionOutput {
  /** A packet was refused for want of queue memory, and no chunk has been written since. */
  saturated = false;
  /** Packets and bytes (file headers included) that reached the disk. */
  writtenPackets = 0;
  writtenBytes = 0;
  filesClosed = 0;
  /** Files that could not be finished (closed, renamed) and were left as .part. */
  filesLeftPart = 0;

  private file: OpenFile | null = null;
  private chunk: Buffer | null = null;
  /** A DataView of the chunk (writeRecordViews), made when the chunk is taken, not per record. */
  private chunkView: DataView | null = null;
  private chunkLen = 0;
  /** Records in the op being gathered (in the chunk or held). */
  private chunkPackets = 0;
  /** ZERO-COPY: the op's pieces once it holds a record; the chunk's bytes from pieceStart on are not a piece yet. */
  private pieces: Pieces | null = null;
  private pieceStart = 0;
  private readonly sparePieces: Pieces[] = [];
  /** Queued ops (not being written yet) with held records. */
  private heldQueued = 0;
  /** The addon's argument list for one writePieces call, reused. */
  private readonly pieceBuffers: Buffer[] = [];
  /** Bytes of chunks this writer holds: queued, being written, being filled. */
  private held = 0;
  /** Whether the next chunk is LARGE: the session filled its last one before a flush. */
  private busy = false;
  private readonly ops: Op[] = [];
  private draining = false;
  private closed = false;
  /** Wall-clock second before which no new file is opened, after a write error. */
  private retryAt = 0;
  private idleWaiters: Array<() => void> = [];
  private rotation: Rotation;
  private snaplen: number;
  private format: SessionSettings['format'];
  private filter: string | null;
  /** Records are pcapng packet blocks (else classic records). */
  private ng: boolean;
  /** What opens every file: the classic file header, or the pcapng section header and interface description. */
  private header: Buffer;
  /** Bytes a file holds beyond its records and header: the pcapng statistics block. */
  private trailerLen: number;
  /**
   * STATISTICS. The session's counters when the previous file closed: a file's statistics
   * block counts from there to its own close, so every packet the session received and
   * dropped is counted in exactly one file, gaps between files included.
   */
  private spanReceived = 0;
  private spanFiltered = 0;
  private spanDropped = 0;

  constructor(private readonly opts: WriterOptions) {
    this.rotation = opts.rotation;
    this.snaplen = opts.snaplen;
    this.format = opts.format ?? 'pcap';
    this.filter = opts.filter ?? null;
    this.ng = false;
    this.header = Buffer.alloc(0);
    this.trailerLen = 0;
    this.describeFiles();
  }

  stats(): OutputStats {
    const f = this.file;
    return {
      writtenPackets: this.writtenPackets,
      writtenBytes: this.writtenBytes,
      filesClosed: this.filesClosed,
      filesLeftPart: this.filesLeftPart,
      heldBytes: this.held,
      current: f === null ? null : { path: f.path + PART_SUFFIX, bytes: f.bytes, packets: f.packets, firstSec: f.firstSec, firstNsec: f.firstNsec },
    };
  }

  /**
   * Appends one frame. `len` bytes are available at src[off]; `origLen` is the frame's
   * real length on the wire. Returns false when the packet was dropped (counted). `srcView`:
   * a DataView of all of src (the pipeline's Batch.view), or null to have one found.
   */
  append(src: Buffer, off: number, len: number, origLen: number, sec: number, nsec: number, hold: RecordHold | null = null, srcView: DataView | null = null): boolean {
    if (this.closed) {
      this.opts.drops[DROP_WRITE_ERROR]!++;
      return false;
    }
    if (this.opts.disk.full) {
      this.opts.drops[DROP_DISK_FULL]!++;
      return false;
    }
    const incl = len < this.snaplen ? len : this.snaplen;
    const ng = this.ng;
    // A pcapng timestamp is one count of nanoseconds: a reader gets nsec below 1e9 back (classic keeps the field as given).
    if (ng && nsec >= 1e9) {
      sec += Math.floor(nsec / 1e9);
      nsec %= 1e9;
    }
    const recLen = ng ? epbLength(incl) : RECORD_HEADER_LEN + incl;
    let f = this.file;
    if (f !== null && this.rotationDue(f, recLen, sec)) {
      // This packet is counted as received already, but belongs to the next file.
      this.closeCurrent(1);
      f = null;
    }
    if (f === null && this.retryAt > 0) {
      if (Date.now() / 1000 < this.retryAt) {
        this.opts.drops[DROP_WRITE_ERROR]!++;
        return false;
      }
      this.retryAt = 0;
    }
    // ZERO-COPY: held where it lies (the pipeline passes src = hold.slab); only a new file's header needs the chunk.
    const keep = hold !== null && !ng && incl >= ZERO_COPY_MIN && this.opts.writePieces !== undefined;
    // An op with held records stays within one large chunk's bytes, so unpin() can always copy it into one.
    const open = this.pieces;
    if (open !== null && this.chunkLen + open.heldBytes + recLen > LARGE_CHUNK) this.queueChunk();
    if (keep && this.held + recLen > this.opts.queueSize) {
      this.opts.drops[DROP_QUEUE_FULL]!++;
      this.saturated = true;
      return false;
    }
    const need = (f === null ? this.header.length : 0) + (keep ? 0 : recLen);
    if (need > 0 && (this.chunk === null || this.chunkLen + need > this.chunk.length)) {
      if (!this.nextChunk(need)) {
        this.opts.drops[DROP_QUEUE_FULL]!++;
        this.saturated = true;
        return false;
      }
    }
    // Null only when the record is held and the file is open: then not needed.
    const chunk = this.chunk as Buffer;
    /** False for a record earlier than the file's newest: lastSec/lastNsec stay the newest. */
    let latest = true;
    if (f === null) {
      f = this.openFile(sec, nsec);
      this.chunkLen += this.header.copy(chunk, this.chunkLen);
    } else if (sec < f.lastSec || (sec === f.lastSec && nsec < f.lastNsec)) {
      // Live, a clock step back is clamped: time moves forward within a file. A capture's
      // own step back is kept as it is (tshark, capinfos and mergecap read it).
      if (this.opts.clampTime) {
        sec = f.lastSec;
        nsec = f.lastNsec;
      } else latest = false;
    }
    if (keep) this.holdRecord(hold, srcView ?? viewOf(src), off, incl, origLen > len ? origLen : len, sec, nsec);
    else {
      this.chunkLen = ng
        ? writeEpb(chunk, this.chunkLen, src, off, incl, origLen > len ? origLen : len, sec, nsec)
        : writeRecordViews(chunk, this.chunkView!, this.chunkLen, src, srcView ?? viewOf(src), off, incl, origLen > len ? origLen : len, sec, nsec);
    }
    this.chunkPackets++;
    const tap = f.tap;
    if (tap !== null) tap.add(src, off, incl, origLen > len ? origLen : len, sec, nsec, f.bytes);
    f.bytes += recLen;
    f.packets++;
    if (latest) {
      f.lastSec = sec;
      f.lastNsec = nsec;
    }
    const p = this.pieces;
    if (p !== null && p.count >= MAX_PIECES - 2) this.queueChunk();
    return true;
  }

  /** ZERO-COPY: the record header goes in front of the frame at hold.slab[off] (`view` views the slab), and the record becomes the op's next piece. */
  private holdRecord(hold: RecordHold, view: DataView, off: number, incl: number, origLen: number, sec: number, nsec: number): void {
    let p = this.pieces;
    if (p === null) p = this.pieces = this.sparePieces.pop() ?? new Pieces();
    this.closeChunkPiece(p);
    let k = p.holds.indexOf(hold);
    if (k < 0) k = p.holds.push(hold) - 1;
    const at = off - RECORD_HEADER_LEN;
    writeRecordHeader(view, at, incl, origLen, sec, nsec);
    p.push(k + 1, at, RECORD_HEADER_LEN + incl, hold.retain(off));
    p.heldBytes += RECORD_HEADER_LEN + incl;
    this.held += RECORD_HEADER_LEN + incl;
  }

  /** The chunk's bytes since the last piece become a piece. */
  private closeChunkPiece(p: Pieces): void {
    if (this.chunkLen > this.pieceStart) {
      p.push(0, this.pieceStart, this.chunkLen - this.pieceStart, -1);
      this.pieceStart = this.chunkLen;
    }
  }

  /**
   * ZERO-COPY: the ring runs low (SlabRing.onLow). What this writer holds in it and is not being
   * written yet leaves it: copied into pool chunks, as the copy path would have (a quiet
   * session's records that would wait for the flush interval, ops queued behind a slow disk).
   * Without pool memory the op being gathered is queued now instead, the queued ones stay.
   */
  unpin(): void {
    const p = this.pieces;
    if (p !== null) {
      this.closeChunkPiece(p);
      const len = this.chunkLen + p.heldBytes;
      const dst = this.copyOut(p, this.chunk, len);
      if (dst === null) this.queueChunk();
      else {
        this.setChunk(dst);
        this.chunkLen = len;
        this.pieces = null;
        this.pieceStart = 0;
      }
    }
    if (this.heldQueued === 0) return;
    for (const op of this.ops) {
      if (op.pieces === null) continue;
      const dst = this.copyOut(op.pieces, op.chunk, op.len);
      if (dst === null) return;
      op.chunk = dst;
      op.pieces = null;
      this.heldQueued--;
    }
  }

  /** Pieces copied in order into one pool chunk, their regions and `chunk` given back; null (nothing changed) without memory. */
  private copyOut(p: Pieces, chunk: Buffer | null, len: number): Buffer | null {
    const size = len <= SMALL_CHUNK ? SMALL_CHUNK : LARGE_CHUNK;
    if (len > LARGE_CHUNK || this.held - p.heldBytes + size > this.opts.queueSize) return null;
    const dst = this.opts.pool.take(size);
    if (dst === null) return null;
    this.held += size;
    let at = 0;
    for (let i = 0; i < p.count; i++) {
      const w = p.which[i]!;
      const from = w === 0 ? chunk! : p.holds[w - 1]!.slab;
      at += from.copy(dst, at, p.offsets[i]!, p.offsets[i]! + p.lengths[i]!);
    }
    this.releasePieces(p);
    if (chunk !== null) this.giveBack(chunk);
    return dst;
  }

  /** Held records written or dropped: their regions go back to the receiver. */
  private releasePieces(p: Pieces): void {
    for (let i = 0; i < p.count; i++) {
      const w = p.which[i]!;
      if (w !== 0) p.holds[w - 1]!.release(p.tokens[i]!);
    }
    this.held -= p.heldBytes;
    p.count = 0;
    p.heldBytes = 0;
    p.holds.length = 0;
    this.sparePieces.push(p);
    this.saturated = false;
  }

  /** Hands the partly filled chunk to the disk, so buffered records reach the file. */
  flush(): void {
    if ((this.chunk !== null && this.chunkLen > 0) || this.pieces !== null) {
      if (this.chunkLen < SMALL_CHUNK / 2) this.busy = false;
      this.queueChunk();
    }
    this.kick();
  }

  /** Time-based rotation for a session that may be idle: `nowSec` is wall-clock seconds. */
  tick(nowSec: number): void {
    const f = this.file;
    if (f !== null && nowSec >= f.endSec) this.rotate();
  }

  /**
   * New rotation settings, effective for the current file; a new snaplen or format closes the
   * current file, because a file's header states one snaplen (and one format) for all its
   * records; so does a new filter in pcapng, whose interface description states it.
   */
  configure(settings: SessionSettings): void {
    this.rotation = rotationOf(settings);
    if (this.file !== null) this.file.endSec = rotationEnd(this.file.firstSec, this.rotation);
    if (settings.snaplen !== this.snaplen || settings.format !== this.format || (settings.format === 'pcapng' && settings.filter !== this.filter)) {
      this.rotate();
      this.snaplen = settings.snaplen;
      this.format = settings.format;
      this.filter = settings.filter;
      this.describeFiles();
    }
  }

  /** Closes the current file now; the next packet starts a new one. */
  rotate(): void {
    if (this.file !== null) this.closeCurrent(0);
    this.kick();
  }

  /** The header every new file starts with, for the current format, snaplen and filter (per file, never per packet). */
  private describeFiles(): void {
    const linkType = this.opts.linkType;
    const ng = this.opts.pcapng;
    this.ng = this.format === 'pcapng' && ng !== undefined;
    if (!this.ng) {
      this.header = Buffer.alloc(FILE_HEADER_LEN);
      writeFileHeader(this.header, 0, this.snaplen, linkType);
      this.trailerLen = 0;
      return;
    }
    const filter = this.filter === null ? null : this.filter.slice(0, MAX_DESCRIPTION);
    this.header = fileHeader(ng!.section, {
      linkType: linkType ?? 1,
      snaplen: this.snaplen,
      name: this.opts.session,
      description: `${ng!.describe}${filter === null ? '' : `, filter: ${filter}`}`.slice(0, MAX_DESCRIPTION),
      filter,
    });
    this.trailerLen = NG_ISB_LEN;
  }

  /**
   * The statistics block of a pcapng file closing now (null for classic pcap), and the start
   * of the next span. `inFlight` packets were received but go to the next file.
   */
  private statistics(f: OpenFile, inFlight: number): Buffer | null {
    const c = this.opts.pcapng?.counters;
    if (c === undefined) return null;
    const received = c.received - inFlight;
    const filtered = c.filtered;
    const drops = this.opts.drops;
    const dropped = drops[DROP_QUEUE_FULL]! + drops[DROP_DISK_FULL]! + drops[DROP_WRITE_ERROR]!;
    const recv = received - this.spanReceived;
    const isb = statisticsBlock({
      startSec: f.firstSec,
      startNsec: f.firstNsec,
      endSec: f.lastSec,
      endNsec: f.lastNsec,
      received: recv,
      dropped: dropped - this.spanDropped,
      accepted: recv - (filtered - this.spanFiltered),
      delivered: f.packets,
    });
    this.spanReceived = received;
    this.spanFiltered = filtered;
    this.spanDropped = dropped;
    return this.ng ? isb : null;
  }

  /** Writes everything queued, closes and renames the current file. Idempotent. */
  async stop(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.rotate();
    }
    await this.idle();
  }

  /** Resolves once every queued operation has completed. */
  idle(): Promise<void> {
    if (!this.draining && this.ops.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private rotationDue(f: OpenFile, recLen: number, sec: number): boolean {
    const r = this.rotation;
    return (
      (r.size > 0 && f.bytes + recLen + this.trailerLen > r.size && f.packets > 0) ||
      (r.packets > 0 && f.packets >= r.packets) ||
      sec >= f.endSec
    );
  }

  private openFile(sec: number, nsec: number): OpenFile {
    const seq = this.opts.nextSeq();
    const f: OpenFile = {
      session: this.opts.session,
      seq,
      path: join(this.opts.dir, captureFileName(this.opts.session, sec, seq, captureSuffix(this.ng ? 'pcapng' : 'pcap'))),
      bytes: this.header.length,
      packets: 0,
      firstSec: sec,
      firstNsec: nsec,
      endSec: rotationEnd(sec, this.rotation),
      lastSec: sec,
      lastNsec: nsec,
      handle: null,
      durable: 0,
      durablePackets: 0,
      behind: 0,
      lagging: 0,
      dropped: 0,
      nameChecked: -Infinity,
      failed: false,
      tap: this.opts.tap?.(this.header, this.opts.linkType ?? LINKTYPE_ETHERNET) ?? null,
    };
    this.file = f;
    return f;
  }

  private closeCurrent(inFlight: number): void {
    const f = this.file!;
    if (this.chunkLen > 0 || this.pieces !== null) this.queueChunk();
    this.file = null;
    const tail = this.statistics(f, inFlight);
    if (tail !== null) f.bytes += tail.length;
    f.tap?.end(f.bytes);
    this.ops.push({ kind: CLOSE, file: f, chunk: tail, len: tail?.length ?? 0, packets: 0, pieces: null });
  }

  /**
   * Queues the current chunk and takes a fresh one with room for `need` bytes; false when
   * the session's queue or the shared pool is out of memory.
   */
  private nextChunk(need: number): boolean {
    if (this.chunk !== null) {
      if (this.chunkLen > 0) {
        this.busy = true; // filled between two flushes
        this.queueChunk();
      } else {
        this.giveBack(this.chunk); // empty but too small for this record
        this.setChunk(null);
      }
    }
    const size = this.busy || need > SMALL_CHUNK ? LARGE_CHUNK : SMALL_CHUNK;
    if (this.held + size > this.opts.queueSize) return false;
    const chunk = this.opts.pool.take(size);
    if (chunk === null) return false;
    this.setChunk(chunk);
    this.held += size;
    // chunkPackets stays: the op being gathered may hold records outside the chunk (ZERO-COPY).
    this.chunkLen = 0;
    return true;
  }

  private setChunk(chunk: Buffer | null): void {
    this.chunk = chunk;
    this.chunkView = chunk === null ? null : dataViewOf(chunk);
  }

  private queueChunk(): void {
    const p = this.pieces;
    let chunk = this.chunk;
    let len = this.chunkLen;
    if (p !== null) {
      this.closeChunkPiece(p);
      len += p.heldBytes;
      if (this.chunkLen === 0) chunk = null; // every record held: the empty chunk stays for the next op
    }
    this.ops.push({ kind: WRITE, file: this.file!, chunk, len, packets: this.chunkPackets, pieces: p });
    if (p !== null) this.heldQueued++;
    if (chunk !== null) this.setChunk(null);
    this.chunkLen = 0;
    this.chunkPackets = 0;
    this.pieces = null;
    this.pieceStart = 0;
    this.kick();
  }

  private kick(): void {
    if (!this.draining && this.ops.length > 0) {
      this.draining = true;
      void this.drain();
    }
  }

  private releaseChunk(op: Op): void {
    if (op.chunk !== null) this.giveBack(op.chunk);
    if (op.pieces !== null) this.releasePieces(op.pieces);
  }

  private giveBack(chunk: Buffer): void {
    this.opts.pool.give(chunk);
    this.held -= chunk.length;
    this.saturated = false;
  }

  private async drain(): Promise<void> {
    while (this.ops.length > 0) {
      const op = this.ops[0]!;
      if (op.kind === CLOSE) {
        this.ops.shift();
        if (op.chunk === null || (await this.writeTail(op.file, op.chunk))) await this.finish(op.file);
        continue;
      }
      // Chunk-only ops of one file go out together; an op with pieces alone (it is large).
      let n = 1;
      if (op.pieces === null) {
        while (n < this.ops.length && n < MAX_IOV && this.ops[n]!.kind === WRITE && this.ops[n]!.file === op.file && this.ops[n]!.pieces === null) n++;
      }
      const batch = this.ops.splice(0, n);
      if (op.pieces !== null) this.heldQueued--;
      await this.writeOps(op.file, batch);
    }
    this.draining = false;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  private async writeOps(f: OpenFile, batch: Op[]): Promise<void> {
    if (f.failed) {
      for (const op of batch) this.discard(op);
      return;
    }
    try {
      if (f.handle === null) {
        await makeFolder(this.opts.dir);
        // Readable too: relinkIfRemoved() may have to copy the file out of its own handle.
        f.handle = await open(f.path + PART_SUFFIX, 'wx+', FILE_MODE);
        await f.handle.chmod(FILE_MODE);
      }
      // Positioned writes: the file's content is defined by `durable`, never by a file offset.
      const end = batch[0]!.pieces !== null ? await this.writePieces(f, batch[0]!) : await this.writeChunks(f, batch);
      // At most once a second while the file is written, and always when it closes (finish):
      // a stat is a round trip through the thread pool, ~30 µs of CPU on a busy core, and a
      // busy session writes a chunk many times a second.
      const now = performance.now();
      if (now - f.nameChecked >= NAME_CHECK_MS) {
        f.nameChecked = now;
        await this.relinkIfRemoved(f, end);
      }
    } catch (err) {
      await this.fail(f, 'write', err as NodeJS.ErrnoException);
      for (const op of batch) this.discard(op);
      return;
    }
    for (const op of batch) {
      f.durable += op.len;
      f.durablePackets += op.packets;
      this.writtenBytes += op.len;
      this.writtenPackets += op.packets;
      this.releaseChunk(op);
    }
    const wb = this.opts.writeBehind;
    if (wb !== undefined && wb.window > 0 && f.durable - f.behind >= wb.window) await this.writeBehind(f, wb.run);
  }

  /** Chunk-only ops, one writev; returns where the file now ends. */
  private async writeChunks(f: OpenFile, batch: Op[]): Promise<number> {
    let bufs = batch.map((op) => op.chunk!.subarray(0, op.len));
    let pos = f.durable;
    const end = pos + bufs.reduce((s, b) => s + b.length, 0);
    while (pos < end) {
      const { bytesWritten } = await f.handle!.writev(bufs, pos);
      pos += bytesWritten;
      if (pos < end) bufs = skipBytes(bufs, bytesWritten);
    }
    return end;
  }

  /** ZERO-COPY: an op with held records, written by the addon from its pieces; returns where the file now ends. */
  private async writePieces(f: OpenFile, op: Op): Promise<number> {
    const p = op.pieces!;
    const bufs = this.pieceBuffers;
    bufs.length = 0;
    bufs.push(op.chunk ?? NO_BYTES);
    for (const h of p.holds) bufs.push(h.slab);
    await this.opts.writePieces!(f.handle!.fd, f.durable, bufs, p.which, p.offsets, p.lengths, p.count);
    return f.durable + op.len;
  }

  /**
   * Writes the block that ends a file (not a pool chunk: it is the writer's own); false when
   * the write failed and fail() has finished the file already. A file that failed earlier
   * gets none: it ends at its last whole record.
   */
  private async writeTail(f: OpenFile, tail: Buffer): Promise<boolean> {
    if (f.failed || f.handle === null) return true;
    try {
      for (let done = 0; done < tail.length; ) {
        const { bytesWritten } = await f.handle.write(tail, done, tail.length - done, f.durable + done);
        done += bytesWritten;
      }
    } catch (err) {
      await this.fail(f, 'write', err as NodeJS.ErrnoException);
      return false;
    }
    f.durable += tail.length;
    this.writtenBytes += tail.length;
    return true;
  }

  /**
   * WRITE-BEHIND. Left alone, the kernel gathers dirty pages up to its dirty ratio (GBs on a
   * big instance) and then makes every writer wait while it flushes them: writes that took
   * microseconds take seconds, the queues fill and packets drop. Telling it to write each
   * window out as soon as it is written keeps the disk busy at an even pace; waiting for the
   * window two before (told to go out two windows ago, so done but on a disk that lags)
   * keeps this writer at the disk's speed, and dropping those pages keeps the page cache,
   * and the host's memory, flat. Waiting for the window just before made the writer wait
   * whenever the disk hiccupped (a 1 s stall in the write-behind bench); two windows in
   * flight absorb that.
   * A failure here is the disk failing to take the data: the file is finished as after a
   * failed write.
   */
  private async writeBehind(f: OpenFile, run: NativeBinding['writeBehind']): Promise<void> {
    try {
      await run(f.handle!.fd, f.behind, f.durable, f.dropped, f.lagging);
    } catch (err) {
      await this.fail(f, 'write', err as NodeJS.ErrnoException);
      return;
    }
    f.dropped = f.lagging;
    f.lagging = f.behind;
    f.behind = f.durable;
  }

  /** A queued chunk that will never reach its file: its packets are counted as dropped. */
  private discard(op: Op): void {
    this.opts.drops[DROP_WRITE_ERROR]! += op.packets;
    this.releaseChunk(op);
  }

  /**
   * After a failed open or write: cut the file back to its last whole record, close it,
   * rename it, and make the next packet start a new file.
   */
  private async fail(f: OpenFile, op: string, err: NodeJS.ErrnoException): Promise<void> {
    f.failed = true;
    f.tap = null;
    this.retryAt = Date.now() / 1000 + RETRY_AFTER_ERROR_SEC;
    if (this.file === f) {
      if ((this.chunk !== null && this.chunkLen > 0) || this.pieces !== null) {
        this.opts.drops[DROP_WRITE_ERROR]! += this.chunkPackets;
        if (this.pieces !== null) this.releasePieces(this.pieces);
        this.pieces = null;
        this.pieceStart = 0;
        this.chunkLen = 0;
        this.chunkPackets = 0;
      }
      this.file = null;
    }
    this.opts.events.writeError(f, f.path + PART_SUFFIX, op, err);
    if (f.handle !== null) {
      try {
        await f.handle.truncate(f.durable);
      } catch {
        // The file may be gone with its folder; whatever is left is still whole records.
      }
      await this.finish(f);
    }
  }

  /**
   * On Linux, writing to a file whose name (or folder) was deleted succeeds and the data
   * vanishes at close. Checked after a write at most every NAME_CHECK_MS, and before the
   * close (the open handle still holds every byte until then): if the open file has no name left,
   * its first `length` bytes are copied from the open handle into a new file at the same
   * path, so nothing written is lost, and the event is reported.
   */
  private async relinkIfRemoved(f: OpenFile, length: number): Promise<void> {
    const old = f.handle!;
    if ((await old.stat()).nlink > 0) return;
    await makeFolder(this.opts.dir);
    const fresh = await open(f.path + PART_SUFFIX, 'wx+', FILE_MODE);
    try {
      await fresh.chmod(FILE_MODE);
      const buf = Buffer.allocUnsafe(1024 * 1024);
      for (let pos = 0; pos < length; ) {
        const { bytesRead } = await old.read(buf, 0, Math.min(buf.length, length - pos), pos);
        if (bytesRead === 0) break;
        await fresh.write(buf, 0, bytesRead, pos);
        pos += bytesRead;
      }
    } catch (err) {
      await fresh.close();
      throw err;
    }
    await old.close();
    f.handle = fresh;
    const err: NodeJS.ErrnoException = new Error('the open file was deleted; its contents were rewritten from the open handle');
    err.code = 'ENOENT';
    this.opts.events.writeError(f, f.path + PART_SUFFIX, 'relink', err);
  }

  private async finish(f: OpenFile): Promise<void> {
    if (f.handle === null) return; // never opened (every write failed before open)
    try {
      await this.relinkIfRemoved(f, f.durable);
    } catch (err) {
      await f.handle.truncate(f.durable).catch(() => undefined);
      this.opts.events.writeError(f, f.path + PART_SUFFIX, 'relink', err as NodeJS.ErrnoException);
    }
    const handle = f.handle;
    f.handle = null;
    let op = 'close';
    try {
      await handle.close();
      // Not even the file header made it: an empty file is not a pcap, leave none behind.
      op = f.durable === 0 ? 'unlink' : 'rename';
      if (f.durable === 0) await unlink(f.path + PART_SUFFIX);
      else await rename(f.path + PART_SUFFIX, f.path);
    } catch (err) {
      this.filesLeftPart++;
      this.opts.events.writeError(f, f.path + PART_SUFFIX, op, err as NodeJS.ErrnoException);
      return;
    }
    if (f.durable === 0) return;
    // What the finished file really holds, which is less than appended after a write error.
    f.bytes = f.durable;
    f.packets = f.durablePackets;
    this.filesClosed++;
    this.opts.events.fileClosed(f);
  }
}

function skipBytes(bufs: Buffer[], n: number): Buffer[] {
  const out: Buffer[] = [];
  for (const b of bufs) {
    if (n >= b.length) n -= b.length;
    else {
      out.push(n > 0 ? b.subarray(n) : b);
      n = 0;
    }
  }
  return out;
}
