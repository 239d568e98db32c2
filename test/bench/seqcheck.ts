/**
 * Counts what arrived of the generator's sequence numbers in pcap files: received, lost,
 * duplicated and reordered per VNI. Streams each file through one fixed buffer (tshark
 * takes minutes for millions of packets); reads the appliance's files (inner Ethernet
 * frames, ns pcap) and captures of the outer traffic (`tcpdump -i lo -w`: Ethernet or
 * Linux cooked, µs pcap), either byte order.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { SEQ_MAGIC, SEQ_PAYLOAD_LEN, VXLAN_HEADER_LEN } from './seqframe.js';

const LINKTYPE_ETHERNET = 1;
const LINKTYPE_LINUX_SLL = 113;
const READ_BYTES = 4 << 20;
/** Larger than any record libpcap writes (snaplen <= 262144) plus its header. */
const BUFFER_BYTES = READ_BYTES + 262144 + 16;

/** Called per record; data[off .. off + inclLen) is only valid during the call. */
export type RecordVisitor = (data: Buffer, off: number, inclLen: number, origLen: number, linktype: number) => void;

/** Reads every record of a classic pcap (µs or ns, either byte order). Returns the record count. */
export function readPcap(file: string, visit: RecordVisitor): number {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(BUFFER_BYTES);
    let start = 0;
    let end = 0;
    /** Makes n bytes from start available; false at the end of the file. */
    const need = (n: number): boolean => {
      while (end - start < n) {
        buf.copy(buf, 0, start, end);
        end -= start;
        start = 0;
        const got = readSync(fd, buf, end, Math.min(READ_BYTES, buf.length - end), null);
        if (got === 0) return false;
        end += got;
      }
      return true;
    };
    if (!need(24)) throw new Error(`${file}: shorter than a pcap header`);
    const magicLE = buf.readUInt32LE(0);
    const le = magicLE === 0xa1b2c3d4 || magicLE === 0xa1b23c4d;
    if (!le && buf.readUInt32BE(0) !== 0xa1b2c3d4 && buf.readUInt32BE(0) !== 0xa1b23c4d) {
      throw new Error(`${file}: not a classic pcap (magic ${magicLE.toString(16)})`);
    }
    const u32 = le ? (o: number) => buf.readUInt32LE(o) : (o: number) => buf.readUInt32BE(o);
    const linktype = u32(20) & 0xffff;
    start = 24;
    let records = 0;
    for (;;) {
      if (!need(16)) break;
      const incl = u32(start + 8);
      const orig = u32(start + 12);
      if (incl > 262144) throw new Error(`${file}: record ${records} claims ${incl} bytes`);
      if (!need(16 + incl)) break; // cut short, as a .part file may be
      visit(buf, start + 16, incl, orig, linktype);
      records++;
      start += 16 + incl;
    }
    return records;
  } finally {
    closeSync(fd);
  }
}

/**
 * Offset of the generator's payload ("MCSQ" ...) in a frame, or -1. Looks in the frame
 * itself, then once inside a VXLAN payload, so inner and outer captures both work.
 */
export function findSeqPayload(data: Buffer, off: number, len: number, linktype: number): number {
  const end = off + len;
  let p: number;
  let type: number;
  if (linktype === LINKTYPE_ETHERNET) {
    if (len < 14) return -1;
    type = data.readUInt16BE(off + 12);
    p = off + 14;
  } else if (linktype === LINKTYPE_LINUX_SLL) {
    if (len < 16) return -1;
    type = data.readUInt16BE(off + 14);
    p = off + 16;
  } else {
    return -1;
  }
  for (let depth = 0; depth < 2; depth++) {
    for (let tags = 0; tags < 2 && (type === 0x8100 || type === 0x88a8) && p + 4 <= end; tags++) {
      type = data.readUInt16BE(p + 2);
      p += 4;
    }
    let udp: number;
    if (type === 0x0800 && p + 20 <= end && data[p + 9] === 17) udp = p + (data[p]! & 0x0f) * 4;
    else if (type === 0x86dd && p + 40 <= end && data[p + 6] === 17) udp = p + 40;
    else return -1;
    const payload = udp + 8;
    if (payload + SEQ_PAYLOAD_LEN <= end && data.readUInt32BE(payload) === SEQ_MAGIC) return payload;
    // Not ours directly: try the frame inside a VXLAN header (I bit set).
    if (payload + VXLAN_HEADER_LEN + 14 > end || (data[payload]! & 0x08) === 0) return -1;
    p = payload + VXLAN_HEADER_LEN + 14;
    type = data.readUInt16BE(p - 2);
  }
  return -1;
}

