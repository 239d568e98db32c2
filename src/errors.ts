/**
 * Every error our modules throw carries a stable `code` (as Node's own errors do), so callers
 * and tests branch on the code, never on the message. Format and configuration errors have
 * classes of their own (pcap/errors.ts, config.ts); the rest are built here.
 */
export const ErrorCode = {
  /** A function or constructor was called with a value outside what it takes (a bug of the caller). */
  INVALID_ARGUMENT: 'ERR_MIRRORCAP_INVALID_ARGUMENT',
  /** A call at the wrong point of a lifecycle (start() twice, read() while reading). */
  INVALID_STATE: 'ERR_MIRRORCAP_INVALID_STATE',
  /** An invariant of our own code broke: a bug, never a fault of the input. */
  INTERNAL: 'ERR_MIRRORCAP_INTERNAL',
  /** The native addon is not built or did not load. */
  NATIVE_UNAVAILABLE: 'ERR_MIRRORCAP_NATIVE_UNAVAILABLE',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** `new Kind(message)` with `code` set: Error, RangeError or TypeError. */
export function codedError(code: ErrorCode, message: string, Kind: new (message: string) => Error = Error): Error & { code: ErrorCode } {
  return Object.assign(new Kind(message), { code });
}
