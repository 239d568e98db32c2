/**
 * Writing pcapng (draft-ietf-opsawg-pcapng), little-endian, one section and one interface per
 * file: what a capture file of ours holds when --format pcapng.
 *
 *   SHB  0x0a0d0d0a | len | 1a2b3c4d | 1.0 | section length -1 | options | len
 *          shb_hardware 2, shb_os 3, shb_userappl 4
 *   IDB  1 | len | linktype u16 | reserved u16 | snaplen | options | len
 *          if_name 2, if_description 3, if_tsresol 9 (= 9: nanoseconds), if_filter 11 (0 + text)
 *   EPB  6 | len | interface 0 | ts high | ts low | caplen | origlen | data, padded to 4 | len
 *   ISB  5 | len | interface 0 | ts high | ts low | options | len          (written at close)
 *          isb_starttime 2, isb_endtime 3, isb_ifrecv 4, isb_ifdrop 5, isb_filteraccept 6, isb_usrdeliv 8
 *
 * The headers and the statistics are built once per file (a Buffer each); a packet block is
 * written straight into the caller's chunk by writeEpb(), which allocates nothing: the 64-bit
 * nanosecond timestamp is split into its halves with 16-bit limbs, every intermediate exact
 * in a double.
 */
import { NG_BOM, NG_EPB, NG_IDB, NG_SHB } from './pcapng.js';
import { pad4 } from './window.js';

export const NG_EPB_HEADER_LEN = 28;
/** Header and trailer of a packet block: its length is this plus the data padded to 4. */
export const NG_EPB_OVERHEAD = NG_EPB_HEADER_LEN + 4;
const NG_ISB = 5;
/** if_tsresol 9: timestamps count nanoseconds. */
const TSRESOL_NS = 9;
/** An option's value is at most this long (its length field is 16 bits, and it is padded to 4). */
const MAX_OPTION = 65532;

const OPT_END = 0;
const SHB_HARDWARE = 2;
const SHB_OS = 3;
const SHB_USERAPPL = 4;
const IF_NAME = 2;
const IF_DESCRIPTION = 3;
const IF_TSRESOL = 9;
const IF_FILTER = 11;
const ISB_STARTTIME = 2;
const ISB_ENDTIME = 3;
const ISB_IFRECV = 4;
const ISB_IFDROP = 5;
const ISB_FILTERACCEPT = 6;
const ISB_USRDELIV = 8;

const TWO16 = 65536;
const TWO32 = 4294967296;

export interface SectionInfo {
  /** shb_userappl, e.g. "mirrorcap 1.4.0". */
  readonly application: string;
  /** shb_os, e.g. "Linux 6.1.0". */
  readonly os: string;
  /** shb_hardware, e.g. "x64". */
  readonly hardware: string;
}

export interface InterfaceInfo {
  readonly linkType: number;
  readonly snaplen: number;
  /** if_name. */
  readonly name: string;
  /** if_description. */
  readonly description: string;
  /** if_filter, as libpcap filter text (code 0); null = none. */
  readonly filter: string | null;
}

export interface InterfaceStatistics {
  readonly startSec: number;
  readonly startNsec: number;
  readonly endSec: number;
  readonly endNsec: number;
  /** isb_ifrecv: packets received. */
  readonly received: number;
  /** isb_ifdrop: packets dropped for want of resources (queue, disk). */
  readonly dropped: number;
  /** isb_filteraccept: packets the capture filter accepted. */
  readonly accepted: number;
  /** isb_usrdeliv: packets written to the file. */
  readonly delivered: number;
}

/** Length of the packet block holding `capLen` bytes of data. */
export function epbLength(capLen: number): number {
  return NG_EPB_OVERHEAD + pad4(capLen);
}

/** The section header and the interface description that open a file. */
export function fileHeader(section: SectionInfo, iface: InterfaceInfo): Buffer {
  const shb = block(NG_SHB, 16, [
    [SHB_HARDWARE, text(section.hardware)],
    [SHB_OS, text(section.os)],
    [SHB_USERAPPL, text(section.application)],
  ]);
  shb.writeUInt32LE(NG_BOM, 8);
  shb.writeUInt16LE(1, 12); // version 1.0
  shb.writeUInt16LE(0, 14);
  // Section length -1: not stated (it grows while the file is written).
  shb.writeInt32LE(-1, 16);
  shb.writeInt32LE(-1, 20);
  const tsresol = Buffer.of(TSRESOL_NS);
  const options: Array<[number, Buffer]> = [
    [IF_NAME, text(iface.name)],
    [IF_DESCRIPTION, text(iface.description)],
    [IF_TSRESOL, tsresol],
  ];
  // if_filter: a code byte (0 = libpcap filter string), then the text.
  if (iface.filter !== null) options.push([IF_FILTER, Buffer.concat([Buffer.of(0), text(iface.filter, MAX_OPTION - 1)])]);
  const idb = block(NG_IDB, 8, options);
  idb.writeUInt16LE(iface.linkType, 8);
  idb.writeUInt16LE(0, 10);
  idb.writeUInt32LE(iface.snaplen, 12);
  return Buffer.concat([shb, idb]);
}

