/**
 * Classic pcap, nanosecond variant (what Wireshark calls "Nanosecond libpcap").
 *
 *  File header (24 bytes, little-endian as written by us):
 *   0  magic 0xa1b23c4d (ns)   4  version 2.4   8  thiszone 0   12 sigfigs 0
 *   16 snaplen                 20 linktype (1 = LINKTYPE_ETHERNET)
 *  Record header (16 bytes):
 *   0  ts_sec   4  ts_nsec   8  incl_len   12 orig_len
 */
export const PCAP_MAGIC_NS = 0xa1b23c4d;
export const PCAP_MAGIC_US = 0xa1b2c3d4;
export const LINKTYPE_ETHERNET = 1;
export const FILE_HEADER_LEN = 24;
export const RECORD_HEADER_LEN = 16;
/** Largest snaplen libpcap accepts; also bounds any record we will write. */
export const MAX_SNAPLEN = 262144;

/** `magic` PCAP_MAGIC_US makes the microsecond variant (records then carry µs in ts_nsec's place). */
export function writeFileHeader(dst: Buffer, off: number, snaplen: number, linktype = LINKTYPE_ETHERNET, magic = PCAP_MAGIC_NS): number {
  dst.writeUInt32LE(magic, off);
  dst.writeUInt16LE(2, off + 4);
  dst.writeUInt16LE(4, off + 6);
  dst.writeInt32LE(0, off + 8);
  dst.writeUInt32LE(0, off + 12);
  dst.writeUInt32LE(snaplen, off + 16);
  dst.writeUInt32LE(linktype, off + 20);
  return off + FILE_HEADER_LEN;
}

/**
 * Writes one record header and copies the frame after it; returns the offset past it.
 * The caller guarantees room for RECORD_HEADER_LEN + inclLen bytes.
 *
 * This runs once per packet: the header is stored byte by byte, which took 64-byte records
 * from about 120 to 75 ns (writeUInt32LE checks its range on every call). A byte loop
 * instead of Buffer.copy was slower at every size (2 ns a byte); Buffer.copy costs about
 * 60-70 ns whatever the size (node 20's _copyActual makes a Uint8Array view per call), so
 * frames under SMALL_COPY bytes are copied 4 bytes at a time through DataViews (copySmall).
 */
export function writeRecord(
  dst: Buffer,
  off: number,
  src: Buffer,
  srcOff: number,
  inclLen: number,
  origLen: number,
  sec: number,
  nsec: number,
): number {
  writeRecordHeader(dst, off, inclLen, origLen, sec, nsec);
  if (inclLen < SMALL_COPY) copySmall(src, srcOff, dst, off + RECORD_HEADER_LEN, inclLen);
  else src.copy(dst, off + RECORD_HEADER_LEN, srcOff, srcOff + inclLen);
  return off + RECORD_HEADER_LEN + inclLen;
}

/** Below this many bytes copySmall beats Buffer.copy (64 B: about 35 against 70 ns; even at about 100). */
const SMALL_COPY = 96;
/**
 * DataViews over the last few arrays copied from or to (a batch's slab, the chunks of its
 * sessions), found by the array itself: its .buffer and .byteOffset are a call into the
 * runtime each (~1.5 % of the afpacket appliance's CPU when read per packet).
 */
const VIEWS = 8;
const viewArrays: (Uint8Array | null)[] = new Array<Uint8Array | null>(VIEWS).fill(null);
const views: DataView[] = new Array<DataView>(VIEWS);
let nextView = 0;

function viewOf(a: Uint8Array): DataView {
  for (let i = 0; i < VIEWS; i++) if (viewArrays[i] === a) return views[i]!;
  const v = new DataView(a.buffer, a.byteOffset, a.byteLength);
  viewArrays[nextView] = a;
  views[nextView] = v;
  nextView = (nextView + 1) % VIEWS;
  return v;
}

/** `n` bytes from src[srcOff] to dst[dstOff], 4 at a time (both within their arrays: the caller checked). */
function copySmall(src: Uint8Array, srcOff: number, dst: Uint8Array, dstOff: number, n: number): void {
  const sv = viewOf(src);
  const dv = viewOf(dst);
  let i = 0;
  for (; i + 4 <= n; i += 4) dv.setUint32(dstOff + i, sv.getUint32(srcOff + i));
  for (; i < n; i++) dst[dstOff + i] = src[srcOff + i]!;
}

/** Only the record header, at dst[off]: the frame follows it where it already lies (zero-copy writes). */
export function writeRecordHeader(dst: Buffer, off: number, inclLen: number, origLen: number, sec: number, nsec: number): void {
  putU32LE(dst, off, sec);
  putU32LE(dst, off + 4, nsec);
  putU32LE(dst, off + 8, inclLen);
  putU32LE(dst, off + 12, origLen);
}

/** v (an unsigned 32-bit value) at dst[off], little-endian. */
function putU32LE(dst: Buffer, off: number, v: number): void {
  dst[off] = v;
  dst[off + 1] = v >>> 8;
  dst[off + 2] = v >>> 16;
  dst[off + 3] = v >>> 24;
}
