/**
 * One session's pcap output: records are copied once into large chunks, chunks queue
 * up (bounded) and are written in order by one asynchronous drain loop; files rotate
 * by size, age or packet count and are renamed from .pcap.part to .pcap when closed.
 *
 *   append() ──▶ [current chunk] ──full/flush──▶ [queue: WRITE WRITE CLOSE WRITE …] ──drain──▶ fs
 *     (sync, hot path: no allocation,                (one op per chunk or file,        (async,
 *      no I/O, drops when memory is out)               never per packet)                in order)
 *
 * Rotation is decided in append() from counts kept there, so file boundaries are exact
 * and the record that would overflow a file starts the next one. A chunk belongs to one
 * file and holds only whole records, so every write ends on a record boundary: when a
 * write fails the file is cut back to its last whole record, closed and renamed.
 */
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { SessionSettings } from '../config.js';
import type { OutputStats, SessionOutput } from '../session/session.js';
import { DROP_DISK_FULL, DROP_QUEUE_FULL, DROP_WRITE_ERROR } from '../drops.js';
import { LARGE_CHUNK, SMALL_CHUNK, type ChunkPool } from './chunks.js';
import { makeFolder } from './folder.js';
import { captureFileName, PART_SUFFIX } from './naming.js';
import { rotationEnd, rotationOf, type Rotation } from './rotation.js';
import { FILE_HEADER_LEN, RECORD_HEADER_LEN, writeFileHeader, writeRecord } from '../pcap/pcap.js';

export const FILE_MODE = 0o640;
/** Chunks gathered into one writev. */
const MAX_IOV = 16;

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
}

const WRITE = 0;
const CLOSE = 1;
/** After a failed write, a new file is tried no sooner than this. */
const RETRY_AFTER_ERROR_SEC = 1;

interface Op {
  kind: typeof WRITE | typeof CLOSE;
  file: OpenFile;
  chunk: Buffer | null;
  len: number;
  packets: number;
}

interface OpenFile extends CaptureFile {
  /** When it ends by age (rotationEnd), worked out when it opens or the rotation changes, not per packet. */
  endSec: number;
  handle: FileHandle | null;
  /** Bytes and packets that reached the file; always a record boundary. */
  durable: number;
  durablePackets: number;
  failed: boolean;
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
  private chunkLen = 0;
  private chunkPackets = 0;
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

