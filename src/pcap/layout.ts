/**
 * Where the records of a capture file are and how to walk them from any record boundary: what
 * the index builder and the query need of a file, for both formats a writer of ours makes.
 *
 *   classic  file header (24) │ rec │ rec │ ...                      records: 16-byte header + frame
 *   pcapng   SHB │ IDB │ EPB │ EPB │ ... │ ISB                       one section, one interface
 *            ▲ dataStart = after the IDB; blocks other than EPB (statistics, name resolution,
 *              custom) are stepped over; a second section or interface ends the walk, since
 *              one link type and one timestamp unit is all a layout knows.
 *
 * layoutOf() reads the header once; walk() then delivers records like classic.ts's
 * walkRecords (the sink gets the frame and where its record or block starts in the file) and
 * allocates nothing per record: pcapng timestamps go through the interface's converter.
 */
import { impossibleRecord, parseClassicHeader, walkRecords, type ClassicHeader, type ClassicSink } from './classic.js';
import { FILE_HEADER_LEN, MAX_SNAPLEN } from './pcap.js';
import { interfaceTimestamps, NG_BLOCK_MIN, NG_BOM, NG_EPB, NG_EPB_DATA, NG_EPB_MIN, NG_IDB, NG_IDB_MIN, NG_SHB, NG_SHB_MIN } from './pcapng.js';
import { TimestampConverter } from './timestamp.js';
import { pad4, u16, u32 } from './window.js';

/** Bytes of a file's start that layoutOf() needs at most (a pcapng header of ours is far less). */
export const LAYOUT_HEAD_LEN = 64 * 1024;

export interface RecordLayout {
  readonly format: 'pcap' | 'pcapng';
  readonly linkType: number;
  /** 0 when the file does not state one (pcapng allows it). */
  readonly snaplen: number;
  /** File offset of the first record. */
  readonly dataStart: number;
  /**
   * Delivers the whole records of buf[pos, end) (buf[pos] being file offset base + pos, at a
   * record boundary) to `sink`; returns the position of the first byte not delivered.
   */
  walk(buf: Buffer, pos: number, end: number, base: number, sink: ClassicSink): number;
  /** Whether what starts at buf[pos] can never be walked (as opposed to needing more bytes). */
  impossible(buf: Buffer, pos: number, end: number): boolean;
}

/** The layout of the file whose first bytes are `head`, or null (not a capture, or a pcapng file whose header is not whole in `head`). */
export function layoutOf(head: Buffer): RecordLayout | null {
  if (head.length >= 4 && head.readUInt32LE(0) === NG_SHB) return PcapngLayout.parse(head);
  const h = head.length >= FILE_HEADER_LEN ? parseClassicHeader(head.subarray(0, FILE_HEADER_LEN)) : null;
  return h === null ? null : new ClassicLayout(h);
}

/** A capture's first bytes as readLayout() took them. */
export interface LayoutHead {
  /** Null: not a capture of ours (or its header is cut short: see whole). */
  readonly layout: RecordLayout | null;
  /** The bytes read, up to the first record. */
  readonly head: Buffer;
  /** False when the file ended inside its header (an open file just begun). */
  readonly whole: boolean;
}

/**
 * Reads a capture's header through `read` and never past its first record, since a compressed
 * source reads forward only: 24 bytes for classic pcap; for pcapng the section header, then
 * the interface block it announces.
 */
export async function readLayout(read: (buf: Buffer, off: number, len: number, pos: number) => Promise<number>): Promise<LayoutHead> {
  const head = Buffer.alloc(LAYOUT_HEAD_LEN);
  let have = 0;
  const fill = async (want: number): Promise<boolean> => {
    const upTo = Math.min(want, LAYOUT_HEAD_LEN);
    while (have < upTo) {
      const n = await read(head, have, upTo - have, have);
      if (n === 0) return false;
      have += n;
    }
    return true;
  };
  const cut = (): LayoutHead => ({ layout: null, head: head.subarray(0, have), whole: false });
  if (!(await fill(FILE_HEADER_LEN))) return cut();
  if (head.readUInt32LE(0) === NG_SHB) {
    const le = head.readUInt32LE(8) === NG_BOM;
    const shbLen = u32(head, 4, le);
    if (!(await fill(shbLen + 8))) return cut();
    if (shbLen + 8 <= have && !(await fill(shbLen + u32(head, shbLen + 4, le)))) return cut();
  }
  return { layout: layoutOf(head.subarray(0, have)), head: head.subarray(0, have), whole: true };
}

