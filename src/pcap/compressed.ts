/**
 * The bytes of a capture file, whether it is plain, gzip or zstd: what CaptureReader reads from.
 * The container is told by the file's first bytes, not its name.
 *
 *   plain   the FileHandle itself (positional reads)
 *   .gz     file ─64 KiB pieces─▶ zlib gunzip (every member) ─'data'─▶ queue ─▶ read()
 *   .zst    file ─64 KiB pieces─▶ zstd decompressor (every frame) ─'data'─▶ queue ─▶ read()
 *
 * A compressed source is sequential: each read() continues where the last one ended (which is
 * how CaptureReader reads). Memory stays flat: the next piece is decompressed only when the
 * queue is empty, so it holds what one 64 KiB piece decompresses to, whatever the file's size.
 * Decompression runs on libuv's thread pool (zlib) or in the binding, piece by piece, never in
 * one long synchronous call.
 *
 * Offsets are offsets in the uncompressed bytes. `start` (a block of a .gz file's seek table, see
 * blocks.ts) begins decompressing at that block, the source's offset then being the block's
 * uncompressed offset. A .zst file (one frame) is read from its start.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import type { Transform } from 'node:stream';
import { promisify } from 'node:util';
import { createGunzip, gunzip } from 'node:zlib';
import { codedError, ErrorCode } from '../errors.js';
import { CaptureError, CaptureErrorCode } from './errors.js';
import { blockAt, containerOf, readBlockTable, type Block, type BlockTable, type Container } from './blocks.js';
import { zstd, zstdUnavailableReason, ZstdFrameWalker } from './zstd.js';

/** What the reader needs of a file: FileHandle has exactly this shape. */
export interface ByteSource {
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  close(): Promise<void>;
}

export interface OpenedSource {
  readonly source: ByteSource;
  /** null: not compressed. */
  readonly container: Container | null;
}

/** Compressed bytes handed to the decompressor at once (its output per piece is what memory holds). */
const INPUT_PIECE = 64 << 10;

/** Opens `path` for reading its uncompressed bytes. Rejects with a CaptureError when it cannot decompress it. */
export async function openByteSource(path: string, start?: Block): Promise<OpenedSource> {
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(4);
    const { bytesRead } = await fh.read(head, 0, 4, 0);
    const container = containerOf(head.subarray(0, bytesRead));
    if (container === null) {
      if (start !== undefined) throw new CaptureError(CaptureErrorCode.UNSUPPORTED_COMPRESSION, path, 0, 'a start block was given but the file is not compressed');
      return { source: fh, container: null };
    }
    if (container === 'zstd' && start !== undefined && start.packedOffset !== 0) {
      throw new CaptureError(CaptureErrorCode.UNSUPPORTED_COMPRESSION, path, 0, 'a .zst capture is one zstd frame: it is read from its start');
    }
    let decompressor: Transform;
    if (container === 'gzip') {
      decompressor = createGunzip({ chunkSize: INPUT_PIECE });
    } else {
      const z = zstd();
      if (z === null) throw new CaptureError(CaptureErrorCode.UNSUPPORTED_COMPRESSION, path, 0, `zstd-compressed, but zstd is unavailable: ${zstdUnavailableReason()}`);
      decompressor = z.createDecompressor();
    }
    return { source: new Decompressed(path, fh, container, decompressor, start), container };
  } catch (err) {
    await fh.close();
    throw err;
  }
}

/**
 * `path` opened with synchronous calls when it is not compressed: a source whose reads are
 * synchronous preads, and its descriptor; null for a compressed file (closed again: it is read
 * through openRangeSource). For a process with nothing else to do meanwhile (`mirrorcap query`).
 */
export function openPlainSync(path: string): { source: ByteSource; fd: number } | null {
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(4);
    if (containerOf(head.subarray(0, readSync(fd, head, 0, 4, 0))) !== null) {
      closeSync(fd);
      return null;
    }
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  const source: ByteSource = {
    read: (buffer, offset, length, position) => {
      try {
        return Promise.resolve({ bytesRead: readSync(fd, buffer, offset, length, position) });
      } catch (err) {
        return Promise.reject(err as Error);
      }
    },
    close: () => {
      closeSync(fd);
      return Promise.resolve();
    },
  };
  return { source, fd };
}

