/**
 * Streaming capture reader: classic pcap and pcapng, any size, flat memory.
 *
 * Classic pcap (both byte orders; magic a1b2c3d4 = µs, a1b23c4d = ns):
 *   file header 24 bytes: magic | version 2.x | thiszone | sigfigs | snaplen | linktype
 *   record: ts_sec | ts_frac | incl_len | orig_len (16 bytes), then incl_len bytes
 *
 * pcapng: its blocks are parsed by pcapng.ts, over the same buffer window (window.ts).
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
 * a decompressing source (compressed.ts); offsets are then uncompressed offsets.
 */
import type { Container } from './blocks.js';
import { openByteSource, type ByteSource } from './compressed.js';
import { codedError, ErrorCode } from '../errors.js';
import { CaptureErrorCode } from './errors.js';
import { PcapngParser, NG_SHB } from './pcapng.js';
import { FILE_HEADER_LEN, MAX_SNAPLEN, PCAP_MAGIC_NS, PCAP_MAGIC_US, RECORD_HEADER_LEN } from './pcap.js';
import { Iface, ReadWindow, u16, u32, type CaptureInterface, type RecordSink } from './window.js';

export type { CaptureInterface, RecordSink };

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

const DEFAULT_BUFFER_SIZE = 4 << 20;
const DEFAULT_MAX_BLOCK_LEN = 16 << 20;

const PCAP_MAGIC_US_SWAPPED = 0xd4c3b2a1;
const PCAP_MAGIC_NS_SWAPPED = 0x4d3cb2a1;
const PCAP_VERSION_MAJOR = 2;
/** The linktype field's upper bits carry FCS information (pcap-linktype(7)). */
const PCAP_LINKTYPE_MASK = 0x03ffffff;

export class CaptureReader {
  private fmt: CaptureFormat = 'pcap';
  private readonly w: ReadWindow;
  private ng: PcapngParser | null = null;
  private done = false;
  private reading = false;
  private closed = false;
  /** Byte order of the classic file. */
  private le = true;
  /** Timestamp fraction unit of a classic file, in ns, and the fractions in a second. */
  private nsPerTick = 1000;
  private ticksPerSec = 1e6;

  private constructor(
    readonly path: string,
    private readonly fh: ByteSource,
    /** 'gzip' or 'zstd' for a compressed file, else null. */
    readonly container: Container | null,
    options: CaptureReaderOptions,
  ) {
    this.w = new ReadWindow(path, fh, options.bufferSize ?? DEFAULT_BUFFER_SIZE, {
      maxRecordLen: options.maxRecordLen ?? MAX_SNAPLEN,
      maxBlockLen: options.maxBlockLen ?? DEFAULT_MAX_BLOCK_LEN,
      strict: options.strict ?? false,
    });
  }