/** The interface statistics block that ends a file (its timestamp is the end of the span). */
export function statisticsBlock(s: InterfaceStatistics): Buffer {
  const isb = block(NG_ISB, 12, [
    [ISB_STARTTIME, timestamp(s.startSec, s.startNsec)],
    [ISB_ENDTIME, timestamp(s.endSec, s.endNsec)],
    [ISB_IFRECV, u64(s.received)],
    [ISB_IFDROP, u64(s.dropped)],
    [ISB_FILTERACCEPT, u64(s.accepted)],
    [ISB_USRDELIV, u64(s.delivered)],
  ]);
  isb.writeUInt32LE(0, 8); // interface 0
  writeTimestamp(isb, 12, s.endSec, s.endNsec);
  return isb;
}

/**
 * Writes one enhanced packet block for interface 0 and copies the frame into it; returns the
 * offset past it. The caller guarantees room for epbLength(inclLen) bytes. No allocation.
 */
export function writeEpb(dst: Buffer, off: number, src: Buffer, srcOff: number, inclLen: number, origLen: number, sec: number, nsec: number): number {
  const len = NG_EPB_OVERHEAD + pad4(inclLen);
  dst.writeUInt32LE(NG_EPB, off);
  dst.writeUInt32LE(len, off + 4);
  dst.writeUInt32LE(0, off + 8);
  writeTimestamp(dst, off + 12, sec, nsec);
  dst.writeUInt32LE(inclLen, off + 20);
  dst.writeUInt32LE(origLen, off + 24);
  const data = off + NG_EPB_HEADER_LEN;
  src.copy(dst, data, srcOff, srcOff + inclLen);
  // Padding bytes are zero (pooled chunks hold old data).
  for (let p = data + inclLen, end = off + len - 4; p < end; p++) dst[p] = 0;
  dst.writeUInt32LE(len, off + len - 4);
  return off + len;
}

/**
 * sec * 1e9 + nsec as pcapng's two 32-bit halves (high first). The product reaches 2^62, past
 * a double's exact range, so it is formed from sec's 16-bit halves: a = lo16 * 1e9 + nsec and
 * b = hi16 * 1e9 stay below 2^46, and the value is b * 2^16 + a.
 */
function writeTimestamp(dst: Buffer, off: number, sec: number, nsec: number): void {
  const a = (sec & 0xffff) * 1e9 + nsec;
  const b = Math.floor(sec / TWO16) * 1e9;
  const bLow = b % TWO16;
  const lowSum = (a % TWO32) + bLow * TWO16;
  const lo = lowSum % TWO32;
  const hi = Math.floor(a / TWO32) + Math.floor(b / TWO16) + Math.floor(lowSum / TWO32);
  dst.writeUInt32LE(hi, off);
  dst.writeUInt32LE(lo, off + 4);
}

function timestamp(sec: number, nsec: number): Buffer {
  const b = Buffer.alloc(8);
  writeTimestamp(b, 0, sec, nsec);
  return b;
}

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(Math.max(0, Math.floor(n))));
  return b;
}

/** UTF-8 text of an option, cut (at a character boundary) to what an option holds. */
function text(s: string, max = MAX_OPTION): Buffer {
  let b = Buffer.from(s, 'utf8');
  if (b.length > max) {
    let end = max;
    while (end > 0 && (b[end]! & 0xc0) === 0x80) end--;
    b = b.subarray(0, end);
  }
  return b;
}

/** A block of `type` with `fixed` bytes after type and length, then the options, end of options, and the trailer. */
function block(type: number, fixed: number, options: ReadonlyArray<readonly [number, Buffer]>): Buffer {
  const present = options.filter(([, v]) => v.length > 0);
  const optLen = present.reduce((n, [, v]) => n + 4 + pad4(v.length), 0) + 4;
  const len = 8 + fixed + optLen + 4;
  const b = Buffer.alloc(len);
  b.writeUInt32LE(type, 0);
  b.writeUInt32LE(len, 4);
  let o = 8 + fixed;
  for (const [code, v] of present) {
    b.writeUInt16LE(code, o);
    b.writeUInt16LE(v.length, o + 2);
    v.copy(b, o + 4);
    o += 4 + pad4(v.length);
  }
  b.writeUInt16LE(OPT_END, o);
  b.writeUInt16LE(0, o + 2);
  b.writeUInt32LE(len, len - 4);
  return b;
}

/** Length of every statistics block statisticsBlock() makes (its options are fixed). */
export const NG_ISB_LEN = statisticsBlock({ startSec: 0, startNsec: 0, endSec: 0, endNsec: 0, received: 0, dropped: 0, accepted: 0, delivered: 0 }).length;
