/**
 * Counts what arrived of the generator's sequence numbers in pcap files: received, lost,
 * duplicated and reordered per VNI. Streams each file through one fixed buffer (tshark
 * takes minutes for millions of packets); reads the appliance's files (inner Ethernet
 * frames, ns pcap) and captures of the outer traffic (`tcpdump -i lo -w`: Ethernet or
 * Linux cooked, µs pcap), either byte order.
 */
import { CaptureError, CaptureErrorCode } from '../../src/pcap/errors.js';
import { LINK_ETHERNET, LINK_NETWORK, LinkLayer, locateNetworkLayer } from '../../src/pcap/linktype.js';
import { readCapture } from '../../src/pcap/reader.js';
import { Decoder } from '../../src/decode/packet.js';
import { L4_UDP } from '../../src/decode/status.js';
import { VXLAN_HEADER_LEN, vxlanHasVni } from '../../src/decode/vxlan.js';
import { SEQ_MAGIC, SEQ_PAYLOAD_LEN } from './seqframe.js';

/**
 * Offset of the generator's payload ("MCSQ" ...) in a captured frame, or -1. Looks in the
 * frame's own UDP payload, then once inside a VXLAN payload, so the appliance's files
 * (inner frames) and captures of the outer traffic both work. The project's decoder does
 * the walking.
 */
export class SeqFinder {
  private readonly decoder = new Decoder();
  private readonly link = new LinkLayer();

  find(data: Buffer, off: number, len: number, linkType: number): number {
    const d = this.decoder;
    const kind = locateNetworkLayer(linkType, data, off, len, this.link);
    if (kind === LINK_ETHERNET) d.decode(data, off, len);
    else if (kind === LINK_NETWORK) d.decodeL3(data, off + this.link.offset, len - this.link.offset, this.link.etherType);
    else return -1;
    for (let depth = 0; depth < 2 && d.l4 === L4_UDP; depth++) {
      const p = d.payloadOff;
      const n = d.payloadLen;
      if (n >= SEQ_PAYLOAD_LEN && data.readUInt32BE(p) === SEQ_MAGIC) return p;
      if (n < VXLAN_HEADER_LEN + 14 || !vxlanHasVni(data, p)) return -1;
      d.decode(data, p + VXLAN_HEADER_LEN, n - VXLAN_HEADER_LEN);
    }
    return -1;
  }
}

/** A file cut inside its last record (a .part of a killed writer) still counts up to there. */
const CUT_SHORT: ReadonlySet<string> = new Set([CaptureErrorCode.TRUNCATED_RECORD, CaptureErrorCode.TRUNCATED_RECORD_HEADER]);

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
export async function checkSequences(files: readonly string[], sentPerVni?: Readonly<Record<string, number>>): Promise<SequenceReport> {
  const trackers = new Map<number, VniTracker>();
  const finder = new SeqFinder();
  let records = 0;
  let foreign = 0;
  const visit = (data: Buffer, off: number, capLen: number, _orig: number, _sec: number, _nsec: number, linkType: number): void => {
    records++;
    const p = finder.find(data, off, capLen, linkType);
    if (p < 0) {
      foreign++;
      return;
    }
    const vni = data.readUInt32BE(p + 4);
    let tr = trackers.get(vni);
    if (tr === undefined) trackers.set(vni, (tr = new VniTracker()));
    tr.add(data.readUInt32BE(p + 8) * 0x1_0000_0000 + data.readUInt32BE(p + 12));
  };
  for (const f of files) {
    try {
      await readCapture(f, visit);
    } catch (err) {
      if (!(err instanceof CaptureError && CUT_SHORT.has(err.code))) throw err;
    }
  }

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
