/**
 * Streaming capture reader: classic pcap and pcapng, any size, flat memory.
 *
 * Classic pcap (both byte orders; magic a1b2c3d4 = µs, a1b23c4d = ns):
 *   file header 24 bytes: magic | version 2.x | thiszone | sigfigs | snaplen | linktype
 *   record: ts_sec | ts_frac | incl_len | orig_len (16 bytes), then incl_len bytes
 *
 * pcapng (https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-02.html), every block:
 *    0 type | 4 total length | body ... | total length again (multiple of 4, >= 12)
 *   SHB 0x0a0d0d0a  8 byte-order magic 1a2b3c4d (fixes the section's byte order), 12 major 1
 *   IDB 1           8 linktype u16 | 12 snaplen | 16 options (if_tsresol 9, if_tsoffset 14)
 *   EPB 6           8 interface | 12 ts high | 16 ts low | 20 caplen | 24 origlen | 28 data
 *   PB  2 (obsolete) as EPB, with a u16 interface and a u16 drop count at 8
 *   SPB 3           8 origlen | 12 data (interface 0, no timestamp)
 *   anything else is skipped by its length. Interfaces are numbered per section; records carry
 *   a file-wide interface index (first section's interfaces first, then the next section's), so
 *   one number names one interface; `interfaces[i].section` and `.sectionIndex` map it back.
 *
 * Memory: one read buffer (default 4 MiB) filled with positional reads; records are parsed in
 * place and handed to the sink as (buffer, offset) pairs; the tail of a record cut by the end
 * of the buffer is moved to the front before the next read. The buffer grows only for a unit
 * larger than itself, which the record and block limits bound (256 KiB + 16 / 16 MiB).
 *
 * Delivery: a callback per record, not a record object, so nothing is allocated per record.
 * Reading is pulled: each read() call delivers the whole records of one buffer-full
 * synchronously, so a consumer that must wait (a bounded writer queue) simply waits before
 * calling read() again.
 *
 *   const reader = await CaptureReader.open(path);
 *   try { while (await reader.read(onRecord)) await writer.drained(); } finally { await reader.close(); }
 *
 * Corruption: a file that ends inside a header, record or block, or holds an impossible length,
 * ends the read with one CaptureError naming the byte offset of that unit, after every whole
 * record before it was delivered. Nothing throws per record.
 *
 * Compressed files (.pcap.gz, .pcap.zst, told by their first bytes) are read the same way through
 * a decompressing source (src/pcap/compressed.ts); offsets are then uncompressed offsets.
 */
import { openByteSource, type ByteSource } from '../pcap/compressed.js';
import type { Container } from '../pcap/blocks.js';
import { CaptureError, CaptureErrorCode } from './errors.js';
import { FILE_HEADER_LEN, MAX_SNAPLEN, PCAP_MAGIC_NS, PCAP_MAGIC_US, RECORD_HEADER_LEN } from './pcap.js';
import { MAX_TSRESOL_POW10, MAX_TSRESOL_POW2, TimestampConverter } from './timestamp.js';

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

export type CaptureFormat = 'pcap' | 'pcapng';

export interface CaptureReaderOptions {
  /** Initial read buffer size in bytes; default 4 MiB. */
  bufferSize?: number;
  /** Captured length above which a record is corrupt; default 262144 (libpcap's and Wireshark's limit). */
  maxRecordLen?: number;
  /** pcapng block length above which a block is corrupt; default 16 MiB. */
  maxBlockLen?: number;
  /**
   * Also reject what a writer of ours never produces: a captured length above the file's
   * (interface's) snaplen when it is set, an original length below the captured length, and in
   * classic files a fraction of a second of 1 s or more or an all-zero record header (the
   * zero-filled space a power loss can leave at the end of a file). Off by default because real
   * files break these rules and Wireshark reads them; recovery of our own files turns it on.
   */
  strict?: boolean;
}

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

const DEFAULT_BUFFER_SIZE = 4 << 20;
const DEFAULT_MAX_BLOCK_LEN = 16 << 20;