/**
 * Feeds the decompressor small pieces of the file and keeps what it emits in a queue that read()
 * drains; the next piece goes in only when the queue is empty. Output is taken from 'data'
 * events as it is made (never left in the stream, whose buffer an error would discard), so
 * everything decompressed before a fault reaches the reader, then the fault.
 */
class Decompressed implements ByteSource {
  private readonly queue: Buffer[] = [];
  /** Bytes of queue[0] already returned. */
  private used = 0;
  /** Uncompressed offset of the next byte read() returns. */
  private pos: number;
  /** Offset of the next piece of compressed input. */
  private inputPos: number;
  private inputDone = false;
  private readonly piece = Buffer.allocUnsafe(INPUT_PIECE);
  /** Why decompression stopped, once it has. */
  private failure: string | null = null;
  private ended = false;
  private wake: (() => void) | null = null;
  /** zstd: the frame structure of the input, to notice a stream cut inside a frame. */
  private readonly frames: ZstdFrameWalker | null;

  constructor(
    private readonly path: string,
    private readonly fh: FileHandle,
    private readonly container: Container,
    private readonly decompressor: Transform,
    start: Block | undefined,
  ) {
    this.pos = start?.rawOffset ?? 0;
    this.inputPos = start?.packedOffset ?? 0;
    this.frames = container === 'zstd' ? new ZstdFrameWalker() : null;
    const signal = (): void => {
      const w = this.wake;
      this.wake = null;
      w?.();
    };
    decompressor.on('data', (chunk: Buffer) => {
      this.queue.push(chunk);
      signal();
    });
    decompressor.on('end', () => {
      // gunzip reports a cut member itself; node:zlib's zstd does not report a cut frame.
      if (this.frames !== null && !this.frames.complete()) this.failure ??= 'zstd data ends inside a frame: the file is cut short';
      this.ended = true;
      signal();
    });
    decompressor.on('error', (err: Error) => {
      this.failure ??= `${this.container} data cannot be decompressed: ${err.message}`;
      signal();
    });
  }

  /**
   * Fills buffer[offset, offset + length) with as many decompressed bytes as come; 0 at the end.
   * A decompression error is thrown by the first call that has nothing left to return before it.
   */
  async read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }> {
    if (position !== this.pos) throw codedError(ErrorCode.INVALID_STATE, `compressed capture ${this.path} is read in order: asked for byte ${position}, next is ${this.pos}`);
    let n = 0;
    while (n < length) {
      const head = this.queue[0];
      if (head !== undefined) {
        const take = Math.min(length - n, head.length - this.used);
        head.copy(buffer, offset + n, this.used, this.used + take);
        this.used += take;
        n += take;
        if (this.used === head.length) {
          this.queue.shift();
          this.used = 0;
        }
        continue;
      }
      if (this.failure !== null || this.ended) break;
      if (n > 0) break; // hand over what we have; decompress more on the next call
      await this.feed();
    }
    this.pos += n;
    if (n === 0 && this.failure !== null) throw new CaptureError(CaptureErrorCode.BAD_COMPRESSION, this.path, this.pos, this.failure);
    return { bytesRead: n };
  }

  /** Gives the decompressor the next piece of input (or the end of it); resolves once it answered. */
  private async feed(): Promise<void> {
    const answered = new Promise<void>((resolve) => (this.wake = resolve));
    if (this.inputDone) {
      // Ended and still silent: wait for its 'end' or 'error'.
    } else {
      let got = 0;
      try {
        got = (await this.fh.read(this.piece, 0, INPUT_PIECE, this.inputPos)).bytesRead;
      } catch (err) {
        this.failure ??= `cannot read the compressed file: ${(err as Error).message}`;
        this.wake = null;
        return;
      }
      this.inputPos += got;
      if (got === 0) {
        this.inputDone = true;
        this.decompressor.end();
      } else {
        const piece = Buffer.from(this.piece.subarray(0, got)); // the decompressor may hold it a while
        this.frames?.feed(piece);
        this.decompressor.write(piece, () => {
          const w = this.wake;
          this.wake = null;
          w?.();
        });
      }
    }
    await answered;
  }

  async close(): Promise<void> {
    this.decompressor.destroy();
    await this.fh.close();
  }
}

