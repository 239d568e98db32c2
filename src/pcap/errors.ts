/**
 * Why a capture file could not be read further. One error per file at most, never one per
 * record: a reader delivers every whole record before the fault, then fails with this.
 *
 * `offset` is the file offset of the header, record or block that could not be read, which is
 * also the end of the last whole unit before it: truncating the file there leaves a valid capture.
 */
export const CaptureErrorCode = {
  /** Shorter than a file header (includes an empty file). */
  TRUNCATED_HEADER: 'ERR_MIRRORCAP_CAPTURE_TRUNCATED_HEADER',
  /** Neither a classic pcap magic nor a pcapng section header, or a bad pcapng byte-order magic. */
  BAD_MAGIC: 'ERR_MIRRORCAP_CAPTURE_BAD_MAGIC',
  /** pcap major version other than 2, pcapng major version other than 1. */
  UNSUPPORTED_VERSION: 'ERR_MIRRORCAP_CAPTURE_UNSUPPORTED_VERSION',
  /** The file ends inside a 16-byte classic record header. */
  TRUNCATED_RECORD_HEADER: 'ERR_MIRRORCAP_CAPTURE_TRUNCATED_RECORD_HEADER',
  /** The file ends inside a classic record's captured bytes. */
  TRUNCATED_RECORD: 'ERR_MIRRORCAP_CAPTURE_TRUNCATED_RECORD',
  /** A captured length above the reader's limit (or, strict, above the snaplen). */
  RECORD_TOO_LONG: 'ERR_MIRRORCAP_CAPTURE_RECORD_TOO_LONG',
  /**
   * Strict mode only: a record header a writer of ours cannot have written (original length
   * below the captured length; classic: a fraction of a second of 1 s or more, or all zeros).
   */
  BAD_RECORD_HEADER: 'ERR_MIRRORCAP_CAPTURE_BAD_RECORD_HEADER',
  /** The file ends inside a pcapng block. */
  TRUNCATED_BLOCK: 'ERR_MIRRORCAP_CAPTURE_TRUNCATED_BLOCK',
  /** A pcapng block length under 12, not a multiple of 4, above the limit, or too small for its fields. */
  BAD_BLOCK_LENGTH: 'ERR_MIRRORCAP_CAPTURE_BAD_BLOCK_LENGTH',
  /** A pcapng block whose trailing total length differs from its leading one. */
  BLOCK_LENGTH_MISMATCH: 'ERR_MIRRORCAP_CAPTURE_BLOCK_LENGTH_MISMATCH',
  /** A pcapng option running past its block, or an if_tsresol finer than 64 bits can count. */
  BAD_OPTION: 'ERR_MIRRORCAP_CAPTURE_BAD_OPTION',
  /** A pcapng packet naming an interface its section never described. */
  UNKNOWN_INTERFACE: 'ERR_MIRRORCAP_CAPTURE_UNKNOWN_INTERFACE',
  /** A .gz / .zst capture whose compressed data is corrupt or cut short (offset: uncompressed bytes reached). */
  BAD_COMPRESSION: 'ERR_MIRRORCAP_CAPTURE_BAD_COMPRESSION',
  /** A compressed capture this process cannot decompress (zstd unavailable), or a start block for a plain file. */
  UNSUPPORTED_COMPRESSION: 'ERR_MIRRORCAP_CAPTURE_UNSUPPORTED_COMPRESSION',
} as const;

export type CaptureErrorCode = (typeof CaptureErrorCode)[keyof typeof CaptureErrorCode];

export class CaptureError extends Error {
  override readonly name = 'CaptureError';

  constructor(
    readonly code: CaptureErrorCode,
    readonly path: string,
    readonly offset: number,
    detail: string,
  ) {
    super(`${path}: byte ${offset}: ${detail}`);
  }
}
