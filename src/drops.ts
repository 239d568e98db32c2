/**
 * Why a datagram or packet was not written. Index into DROP_REASONS; counters are
 * typed arrays indexed by these numbers so the hot path never builds a label string.
 */
export const DROP_REASONS = [
  'short',
  'bad_vxlan',
  'unknown_vni',
  'session_limit',
  'source_denied',
  'queue_full',
  'disk_full',
  'write_error',
] as const;

export type DropReason = (typeof DROP_REASONS)[number];

export const DROP_SHORT = 0;
export const DROP_BAD_VXLAN = 1;
export const DROP_UNKNOWN_VNI = 2;
export const DROP_SESSION_LIMIT = 3;
export const DROP_SOURCE_DENIED = 4;
export const DROP_QUEUE_FULL = 5;
export const DROP_DISK_FULL = 6;
export const DROP_WRITE_ERROR = 7;

/** Reasons counted before a packet belongs to a session (Pipeline.drops). */
export const PIPELINE_DROPS: readonly number[] = [DROP_SHORT, DROP_BAD_VXLAN, DROP_UNKNOWN_VNI, DROP_SESSION_LIMIT, DROP_SOURCE_DENIED];
/** Reasons counted per session (Session.drops). */
export const SESSION_DROPS: readonly number[] = [DROP_QUEUE_FULL, DROP_DISK_FULL, DROP_WRITE_ERROR];

export function newDropCounters(): Float64Array {
  return new Float64Array(DROP_REASONS.length);
}