export interface VniSequenceReport {
  vni: number;
  /** Records carrying this VNI's sequence numbers, duplicates included. */
  received: number;
  unique: number;
  duplicated: number;
  /** Records that arrived after a higher sequence number of the same VNI. */
  reordered: number;
  /** Sent (when known, else highest + 1) minus unique. */
  lost: number;
  highest: number;
}

export interface SequenceReport {
  records: number;
  /** Records without the generator's payload (other traffic, cut frames). */
  foreign: number;
  perVni: VniSequenceReport[];
  received: number;
  lost: number;
  duplicated: number;
  reordered: number;
}

class VniTracker {
  seen = new Uint8Array(1 << 16);
  received = 0;
  unique = 0;
  duplicated = 0;
  reordered = 0;
  highest = -1;

  add(seq: number): void {
    this.received++;
    const byte = Math.floor(seq / 8);
    if (byte >= this.seen.length) {
      let size = this.seen.length;
      while (size <= byte) size *= 2;
      const grown = new Uint8Array(size);
      grown.set(this.seen);
      this.seen = grown;
    }
    const bit = 1 << (seq & 7);
    if ((this.seen[byte]! & bit) !== 0) {
      this.duplicated++;
      return;
    }
    this.seen[byte]! |= bit;
    this.unique++;
    if (seq < this.highest) this.reordered++;
    else this.highest = seq;
  }
}

/**
 * Checks files in the order given (sort a session's rotated files by name first).
 * sentPerVni is the generator summary's map; VNIs sent but never seen count as all lost.
 */
export function checkSequences(files: readonly string[], sentPerVni?: Readonly<Record<string, number>>): SequenceReport {
  const trackers = new Map<number, VniTracker>();
  let records = 0;
  let foreign = 0;
  const visit: RecordVisitor = (data, off, incl, _orig, linktype) => {
    const p = findSeqPayload(data, off, incl, linktype);
    if (p < 0) {
      foreign++;
      return;
    }
    const vni = data.readUInt32BE(p + 4);
    let tr = trackers.get(vni);
    if (tr === undefined) trackers.set(vni, (tr = new VniTracker()));
    tr.add(data.readUInt32BE(p + 8) * 0x1_0000_0000 + data.readUInt32BE(p + 12));
  };
  for (const f of files) records += readPcap(f, visit);

  const vnis = new Set<number>(trackers.keys());
  for (const v of Object.keys(sentPerVni ?? {})) vnis.add(Number(v));
  const perVni = [...vnis]
    .sort((a, b) => a - b)
    .map((vni): VniSequenceReport => {
      const tr = trackers.get(vni) ?? new VniTracker();
      const sent = sentPerVni?.[String(vni)] ?? tr.highest + 1;
      return {
        vni,
        received: tr.received,
        unique: tr.unique,
        duplicated: tr.duplicated,
        reordered: tr.reordered,
        lost: sent - tr.unique,
        highest: tr.highest,
      };
    });
  const sum = (k: 'received' | 'lost' | 'duplicated' | 'reordered') => perVni.reduce((a, r) => a + r[k], 0);
  return {
    records,
    foreign,
    perVni,
    received: sum('received'),
    lost: sum('lost'),
    duplicated: sum('duplicated'),
    reordered: sum('reordered'),
  };
}
