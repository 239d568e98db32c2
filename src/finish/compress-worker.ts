/**
 * One compression thread of the Compressor's pool (compress.ts): takes a job message, writes
 * the compressed file, answers with its sizes and block table. This thread does nothing else, so
 * it may block; the appliance's event loop never waits for it.
 *
 *   gzip: source ─read block─▶ gzip member ─▶ gunzip + compare ─▶ <dst>.tmp   (every block)
 *                              then the seek table member (src/pcap/blocks.ts)
 *   zstd: source ─stream─▶ one zstd frame ─▶ <dst>.tmp, then <dst>.tmp ─▶ unzstd ─▶ compare sha256
 *   both: fsync <dst>.tmp ─▶ rename to <dst> ─▶ fsync the folder
 *
 * Every byte is checked by decompressing it again before the rename: the caller deletes the
 * original on our word, so a bad compressed copy must fail here, not later.
 */
import { createHash } from 'node:crypto';
import { closeSync, createReadStream, createWriteStream, fstatSync, fsyncSync, openSync, readSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parentPort } from 'node:worker_threads';
import { gunzipSync, gzipSync } from 'node:zlib';
import { encodeSeekTable, MAX_BLOCKS } from '../pcap/blocks.js';
import { zstd } from '../pcap/zstd.js';

export interface CompressJob {
  readonly id: number;
  readonly source: string;
  readonly target: string;
  readonly temp: string;
  readonly container: 'gzip' | 'zstd';
  readonly level: number;
  readonly blockSize: number;
}

export type CompressReply =
  | { readonly id: number; readonly ok: true; readonly rawSize: number; readonly blocks: { rawSize: number; packedSize: number }[]; readonly packedSize: number; readonly ms: number }
  | { readonly id: number; readonly ok: false; readonly code: string; readonly message: string };

/** Block size for a file: the configured one, grown so the seek table stays within MAX_BLOCKS. */
export function blockSizeFor(fileSize: number, blockSize: number): number {
  const min = Math.ceil(fileSize / MAX_BLOCKS);
  return min <= blockSize ? blockSize : Math.ceil(min / 65536) * 65536;
}

function readFull(fd: number, buf: Buffer, position: number): number {
  let n = 0;
  while (n < buf.length) {
    const got = readSync(fd, buf, n, buf.length - n, position + n);
    if (got === 0) break;
    n += got;
  }
  return n;
}

function writeFull(fd: number, buf: Buffer): void {
  for (let n = 0; n < buf.length; ) n += writeSync(fd, buf, n, buf.length - n);
}

type Done = Omit<Extract<CompressReply, { ok: true }>, 'id' | 'ok' | 'ms'>;

function failure(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

/** gzip: one member per block, each checked, then the seek table. Writes to the open `output`. */
function gzipBlocks(job: CompressJob, output: number): Done {
  const input = openSync(job.source, 'r');
  try {
    const size = fstatSync(input).size;
    const buf = Buffer.allocUnsafe(blockSizeFor(size, job.blockSize));
    const blocks: { rawSize: number; packedSize: number }[] = [];
    let rawSize = 0;
    let packedSize = 0;
    for (;;) {
      const n = readFull(input, buf, rawSize);
      if (n === 0) break;
      const raw = buf.subarray(0, n);
      const packed = gzipSync(raw, { level: job.level });
      if (!gunzipSync(packed).equals(raw)) throw failure('ERR_MIRRORCAP_COMPRESS_VERIFY', `block at byte ${rawSize} did not decompress to its input`);
      writeFull(output, packed);
      blocks.push({ rawSize: n, packedSize: packed.length });
      rawSize += n;
      packedSize += packed.length;
      if (n < buf.length) break;
    }
    if (rawSize !== size) throw failure('ERR_MIRRORCAP_COMPRESS_CHANGED', `file changed while being compressed: ${size} bytes at the start, ${rawSize} read`);
    const table = encodeSeekTable(blocks);
    writeFull(output, table);
    return { rawSize, blocks, packedSize: packedSize + table.length };
  } finally {
    closeSync(input);
  }
}

/** Counts and hashes what flows through. */
function digestTap(sink: boolean): { stream: Transform | Writable; bytes: () => number; sha256: () => string } {
  const hash = createHash('sha256');
  let bytes = 0;
  const take = (chunk: Buffer): void => {
    hash.update(chunk);
    bytes += chunk.length;
  };
  const stream = sink
    ? new Writable({ write: (chunk: Buffer, _e, cb) => (take(chunk), cb()) })
    : new Transform({ transform: (chunk: Buffer, _e, cb) => (take(chunk), cb(null, chunk)) });
  return { stream, bytes: () => bytes, sha256: () => hash.digest('hex') };
}

/** zstd: the whole file as one frame, streamed, then decompressed again and compared. */
async function zstdFrame(job: CompressJob, mode: number): Promise<Done> {
  const z = zstd();
  if (z === null) throw failure('ERR_MIRRORCAP_COMPRESS_UNAVAILABLE', 'zstd is unavailable in this process');
  const size = statSync(job.source).size;
  const raw = digestTap(false);
  await pipeline(createReadStream(job.source, { highWaterMark: 1 << 20 }), raw.stream, z.createCompressor(job.level), createWriteStream(job.temp, { mode }));
  if (raw.bytes() !== size) throw failure('ERR_MIRRORCAP_COMPRESS_CHANGED', `file changed while being compressed: ${size} bytes at the start, ${raw.bytes()} read`);
  const back = digestTap(true);
  await pipeline(createReadStream(job.temp, { highWaterMark: 1 << 20 }), z.createDecompressor(), back.stream);
  if (back.bytes() !== raw.bytes() || back.sha256() !== raw.sha256()) throw failure('ERR_MIRRORCAP_COMPRESS_VERIFY', 'the zstd frame did not decompress to the file');
  const packedSize = statSync(job.temp).size;
  return { rawSize: size, blocks: [{ rawSize: size, packedSize }], packedSize };
}

function fsyncPath(path: string, flags: string): void {
  const fd = openSync(path, flags);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

async function compressFile(job: CompressJob): Promise<Omit<Extract<CompressReply, { ok: true }>, 'id' | 'ok'>> {
  const started = performance.now();
  const mode = statSync(job.source).mode & 0o777;
  try {
    let done: Done;
    if (job.container === 'gzip') {
      const output = openSync(job.temp, 'w', mode);
      try {
        done = gzipBlocks(job, output);
        fsyncSync(output);
      } finally {
        closeSync(output);
      }
    } else {
      done = await zstdFrame(job, mode);
      fsyncPath(job.temp, 'r+');
    }
    renameSync(job.temp, job.target);
    // The rename itself must reach the disk before the caller deletes the original.
    fsyncPath(dirname(job.target), 'r');
    return { ...done, ms: performance.now() - started };
  } catch (err) {
    try {
      unlinkSync(job.temp);
    } catch {
      // never created, or already renamed
    }
    throw err;
  }
}

if (parentPort !== null) {
  const port = parentPort;
  port.on('message', async (job: CompressJob) => {
    let reply: CompressReply;
    try {
      reply = { id: job.id, ok: true, ...(await compressFile(job)) };
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      reply = { id: job.id, ok: false, code: e.code ?? 'ERR_MIRRORCAP_COMPRESS_FAILED', message: e.message };
    }
    port.postMessage(reply);
  });
}
