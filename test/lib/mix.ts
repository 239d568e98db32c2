/**
 * A capture mix for compression tests and the bench: classic ns pcap files of any size made of
 * real frames (../shared/pcaps/real and the repository's pcaps/: headers and plaintext, which
 * compress well) interleaved one for one with IMIX-sized UDP frames (7 x 64, 4 x 594, 1 x 1518
 * bytes) whose payload is random, like TLS or other encrypted traffic (which does not).
 * Timestamps advance by a few microseconds per frame.
 */
import { existsSync, readdirSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { readCapture } from '../../src/pcap/reader.js';
import { writeFileHeader, writeRecord } from '../../src/pcap/pcap.js';
import { REAL_DIR, REPO_ROOT } from './captures.js';
import { udpFrame } from './frames.js';

const IMIX = [64, 64, 64, 64, 64, 64, 64, 594, 594, 594, 594, 1518];
const LINKTYPE_ETHERNET = 1;
const CHUNK = 4 << 20;

/** Ethernet frames of the real captures and of pcaps/ (whichever exist). */
export async function realFrames(): Promise<Buffer[]> {
  const frames: Buffer[] = [];
  for (const dir of [REAL_DIR, join(REPO_ROOT, 'pcaps')]) {
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir).sort()) {
      if (!/\.pcap(ng)?$/.test(name)) continue;
      await readCapture(join(dir, name), (buf, off, capLen, _orig, _s, _n, linkType) => {
        if (linkType === LINKTYPE_ETHERNET && capLen >= 14) frames.push(Buffer.from(buf.subarray(off, off + capLen)));
      }).catch(() => {}); // the deliberately damaged fixtures end early; their whole frames count
    }
  }
  return frames;
}

/** Writes about `bytes` of the mix to `path`; resolves the record count. */
export async function writeMixCapture(path: string, bytes: number, real: readonly Buffer[]): Promise<number> {
  const fh = await open(path, 'w');
  try {
    const chunk = Buffer.alloc(CHUNK);
    let off = writeFileHeader(chunk, 0, 262144);
    let written = 0;
    let records = 0;
    let sec = 1_700_000_000;
    let nsec = 0;
    while (written + off < bytes) {
      const frame = records % 2 === 0 && real.length > 0 ? real[(records >> 1) % real.length]! : udpFrame(IMIX[(records >> 1) % IMIX.length]!, 7, records);
      if (off + 16 + frame.length > CHUNK) {
        await fh.write(chunk, 0, off);
        written += off;
        off = 0;
      }
      nsec += 3_000 + ((records * 7919) % 5_000);
      if (nsec >= 1e9) {
        sec++;
        nsec -= 1e9;
      }
      off = writeRecord(chunk, off, frame, 0, frame.length, frame.length, sec, nsec);
      records++;
    }
    await fh.write(chunk, 0, off);
    return records;
  } finally {
    await fh.close();
  }
}
