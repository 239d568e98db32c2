/**
 * Crash recovery for the `.part` files a killed writer leaves behind.
 *
 * The writer appends whole records to `<out>/<session>/<name>.pcap.part` and renames the file
 * to `.pcap` when it closes it. After a kill -9 (or a power loss) the `.part` file ends with
 * whatever reached the disk: usually whole records and then part of one. Recovery walks the
 * records with the strict reader and cuts the file at the end of the last whole one, so every
 * tool opens the result without complaint:
 *
 *   [header][rec][rec][rec][re|        torn: cut here ──▶ [header][rec][rec][rec]
 *   [header][rec][garbage incl_len ...]  corrupt: cut at the record it names
 *   [head|                               no header: deleted (there are no records in it)
 *   [junk that is not a capture header]  set aside as `<name>.pcap.corrupt`, never deleted
 *
 * A pcapng `.part` (--format pcapng) is cut the same way, at the end of its last whole block:
 * its section header, interface description and packet blocks are then a valid file. It gets
 * no interface statistics block: the counters it would state died with the process, and a
 * block of guessed numbers would be worse than none (Wireshark shows the drops as unknown).
 *
 * Each recovered file is fsynced before the rename and the directory after it, so a crash
 * during recovery leaves either the `.part` file or a complete `.pcap`. An existing `<name>.pcap`
 * is never overwritten (the recovered file gets a `.recovered` name instead). Files are read
 * through one 1 MiB buffer each; none is loaded whole.
 */
import { lstat, open, readdir, rename, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { CaptureError, CaptureErrorCode } from '../pcap/errors.js';
import { FILE_HEADER_LEN } from '../pcap/pcap.js';
import { CaptureReader } from '../pcap/reader.js';
import { CORRUPT_SUFFIX, isCapturePath, PART_SUFFIX, PCAP_SUFFIX, PCAPNG_SUFFIX } from './naming.js';
import { codedError, ErrorCode } from '../errors.js';

const RECOVERED_INFIX = '.recovered';
const RECOVERY_BUFFER = 1 << 20;
const DEFAULT_CONCURRENCY = 4;

/**
 * recovered:   cut to its last whole record (maybe nothing cut) and renamed to finalPath.
 * deleted:     shorter than a capture header, so it held no record; removed.
 * quarantined: no valid capture header; renamed to finalPath (`.pcap.corrupt`) for a human.
 * failed:      an I/O error (recoverDirectory only; recoverPartFile rejects instead).
 */
export type RecoveryAction = 'recovered' | 'deleted' | 'quarantined' | 'failed';

export interface RecoveryResult {
  /** The `.part` file. */
  path: string;
  /** Where its contents are now; null when deleted or failed. */
  finalPath: string | null;
  action: RecoveryAction;
  /** Whole records kept. */
  records: number;
  /** Bytes removed: the torn or corrupt tail, or the whole file when deleted. */
  bytesCut: number;
  /** Size of the file at finalPath (0 when there is none). */
  bytes: number;
  /** What was wrong (the reader's CaptureError message, or the I/O error's); null for a clean file. */
  reason: string | null;
  /** The matching error code (ERR_MIRRORCAP_CAPTURE_* or an errno code); null for a clean file. */
  code: string | null;
}

export interface RecoverDirectoryOptions {
  /** Files recovered at the same time; default 4. */
  concurrency?: number;
}

/**
 * Recovers one `X.pcap.part` file into `X.pcap` (see the module comment for what happens to
 * torn, corrupt and headerless files). Rejects only on I/O errors, or for a path that does not
 * end in `.part` or is not a regular file.
 */
export async function recoverPartFile(path: string): Promise<RecoveryResult> {
  if (!path.endsWith(PART_SUFFIX)) throw codedError(ErrorCode.INVALID_ARGUMENT, `recoverPartFile: ${path} does not end in ${PART_SUFFIX}`, TypeError);
  const st = await lstat(path);
  if (!st.isFile()) throw codedError(ErrorCode.INVALID_ARGUMENT, `recoverPartFile: ${path} is not a regular file`, TypeError);
  const size = st.size;
  const target = path.slice(0, -PART_SUFFIX.length);

  const walk = await lastWholeRecord(path);
  const result: RecoveryResult = { path, finalPath: null, action: 'recovered', records: walk.records, bytesCut: 0, bytes: 0, reason: null, code: null };
  if (walk.error !== null) {
    result.reason = walk.error.message;
    result.code = walk.error.code;
  }

  if (walk.end === 0) {
    // Not even a capture header: nothing in the file can be read as records. A pcapng file
    // whose section header is torn is the same: its first block ends past the end of the file.
    if (size < FILE_HEADER_LEN || (walk.error?.code === CaptureErrorCode.TRUNCATED_BLOCK && walk.error.offset === 0)) {
      await unlink(path);
      await syncDir(dirname(path));
      return { ...result, action: 'deleted', bytesCut: size };
    }
    const finalPath = await freeName(`${target}${CORRUPT_SUFFIX}`);
    await syncFile(path, size);
    await rename(path, finalPath);
    await syncDir(dirname(path));
    return { ...result, action: 'quarantined', finalPath, bytes: size };
  }

  await syncFile(path, walk.end);
  const finalPath = await freeName(target);
  await rename(path, finalPath);
  await syncDir(dirname(path));
  return { ...result, finalPath, bytesCut: size - walk.end, bytes: walk.end };
}

/**
 * Recovers every `*.pcap.part` file in the session folders of `outDir` (`<out>/<session>/`),
 * a few at a time. Never rejects for one file: its I/O error becomes a `failed` result.
 * Resolves the results in path order (empty when outDir does not exist), for the caller to log.
 */
export async function recoverDirectory(outDir: string, options: RecoverDirectoryOptions = {}): Promise<RecoveryResult[]> {
  const concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
  if (!Number.isSafeInteger(concurrency) || concurrency < 1) {
    throw codedError(ErrorCode.INVALID_ARGUMENT, `recoverDirectory: concurrency must be a positive integer, got ${String(concurrency)}`, RangeError);
  }
  const parts = await findPartFiles(outDir);
  const results: RecoveryResult[] = new Array(parts.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < parts.length) {
      const i = next++;
      const path = parts[i]!;
      try {
        results[i] = await recoverPartFile(path);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        results[i] = { path, finalPath: null, action: 'failed', records: 0, bytesCut: 0, bytes: 0, reason: e.message, code: e.code ?? null };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, parts.length) }, worker));
  return results;
}

