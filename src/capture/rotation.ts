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
}

export function rotationOf(s: SessionSettings): Rotation {
  return Object.freeze({ size: s.rotateSize, seconds: s.rotateSeconds, packets: s.rotatePackets });
}
