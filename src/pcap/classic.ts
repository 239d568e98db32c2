/**
 * Classic pcap records walked in a buffer that holds any stretch of the file, knowing where
 * each record starts in the file: what the index builder (record offsets) and the query
 * (reading only the stretches the index names) need, and CaptureReader does not give.
 *
 *   file header (24) │ rec hdr (16) │ frame │ rec hdr │ frame │ ... │ torn tail (a .part still written)
 *                     ▲ base + pos
 *
 * walkRecords() stops at the first record that does not fit whole in the buffer (more of the
 * file is needed, or the file ends there) or whose captured length is impossible; the caller
 * tells the two apart by whether the file goes on. Nothing is allocated per record.
 */
import { FILE_HEADER_LEN, MAX_SNAPLEN, PCAP_MAGIC_NS, PCAP_MAGIC_US, RECORD_HEADER_LEN } from './pcap.js';

export interface ClassicHeader {
  readonly le: boolean;
  /** Timestamp fractions are nanoseconds (else microseconds). */
  readonly ns: boolean;
  readonly snaplen: number;
  readonly linkType: number;
}

/** The classic file header at buf[0, 24), or null when it is not one (pcapng, short, bad magic or version). */
export function parseClassicHeader(buf: Buffer): ClassicHeader | null {
  if (buf.length < FILE_HEADER_LEN) return null;
  const magicLe = buf.readUInt32LE(0);
  const magicBe = buf.readUInt32BE(0);
  let le: boolean;
  let ns: boolean;
  if (magicLe === PCAP_MAGIC_NS || magicLe === PCAP_MAGIC_US) [le, ns] = [true, magicLe === PCAP_MAGIC_NS];
  else if (magicBe === PCAP_MAGIC_NS || magicBe === PCAP_MAGIC_US) [le, ns] = [false, magicBe === PCAP_MAGIC_NS];
  else return null;
  const major = le ? buf.readUInt16LE(4) : buf.readUInt16BE(4);
  if (major !== 2) return null;
  const snaplen = le ? buf.readUInt32LE(16) : buf.readUInt32BE(16);
  const linkType = (le ? buf.readUInt32LE(20) : buf.readUInt32BE(20)) & 0x03ffffff;
  return { le, ns, snaplen, linkType };
}

/**
 * One record: the frame is buf[off, off + capLen), its record header the 16 bytes before it;
 * `fileOffset` is where that header starts in the file. tsNsec is converted from µs if needed.
 */
export type ClassicSink = (buf: Buffer, off: number, capLen: number, origLen: number, tsSec: number, tsNsec: number, fileOffset: number) => void;

/**
 * Delivers the whole records of buf[pos, end) (buf[pos] being file offset base + pos) to
 * `sink`; returns the position of the first byte not delivered (end when all were whole).
 */
export function walkRecords(buf: Buffer, pos: number, end: number, base: number, h: ClassicHeader, sink: ClassicSink): number {
  const le = h.le;
  const mul = h.ns ? 1 : 1000;
  for (;;) {
    if (end - pos < RECORD_HEADER_LEN) return pos;
    const capLen = le ? buf.readUInt32LE(pos + 8) : buf.readUInt32BE(pos + 8);
    if (capLen > MAX_SNAPLEN || end - pos - RECORD_HEADER_LEN < capLen) return pos;
    const sec = le ? buf.readUInt32LE(pos) : buf.readUInt32BE(pos);
    const frac = le ? buf.readUInt32LE(pos + 4) : buf.readUInt32BE(pos + 4);
    const origLen = le ? buf.readUInt32LE(pos + 12) : buf.readUInt32BE(pos + 12);
    sink(buf, pos + RECORD_HEADER_LEN, capLen, origLen, sec, frac * mul, base + pos);
    pos += RECORD_HEADER_LEN + capLen;
  }
}

/** Whether the record at buf[pos] has an impossible captured length (as opposed to needing more bytes). */
export function impossibleRecord(buf: Buffer, pos: number, end: number, h: ClassicHeader): boolean {
  if (end - pos < RECORD_HEADER_LEN) return false;
  return (h.le ? buf.readUInt32LE(pos + 8) : buf.readUInt32BE(pos + 8)) > MAX_SNAPLEN;
}

export { FILE_HEADER_LEN, RECORD_HEADER_LEN };
