/**
 * What the two format parsers (classic pcap in reader.ts, pcapng in pcapng.ts) share: the
 * read buffer and the place parsing stopped in it, the interfaces described so far, and the
 * ways a parse ends (waiting for more bytes, or a CaptureError naming the byte offset).
 *
 *   file ──fill()──▶ buf [ consumed | pos ····· whole units ····· | partial unit | end ]
 *                               parse() delivers whole units, then stall(need) or fail(...)
 *
 * The buffer grows only for a unit larger than itself, which the record and block limits bound.
 */
import type { ByteSource } from './compressed.js';
import { CaptureError, CaptureErrorCode } from './errors.js';
import { TimestampConverter } from './timestamp.js';

/** An interface description: the classic file header, or one pcapng IDB. */
export interface CaptureInterface {
  /** File-wide index, the `ifIndex` records carry. */
  readonly index: number;
  /** pcapng section (0-based) the interface belongs to; 0 for classic pcap. */
  readonly section: number;
  /** The interface's number within its section (what the section's packet blocks name). */
  readonly sectionIndex: number;
  /** LINKTYPE_* value (classic: with the FCS bits masked off). */
  readonly linkType: number;
  /** 0 when not set (pcapng allows it). */
  readonly snaplen: number;
  readonly tsBase: 10 | 2;
  readonly tsExponent: number;
  /** if_tsoffset, seconds added to every timestamp. */
  readonly tsOffset: number;
}

/**
 * Receives one record, synchronously. The frame is buf[off, off + capLen). The bytes stay valid
 * until the next read() call (so a caller may collect offsets across one read() and use them
 * before calling again), never longer: the reader reuses its buffer.
 * tsSec/tsNsec are UTC, converted exactly (tsNsec < 1e9, unless a classic file read without
 * `strict` stores a fraction of a second of 1 s or more; it is passed on as stored); a pcapng
 * simple packet block has no timestamp and reads as 0/0. `ifIndex` is 0 for classic pcap.
 */
export type RecordSink = (
  buf: Buffer,
  off: number,
  capLen: number,
  origLen: number,
  tsSec: number,
  tsNsec: number,
  linkType: number,
  ifIndex: number,
) => void;

export class Iface implements CaptureInterface {
  readonly ts: TimestampConverter;

  constructor(
    readonly index: number,
    readonly section: number,
    readonly sectionIndex: number,
    readonly linkType: number,
    readonly snaplen: number,
    readonly tsBase: 10 | 2,
    readonly tsExponent: number,
    readonly tsOffset: number,
    /** Largest captured length accepted on this interface. */
    readonly limit: number,
  ) {
    this.ts = new TimestampConverter(tsBase, tsExponent, tsOffset);
  }
}

export function u32(buf: Buffer, off: number, le: boolean): number {
  return le ? buf.readUInt32LE(off) : buf.readUInt32BE(off);
}

export function u16(buf: Buffer, off: number, le: boolean): number {
  return le ? buf.readUInt16LE(off) : buf.readUInt16BE(off);
}

/** n rounded up to a multiple of 4; safe for any u32 (no 32-bit overflow). */
export function pad4(n: number): number {
  return n + ((4 - (n & 3)) & 3);
}

export interface WindowLimits {
  /** Captured length above which a record is corrupt. */
  readonly maxRecordLen: number;
  /** pcapng block length above which a block is corrupt. */
  readonly maxBlockLen: number;
  /** See CaptureReaderOptions.strict. */
  readonly strict: boolean;
}

export class ReadWindow {
  buf: Buffer;
  /** Next unparsed byte in buf. */
  pos = 0;
  /** End of the bytes read into buf. */
  end = 0;
  /** File offset of buf[0]. */
  base = 0;
  /** Records delivered so far. */
  records = 0;
  failure: CaptureError | null = null;
  readonly ifaces: Iface[] = [];
  /** Bytes from pos the unit parsing stopped at needs, and the error if the file ends first. */
  private need = 0;
  private needCode: CaptureErrorCode = CaptureErrorCode.TRUNCATED_HEADER;
  /** The largest unit the current format can have: how far the buffer may grow. */
  maxUnit: number;

  constructor(
    readonly path: string,
    private readonly fh: ByteSource,
    bufferSize: number,
    readonly limits: WindowLimits,
  ) {
    this.buf = Buffer.allocUnsafe(bufferSize);
    this.maxUnit = limits.maxBlockLen;
  }

  /** The largest captured length an interface with this snaplen accepts. */
  limitFor(snaplen: number): number {
    const max = this.limits.maxRecordLen;
    return this.limits.strict && snaplen !== 0 ? Math.min(snaplen, max) : max;
  }

  tooLong(capLen: number, iface: Iface): string {
    const who = iface.limit < this.limits.maxRecordLen ? 'the snaplen' : 'the record limit';
    return `captured length ${capLen} is above ${who} of ${iface.limit}`;
  }

  /** Parsing stopped at pos for want of bytes: note how many the unit needs. */
  stall(need: number, code: CaptureErrorCode): void {
    this.need = need;
    this.needCode = code;
  }

  fail(code: CaptureErrorCode, pos: number, detail: string): void {
    this.pos = pos;
    this.failure = this.error(code, this.base + pos, detail);
  }

  error(code: CaptureErrorCode, offset: number, detail: string): CaptureError {
    return new CaptureError(code, this.path, offset, detail);
  }

  /** The error for a file that ended inside the unit at pos. */
  truncation(): CaptureError {
    const avail = this.end - this.pos;
    const what =
      this.needCode === CaptureErrorCode.TRUNCATED_RECORD_HEADER
        ? 'record header'
        : this.needCode === CaptureErrorCode.TRUNCATED_RECORD
          ? 'record'
          : 'block';
    return this.error(this.needCode, this.base + this.pos, `file ends inside a ${what}: ${avail} of its ${this.need} bytes are present`);
  }

  /**
   * Makes `need` bytes from pos available: moves the unread tail to the front, grows the buffer
   * if the unit is larger than it, and reads as much as fits. False if the file ends first.
   */
  async fill(): Promise<boolean> {
    const need = this.need;
    if (this.pos > 0) {
      this.buf.copy(this.buf, 0, this.pos, this.end);
      this.base += this.pos;
      this.end -= this.pos;
      this.pos = 0;
    }
    if (need > this.buf.length) {
      // Bounded: need never exceeds a record or block that passed the length limits.
      const grown = Buffer.allocUnsafe(Math.max(need, Math.min(this.buf.length * 2, this.maxUnit)));
      this.buf.copy(grown, 0, 0, this.end);
      this.buf = grown;
    }
    while (this.end < need) {
      const { bytesRead } = await this.fh.read(this.buf, this.end, this.buf.length - this.end, this.base + this.end);
      if (bytesRead === 0) return false;
      this.end += bytesRead;
    }
    return true;
  }
}
