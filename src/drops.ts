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
  'bad_geneve',
  'geneve_oam',
  'geneve_critical_option',
  'unsupported_protocol',
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
/** GENEVE that is not version 0, shorter than its options, or whose options overrun them. */
export const DROP_BAD_GENEVE = 8;
/** GENEVE control packets (O bit): not mirrored traffic. */
export const DROP_GENEVE_OAM = 9;
/** A critical GENEVE option we do not read: RFC 8926 3.5.1 says drop. */
export const DROP_GENEVE_CRITICAL = 10;
/** A GENEVE payload we do not carry: a protocol type other than Ethernet, IPv4, IPv6. */
export const DROP_UNSUPPORTED_PROTOCOL = 11;

/** Reasons counted before a packet belongs to a session (Pipeline.drops). */
export const PIPELINE_DROPS: readonly number[] = [
  DROP_SHORT,
  DROP_BAD_VXLAN,
  DROP_UNKNOWN_VNI,
  DROP_SESSION_LIMIT,
  DROP_SOURCE_DENIED,
  DROP_BAD_GENEVE,
  DROP_GENEVE_OAM,
  DROP_GENEVE_CRITICAL,
  DROP_UNSUPPORTED_PROTOCOL,
];
/** Reasons counted per session (Session.drops). */
export const SESSION_DROPS: readonly number[] = [DROP_QUEUE_FULL, DROP_DISK_FULL, DROP_WRITE_ERROR];

export function newDropCounters(): Float64Array {
  return new Float64Array(DROP_REASONS.length);
}
