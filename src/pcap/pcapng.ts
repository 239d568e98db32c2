/**
 * pcapng (https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-02.html). Every block:
 *
 *    0 type | 4 total length | body ... | total length again (multiple of 4, >= 12)
 *   SHB 0x0a0d0d0a  8 byte-order magic 1a2b3c4d (fixes the section's byte order), 12 major 1
 *   IDB 1           8 linktype u16 | 12 snaplen | 16 options (if_tsresol 9, if_tsoffset 14)
 *   EPB 6           8 interface | 12 ts high | 16 ts low | 20 caplen | 24 origlen | 28 data
 *   PB  2 (obsolete) as EPB, with a u16 interface and a u16 drop count at 8
 *   SPB 3           8 origlen | 12 data (interface 0, no timestamp)
 *   anything else is skipped by its length.
 *
 * Interfaces are numbered per section; records carry a file-wide interface index (first
 * section's interfaces first, then the next section's), so one number names one interface;
 * `interfaces[i].section` and `.sectionIndex` map it back.
 */
import { CaptureErrorCode } from './errors.js';
import { MAX_TSRESOL_POW10, MAX_TSRESOL_POW2 } from './timestamp.js';
import { Iface, pad4, u16, u32, type ReadWindow, type RecordSink } from './window.js';

export const NG_SHB = 0x0a0d0d0a;
export const NG_BOM = 0x1a2b3c4d;
const NG_BOM_SWAPPED = 0x4d3c2b1a;
const NG_VERSION_MAJOR = 1;
export const NG_IDB = 1;
const NG_PB = 2;
const NG_SPB = 3;
export const NG_EPB = 6;
export const NG_BLOCK_MIN = 12;
export const NG_SHB_MIN = 28;
export const NG_IDB_MIN = 20;
const NG_SPB_MIN = 16;
export const NG_EPB_MIN = 32;
export const NG_EPB_DATA = 28;
const NG_SPB_DATA = 12;
const NG_OPT_END = 0;
const NG_IF_TSRESOL = 9;
const NG_IF_TSOFFSET = 14;

/** The parsing state of a pcapng file: byte order and interfaces of the current section. */
export class PcapngParser {
  /** Byte order of the current section. */
  private le = true;
  /** Index in the window's interfaces of the current section's interface 0. */
  private sectionBase = 0;
  private sections = 0;

  constructor(private readonly w: ReadWindow) {}

  /** Parses whole blocks from the window's pos; returns how many records it delivered. */
  parse(sink: RecordSink): number {
    const w = this.w;
    const buf = w.buf;
    const end = w.end;
    const maxBlockLen = w.limits.maxBlockLen;
    let pos = w.pos;
    let n = 0;
    for (;;) {
      const avail = end - pos;
      if (avail < NG_BLOCK_MIN) {
        w.stall(NG_BLOCK_MIN, CaptureErrorCode.TRUNCATED_BLOCK);
        break;
      }
      const shb = buf.readUInt32LE(pos) === NG_SHB;
      let le = this.le;
      if (shb) {
        const bom = buf.readUInt32LE(pos + 8);
        if (bom === NG_BOM) le = true;
        else if (bom === NG_BOM_SWAPPED) le = false;
        else {
          w.fail(CaptureErrorCode.BAD_MAGIC, pos, `section header byte-order magic 0x${bom.toString(16).padStart(8, '0')} is not 1a2b3c4d in either order`);
          break;
        }
      }
      const len = u32(buf, pos + 4, le);
      if (len < NG_BLOCK_MIN || (len & 3) !== 0 || len > maxBlockLen) {
        w.fail(CaptureErrorCode.BAD_BLOCK_LENGTH, pos, `block length ${len} is ${len > maxBlockLen ? `above the limit of ${maxBlockLen}` : 'under 12 or not a multiple of 4'}`);
        break;
      }
      if (avail < len) {
        w.stall(len, CaptureErrorCode.TRUNCATED_BLOCK);
        break;
      }
      const trailer = u32(buf, pos + len - 4, le);
      if (trailer !== len) {
        w.fail(CaptureErrorCode.BLOCK_LENGTH_MISMATCH, pos, `block length ${len} at its start but ${trailer} at its end`);
        break;
      }
      const type = shb ? NG_SHB : u32(buf, pos, le);
      if (type === NG_EPB || type === NG_PB) {
        if (len < NG_EPB_MIN) {
          w.fail(CaptureErrorCode.BAD_BLOCK_LENGTH, pos, `packet block of ${len} bytes is shorter than its ${NG_EPB_MIN}-byte minimum`);
          break;
        }
        const id = type === NG_EPB ? u32(buf, pos + 8, le) : u16(buf, pos + 8, le);
        const iface = this.sectionIface(id, pos);
        if (iface === undefined) break;
        const capLen = u32(buf, pos + 20, le);
        const origLen = u32(buf, pos + 24, le);
        if (capLen > iface.limit) {
          w.fail(CaptureErrorCode.RECORD_TOO_LONG, pos, w.tooLong(capLen, iface));
          break;
        }
        if (w.limits.strict && origLen < capLen) {
          w.fail(CaptureErrorCode.BAD_RECORD_HEADER, pos, `original length ${origLen} is below the captured length ${capLen}`);
          break;
        }
        if (NG_EPB_MIN + pad4(capLen) > len) {
          w.fail(CaptureErrorCode.BAD_BLOCK_LENGTH, pos, `packet block of ${len} bytes cannot hold ${capLen} captured bytes`);
          break;
        }
        const ts = iface.ts;
        ts.convert(buf, pos + 12, le);
        sink(buf, pos + NG_EPB_DATA, capLen, origLen, ts.sec, ts.nsec, iface.linkType, iface.index);
        n++;
      } else if (type === NG_SPB) {
        if (len < NG_SPB_MIN) {
          w.fail(CaptureErrorCode.BAD_BLOCK_LENGTH, pos, `simple packet block of ${len} bytes is shorter than its ${NG_SPB_MIN}-byte minimum`);
          break;
        }
        const iface = this.sectionIface(0, pos);
        if (iface === undefined) break;
        const origLen = u32(buf, pos + 8, le);
        // The captured length is not stored: it is the original length cut to the snaplen.
        const capLen = iface.snaplen !== 0 && origLen > iface.snaplen ? iface.snaplen : origLen;
        if (capLen > iface.limit) {
          w.fail(CaptureErrorCode.RECORD_TOO_LONG, pos, w.tooLong(capLen, iface));
          break;
        }
        if (NG_SPB_MIN + capLen > len) {
          w.fail(CaptureErrorCode.BAD_BLOCK_LENGTH, pos, `simple packet block of ${len} bytes cannot hold ${capLen} captured bytes`);
          break;
        }
        // A simple packet block has no timestamp; 0 is what Wireshark shows for it.
        sink(buf, pos + NG_SPB_DATA, capLen, origLen, 0, 0, iface.linkType, iface.index);
        n++;
      } else if (type === NG_IDB) {
        if (!this.interfaceBlock(pos, len, le)) break;
      } else if (type === NG_SHB) {
        if (len < NG_SHB_MIN) {
          w.fail(CaptureErrorCode.BAD_BLOCK_LENGTH, pos, `section header of ${len} bytes is shorter than its ${NG_SHB_MIN}-byte minimum`);
          break;
        }
        const major = u16(buf, pos + 12, le);
        if (major !== NG_VERSION_MAJOR) {
          w.fail(CaptureErrorCode.UNSUPPORTED_VERSION, pos, `pcapng version ${major}.${u16(buf, pos + 14, le)} (only 1.x exists)`);
          break;
        }
        this.le = le;
        this.sectionBase = w.ifaces.length;
        this.sections++;
      }
      pos += len;
      w.pos = pos;
    }
    w.records += n;
    return n;
  }

