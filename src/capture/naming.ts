/**
 * File names: <session>-<UTC start as YYYYMMDDTHHMMSSZ>-<seq, 6 digits>.pcap (.pcapng with
 * --format pcapng), written as .pcap.part (.pcapng.part) while open. Sorting names of one session sorts them by start time and then
 * by sequence, so the ring can delete the oldest by name order.
 *
 * What happens to a finished file may leave other names beside or instead of it, all
 * starting with the capture's name: X.pcap.gz or X.pcap.zst (--compress, which then removes
 * X.pcap), X.pcap.idx (a sidecar), X.pcap.gz.s3 (an upload marker). Those are the same
 * capture to the catalog: counted, listed and deleted together. A name ending in .tmp is one
 * being written (a compressed file, a marker) and is nobody's artefact yet.
 */
export const PART_SUFFIX = '.part';
export const PCAP_SUFFIX = '.pcap';
export const PCAPNG_SUFFIX = '.pcapng';
/** Recovery sets aside what it cannot read under this suffix, for a human: never deleted. */
export const CORRUPT_SUFFIX = '.corrupt';
/** A file being written under its final name plus this, renamed when complete. */
export const TEMP_SUFFIX = '.tmp';
/** What --compress makes of X.pcap: X.pcap.gz, X.pcap.zst. */
export const COMPRESSED_SUFFIX = { gzip: '.gz', zstd: '.zst' } as const;
/** The index sidecar X.pcap.idx (finish/index-step.ts): an artefact, never what the capture is now. */
export const INDEX_SUFFIX = '.idx';

export function utcStamp(sec: number): string {
  const d = new Date(sec * 1000);
  const p = (n: number, w = 2): string => String(n).padStart(w, '0');
  return `${p(d.getUTCFullYear(), 4)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}T${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}Z`;
}

/** The extension of a capture written in `format`. */
export function captureSuffix(format: 'pcap' | 'pcapng'): string {
  return format === 'pcapng' ? PCAPNG_SUFFIX : PCAP_SUFFIX;
}

/** Whether a path names a capture itself, as the writer made it (X.pcap, X.pcapng). */
export function isCapturePath(path: string): boolean {
  return path.endsWith(PCAP_SUFFIX) || path.endsWith(PCAPNG_SUFFIX);
}

/** A capture as written or compressed (X.pcap[ng], X.pcap[ng].gz, X.pcap[ng].zst): what an index covers. */
export function isIndexablePath(path: string): boolean {
  for (const s of Object.values(COMPRESSED_SUFFIX)) if (path.endsWith(s)) return isCapturePath(path.slice(0, -s.length));
  return isCapturePath(path);
}

export function captureFileName(session: string, startSec: number, seq: number, suffix = PCAP_SUFFIX): string {
  return `${session}-${utcStamp(startSec)}-${String(seq).padStart(6, '0')}${suffix}`;
}

export interface ParsedName {
  readonly stamp: string;
  readonly seq: number;
  /** The capture's own name (…pcap, …pcapng), shared by everything made from it. */
  readonly capture: string;
  /** What follows the capture's name: '' for the capture itself, '.part', '.gz', '.idx', ... */
  readonly suffix: string;
}

/**
 * Parses a name this module made for `session`, or one made from it (X.pcap.gz; recovery's
 * X.recovered.pcap); null for anything else in the folder.
 */
export function parseCaptureFileName(session: string, file: string): ParsedName | null {
  if (!file.startsWith(`${session}-`)) return null;
  const m = /^((\d{8}T\d{6}Z)-(\d{6,})(?:\.recovered(?:-\d+)?)?\.pcap(?:ng)?)((?:\.[A-Za-z0-9_-]+)*)$/.exec(file.slice(session.length + 1));
  if (!m) return null;
  return { capture: `${session}-${m[1]!}`, stamp: m[2]!, seq: Number(m[3]), suffix: m[4]! };
}

/** Whether a name of a capture is the finished capture or made from it (not an open, half-written or set-aside file). */
export function isFinishedArtefact(name: ParsedName): boolean {
  return !name.suffix.endsWith(PART_SUFFIX) && !name.suffix.endsWith(CORRUPT_SUFFIX) && !name.suffix.endsWith(TEMP_SUFFIX);
}

/** Whether a suffix (ParsedName.suffix) names the packets themselves: X.pcap, X.pcap.gz or X.pcap.zst (or X.pcapng...). */
export function isCaptureData(suffix: string): boolean {
  return suffix === '' || suffix === COMPRESSED_SUFFIX.gzip || suffix === COMPRESSED_SUFFIX.zstd;
}