const gunzipAsync = promisify(gunzip);

/**
 * Opens `path` for reads at ascending uncompressed offsets that may skip (a query reading the
 * groups its index chose). Plain: the file. A .gz of ours: only the blocks (gzip members)
 * holding the bytes asked for are read and decompressed, each on its own. A .zst, or a .gz
 * without our seek table: decompressed from the start, the bytes skipped thrown away.
 */
export async function openRangeSource(path: string): Promise<OpenedSource> {
  const opened = await openByteSource(path);
  if (opened.container === null) return opened;
  const table = opened.container === 'gzip' ? await readBlockTable(path).catch(() => null) : null;
  if (table === null) return { source: new SkipForward(opened.source), container: opened.container };
  await opened.source.close();
  return { source: new GzipBlocks(path, await open(path, 'r'), table), container: 'gzip' };
}

/** A sequential source read at ascending offsets: the bytes between are read and dropped. */
class SkipForward implements ByteSource {
  private pos = 0;
  private scratch: Buffer | null = null;

  constructor(private readonly inner: ByteSource) {}

  async read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }> {
    if (position < this.pos) throw codedError(ErrorCode.INVALID_STATE, `compressed capture read backwards: asked for byte ${position}, next is ${this.pos}`);
    while (this.pos < position) {
      this.scratch ??= Buffer.allocUnsafe(INPUT_PIECE * 4);
      const { bytesRead } = await this.inner.read(this.scratch, 0, Math.min(this.scratch.length, position - this.pos), this.pos);
      if (bytesRead === 0) return { bytesRead: 0 };
      this.pos += bytesRead;
    }
    let n = 0;
    while (n < length) {
      const { bytesRead } = await this.inner.read(buffer, offset + n, length - n, this.pos);
      if (bytesRead === 0) break;
      this.pos += bytesRead;
      n += bytesRead;
    }
    return { bytesRead: n };
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** A .pcap.gz of ours read by blocks: each read decompresses only the members it falls in (the last one kept for the next read). */
class GzipBlocks implements ByteSource {
  private block: Block | null = null;
  private data: Buffer | null = null;

  constructor(
    private readonly path: string,
    private readonly fh: FileHandle,
    private readonly table: BlockTable,
  ) {}

  async read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }> {
    let n = 0;
    while (n < length) {
      const at = position + n;
      let b = this.block;
      if (b === null || at < b.rawOffset || at >= b.rawOffset + b.rawSize) {
        b = blockAt(this.table, at) ?? null;
        if (b === null) break;
        await this.load(b);
      }
      const take = Math.min(length - n, b.rawOffset + b.rawSize - at);
      this.data!.copy(buffer, offset + n, at - b.rawOffset, at - b.rawOffset + take);
      n += take;
    }
    return { bytesRead: n };
  }

  private async load(b: Block): Promise<void> {
    const packed = Buffer.allocUnsafe(b.packedSize);
    const { bytesRead } = await this.fh.read(packed, 0, b.packedSize, b.packedOffset);
    let data: Buffer;
    try {
      data = await gunzipAsync(packed.subarray(0, bytesRead));
    } catch (err) {
      throw new CaptureError(CaptureErrorCode.BAD_COMPRESSION, this.path, b.rawOffset, `gzip block at byte ${b.packedOffset} cannot be decompressed: ${(err as Error).message}`);
    }
    if (data.length !== b.rawSize) throw new CaptureError(CaptureErrorCode.BAD_COMPRESSION, this.path, b.rawOffset, `gzip block at byte ${b.packedOffset} holds ${data.length} bytes, its table says ${b.rawSize}`);
    this.block = b;
    this.data = data;
  }

  close(): Promise<void> {
    this.data = null;
    return this.fh.close();
  }
}
