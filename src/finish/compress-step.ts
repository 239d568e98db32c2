/**
 * The compress step (--compress gzip|zstd): each finished capture X.pcap becomes X.pcap.gz or
 * X.pcap.zst on the Compressor's worker threads, then X.pcap is removed. The steps after it
 * (post-rotate, s3) get the compressed file.
 *
 *   X.pcap ──Compressor (threads)──▶ X.pcap.gz.tmp ──rename──▶ X.pcap.gz ──▶ rebind X.pcap.idx ──▶ unlink X.pcap ──▶ done
 *                 │ fails: logged, counted, X.pcap kept as it is (the next steps ship it plain)
 *
 * Killed anywhere in between, X.pcap is still there: at the next start `needed` says so and
 * the file is compressed again (a stale .tmp of that folder is removed first). Killed between
 * the rename and the unlink, both exist; compressing again rewrites the same .gz.
 * The index sidecar the index step wrote for X.pcap is rebound to the compressed file (its
 * offsets are offsets in the uncompressed bytes, which the compressed file holds unchanged);
 * when there is none to rebind, the index step indexes X.pcap.gz at the next start, or when a
 * query finds it missing.
 */
import { unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { FinishedFile } from '../capture/catalog.js';
import { isCapturePath } from '../capture/naming.js';
import { ConfigError, type Config } from '../config.js';
import type { Logger } from '../log.js';
import { CompressError, Compressor, removeCompressTemps, type CompressOptions } from './compress.js';
import type { FinishStep } from './finisher.js';
import { rebindIndex } from './index-build.js';

/** The step --compress asks for; null for none. Throws a ConfigError for settings this process cannot honour. */
export function compressStep(config: Config, log: Logger): CompressStep | null {
  if (config.compress === 'none') {
    if (config.compressLevel !== 0) throw new ConfigError('compress-level needs --compress gzip or --compress zstd');
    return null;
  }
  return new CompressStep({ format: config.compress, ...(config.compressLevel !== 0 && { level: config.compressLevel }) }, log, config.index);
}

export class CompressStep implements FinishStep {
  readonly name = 'compress';
  readonly capturesOnly = true;
  private readonly compressor: Compressor;
  /** Folders whose stale .tmp files were removed at start. */
  private readonly cleaned = new Set<string>();

  /** Throws a ConfigError for options this process cannot honour (a level out of range, zstd missing). */
  constructor(
    options: CompressOptions,
    private readonly log: Logger,
    /** Rebind X.pcap's index sidecar to the compressed file (--index). */
    private readonly rebind = false,
  ) {
    this.compressor = new Compressor(options);
  }

  /** Files compressed, bytes in and out, worker time, failures by code, files waiting: for the metrics. */
  get stats(): Pick<Compressor, 'files' | 'rawBytes' | 'packedBytes' | 'busyMs' | 'failures' | 'pending' | 'format'> {
    return this.compressor;
  }

  /** A capture as written (not yet compressed). */
  async needed(file: FinishedFile): Promise<boolean> {
    const plain = isCapturePath(file.path);
    const dir = dirname(file.path);
    if (plain && !this.cleaned.has(dir)) {
      this.cleaned.add(dir);
      await removeCompressTemps(dir);
    }
    return plain;
  }

  async run(file: FinishedFile): Promise<void> {
    const source = file.path;
    if (!isCapturePath(source)) return;
    try {
      const r = await this.compressor.compress(source);
      if (this.rebind && !(await rebindIndex(source, r.path).catch(() => false))) {
        this.log.debug({ event: 'index_not_rebound', path: r.path }, 'no good index of the file to rebind: it is indexed again');
      }
      await unlink(source);
      this.log.info(
        { event: 'file_compressed', path: r.path, format: this.compressor.format, rawBytes: r.rawSize, packedBytes: r.packedSize, ms: r.ms },
        `file compressed to ${((100 * r.packedSize) / Math.max(1, r.rawSize)).toFixed(1)} % of its size`,
      );
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'UNKNOWN';
      if (code === 'ERR_MIRRORCAP_COMPRESS_CLOSED') {
        this.log.warn({ event: 'compress_stopped', path: source }, 'stopping: file left uncompressed; the next start compresses it');
        return;
      }
      // A failed unlink leaves both names: the catalog lists the capture as written, and the next start compresses it again.
      if (!(err instanceof CompressError)) this.compressor.failures.set(code, (this.compressor.failures.get(code) ?? 0) + 1);
      this.log.error({ event: 'compress_failed', path: source, code, err: (err as Error).message }, 'could not compress the finished file; it is kept (and shipped) uncompressed');
    }
  }

  async stop(deadline: number): Promise<void> {
    await this.compressor.close(Math.max(0, deadline - Date.now()));
  }
}
