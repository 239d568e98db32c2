/**
 * Zstandard, wherever this Node has it: node:zlib's own zstd (Node >= 22.15, 23.8) first, else
 * the optional `zstd-napi` binding (compiled from its bundled libzstd at `npm ci`), else none,
 * with the reason. Picked once, on first use. Frames either backend writes are standard zstd
 * frames the other one, the `zstd` tool and Wireshark read.
 */
import { createRequire } from 'node:module';
import type { Transform } from 'node:stream';
import * as zlib from 'node:zlib';

export interface ZstdBackend {
  /** 'node:zlib' or 'zstd-napi'. */
  readonly name: string;
  /** A streaming compressor writing one frame (with its content checksum). */
  createCompressor(level: number): Transform;
  /** A streaming decompressor: any number of frames, skippable frames skipped. */
  createDecompressor(): Transform;
}

/** What node:zlib grew in 22.15 (not in @types/node 20). */
interface ZlibZstd {
  createZstdCompress(options: { params: Record<number, number>; chunkSize: number }): Transform;
  createZstdDecompress(options: { chunkSize: number }): Transform;
  constants: Record<string, number>;
}

/** The part of zstd-napi we use (it is optional, so its types may be absent). */
interface ZstdNapi {
  CompressStream: new (params: { compressionLevel: number; checksumFlag: boolean }) => Transform;
  DecompressStream: new () => Transform;
}

/** zstd's own range of "normal" levels (negative "fast" levels are not offered). */
export const ZSTD_MIN_LEVEL = 1;
export const ZSTD_MAX_LEVEL = 19;

/** Output chunk of node:zlib's zstd streams (its default, 16 KiB, costs a thread-pool hop per 16 KiB). */
const CHUNK = 256 << 10;

let picked: { backend: ZstdBackend | null; reason: string } | null = null;

function fromZlib(): ZstdBackend | null {
  const z = zlib as unknown as Partial<ZlibZstd>;
  if (typeof z.createZstdCompress !== 'function' || typeof z.createZstdDecompress !== 'function') return null;
  const c = z.constants!;
  const createZstdCompress = z.createZstdCompress.bind(zlib);
  const createZstdDecompress = z.createZstdDecompress.bind(zlib);
  const params = (level: number): Record<number, number> => ({ [c.ZSTD_c_compressionLevel!]: level, [c.ZSTD_c_checksumFlag!]: 1 });
  return {
    name: 'node:zlib',
    createCompressor: (level) => createZstdCompress({ params: params(level), chunkSize: CHUNK }),
    createDecompressor: () => createZstdDecompress({ chunkSize: CHUNK }),
  };
}

function fromBinding(): { backend: ZstdBackend | null; reason: string } {
  let mod: ZstdNapi;
  try {
    mod = createRequire(import.meta.url)('zstd-napi') as ZstdNapi;
  } catch (err) {
    return { backend: null, reason: `node ${process.version} has no zstd in node:zlib (22.15 and later do) and the optional zstd-napi binding did not load (${(err as Error).message.split('\n')[0]}); it is built by npm ci when a C compiler is present` };
  }
  return {
    backend: {
      name: 'zstd-napi',
      createCompressor: (level) => new mod.CompressStream({ compressionLevel: level, checksumFlag: true }),
      createDecompressor: () => new mod.DecompressStream(),
    },
    reason: '',
  };
}

/** The zstd implementation in use, or null (see zstdUnavailableReason()). */
export function zstd(): ZstdBackend | null {
  if (picked === null) {
    const native = fromZlib();
    picked = native !== null ? { backend: native, reason: '' } : fromBinding();
  }
  return picked.backend;
}

/** Why zstd() is null; '' when zstd is available. */
export function zstdUnavailableReason(): string {
  zstd();
  return picked!.reason;
}

