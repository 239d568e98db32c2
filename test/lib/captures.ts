/**
 * Capture files in tests: where the shared real captures are, classic pcap and pcapng files
 * built byte by byte (independently of the code under test), and the records our own reader
 * delivers, in the same shape as tshark's (test/lib/tshark.ts) so the two compare directly.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CaptureReader } from '../../src/pcap/reader.js';
import type { CaptureReaderOptions, RecordSink } from '../../src/pcap/reader.js';
import { tsString, type Frame } from './tshark.js';

/** The repository root (this file runs from dist/test/lib/). */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/**
 * Third-party captures shared by the team beside the checkout, never copied into it:
 * `../shared/pcaps/real` from the repository root, or MIRRORCAP_REAL_PCAPS.
 */
export const REAL_DIR = resolve(REPO_ROOT, process.env.MIRRORCAP_REAL_PCAPS || '../shared/pcaps/real');

/** The real captures, sorted, or the reason a test that needs them skips (tap prints it). */
export function realCaptures(): { files: string[]; skip: string | false } {
  if (!existsSync(REAL_DIR)) return { files: [], skip: `the real captures are not at ${REAL_DIR} (set MIRRORCAP_REAL_PCAPS)` };
  const files = readdirSync(REAL_DIR)
    .filter((f) => f.endsWith('.pcap') || f.endsWith('.pcapng'))
    .sort()
    .map((f) => join(REAL_DIR, f));
  return files.length > 0 ? { files, skip: false } : { files, skip: `no captures in ${REAL_DIR}` };
}

/**
 * Every record our reader delivers, and the error that ended the read (null at a clean end).
 * With `sectionLocal`, ifIndex is the interface's number within its pcapng section, which is
 * what tshark 4.0 prints as frame.interface_id.
 */
export async function readRecords(path: string, options?: CaptureReaderOptions, sectionLocal = false): Promise<{ recs: Frame[]; err: unknown }> {
  const recs: Frame[] = [];
  let reader: CaptureReader;
  try {
    reader = await CaptureReader.open(path, options);
  } catch (err) {
    return { recs, err };
  }
  const sink: RecordSink = (buf, off, capLen, origLen, sec, nsec, linkType, ifIndex) => {
    recs.push({
      ts: tsString(sec, nsec),
      capLen,
      origLen,
      ifIndex: sectionLocal ? reader.interfaces[ifIndex]!.sectionIndex : ifIndex,
      linkType,
      data: Buffer.from(buf.subarray(off, off + capLen)),
    });
  };
  try {
    while (await reader.read(sink));
    return { recs, err: null };
  } catch (err) {
    return { recs, err };
  } finally {
    await reader.close();
  }
}

/** Every record our reader delivers; rejects if the read ends with an error. */
export async function ourRecords(path: string, options?: CaptureReaderOptions, sectionLocal = false): Promise<Frame[]> {
  const { recs, err } = await readRecords(path, options, sectionLocal);
  if (err !== null) throw err;
  return recs;
}

// Builders. Written from the format descriptions, not from src/, so they check the reader.

export interface PcapRecord {
  sec: number;
  /** µs or ns, per the file. */
  frac: number;
  data: Buffer;
  origLen?: number;
}

export function buildPcap(opts: {
  le?: boolean;
  ns?: boolean;
  snaplen?: number;
  linkType?: number;
  records: PcapRecord[];
}): Buffer {
  const le = opts.le ?? true;
  const parts: Buffer[] = [];
  const h = Buffer.alloc(24);
  const w32 = (b: Buffer, v: number, o: number): void => void (le ? b.writeUInt32LE(v, o) : b.writeUInt32BE(v, o));
  const w16 = (b: Buffer, v: number, o: number): void => void (le ? b.writeUInt16LE(v, o) : b.writeUInt16BE(v, o));
  w32(h, opts.ns ? 0xa1b23c4d : 0xa1b2c3d4, 0);
  w16(h, 2, 4);
  w16(h, 4, 6);
  w32(h, opts.snaplen ?? 262144, 16);
  w32(h, opts.linkType ?? 1, 20);
  parts.push(h);
  for (const r of opts.records) {
    const rh = Buffer.alloc(16);
    w32(rh, r.sec, 0);
    w32(rh, r.frac, 4);
    w32(rh, r.data.length, 8);
    w32(rh, r.origLen ?? r.data.length, 12);
    parts.push(rh, r.data);
  }
  return Buffer.concat(parts);
}

/** Converts a little-endian classic pcap into big-endian by swapping every header field. */
export function swapPcap(src: Buffer): Buffer {
  const out = Buffer.from(src);
  const sw32 = (o: number): void => void out.writeUInt32BE(src.readUInt32LE(o), o);
  const sw16 = (o: number): void => void out.writeUInt16BE(src.readUInt16LE(o), o);
  const magic = src.readUInt32LE(0);
  if (magic !== 0xa1b2c3d4 && magic !== 0xa1b23c4d) throw new Error('swapPcap wants a little-endian classic pcap');
  sw32(0);
  sw16(4);
  sw16(6);
  sw32(8);
  sw32(12);
  sw32(16);
  sw32(20);
  for (let o = 24; o < src.length; ) {
    const incl = src.readUInt32LE(o + 8);
    for (let k = 0; k < 16; k += 4) sw32(o + k);
    o += 16 + incl;
  }
  return out;
}

