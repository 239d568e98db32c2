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
  createZstdCompress(options: { params: Record<number, number> }): Transform;
  createZstdDecompress(): Transform;
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
    createCompressor: (level) => createZstdCompress({ params: params(level) }),
    createDecompressor: () => createZstdDecompress(),
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