const PCAP_MAGIC_US_SWAPPED = 0xd4c3b2a1;
const PCAP_MAGIC_NS_SWAPPED = 0x4d3cb2a1;
const PCAP_VERSION_MAJOR = 2;
/** The linktype field's upper bits carry FCS information (pcap-linktype(7)). */
const PCAP_LINKTYPE_MASK = 0x03ffffff;

const NG_SHB = 0x0a0d0d0a;
const NG_BOM = 0x1a2b3c4d;
const NG_BOM_SWAPPED = 0x4d3c2b1a;
const NG_VERSION_MAJOR = 1;
const NG_IDB = 1;
const NG_PB = 2;
const NG_SPB = 3;
const NG_EPB = 6;
const NG_BLOCK_MIN = 12;
const NG_SHB_MIN = 28;
const NG_IDB_MIN = 20;
const NG_SPB_MIN = 16;
const NG_EPB_MIN = 32;
const NG_EPB_DATA = 28;
const NG_SPB_DATA = 12;
const NG_OPT_END = 0;
const NG_IF_TSRESOL = 9;
const NG_IF_TSOFFSET = 14;

function u32(buf: Buffer, off: number, le: boolean): number {
  return le ? buf.readUInt32LE(off) : buf.readUInt32BE(off);
}

function u16(buf: Buffer, off: number, le: boolean): number {
  return le ? buf.readUInt16LE(off) : buf.readUInt16BE(off);
}

/** n rounded up to a multiple of 4; safe for any u32 (no 32-bit overflow). */
function pad4(n: number): number {
  return n + ((4 - (n & 3)) & 3);
}

class Iface implements CaptureInterface {
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

export class CaptureReader {
  /** Records delivered so far. */
  records = 0;
  private fmt: CaptureFormat = 'pcap';
  private buf: Buffer;
  /** Next unparsed byte in buf. */
  private pos = 0;
  /** End of the bytes read into buf. */
  private end = 0;
  /** File offset of buf[0]. */
  private base = 0;
  /** Bytes from pos the unit parsing stopped at needs, and the error if the file ends first. */
  private need = 0;
  private needCode: CaptureErrorCode = CaptureErrorCode.TRUNCATED_HEADER;
  private failure: CaptureError | null = null;
  private done = false;
  private reading = false;
  private closed = false;
  /** Byte order of the classic file or of the current pcapng section. */
  private le = true;
  /** Timestamp fraction unit of a classic file, in ns, and the fractions in a second. */
  private nsPerTick = 1000;
  private ticksPerSec = 1e6;
  private readonly ifaces: Iface[] = [];
  /** Index in ifaces of the current pcapng section's interface 0. */
  private sectionBase = 0;
  private sections = 0;
  private readonly maxRecordLen: number;
  private readonly maxBlockLen: number;
  private readonly strict: boolean;

  private constructor(
    readonly path: string,
    private readonly fh: ByteSource,
    /** 'gzip' or 'zstd' for a compressed file, else null. */
    readonly container: Container | null,
    options: CaptureReaderOptions,
  ) {
    this.buf = Buffer.allocUnsafe(options.bufferSize ?? DEFAULT_BUFFER_SIZE);
    this.maxRecordLen = options.maxRecordLen ?? MAX_SNAPLEN;
    this.maxBlockLen = options.maxBlockLen ?? DEFAULT_MAX_BLOCK_LEN;
    this.strict = options.strict ?? false;
  }

