/**
 * Compressed captures in blocks: how a .pcap.gz written by mirrorcap is laid out, so that a
 * reader can start decompressing at any block instead of at byte 0.
 *
 *   raw file    | block 0 (blockSize bytes) | block 1 | ... | block n-1 (the rest) |
 *   .pcap.gz    | member 0 | member 1 | ... | member n-1 | empty member: seek table in FEXTRA |
 *
 * Each block is its own gzip member, so the file is still one valid .gz that gzip -d, zlib and
 * Wireshark read from start to end, and decompression may also begin at any member.
 *
 * The seek table has the layout of zstd's seekable format (contrib/seekable_format), without
 * checksums:
 *
 *   entries   n x { compressed size u32le, decompressed size u32le }
 *   footer    number of blocks u32le | descriptor u8 (0) | magic 0x8F92EAB1 u32le
 *
 * It is the data of the extra subfield 'M','C' of a last, empty gzip member (RFC 1952:
 * FLG.FEXTRA, XLEN; empty deflate data 03 00, CRC32 0, ISIZE 0), which every gzip reader
 * skips like any empty member. FEXTRA holds at most 65535 bytes, so a table has at most
 * MAX_BLOCKS entries: the compressor grows the block size for files above MAX_BLOCKS blocks.
 *
 * .pcap.zst files are one zstd frame, without blocks: zstd's own seekable format (frames plus a
 * skippable frame holding this table) is what we would use, but Wireshark reads neither a
 * skippable frame (it takes it for uncompressed data) nor, in 4.0 (Debian 12's), a second frame
 * (it looks for the next frame's magic at the start of its read buffer, not where the frame
 * ended). A zstd file is read from its start; zstd decompresses at about 1 GB/s.
 */
import { open } from 'node:fs/promises';
import { codedError, ErrorCode } from '../errors.js';

export type Container = 'gzip' | 'zstd';

export interface Block {
  /** Offset of the block's first byte in the uncompressed file. */
  readonly rawOffset: number;
  readonly rawSize: number;
  /** Offset of the block's gzip member in the compressed file. */
  readonly packedOffset: number;
  readonly packedSize: number;
}

export interface BlockTable {
  readonly blocks: readonly Block[];
  /** Size of the uncompressed file. */
  readonly rawSize: number;
  /** Bytes of the compressed file before the seek table. */
  readonly packedSize: number;
}

/** Most entries one gzip FEXTRA field holds: (65535 - 4 subfield header - 9 footer) / 8. */
export const MAX_BLOCKS = 8000;

const ENTRY_LEN = 8;
const FOOTER_LEN = 9;
const SEEKABLE_MAGIC = 0x8f92eab1;
/** gzip member header up to the subfield data: ID1 ID2 CM FLG MTIME(4) XFL OS | XLEN | SI1 SI2 LEN. */
const GZ_HEADER = 16;
/** Empty deflate block, CRC32 0, ISIZE 0. */
const GZ_TAIL = Buffer.from([0x03, 0x00, 0, 0, 0, 0, 0, 0, 0, 0]);
const GZ_SI1 = 0x4d; // 'M'
const GZ_SI2 = 0x43; // 'C'

export const GZIP_MAGIC = 0x8b1f; // 1f 8b, read as u16le
export const ZSTD_MAGIC = 0xfd2fb528; // 28 b5 2f fd, read as u32le

/** The container a file's first bytes announce, or null (not compressed, or too short to tell). */
export function containerOf(head: Buffer): Container | null {
  if (head.length >= 2 && head.readUInt16LE(0) === GZIP_MAGIC) return 'gzip';
  if (head.length >= 4 && head.readUInt32LE(0) === ZSTD_MAGIC) return 'zstd';
  return null;
}