/** Offsets where each classic record starts, plus the file length (for cut tests). */
export function pcapBoundaries(file: Buffer): number[] {
  const le = file.readUInt32LE(0) === 0xa1b2c3d4 || file.readUInt32LE(0) === 0xa1b23c4d;
  const out = [24];
  for (let o = 24; o + 16 <= file.length; ) {
    o += 16 + (le ? file.readUInt32LE(o + 8) : file.readUInt32BE(o + 8));
    if (o > file.length) break;
    out.push(o);
  }
  return out;
}

export interface NgInterface {
  linkType: number;
  snaplen?: number;
  /** Raw if_tsresol byte (bit 7 set = power of 2); omitted = default 10^-6. */
  tsresol?: number;
  /** if_tsoffset seconds. */
  tsoffset?: bigint;
}

export type NgBlock =
  | { kind: 'epb'; ifId: number; ts: bigint; data: Buffer; origLen?: number; options?: Buffer }
  | { kind: 'pb'; ifId: number; ts: bigint; data: Buffer; origLen?: number }
  | { kind: 'spb'; data: Buffer; origLen?: number }
  | { kind: 'idb'; iface: NgInterface }
  | { kind: 'raw'; type: number; body: Buffer };

function pad(b: Buffer): Buffer {
  const n = (4 - (b.length % 4)) % 4;
  return n === 0 ? b : Buffer.concat([b, Buffer.alloc(n)]);
}

/** One pcapng section: an SHB, then the blocks (IDBs first unless placed explicitly). */
export function buildPcapngSection(opts: { le?: boolean; interfaces?: NgInterface[]; blocks: NgBlock[] }): Buffer {
  const le = opts.le ?? true;
  const u32 = (v: number): Buffer => {
    const b = Buffer.alloc(4);
    if (le) b.writeUInt32LE(v);
    else b.writeUInt32BE(v);
    return b;
  };
  const u16 = (v: number): Buffer => {
    const b = Buffer.alloc(2);
    if (le) b.writeUInt16LE(v);
    else b.writeUInt16BE(v);
    return b;
  };
  const block = (type: number, body: Buffer): Buffer => {
    const padded = pad(body);
    const len = 12 + padded.length;
    return Buffer.concat([u32(type), u32(len), padded, u32(len)]);
  };
  const option = (code: number, value: Buffer): Buffer => Buffer.concat([u16(code), u16(value.length), pad(value)]);
  const idb = (i: NgInterface): Buffer => {
    const opts: Buffer[] = [];
    if (i.tsresol !== undefined) opts.push(option(9, Buffer.from([i.tsresol])));
    if (i.tsoffset !== undefined) {
      const v = Buffer.alloc(8);
      if (le) v.writeBigInt64LE(i.tsoffset);
      else v.writeBigInt64BE(i.tsoffset);
      opts.push(option(14, v));
    }
    if (opts.length > 0) opts.push(u32(0));
    return block(1, Buffer.concat([u16(i.linkType), u16(0), u32(i.snaplen ?? 0), ...opts]));
  };
  const shbBody = Buffer.concat([u32(0x1a2b3c4d), u16(1), u16(0), Buffer.alloc(8, 0xff)]);
  const parts = [block(0x0a0d0d0a, shbBody)];
  for (const i of opts.interfaces ?? []) parts.push(idb(i));
  for (const b of opts.blocks) {
    switch (b.kind) {
      case 'idb':
        parts.push(idb(b.iface));
        break;
      case 'epb':
        parts.push(
          block(6, Buffer.concat([
            u32(b.ifId), u32(Number(b.ts >> 32n)), u32(Number(b.ts & 0xffffffffn)),
            u32(b.data.length), u32(b.origLen ?? b.data.length), pad(b.data), b.options ?? Buffer.alloc(0),
          ])),
        );
        break;
      case 'pb':
        parts.push(
          block(2, Buffer.concat([
            u16(b.ifId), u16(0), u32(Number(b.ts >> 32n)), u32(Number(b.ts & 0xffffffffn)),
            u32(b.data.length), u32(b.origLen ?? b.data.length), pad(b.data),
          ])),
        );
        break;
      case 'spb':
        parts.push(block(3, Buffer.concat([u32(b.origLen ?? b.data.length), b.data])));
        break;
      case 'raw':
        parts.push(block(b.type, b.body));
        break;
    }
  }
  return Buffer.concat(parts);
}

/** Offsets where each pcapng block starts, plus the file length. */
export function pcapngBoundaries(file: Buffer): number[] {
  const out = [0];
  let le = true;
  for (let o = 0; o + 12 <= file.length; ) {
    if (file.readUInt32LE(o) === 0x0a0d0d0a) le = file.readUInt32LE(o + 8) === 0x1a2b3c4d;
    o += le ? file.readUInt32LE(o + 4) : file.readUInt32BE(o + 4);
    if (o > file.length) break;
    out.push(o);
  }
  return out;
}
