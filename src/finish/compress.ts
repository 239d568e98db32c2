/**
 * Compression of finished capture files (--compress gzip|zstd), off the event loop: a bounded
 * pool of worker threads (worker-pool.ts running compress-worker.ts), one file per thread at a
 * time, the rest queued.
 *
 *   compress(X.pcap) ──queue──▶ worker: X.pcap ──blocks──▶ X.pcap.gz.tmp ──fsync, rename──▶ X.pcap.gz
 *        ▲                                                                     │
 *        └──────────── resolves { path: X.pcap.gz, blocks, ... } ◀─────────────┘
 *
 * The original is left in place: the caller deletes it once it has recorded the new path (and
 * whatever else must happen first). Killed half-way, a run leaves at most a `.tmp` file, which
 * removeCompressTemps() clears at start; compressing the same file again simply redoes it.
 *
 * gzip files are a sequence of independently compressed 4 MiB blocks with a seek table at the
 * end (src/pcap/blocks.ts), so readers can start at any block; zstd files are one frame (why:
 * blocks.ts). CaptureReader reads both directly.
 * Wireshark/tshark open .pcap.gz and .pcap.zst files directly; tcpdump and libpcap cannot
 * (`zcat X.pcap.gz | tcpdump -r -`, `zstdcat X.pcap.zst | tcpdump -r -`).
 */
import { readdir, unlink } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { COMPRESSED_SUFFIX, TEMP_SUFFIX } from '../capture/naming.js';
import { ConfigError } from '../config.js';
import type { Block, Container } from '../pcap/blocks.js';
import { ZSTD_MAX_LEVEL, ZSTD_MIN_LEVEL, zstd, zstdUnavailableReason } from '../pcap/zstd.js';
import type { CompressJob, CompressReply } from './compress-worker.js';
import { WorkerPool, type WorkerPoolError } from './worker-pool.js';

export type CompressFormat = Container;

export const COMPRESS_SUFFIX: Readonly<Record<CompressFormat, string>> = COMPRESSED_SUFFIX;

const LEVELS: Readonly<Record<CompressFormat, { min: number; max: number; default: number }>> = {
  gzip: { min: 1, max: 9, default: 6 },
  zstd: { min: ZSTD_MIN_LEVEL, max: ZSTD_MAX_LEVEL, default: 3 },
};
export const DEFAULT_BLOCK_SIZE = 4 << 20;
const MIN_BLOCK_SIZE = 64 << 10;
const MAX_BLOCK_SIZE = 64 << 20;

export interface CompressOptions {
  readonly format: CompressFormat;
  /** gzip 1-9 (default 6), zstd 1-19 (default 3). */
  readonly level?: number;
  /** Uncompressed bytes per independently compressed block; default 4 MiB (64 KiB - 64 MiB). */
  readonly blockSize?: number;
  /** Worker threads; default 1 on a machine of 2 cores or fewer, else half the cores, at most 4. */
  readonly threads?: number;
}

export interface CompressSettings {
  readonly format: CompressFormat;
  readonly level: number;
  readonly blockSize: number;
  readonly threads: number;
}

export interface CompressResult {
  /** The file that was compressed (still there: the caller deletes it). */
  readonly source: string;
  /** The compressed file, source + '.gz' / '.zst'. */
  readonly path: string;
  readonly rawSize: number;
  readonly packedSize: number;
  /** gzip: where each block starts in both files (readBlockTable() reads the same back); zstd: one block, the whole file. */
  readonly blocks: readonly Block[];
  /** Time the worker spent on it (it does nothing else meanwhile: its CPU time, near enough). */
  readonly ms: number;
}

export class CompressError extends Error {
  override readonly name = 'CompressError';
  constructor(
    readonly code: string,
    readonly path: string,
    message: string,
  ) {
    super(`${path}: ${message}`);
  }
}

/**
 * Validates options, and that the format can be used in this process: throws a ConfigError
 * naming the option when not (zstd without node:zlib zstd or the zstd-napi binding, say why).
 */