/** The seek table, as the empty gzip member to append after the last block's member. */
export function encodeSeekTable(blocks: readonly { rawSize: number; packedSize: number }[]): Buffer {
  if (blocks.length > MAX_BLOCKS) {
    throw codedError(ErrorCode.INVALID_ARGUMENT, `a gzip seek table holds at most ${MAX_BLOCKS} blocks, got ${blocks.length}`, RangeError);
  }
  const tableLen = blocks.length * ENTRY_LEN + FOOTER_LEN;
  const out = Buffer.alloc(GZ_HEADER + tableLen + GZ_TAIL.length);
  out[0] = 0x1f;
  out[1] = 0x8b;
  out[2] = 8; // deflate
  out[3] = 4; // FEXTRA
  // MTIME 0, XFL 0
  out[9] = 0xff; // OS unknown
  out.writeUInt16LE(tableLen + 4, 10);
  out[12] = GZ_SI1;
  out[13] = GZ_SI2;
  out.writeUInt16LE(tableLen, 14);
  GZ_TAIL.copy(out, GZ_HEADER + tableLen);
  let o = GZ_HEADER;
  for (const b of blocks) {
    out.writeUInt32LE(b.packedSize, o);
    out.writeUInt32LE(b.rawSize, o + 4);
    o += ENTRY_LEN;
  }
  out.writeUInt32LE(blocks.length, o);
  out[o + 4] = 0;
  out.writeUInt32LE(SEEKABLE_MAGIC, o + 5);
  return out;
}

/**
 * Reads the seek table at the end of `tail` (the last tail.length bytes of a .gz file of
 * fileSize bytes). Null when there is none or it does not add up to the file: a .gz that some
 * other tool wrote, or a damaged one; such a file still reads from its start.
 */
export function parseSeekTable(tail: Buffer, fileSize: number): BlockTable | null {
  const end = tail.length;
  const after = GZ_TAIL.length;
  if (end < FOOTER_LEN + after || !tail.subarray(end - after).equals(GZ_TAIL)) return null;
  const footer = end - after - FOOTER_LEN;
  if (tail.readUInt32LE(footer + 5) !== SEEKABLE_MAGIC || tail[footer + 4] !== 0) return null;
  const n = tail.readUInt32LE(footer);
  const tableLen = n * ENTRY_LEN + FOOTER_LEN;
  const start = end - after - tableLen - GZ_HEADER;
  if (
    start < 0 ||
    tail.readUInt32LE(start) !== 0x04088b1f || // 1f 8b, deflate, FEXTRA
    tail.readUInt16LE(start + 10) !== tableLen + 4 ||
    tail[start + 12] !== GZ_SI1 ||
    tail[start + 13] !== GZ_SI2 ||
    tail.readUInt16LE(start + 14) !== tableLen
  ) {
    return null;
  }
  const blocks: Block[] = [];
  let raw = 0;
  let packed = 0;
  for (let i = 0, o = start + GZ_HEADER; i < n; i++, o += ENTRY_LEN) {
    const packedSize = tail.readUInt32LE(o);
    const rawSize = tail.readUInt32LE(o + 4);
    if (packedSize === 0 || rawSize === 0) return null;
    blocks.push({ rawOffset: raw, rawSize, packedOffset: packed, packedSize });
    raw += rawSize;
    packed += packedSize;
  }
  // The blocks must fill the file exactly up to the table.
  if (packed !== fileSize - (end - start)) return null;
  return { blocks, rawSize: raw, packedSize: packed };
}

/** The block table of a .pcap.gz file of ours, or null (another tool's .gz, zstd, or not compressed). */
export async function readBlockTable(path: string): Promise<BlockTable | null> {
  const fh = await open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    const head = Buffer.alloc(4);
    await fh.read(head, 0, 4, 0);
    if (containerOf(head) !== 'gzip') return null;
    // Tables of ours hold at most MAX_BLOCKS entries.
    const want = Math.min(size, MAX_BLOCKS * ENTRY_LEN + FOOTER_LEN + GZ_HEADER + GZ_TAIL.length);
    const tail = Buffer.alloc(want);
    await fh.read(tail, 0, want, size - want);
    return parseSeekTable(tail, size);
  } finally {
    await fh.close();
  }
}

/** The block holding uncompressed offset `rawOffset` (binary search), or undefined past the end. */
export function blockAt(table: BlockTable, rawOffset: number): Block | undefined {
  const blocks = table.blocks;
  let lo = 0;
  let hi = blocks.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const b = blocks[mid]!;
    if (rawOffset < b.rawOffset) hi = mid - 1;
    else if (rawOffset >= b.rawOffset + b.rawSize) lo = mid + 1;
    else return b;
  }
  return undefined;
}
