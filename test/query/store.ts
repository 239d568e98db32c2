/**
 * A store as the appliance leaves it, built from given frames: sessions a, b, c, each frame
 * with its own timestamp, split into files of FILE_RECORDS records (rotation boundaries), the
 * last file of session c left open as a .part with a torn record at its end; every finished
 * file indexed. Also `all`: every whole record in one file, for one `tcpdump -r` per expression.
 */
import { appendFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { captureFileName } from '../../src/capture/naming.js';
import { buildIndex } from '../../src/finish/index-build.js';
import { buildPcap, type PcapRecord } from '../lib/captures.js';
import type { Random } from '../lib/random.js';

export const SESSIONS = ['a', 'b', 'c'];
const FILE_RECORDS = 150;
export const BASE_SEC = 1_790_000_000;

export interface Store {
  readonly out: string;
  readonly all: string;
  /** Finished files and the .part, in the query's tie-break order (session, then file). */
  readonly files: string[];
  readonly records: number;
}

export interface StoreFrame {
  readonly data: Buffer;
  readonly wireLen: number;
}

/** Record i gets time BASE_SEC + i/8 s (+ i ns, so every time differs), unless `ties` pairs some. */
export async function buildStore(dir: string, frames: readonly StoreFrame[], random: Random): Promise<Store> {
  const out = join(dir, 'out');
  const bySession = new Map<string, PcapRecord[]>(SESSIONS.map((s) => [s, []]));
  const all: PcapRecord[] = [];
  frames.forEach((f, i) => {
    const rec: PcapRecord = { sec: BASE_SEC + Math.floor(i / 8), frac: (i % 8) * 125_000_000 + i, data: f.data, origLen: f.wireLen };
    bySession.get(SESSIONS[random.below(SESSIONS.length)]!)!.push(rec);
    all.push(rec);
  });
  const files: string[] = [];
  for (const [session, recs] of bySession) {
    await mkdir(join(out, session), { recursive: true });
    for (let seq = 0, at = 0; at < recs.length; seq++, at += FILE_RECORDS) {
      const part = recs.slice(at, at + FILE_RECORDS);
      const last = at + FILE_RECORDS >= recs.length;
      const path = join(out, session, captureFileName(session, part[0]!.sec, seq)) + (last && session === 'c' ? '.part' : '');
      await writeFile(path, buildPcap({ ns: true, snaplen: 65535, records: part }));
      if (path.endsWith('.part')) await appendFile(path, Buffer.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]));
      else await buildIndex(path);
      files.push(path);
    }
  }
  const allPath = join(dir, 'all.pcap');
  await writeFile(allPath, buildPcap({ ns: true, snaplen: 65535, records: all }));
  return { out, all: allPath, files, records: all.length };
}

/** The records of a classic ns pcap (after the 24-byte header) as [sec, nsec, bytes] triples. */
export function splitRecords(file: Buffer): Array<{ sec: number; nsec: number; bytes: Buffer }> {
  const out: Array<{ sec: number; nsec: number; bytes: Buffer }> = [];
  for (let at = 24; at + 16 <= file.length; ) {
    const len = 16 + file.readUInt32LE(at + 8);
    out.push({ sec: file.readUInt32LE(at), nsec: file.readUInt32LE(at + 4), bytes: file.subarray(at, at + len) });
    at += len;
  }
  return out;
}