class ClassicLayout implements RecordLayout {
  readonly format = 'pcap';
  readonly dataStart = FILE_HEADER_LEN;
  readonly linkType: number;
  readonly snaplen: number;

  constructor(private readonly h: ClassicHeader) {
    this.linkType = h.linkType;
    this.snaplen = h.snaplen;
  }

  walk(buf: Buffer, pos: number, end: number, base: number, sink: ClassicSink): number {
    return walkRecords(buf, pos, end, base, this.h, sink);
  }

  impossible(buf: Buffer, pos: number, end: number): boolean {
    return impossibleRecord(buf, pos, end, this.h);
  }
}

/** A block longer than this is taken for corruption (the reader's limit too). */
const NG_MAX_BLOCK = 16 << 20;

class PcapngLayout implements RecordLayout {
  readonly format = 'pcapng';

  private constructor(
    private readonly le: boolean,
    readonly linkType: number,
    readonly snaplen: number,
    readonly dataStart: number,
    private readonly ts: TimestampConverter,
  ) {}

  /** A section header followed at once by an interface description, both whole in `head`. */
  static parse(head: Buffer): PcapngLayout | null {
    if (head.length < NG_SHB_MIN) return null;
    const bom = head.readUInt32LE(8);
    const le = bom === NG_BOM;
    if (!le && head.readUInt32BE(8) !== NG_BOM) return null;
    const shbLen = u32(head, 4, le);
    if (shbLen < NG_SHB_MIN || (shbLen & 3) !== 0 || head.length < shbLen + NG_IDB_MIN) return null;
    const pos = shbLen;
    const idbLen = u32(head, pos + 4, le);
    if (u32(head, pos, le) !== NG_IDB || idbLen < NG_IDB_MIN || (idbLen & 3) !== 0 || head.length < pos + idbLen) return null;
    const ts = interfaceTimestamps(head, pos, idbLen, le);
    if (typeof ts === 'string') return null;
    return new PcapngLayout(le, u16(head, pos + 8, le), u32(head, pos + 12, le), pos + idbLen, new TimestampConverter(ts.base, ts.exponent, ts.offset));
  }

  walk(buf: Buffer, pos: number, end: number, base: number, sink: ClassicSink): number {
    const le = this.le;
    const ts = this.ts;
    for (;;) {
      if (end - pos < NG_BLOCK_MIN) return pos;
      const type = u32(buf, pos, le);
      const len = u32(buf, pos + 4, le);
      if (len < NG_BLOCK_MIN || (len & 3) !== 0 || len > NG_MAX_BLOCK || type === NG_SHB || type === NG_IDB) return pos;
      if (end - pos < len) return pos;
      if (type === NG_EPB) {
        const capLen = u32(buf, pos + 20, le);
        if (len < NG_EPB_MIN || u32(buf, pos + 8, le) !== 0 || capLen > MAX_SNAPLEN || NG_EPB_MIN + pad4(capLen) > len) return pos;
        ts.convert(buf, pos + 12, le);
        sink(buf, pos + NG_EPB_DATA, capLen, u32(buf, pos + 24, le), ts.sec, ts.nsec, base + pos);
      }
      pos += len;
    }
  }

  impossible(buf: Buffer, pos: number, end: number): boolean {
    if (end - pos < NG_BLOCK_MIN) return false;
    const le = this.le;
    const type = u32(buf, pos, le);
    const len = u32(buf, pos + 4, le);
    if (len < NG_BLOCK_MIN || (len & 3) !== 0 || len > NG_MAX_BLOCK || type === NG_SHB || type === NG_IDB) return true;
    if (type !== NG_EPB || end - pos < NG_EPB_MIN) return false;
    const capLen = u32(buf, pos + 20, le);
    return len < NG_EPB_MIN || u32(buf, pos + 8, le) !== 0 || capLen > MAX_SNAPLEN || NG_EPB_MIN + pad4(capLen) > len;
  }
}