  /**
   * Opens a capture and reads its file header (classic) or recognises its first section
   * header (pcapng). Rejects with a CaptureError for an empty, short or unknown file.
   */
  static async open(path: string, options: CaptureReaderOptions = {}): Promise<CaptureReader> {
    for (const key of ['bufferSize', 'maxRecordLen', 'maxBlockLen'] as const) {
      const v = options[key];
      if (v !== undefined && !(Number.isSafeInteger(v) && v >= 1)) {
        throw new RangeError(`CaptureReader option ${key} must be a positive integer, got ${String(v)}`);
      }
    }
    const { source: fh, container } = await openByteSource(path);
    try {
      const reader = new CaptureReader(path, fh, container, options);
      await reader.start();
      return reader;
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  get format(): CaptureFormat {
    return this.fmt;
  }

  /** Interfaces described so far (pcapng adds them as its IDBs are read). */
  get interfaces(): readonly CaptureInterface[] {
    return this.ifaces;
  }

  /** File offset of the first byte not yet consumed: after a clean end, the file size. */
  get offset(): number {
    return this.base + this.pos;
  }

  /** Current size of the read buffer (it grows only for a unit larger than itself). */
  get bufferSize(): number {
    return this.buf.length;
  }

  /**
   * Delivers every whole record now buffered to `sink` (at least one, reading more of the file
   * first when needed) and resolves true; resolves false at a clean end of file. Rejects with a
   * CaptureError on a corrupt or truncated file, once every whole record before the fault has
   * been delivered (by this call or earlier ones). Calls must not overlap.
   */
  async read(sink: RecordSink): Promise<boolean> {
    if (this.reading) throw new Error('CaptureReader.read() called while a read is in progress');
    this.reading = true;
    try {
      for (;;) {
        if (this.failure !== null) throw this.failure;
        if (this.done) return false;
        const delivered = this.fmt === 'pcap' ? this.parsePcap(sink) : this.parseNg(sink);
        if (delivered > 0) return true;
        if (this.failure === null && !(await this.fill())) {
          if (this.pos === this.end) this.done = true;
          else this.failure = this.truncation();
        }
      }
    } finally {
      this.reading = false;
    }
  }

  /** Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fh.close();
  }

  private async start(): Promise<void> {
    this.need = FILE_HEADER_LEN;
    await this.fill();
    const avail = this.end;
    if (avail < 4) {
      throw this.error(
        CaptureErrorCode.TRUNCATED_HEADER,
        0,
        avail === 0 ? 'empty file' : `file of ${avail} bytes is shorter than any capture header`,
      );
    }
    const magic = this.buf.readUInt32LE(0);
    if (magic === NG_SHB) {
      // The section header is parsed like any block by the first read().
      this.fmt = 'pcapng';
      return;
    }
    let ns: boolean;
    if (magic === PCAP_MAGIC_US || magic === PCAP_MAGIC_US_SWAPPED) ns = false;
    else if (magic === PCAP_MAGIC_NS || magic === PCAP_MAGIC_NS_SWAPPED) ns = true;
    else {
      throw this.error(
        CaptureErrorCode.BAD_MAGIC,
        0,
        `magic 0x${magic.toString(16).padStart(8, '0')} (as little-endian) is neither pcap nor pcapng`,
      );
    }
    if (avail < FILE_HEADER_LEN) {
      throw this.error(
        CaptureErrorCode.TRUNCATED_HEADER,
        0,
        `pcap file header needs ${FILE_HEADER_LEN} bytes, file has ${avail}`,
      );
    }
    const le = magic === PCAP_MAGIC_US || magic === PCAP_MAGIC_NS;
    const buf = this.buf;
    const major = u16(buf, 4, le);
    if (major !== PCAP_VERSION_MAJOR) {
      throw this.error(
        CaptureErrorCode.UNSUPPORTED_VERSION,
        0,
        `pcap version ${major}.${u16(buf, 6, le)} (only 2.x exists)`,
      );
    }
    const snaplen = u32(buf, 16, le);
    const linkType = u32(buf, 20, le) & PCAP_LINKTYPE_MASK;
    this.le = le;
    this.nsPerTick = ns ? 1 : 1000;
    this.ticksPerSec = ns ? 1e9 : 1e6;
    this.ifaces.push(new Iface(0, 0, 0, linkType, snaplen, 10, ns ? 9 : 6, 0, this.limitFor(snaplen)));
    this.pos = FILE_HEADER_LEN;
  }

  private limitFor(snaplen: number): number {
    return this.strict && snaplen !== 0 ? Math.min(snaplen, this.maxRecordLen) : this.maxRecordLen;
  }

  /** Parses whole classic records from pos; returns how many it delivered. */
  private parsePcap(sink: RecordSink): number {
    const buf = this.buf;
    const end = this.end;
    const le = this.le;
    const iface = this.ifaces[0]!;
    const limit = iface.limit;
    const linkType = iface.linkType;
    const nsPerTick = this.nsPerTick;
    const strict = this.strict;
    let pos = this.pos;
    let n = 0;
    for (;;) {
      const avail = end - pos;
      if (avail < RECORD_HEADER_LEN) {
        this.stall(RECORD_HEADER_LEN, CaptureErrorCode.TRUNCATED_RECORD_HEADER);
        break;
      }
      const capLen = u32(buf, pos + 8, le);
      const origLen = u32(buf, pos + 12, le);
      if (capLen > limit) {
        this.fail(CaptureErrorCode.RECORD_TOO_LONG, pos, this.tooLong(capLen, iface));
        break;
      }
      const sec = u32(buf, pos, le);
      const frac = u32(buf, pos + 4, le);
      if (strict) {
        const why = this.implausible(sec, frac, capLen, origLen);
        if (why !== null) {
          this.fail(CaptureErrorCode.BAD_RECORD_HEADER, pos, why);
          break;
        }
      }
      const recLen = RECORD_HEADER_LEN + capLen;
      if (avail < recLen) {
        this.stall(recLen, CaptureErrorCode.TRUNCATED_RECORD);
        break;
      }
      sink(buf, pos + RECORD_HEADER_LEN, capLen, origLen, sec, frac * nsPerTick, linkType, 0);
      n++;
      pos += recLen;
    }
    this.pos = pos;
    this.records += n;
    return n;
  }

  /** Parses whole pcapng blocks from pos; returns how many records it delivered. */
  private parseNg(sink: RecordSink): number {
    const buf = this.buf;
    const end = this.end;
    let pos = this.pos;
    let n = 0;
    for (;;) {
      const avail = end - pos;
      if (avail < NG_BLOCK_MIN) {
        this.stall(NG_BLOCK_MIN, CaptureErrorCode.TRUNCATED_BLOCK);
        break;
      }
      const shb = buf.readUInt32LE(pos) === NG_SHB;
      let le = this.le;
      if (shb) {
        const bom = buf.readUInt32LE(pos + 8);
        if (bom === NG_BOM) le = true;
        else if (bom === NG_BOM_SWAPPED) le = false;
        else {
          this.fail(CaptureErrorCode.BAD_MAGIC, pos, `section header byte-order magic 0x${bom.toString(16).padStart(8, '0')} is not 1a2b3c4d in either order`);
          break;
        }
      }
      const len = u32(buf, pos + 4, le);
      if (len < NG_BLOCK_MIN || (len & 3) !== 0 || len > this.maxBlockLen) {
        this.fail(CaptureErrorCode.BAD_BLOCK_LENGTH, pos, `block length ${len} is ${len > this.maxBlockLen ? `above the limit of ${this.maxBlockLen}` : 'under 12 or not a multiple of 4'}`);
        break;
      }
      if (avail < len) {
        this.stall(len, CaptureErrorCode.TRUNCATED_BLOCK);
        break;
      }
      const trailer = u32(buf, pos + len - 4, le);
      if (trailer !== len) {
        this.fail(CaptureErrorCode.BLOCK_LENGTH_MISMATCH, pos, `block length ${len} at its start but ${trailer} at its end`);
        break;
      }
      const type = shb ? NG_SHB : u32(buf, pos, le);
      if (type === NG_EPB || type === NG_PB) {
        if (len < NG_EPB_MIN) {
          this.fail(CaptureErrorCode.BAD_BLOCK_LENGTH, pos, `packet block of ${len} bytes is shorter than its ${NG_EPB_MIN}-byte minimum`);
          break;
        }
        const id = type === NG_EPB ? u32(buf, pos + 8, le) : u16(buf, pos + 8, le);
        const iface = this.sectionIface(id, pos);
        if (iface === undefined) break;
        const capLen = u32(buf, pos + 20, le);
        const origLen = u32(buf, pos + 24, le);
        if (capLen > iface.limit) {
          this.fail(CaptureErrorCode.RECORD_TOO_LONG, pos, this.tooLong(capLen, iface));
          break;
        }
        if (this.strict && origLen < capLen) {
          this.fail(CaptureErrorCode.BAD_RECORD_HEADER, pos, `original length ${origLen} is below the captured length ${capLen}`);
          break;
        }
        if (NG_EPB_MIN + pad4(capLen) > len) {
          this.fail(CaptureErrorCode.BAD_BLOCK_LENGTH, pos, `packet block of ${len} bytes cannot hold ${capLen} captured bytes`);
          break;
        }
        const ts = iface.ts;
        ts.convert(buf, pos + 12, le);
        sink(buf, pos + NG_EPB_DATA, capLen, origLen, ts.sec, ts.nsec, iface.linkType, iface.index);
        n++;
      } else if (type === NG_SPB) {
        if (len < NG_SPB_MIN) {
          this.fail(CaptureErrorCode.BAD_BLOCK_LENGTH, pos, `simple packet block of ${len} bytes is shorter than its ${NG_SPB_MIN}-byte minimum`);
          break;
        }
        const iface = this.sectionIface(0, pos);
        if (iface === undefined) break;
        const origLen = u32(buf, pos + 8, le);
        // The captured length is not stored: it is the original length cut to the snaplen.
        const capLen = iface.snaplen !== 0 && origLen > iface.snaplen ? iface.snaplen : origLen;
        if (capLen > iface.limit) {
          this.fail(CaptureErrorCode.RECORD_TOO_LONG, pos, this.tooLong(capLen, iface));
          break;
        }
        if (NG_SPB_MIN + capLen > len) {
          this.fail(CaptureErrorCode.BAD_BLOCK_LENGTH, pos, `simple packet block of ${len} bytes cannot hold ${capLen} captured bytes`);
          break;
        }
        // A simple packet block has no timestamp; 0 is what Wireshark shows for it.
        sink(buf, pos + NG_SPB_DATA, capLen, origLen, 0, 0, iface.linkType, iface.index);
        n++;
      } else if (type === NG_IDB) {
        if (!this.interfaceBlock(pos, len, le)) break;
      } else if (type === NG_SHB) {
        if (len < NG_SHB_MIN) {
          this.fail(CaptureErrorCode.BAD_BLOCK_LENGTH, pos, `section header of ${len} bytes is shorter than its ${NG_SHB_MIN}-byte minimum`);
          break;
        }
        const major = u16(buf, pos + 12, le);
        if (major !== NG_VERSION_MAJOR) {
          this.fail(CaptureErrorCode.UNSUPPORTED_VERSION, pos, `pcapng version ${major}.${u16(buf, pos + 14, le)} (only 1.x exists)`);
          break;
        }
        this.le = le;
        this.sectionBase = this.ifaces.length;
        this.sections++;
      }
      pos += len;
      this.pos = pos;
    }
    this.records += n;
    return n;
  }

  /** Interface `id` of the current section, or undefined after recording the failure. */
  private sectionIface(id: number, pos: number): Iface | undefined {
    // The current section's interfaces are the last ones, so an id past them finds nothing.
    const iface = this.ifaces[this.sectionBase + id];
    if (iface === undefined) {
      this.fail(CaptureErrorCode.UNKNOWN_INTERFACE, pos, `packet names interface ${id}, but section ${this.sections - 1} describes ${this.ifaces.length - this.sectionBase}`);
      return undefined;
    }
    return iface;
  }

  /** Reads an IDB into a new interface; false after recording a failure. */
  private interfaceBlock(pos: number, len: number, le: boolean): boolean {
    const buf = this.buf;
    if (len < NG_IDB_MIN) {
      this.fail(CaptureErrorCode.BAD_BLOCK_LENGTH, pos, `interface description of ${len} bytes is shorter than its ${NG_IDB_MIN}-byte minimum`);
      return false;
    }
    const linkType = u16(buf, pos + 8, le);
    const snaplen = u32(buf, pos + 12, le);
    let tsBase: 10 | 2 = 10;
    let tsExponent = 6;
    let tsOffset = 0;
    const optEnd = pos + len - 4;
    for (let o = pos + NG_IDB_MIN - 4; optEnd - o >= 4; ) {
      const code = u16(buf, o, le);
      const optLen = u16(buf, o + 2, le);
      if (code === NG_OPT_END) break;
      if (o + 4 + optLen > optEnd) {
        this.fail(CaptureErrorCode.BAD_OPTION, pos, `interface option ${code} of ${optLen} bytes runs past the end of its block`);
        return false;
      }
      if (code === NG_IF_TSRESOL && optLen >= 1) {
        const v = buf[o + 4]!;
        tsBase = v & 0x80 ? 2 : 10;
        tsExponent = v & 0x7f;
      } else if (code === NG_IF_TSOFFSET && optLen >= 8) {
        tsOffset = Number(le ? buf.readBigInt64LE(o + 4) : buf.readBigInt64BE(o + 4));
      }
      o += 4 + pad4(optLen);
    }
    if (tsExponent > (tsBase === 10 ? MAX_TSRESOL_POW10 : MAX_TSRESOL_POW2)) {
      this.fail(CaptureErrorCode.BAD_OPTION, pos, `if_tsresol ${tsBase}^-${tsExponent} is finer than a 64-bit timestamp can count`);
      return false;
    }
    const section = this.sections - 1;
    this.ifaces.push(new Iface(this.ifaces.length, section, this.ifaces.length - this.sectionBase, linkType, snaplen, tsBase, tsExponent, tsOffset, this.limitFor(snaplen)));
    return true;
  }

  /** Strict mode: why a classic record header cannot come from a writer of ours, or null. */
  private implausible(sec: number, frac: number, capLen: number, origLen: number): string | null {
    if (origLen < capLen) return `original length ${origLen} is below the captured length ${capLen}`;
    if (frac >= this.ticksPerSec) return `fraction of a second ${frac} is not below ${this.ticksPerSec}`;
    if (sec === 0 && frac === 0 && capLen === 0 && origLen === 0) return 'all-zero record header (zero-filled space, as a power loss can leave)';
    return null;
  }

  private tooLong(capLen: number, iface: Iface): string {
    const who = iface.limit < this.maxRecordLen ? 'the snaplen' : 'the record limit';
    return `captured length ${capLen} is above ${who} of ${iface.limit}`;
  }

  /** Parsing stopped at pos for want of bytes: note how many the unit needs. */
  private stall(need: number, code: CaptureErrorCode): void {
    this.need = need;
    this.needCode = code;
  }

  private fail(code: CaptureErrorCode, pos: number, detail: string): void {
    this.pos = pos;
    this.failure = this.error(code, this.base + pos, detail);
  }

  private error(code: CaptureErrorCode, offset: number, detail: string): CaptureError {
    return new CaptureError(code, this.path, offset, detail);
  }

  /** The error for a file that ended inside the unit at pos. */
  private truncation(): CaptureError {
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
  private async fill(): Promise<boolean> {
    const need = this.need;
    if (this.pos > 0) {
      this.buf.copy(this.buf, 0, this.pos, this.end);
      this.base += this.pos;
      this.end -= this.pos;
      this.pos = 0;
    }
    if (need > this.buf.length) {
      // Bounded: need never exceeds a record or block that passed the length limits.
      const grown = Buffer.allocUnsafe(Math.max(need, Math.min(this.buf.length * 2, this.maxUnit())));
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

  private maxUnit(): number {
    return this.fmt === 'pcapng' ? this.maxBlockLen : RECORD_HEADER_LEN + this.maxRecordLen;
  }
}

/** Reads a whole capture into `sink`; resolves the record count. Rejects like read(). */
export async function readCapture(path: string, sink: RecordSink, options?: CaptureReaderOptions): Promise<number> {
  const reader = await CaptureReader.open(path, options);
  try {
    while (await reader.read(sink));
    return reader.records;
  } finally {
    await reader.close();
  }
}
