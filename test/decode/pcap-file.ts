/**
 * Reads a capture file into memory for the decode tests: classic pcap in
 * either byte order and timestamp precision; pcapng is converted to pcap with
 * editcap first, so the tests need no pcapng parser of their own.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PCAP_MAGIC_NS, PCAP_MAGIC_US } from '../../src/capture/pcap.js';

export interface CapturedFrame {
  data: Buffer;
  origLen: number;
}

export interface Capture {
  linktype: number;
  frames: CapturedFrame[];
}

export function readCapture(path: string): Capture {
  const raw = readFileSync(path);
  if (raw.readUInt32LE(0) === 0x0a0d0d0a) {
    const dir = mkdtempSync(join(tmpdir(), 'mirrorcap-pcapng-'));
    try {
      const out = join(dir, 'converted.pcap');
      execFileSync('editcap', ['-F', 'pcap', path, out], { stdio: 'ignore' });
      return parsePcap(readFileSync(out));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return parsePcap(raw);
}

export function parsePcap(raw: Buffer): Capture {
  const magicLE = raw.readUInt32LE(0);
  const le = magicLE === PCAP_MAGIC_US || magicLE === PCAP_MAGIC_NS;
  const u32 = (o: number): number => (le ? raw.readUInt32LE(o) : raw.readUInt32BE(o));
  if (!le && raw.readUInt32BE(0) !== PCAP_MAGIC_US && raw.readUInt32BE(0) !== PCAP_MAGIC_NS) {
    throw new Error(`not a pcap file (magic ${magicLE.toString(16)})`);
  }
  const frames: CapturedFrame[] = [];
  let off = 24;
  while (off + 16 <= raw.length) {
    const incl = u32(off + 8);
    const origLen = u32(off + 12);
    off += 16;
    frames.push({ data: raw.subarray(off, off + incl), origLen });
    off += incl;
  }
  return { linktype: u32(20) & 0xffff, frames };
}