/** Every backend this process can load (tests and the bench compare them). */
export function zstdBackends(): ZstdBackend[] {
  const all: ZstdBackend[] = [];
  const native = fromZlib();
  if (native !== null) all.push(native);
  const binding = fromBinding().backend;
  if (binding !== null) all.push(binding);
  return all;
}

const ZSTD_FRAME_MAGIC = 0xfd2fb528;
const SKIPPABLE_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;
const DICT_ID_BYTES = [0, 1, 2, 4];
const CONTENT_SIZE_BYTES = [0, 2, 4, 8];

/**
 * Follows the frame structure of a zstd stream (RFC 8878: frame header, block headers, content
 * checksum; skippable frames) without decompressing, to tell whether the stream ended between
 * frames. node:zlib's zstd decompressor ends quietly on a frame cut short; this is how we notice.
 *
 *   frame      magic FD2FB528 | descriptor | [window] [dictionary id] [content size]
 *              block*: 3-byte header (last, type, size) + size bytes (RLE: 1) | [checksum 4]
 *   skippable  magic 184D2A5x | size u32le | size bytes
 */
export class ZstdFrameWalker {
  private readonly head = Buffer.alloc(8);
  private have = 0;
  /** Header bytes the current stage needs. */
  private need = 4;
  private stage: 'magic' | 'descriptor' | 'header' | 'block' | 'checksum' | 'skippable' = 'magic';
  /** Content bytes to pass over before the next header. */
  private skip = 0;
  private checksum = false;
  private frames = 0;
  /** Set when the bytes are not zstd at all (the decompressor reports that itself). */
  invalid = false;

  feed(buf: Buffer): void {
    let i = 0;
    while (i < buf.length && !this.invalid) {
      if (this.skip > 0) {
        const take = Math.min(this.skip, buf.length - i);
        this.skip -= take;
        i += take;
        continue;
      }
      const take = Math.min(this.need - this.have, buf.length - i);
      buf.copy(this.head, this.have, i, i + take);
      this.have += take;
      i += take;
      if (this.have === this.need) this.step();
    }
  }

  /** Whether everything fed so far is whole frames (and at least one). */
  complete(): boolean {
    return !this.invalid && this.frames > 0 && this.stage === 'magic' && this.have === 0 && this.skip === 0;
  }

  private expect(stage: ZstdFrameWalker['stage'], need: number): void {
    this.stage = stage;
    this.need = need;
    this.have = 0;
    if (need === 0) this.step();
  }

  private step(): void {
    const h = this.head;
    switch (this.stage) {
      case 'magic': {
        const magic = h.readUInt32LE(0);
        if (magic === ZSTD_FRAME_MAGIC) this.expect('descriptor', 1);
        else if (((magic & SKIPPABLE_MASK) >>> 0) === SKIPPABLE_MAGIC) this.expect('skippable', 4);
        else this.invalid = true;
        break;
      }
      case 'descriptor': {
        const d = h[0]!;
        const single = (d >> 5) & 1;
        this.checksum = ((d >> 2) & 1) === 1;
        const fcs = d >> 6;
        this.expect('header', (single ? 0 : 1) + DICT_ID_BYTES[d & 3]! + (fcs === 0 ? single : CONTENT_SIZE_BYTES[fcs]!));
        break;
      }
      case 'header':
        this.expect('block', 3);
        break;
      case 'block': {
        const b = h[0]! | (h[1]! << 8) | (h[2]! << 16);
        const type = (b >> 1) & 3;
        if (type === 3) {
          this.invalid = true;
          break;
        }
        this.skip = type === 1 ? 1 : b >>> 3;
        if ((b & 1) === 0) this.expect('block', 3);
        else if (this.checksum) this.expect('checksum', 4);
        else this.endFrame();
        break;
      }
      case 'checksum':
        this.endFrame();
        break;
      case 'skippable':
        this.skip = h.readUInt32LE(0);
        this.expect('magic', 4);
        break;
    }
  }

  private endFrame(): void {
    this.frames++;
    this.expect('magic', 4);
  }
}