/** `.pcap.part` files one level down, in session folders; symbolic links are not followed. */
async function findPartFiles(outDir: string): Promise<string[]> {
  const sessions = await readdir(outDir, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [];
    throw err;
  });
  const found: string[] = [];
  for (const s of sessions) {
    if (!s.isDirectory()) continue;
    const dir = join(outDir, s.name);
    for (const f of await readdir(dir, { withFileTypes: true })) {
      if (f.isFile() && f.name.endsWith(PART_SUFFIX) && isCapturePath(f.name.slice(0, -PART_SUFFIX.length))) found.push(join(dir, f.name));
    }
  }
  return found.sort();
}

/** Where the last whole record ends (0: no valid header), how many records precede it, and why it stops there. */
async function lastWholeRecord(path: string): Promise<{ end: number; records: number; error: CaptureError | null }> {
  let reader: CaptureReader;
  try {
    reader = await CaptureReader.open(path, { strict: true, bufferSize: RECOVERY_BUFFER });
  } catch (err) {
    if (err instanceof CaptureError) return { end: 0, records: 0, error: err };
    throw err;
  }
  try {
    while (await reader.read(countOnly));
    return { end: reader.offset, records: reader.records, error: null };
  } catch (err) {
    if (err instanceof CaptureError) return { end: err.offset, records: reader.records, error: err };
    throw err;
  } finally {
    await reader.close();
  }
}

/** Recovery needs no bytes: the reader counts the records itself. */
function countOnly(): void {}

/** Cuts the file to `length` if it is longer, and flushes it to the disk. */
async function syncFile(path: string, length: number): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    if ((await fh.stat()).size > length) await fh.truncate(length);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Makes a rename or unlink in `dir` durable. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** `path` if nothing is there, else `<stem>.recovered[-n]<ext>`: an existing file is never replaced. */
async function freeName(path: string): Promise<string> {
  const ext = [PCAP_SUFFIX, PCAPNG_SUFFIX, CORRUPT_SUFFIX].find((e) => path.endsWith(e)) ?? '';
  const stem = path.slice(0, path.length - ext.length);
  for (let n = 1; ; n++) {
    const candidate = n === 1 ? path : `${stem}${RECOVERED_INFIX}${n === 2 ? '' : `-${n - 1}`}${ext}`;
    try {
      await lstat(candidate);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return candidate;
      throw err;
    }
  }
}