export function compressSettings(opts: CompressOptions): CompressSettings {
  const range = LEVELS[opts.format];
  if (range === undefined) throw new ConfigError(`invalid compress format ${JSON.stringify(opts.format)}: expected gzip or zstd`);
  if (opts.format === 'zstd' && zstd() === null) throw new ConfigError(`compress zstd is unavailable: ${zstdUnavailableReason()}; use gzip, or Node 22.15 or later`);
  const level = opts.level ?? range.default;
  if (!Number.isInteger(level) || level < range.min || level > range.max) {
    throw new ConfigError(`invalid compress level ${level} for ${opts.format}: expected ${range.min}-${range.max}`);
  }
  const blockSize = opts.blockSize ?? DEFAULT_BLOCK_SIZE;
  if (!Number.isInteger(blockSize) || blockSize < MIN_BLOCK_SIZE || blockSize > MAX_BLOCK_SIZE) {
    throw new ConfigError(`invalid compress block size ${blockSize}: expected ${MIN_BLOCK_SIZE}-${MAX_BLOCK_SIZE} bytes`);
  }
  const threads = opts.threads ?? defaultThreads();
  if (!Number.isInteger(threads) || threads < 1 || threads > 64) throw new ConfigError(`invalid compress threads ${threads}: expected 1-64`);
  return { format: opts.format, level, blockSize, threads };
}

function defaultThreads(): number {
  const n = cpus().length;
  return n <= 2 ? 1 : Math.min(4, Math.floor(n / 2));
}

export class Compressor {
  /** Files compressed, and their bytes before and after. */
  files = 0;
  rawBytes = 0;
  packedBytes = 0;
  /** Worker milliseconds spent compressing (with rawBytes: MB/s per core). */
  busyMs = 0;
  /** Failed jobs by error code. */
  readonly failures = new Map<string, number>();
  private readonly settings: CompressSettings;
  private readonly pool: WorkerPool<CompressJob, CompressReply>;

  constructor(opts: CompressOptions) {
    this.settings = compressSettings(opts);
    this.pool = new WorkerPool(new URL('./compress-worker.js', import.meta.url), this.settings.threads, 'compression');
  }

  get format(): CompressFormat {
    return this.settings.format;
  }

  /** Threads started (at most the settings' threads). */
  get threads(): number {
    return this.pool.started;
  }

  /** Files queued or being compressed. */
  get pending(): number {
    return this.pool.pending;
  }

  /** Compresses `path` to path + suffix; the original stays. Rejects with a CompressError. */
  async compress(path: string): Promise<CompressResult> {
    const target = path + COMPRESS_SUFFIX[this.settings.format];
    let reply: CompressReply;
    try {
      reply = await this.pool.run({
        source: path,
        target,
        temp: target + TEMP_SUFFIX,
        container: this.settings.format,
        level: this.settings.level,
        blockSize: this.settings.blockSize,
      });
    } catch (err) {
      const e = err as WorkerPoolError;
      if (e.reason === 'closed') throw new CompressError('ERR_MIRRORCAP_COMPRESS_CLOSED', path, e.running ? 'compressor closed while compressing this file' : 'compressor closed before this file was compressed');
      throw this.failure('ERR_MIRRORCAP_COMPRESS_THREAD', path, e.message);
    }
    if (!reply.ok) throw this.failure(reply.code, path, reply.message);
    this.files++;
    this.rawBytes += reply.rawSize;
    this.packedBytes += reply.packedSize;
    this.busyMs += reply.ms;
    return { source: path, path: target, rawSize: reply.rawSize, packedSize: reply.packedSize, blocks: withOffsets(reply.blocks), ms: reply.ms };
  }

  /**
   * Stops: queued files are rejected (ERR_MIRRORCAP_COMPRESS_CLOSED; they stay uncompressed),
   * files being compressed get `graceMs` to finish, then their threads are stopped (leaving a
   * .tmp at most). Idempotent.
   */
  close(graceMs = 0): Promise<void> {
    return this.pool.close(graceMs);
  }

  /** Counted by code. */
  private failure(code: string, path: string, message: string): CompressError {
    this.failures.set(code, (this.failures.get(code) ?? 0) + 1);
    return new CompressError(code, path, message);
  }
}

function withOffsets(sizes: readonly { rawSize: number; packedSize: number }[]): Block[] {
  const blocks: Block[] = [];
  let raw = 0;
  let packed = 0;
  for (const s of sizes) {
    blocks.push({ rawOffset: raw, rawSize: s.rawSize, packedOffset: packed, packedSize: s.packedSize });
    raw += s.rawSize;
    packed += s.packedSize;
  }
  return blocks;
}

/** Removes the .gz.tmp / .zst.tmp files a killed run left in `dir`; resolves their paths. */
export async function removeCompressTemps(dir: string): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!Object.values(COMPRESS_SUFFIX).some((s) => name.endsWith(s + TEMP_SUFFIX))) continue;
    const path = join(dir, name);
    await unlink(path).then(
      () => removed.push(path),
      () => {},
    );
  }
  return removed;
}