  /** Interface `id` of the current section, or undefined after recording the failure. */
  private sectionIface(id: number, pos: number): Iface | undefined {
    const w = this.w;
    // The current section's interfaces are the last ones, so an id past them finds nothing.
    const iface = w.ifaces[this.sectionBase + id];
    if (iface === undefined) {
      w.fail(CaptureErrorCode.UNKNOWN_INTERFACE, pos, `packet names interface ${id}, but section ${this.sections - 1} describes ${w.ifaces.length - this.sectionBase}`);
      return undefined;
    }
    return iface;
  }

  /** Reads an IDB into a new interface; false after recording a failure. */
  private interfaceBlock(pos: number, len: number, le: boolean): boolean {
    const w = this.w;
    const buf = w.buf;
    if (len < NG_IDB_MIN) {
      w.fail(CaptureErrorCode.BAD_BLOCK_LENGTH, pos, `interface description of ${len} bytes is shorter than its ${NG_IDB_MIN}-byte minimum`);
      return false;
    }
    const linkType = u16(buf, pos + 8, le);
    const snaplen = u32(buf, pos + 12, le);
    const ts = interfaceTimestamps(buf, pos, len, le);
    if (typeof ts === 'string') {
      w.fail(CaptureErrorCode.BAD_OPTION, pos, ts);
      return false;
    }
    const { base: tsBase, exponent: tsExponent, offset: tsOffset } = ts;
    const ifaces = w.ifaces;
    ifaces.push(new Iface(ifaces.length, this.sections - 1, ifaces.length - this.sectionBase, linkType, snaplen, tsBase, tsExponent, tsOffset, w.limitFor(snaplen)));
    return true;
  }
}

/**
 * The timestamp unit (if_tsresol, default 10^-6) and offset (if_tsoffset) of the interface
 * description at buf[pos, pos + len), or why they cannot be used. Once per interface.
 */
export function interfaceTimestamps(buf: Buffer, pos: number, len: number, le: boolean): { base: 10 | 2; exponent: number; offset: number } | string {
  let base: 10 | 2 = 10;
  let exponent = 6;
  let offset = 0;
  const optEnd = pos + len - 4;
  for (let o = pos + NG_IDB_MIN - 4; optEnd - o >= 4; ) {
    const code = u16(buf, o, le);
    const optLen = u16(buf, o + 2, le);
    if (code === NG_OPT_END) break;
    if (o + 4 + optLen > optEnd) return `interface option ${code} of ${optLen} bytes runs past the end of its block`;
    if (code === NG_IF_TSRESOL && optLen >= 1) {
      const v = buf[o + 4]!;
      base = v & 0x80 ? 2 : 10;
      exponent = v & 0x7f;
    } else if (code === NG_IF_TSOFFSET && optLen >= 8) {
      offset = Number(le ? buf.readBigInt64LE(o + 4) : buf.readBigInt64BE(o + 4));
    }
    o += 4 + pad4(optLen);
  }
  if (exponent > (base === 10 ? MAX_TSRESOL_POW10 : MAX_TSRESOL_POW2)) return `if_tsresol ${base}^-${exponent} is finer than a 64-bit timestamp can count`;
  return { base, exponent, offset };
}
