/**
 * When a capture file ends: one value built from a session's settings when the session is
 * made (or reloaded), read by its writer on every append. Each trigger is 0 when off.
 */
import type { SessionSettings } from '../config.js';

export interface Rotation {
  /** Close the file before it would grow past this many bytes. */
  readonly size: number;
  /** Close the file once its first packet is this many seconds old. */
  readonly seconds: number;
  /** Close the file after this many packets. */
  readonly packets: number;
  /** `seconds` is counted from 00:00 UTC, like dumpcap's `interval`: files end on its multiples. */
  readonly align: boolean;
}

export function rotationOf(s: SessionSettings): Rotation {
  return Object.freeze({ size: s.rotateSize, seconds: s.rotateSeconds, packets: s.rotatePackets, align: s.rotateAlign });
}

const DAY = 86_400;

/**
 * The UTC second at which a file whose first packet came at `firstSec` ends by age (Infinity
 * when rotation by age is off). Aligned: the next multiple of `seconds` since that day's
 * 00:00 UTC, and midnight at the latest (for a period that does not divide a day).
 */
export function rotationEnd(firstSec: number, r: Rotation): number {
  if (r.seconds <= 0) return Infinity;
  if (!r.align) return firstSec + r.seconds;
  const day = firstSec - (((firstSec % DAY) + DAY) % DAY);
  return Math.min(day + (Math.floor((firstSec - day) / r.seconds) + 1) * r.seconds, day + DAY);
}