  /**
   * Opens a capture and reads its file header (classic) or recognises its first section
   * header (pcapng). Rejects with a CaptureError for an empty, short or unknown file.
   */
  static async open(path: string, options: CaptureReaderOptions = {}): Promise<CaptureReader> {
    for (const key of ['bufferSize', 'maxRecordLen', 'maxBlockLen'] as const) {
      const v = options[key];
      if (v !== undefined && !(Number.isSafeInteger(v) && v >= 1)) {
        throw codedError(ErrorCode.INVALID_ARGUMENT, `CaptureReader option ${key} must be a positive integer, got ${String(v)}`, RangeError);
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

  /** Records delivered so far. */
  get records(): number {
    return this.w.records;
  }

  /** Interfaces described so far (pcapng adds them as its IDBs are read). */
  get interfaces(): readonly CaptureInterface[] {
    return this.w.ifaces;
  }

  /** File offset of the first byte not yet consumed: after a clean end, the file size. */
  get offset(): number {
    return this.w.base + this.w.pos;
  }

  /** Current size of the read buffer (it grows only for a unit larger than itself). */
  get bufferSize(): number {
    return this.w.buf.length;
  }

  /**
   * Delivers every whole record now buffered to `sink` (at least one, reading more of the file
   * first when needed) and resolves true; resolves false at a clean end of file. Rejects with a
   * CaptureError on a corrupt or truncated file, once every whole record before the fault has
   * been delivered (by this call or earlier ones). Calls must not overlap.
   */
  async read(sink: RecordSink): Promise<boolean> {
    if (this.reading) throw codedError(ErrorCode.INVALID_STATE, 'CaptureReader.read() called while a read is in progress');
    this.reading = true;
    const w = this.w;
    try {
      for (;;) {
        if (w.failure !== null) throw w.failure;
        if (this.done) return false;
        const delivered = this.ng === null ? this.parsePcap(sink) : this.ng.parse(sink);
        if (delivered > 0) return true;
        if (w.failure === null && !(await w.fill())) {
          if (w.pos === w.end) this.done = true;
          else w.failure = w.truncation();
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
    const w = this.w;
    w.stall(FILE_HEADER_LEN, CaptureErrorCode.TRUNCATED_HEADER);
    await w.fill();
    const avail = w.end;
    if (avail < 4) {
      throw w.error(
        CaptureErrorCode.TRUNCATED_HEADER,
        0,
        avail === 0 ? 'empty file' : `file of ${avail} bytes is shorter than any capture header`,
      );
    }
    const magic = w.buf.readUInt32LE(0);
    if (magic === NG_SHB) {
      // The section header is parsed like any block by the first read().
      this.fmt = 'pcapng';
      this.ng = new PcapngParser(w);
      return;
    }
    let ns: boolean;
    if (magic === PCAP_MAGIC_US || magic === PCAP_MAGIC_US_SWAPPED) ns = false;
    else if (magic === PCAP_MAGIC_NS || magic === PCAP_MAGIC_NS_SWAPPED) ns = true;
    else {
      throw w.error(
        CaptureErrorCode.BAD_MAGIC,
        0,
        `magic 0x${magic.toString(16).padStart(8, '0')} (as little-endian) is neither pcap nor pcapng`,
      );
    }
    if (avail < FILE_HEADER_LEN) {
      throw w.error(
        CaptureErrorCode.TRUNCATED_HEADER,
        0,
        `pcap file header needs ${FILE_HEADER_LEN} bytes, file has ${avail}`,
      );
    }
    const le = magic === PCAP_MAGIC_US || magic === PCAP_MAGIC_NS;
    const buf = w.buf;
    const major = u16(buf, 4, le);
    if (major !== PCAP_VERSION_MAJOR) {
      throw w.error(
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
    w.maxUnit = RECORD_HEADER_LEN + w.limits.maxRecordLen;
    w.ifaces.push(new Iface(0, 0, 0, linkType, snaplen, 10, ns ? 9 : 6, 0, w.limitFor(snaplen)));
    w.pos = FILE_HEADER_LEN;
  }

  /** Parses whole classic records from pos; returns how many it delivered. */
  private parsePcap(sink: RecordSink): number {
    const w = this.w;
    const buf = w.buf;
    const end = w.end;
    const le = this.le;
    const iface = w.ifaces[0]!;
    const limit = iface.limit;
    const linkType = iface.linkType;
    const nsPerTick = this.nsPerTick;
    const strict = w.limits.strict;
    let pos = w.pos;
    let n = 0;
    for (;;) {
      const avail = end - pos;
      if (avail < RECORD_HEADER_LEN) {
        w.stall(RECORD_HEADER_LEN, CaptureErrorCode.TRUNCATED_RECORD_HEADER);
        break;
      }
      const capLen = u32(buf, pos + 8, le);
      const origLen = u32(buf, pos + 12, le);
      if (capLen > limit) {
        w.fail(CaptureErrorCode.RECORD_TOO_LONG, pos, w.tooLong(capLen, iface));
        break;
      }
      const sec = u32(buf, pos, le);
      const frac = u32(buf, pos + 4, le);
      if (strict) {
        const why = this.implausible(sec, frac, capLen, origLen);
        if (why !== null) {
          w.fail(CaptureErrorCode.BAD_RECORD_HEADER, pos, why);
          break;
        }
      }
      const recLen = RECORD_HEADER_LEN + capLen;
      if (avail < recLen) {
        w.stall(recLen, CaptureErrorCode.TRUNCATED_RECORD);
        break;
      }
      sink(buf, pos + RECORD_HEADER_LEN, capLen, origLen, sec, frac * nsPerTick, linkType, 0);
      n++;
      pos += recLen;
    }
    w.pos = pos;
    w.records += n;
    return n;
  }

  /** Strict mode: why a classic record header cannot come from a writer of ours, or null. */
  private implausible(sec: number, frac: number, capLen: number, origLen: number): string | null {
    if (origLen < capLen) return `original length ${origLen} is below the captured length ${capLen}`;
    if (frac >= this.ticksPerSec) return `fraction of a second ${frac} is not below ${this.ticksPerSec}`;
    if (sec === 0 && frac === 0 && capLen === 0 && origLen === 0) return 'all-zero record header (zero-filled space, as a power loss can leave)';
    return null;
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