  constructor(private readonly opts: WriterOptions) {
    this.rotation = opts.rotation;
    this.snaplen = opts.snaplen;
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
   * real length on the wire. Returns false when the packet was dropped (counted).
   */
  append(src: Buffer, off: number, len: number, origLen: number, sec: number, nsec: number): boolean {
    if (this.closed) {
      this.opts.drops[DROP_WRITE_ERROR]!++;
      return false;
    }
    if (this.opts.disk.full) {
      this.opts.drops[DROP_DISK_FULL]!++;
      return false;
    }
    const incl = len < this.snaplen ? len : this.snaplen;
    const recLen = RECORD_HEADER_LEN + incl;
    let f = this.file;
    if (f !== null && this.rotationDue(f, recLen, sec)) {
      this.closeCurrent();
      f = null;
    }
    if (f === null && this.retryAt > 0) {
      if (Date.now() / 1000 < this.retryAt) {
        this.opts.drops[DROP_WRITE_ERROR]!++;
        return false;
      }
      this.retryAt = 0;
    }
    const need = f === null ? recLen + FILE_HEADER_LEN : recLen;
    if (this.chunk === null || this.chunkLen + need > this.chunk.length) {
      if (!this.nextChunk(need)) {
        this.opts.drops[DROP_QUEUE_FULL]!++;
        this.saturated = true;
        return false;
      }
    }
    const chunk = this.chunk!;
    /** False for a record earlier than the file's newest: lastSec/lastNsec stay the newest. */
    let latest = true;
    if (f === null) {
      f = this.openFile(sec, nsec);
      this.chunkLen = writeFileHeader(chunk, this.chunkLen, this.snaplen, this.opts.linkType);
    } else if (sec < f.lastSec || (sec === f.lastSec && nsec < f.lastNsec)) {
      // Live, a clock step back is clamped: time moves forward within a file. A capture's
      // own step back is kept as it is (tshark, capinfos and mergecap read it).
      if (this.opts.clampTime) {
        sec = f.lastSec;
        nsec = f.lastNsec;
      } else latest = false;
    }
    this.chunkLen = writeRecord(chunk, this.chunkLen, src, off, incl, origLen > len ? origLen : len, sec, nsec);
    this.chunkPackets++;
    f.bytes += recLen;
    f.packets++;
    if (latest) {
      f.lastSec = sec;
      f.lastNsec = nsec;
    }
    return true;
  }

  /** Hands the partly filled chunk to the disk, so buffered records reach the file. */
  flush(): void {
    if (this.chunk !== null && this.chunkLen > 0) {
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
   * New rotation settings, effective for the current file; a new snaplen closes the current
   * file, because a file's header states one snaplen for all its records.
   */
  configure(settings: SessionSettings): void {
    this.rotation = rotationOf(settings);
    if (this.file !== null) this.file.endSec = rotationEnd(this.file.firstSec, this.rotation);
    if (settings.snaplen !== this.snaplen) {
      this.rotate();
      this.snaplen = settings.snaplen;
    }
  }

  /** Closes the current file now; the next packet starts a new one. */
  rotate(): void {
    if (this.file !== null) this.closeCurrent();
    this.kick();
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
      (r.size > 0 && f.bytes + recLen > r.size && f.packets > 0) ||
      (r.packets > 0 && f.packets >= r.packets) ||
      sec >= f.endSec
    );
  }

  private openFile(sec: number, nsec: number): OpenFile {
    const seq = this.opts.nextSeq();
    const f: OpenFile = {
      session: this.opts.session,
      seq,
      path: join(this.opts.dir, captureFileName(this.opts.session, sec, seq)),
      bytes: FILE_HEADER_LEN,
      packets: 0,
      firstSec: sec,
      firstNsec: nsec,
      endSec: rotationEnd(sec, this.rotation),
      lastSec: sec,
      lastNsec: nsec,
      handle: null,
      durable: 0,
      durablePackets: 0,
      failed: false,
    };
    this.file = f;
    return f;
  }

  private closeCurrent(): void {
    const f = this.file!;
    if (this.chunkLen > 0) this.queueChunk();
    this.file = null;
    this.ops.push({ kind: CLOSE, file: f, chunk: null, len: 0, packets: 0 });
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
        this.chunk = null;
      }
    }
    const size = this.busy || need > SMALL_CHUNK ? LARGE_CHUNK : SMALL_CHUNK;
    if (this.held + size > this.opts.queueSize) return false;
    const chunk = this.opts.pool.take(size);
    if (chunk === null) return false;
    this.chunk = chunk;
    this.held += size;
    this.chunkLen = 0;
    this.chunkPackets = 0;
    return true;
  }

  private queueChunk(): void {
    this.ops.push({ kind: WRITE, file: this.file!, chunk: this.chunk, len: this.chunkLen, packets: this.chunkPackets });
    this.chunk = null;
    this.chunkLen = 0;
    this.chunkPackets = 0;
    this.kick();
  }

  private kick(): void {
    if (!this.draining && this.ops.length > 0) {
      this.draining = true;
      void this.drain();
    }
  }

  private releaseChunk(op: Op): void {
    this.giveBack(op.chunk!);
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
        await this.finish(op.file);
        continue;
      }
      let n = 1;
      while (n < this.ops.length && n < MAX_IOV && this.ops[n]!.kind === WRITE && this.ops[n]!.file === op.file) n++;
      const batch = this.ops.splice(0, n);
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
      let bufs = batch.map((op) => op.chunk!.subarray(0, op.len));
      let pos = f.durable;
      const end = pos + bufs.reduce((s, b) => s + b.length, 0);
      while (pos < end) {
        const { bytesWritten } = await f.handle.writev(bufs, pos);
        pos += bytesWritten;
        if (pos < end) bufs = skipBytes(bufs, bytesWritten);
      }
      await this.relinkIfRemoved(f, end);
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
    this.retryAt = Date.now() / 1000 + RETRY_AFTER_ERROR_SEC;
    if (this.file === f) {
      if (this.chunk !== null && this.chunkLen > 0) {
        this.opts.drops[DROP_WRITE_ERROR]! += this.chunkPackets;
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
   * vanishes at close. Checked once per write batch: if the open file has no name left,
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
