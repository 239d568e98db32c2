/**
 * The sidecar's bytes from what an IndexBuilder gathered (its parts): the one code path that
 * makes them, whether it runs on the index thread (index-worker.ts, the index step's way) or on
 * the event loop (IndexBuilder.encode: buildIndex's callers off the hot path, and the index
 * step's fallback when its thread fails). The parts are typed arrays, each with its own memory,
 * so that they can be transferred to the thread rather than copied.
 *
 *   parts ─▶ file range from the group times ─┐
 *          ─▶ encodePostings (radix sort of the key logs, LEB128) ─┴▶ encodeIndex ─▶ sidecar bytes
 */
import { before, encodeIndex } from './index-format.js';
import { indexMemory } from './index-memory.js';
import { encodePostings, type KeyLogs } from './key-table.js';

export interface IndexParts {
  /** The capture's first bytes (at most 24), kept in the sidecar. */
  readonly captureHeader: Uint8Array;
  readonly linkType: number;
  readonly groupPackets: number;
  readonly packets: number;
  /** End of the last whole record fed. */
  readonly covered: number;
  readonly groups: number;
  /** Per group its first record's file offset (the first `groups` used). */
  readonly offsets: Float64Array;
  /** Per group min sec, nsec, max sec, nsec (the first `groups` * 4 used). */
  readonly times: Uint32Array;
  /** Null: not an Ethernet capture, no keys. */
  readonly keys: KeyLogs | null;
}

/** The memory of `parts` that can move to a thread (everything but the small header, which is copied). */
export function transferOf(parts: IndexParts): ArrayBuffer[] {
  const typed = [parts.offsets, parts.times, ...(parts.keys === null ? [] : [...parts.keys.values, ...parts.keys.groups, parts.keys.lengths, parts.keys.flowLog])];
  return typed.map((a) => a.buffer as ArrayBuffer);
}

/** The sidecar's bytes (indexMemory's: give them back once written); its scratch is leased and given back before it returns. */
export function encodeParts(p: IndexParts, captureSize: number, captureMtimeMs: number): Buffer {
  const t = p.times;
  const min: [number, number] = [0, 0];
  const max: [number, number] = [0, 0];
  for (let g = 0; g < p.groups; g++) {
    const at = g * 4;
    if (g === 0 || before(t[at]!, t[at + 1]!, min[0], min[1])) {
      min[0] = t[at]!;
      min[1] = t[at + 1]!;
    }
    if (g === 0 || before(max[0], max[1], t[at + 2]!, t[at + 3]!)) {
      max[0] = t[at + 2]!;
      max[1] = t[at + 3]!;
    }
  }
  const lease = indexMemory.lease();
  try {
    return encodeIndex({
      captureHeader: Buffer.from(p.captureHeader.buffer, p.captureHeader.byteOffset, p.captureHeader.byteLength),
      captureSize,
      captureMtimeMs,
      covered: p.covered,
      packets: p.packets,
      min,
      max,
      linkType: p.linkType,
      groupPackets: p.groupPackets,
      groupOffsets: p.offsets.subarray(0, p.groups),
      groupTimes: p.times.subarray(0, p.groups * 4),
      postings: p.keys === null ? null : encodePostings(p.keys, lease),
    });
  } finally {
    lease.end();
  }
}
