/**
 * File names: <session>-<UTC start as YYYYMMDDTHHMMSSZ>-<seq, 6 digits>.pcap, written as
 * .pcap.part while open. Sorting names of one session sorts them by start time and then
 * by sequence, so the ring can delete the oldest by name order.
 */
export const PART_SUFFIX = '.part';
export const PCAP_SUFFIX = '.pcap';

export function utcStamp(sec: number): string {
  const d = new Date(sec * 1000);
  const p = (n: number, w = 2): string => String(n).padStart(w, '0');
  return `${p(d.getUTCFullYear(), 4)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}T${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}Z`;
}

export function captureFileName(session: string, startSec: number, seq: number): string {
  return `${session}-${utcStamp(startSec)}-${String(seq).padStart(6, '0')}${PCAP_SUFFIX}`;
}

/** Parses a name this module made for `session`; null for anything else in the folder. */
export function parseCaptureFileName(session: string, file: string): { stamp: string; seq: number; part: boolean } | null {
  if (!file.startsWith(`${session}-`)) return null;
  const m = /^(\d{8}T\d{6}Z)-(\d{6,})\.pcap(\.part)?$/.exec(file.slice(session.length + 1));
  if (!m) return null;
  return { stamp: m[1]!, seq: Number(m[2]), part: m[3] !== undefined };
}
