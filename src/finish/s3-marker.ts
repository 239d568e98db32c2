/**
 * What survives a restart of the S3 step: beside each uploaded file X, a small X.s3 file saying
 * where it went. Written only after the store confirmed the object, atomically (temp, fsync,
 * rename, fsync the folder), so a marker is never half there.
 *
 *   finished X ──upload──▶ store confirms ──▶ X.s3 ──▶ done (the caller may delete X)
 *                                         ▲
 *                  killed here: no X.s3 ──┘ at the next start the object is found by HEAD
 *                  (same size and sha256 metadata) and X.s3 written, without uploading again
 *
 * A marker counts only for the bucket, key and size it names: change the key template and the
 * file is uploaded again under its new key. Whoever deletes X deletes X.s3 first (then a crash
 * between the two leaves X without a marker, which the HEAD check resolves, never a marker alone).
 */
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';

export const MARKER_SUFFIX = '.s3';

export interface UploadMarker {
  readonly bucket: string;
  readonly key: string;
  readonly bytes: number;
  /** Hex SHA-256 of the file, also stored as the object's x-amz-meta-mirrorcap-sha256. */
  readonly sha256: string;
  /** When the store confirmed it (ISO 8601). */
  readonly uploaded: string;
}

export function markerPath(path: string): string {
  return path + MARKER_SUFFIX;
}

/** The marker of `path`, or null if there is none or it cannot be read (then the file is checked again). */
export async function readMarker(path: string): Promise<UploadMarker | null> {
  try {
    const m = JSON.parse(await readFile(markerPath(path), 'utf8')) as Partial<UploadMarker>;
    if (typeof m.bucket === 'string' && typeof m.key === 'string' && typeof m.bytes === 'number' && typeof m.sha256 === 'string' && typeof m.uploaded === 'string') {
      return m as UploadMarker;
    }
    return null;
  } catch {
    return null;
  }
}

export async function writeMarker(path: string, marker: UploadMarker): Promise<void> {
  const final = markerPath(path);
  const temp = `${final}.tmp`;
  const fh = await open(temp, 'w', 0o640);
  try {
    await fh.writeFile(`${JSON.stringify(marker)}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(temp, final);
  const dir = await open(dirname(final), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/**
 * Deletes a file and its marker, the marker first (see above). For the ring, the budget and
 * delete-after-upload alike: a file without a marker is fine, a marker without its file is litter.
 */
export async function deleteWithMarker(path: string): Promise<void> {
  for (const p of [markerPath(path), path]) {
    await unlink(p).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }
}
