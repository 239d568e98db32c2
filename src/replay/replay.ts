/**
 * `mirrorcap replay`: every frame of a capture sent as a VXLAN datagram, the way AWS Traffic
 * Mirroring sends it (I flag, the session's VNI), at the capture's pace, a fixed rate, or
 * flat out. With sourcePortHash the outer UDP source port is a hash of the inner 5-tuple,
 * as AWS does, so an NLB keeps each flow on one target and spreads flows across targets:
 * one socket per port of a small pool, picked by the hash.
 *
 * With `gwlb` each VXLAN datagram is sent as a Gateway Load Balancer endpoint delivers it to
 * its targets: GENEVE with the GWLB's three options, then IPv4 + UDP to 4789 from a stand-in
 * mirrored ENI (192.0.2.1, TEST-NET-1), then the VXLAN datagram.
 *
 * The capture streams through the reader's buffer; each buffer-full is copied once into a
 * send slab (headers + frame), then sent in paced batches. Memory stays flat.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { LINK_ETHERNET, LINK_NETWORK, LinkLayer, locateNetworkLayer } from '../pcap/linktype.js';
import { CaptureReader } from '../pcap/reader.js';
import { Decoder } from '../decode/packet.js';
import { VXLAN_HEADER_LEN, VXLAN_PORT, writeVxlanHeader } from '../decode/vxlan.js';
import { GENEVE_PROTO_IPV4, GWLB_GENEVE_HEADER_LEN, writeGeneveHeader, type GwlbOptions } from '../decode/geneve.js';
import { openSender, type DatagramSender } from './sender.js';
import { codedError, ErrorCode } from '../errors.js';

export type Pace = { readonly kind: 'speed'; readonly factor: number } | { readonly kind: 'rate'; readonly pps: number } | { readonly kind: 'flat-out' };

export interface ReplayOptions {
  readonly path: string;
  readonly host: string;
  readonly port: number;
  readonly vni: number;
  readonly pace: Pace;
  readonly loops: number;
  readonly sourcePortHash: boolean;
  /** Largest inner frame sent; longer ones are cut, as a mirror session's PacketLength would. */
  readonly maxFrame?: number;
  /** Send as a GWLB endpoint would (GENEVE around IPv4/UDP/VXLAN) with these ids; the flow cookie is the flow hash. */
  readonly gwlb?: Omit<GwlbOptions, 'flowCookie'> | null;
}

export interface ReplaySummary {
  readonly sent: number;
  /** Inner frame bytes sent. */
  readonly bytes: number;
  readonly seconds: number;
  readonly pps: number;
  readonly mbps: number;
  readonly loops: number;
  /** Records that could not be sent: a link type without an Ethernet or IP frame in it. */
  readonly skipped: number;
  /** Datagrams the target refused (ICMP port unreachable). */
  readonly refused: number;
  /** Frames longer than maxFrame, sent cut to it (every loop counted). */
  readonly cut: number;
  /** The first few cut frames of the capture: 1-based record number and length. */
  readonly cutExamples: ReadonlyArray<{ readonly record: number; readonly bytes: number }>;
  /** The longest inner frame one datagram carries here. */
  readonly maxFrame: number;
  readonly sourcePorts: number;
  readonly sender: string;
}

/** Cut frames listed by record number in the summary; the rest are only counted. */
const CUT_EXAMPLES = 5;
/** Source ports used with sourcePortHash: enough for an NLB to spread flows, few enough to open. */
const HASH_PORTS = 64;
/** Datagrams per send call at most. */
const SEND_BATCH = 256;
/** Pacing granularity: datagrams due within this window go out together. */
const WINDOW_NS = 1_000_000;
const SLAB_BYTES = 8 * 1024 * 1024;
const MAX_UDP_PAYLOAD = 65507;
/** Placeholder MACs for frames captured without an Ethernet header (raw IP, Linux cooked). */
const SYNTH_DST = [0x02, 0, 0, 0, 0, 0x02];
const SYNTH_SRC = [0x02, 0, 0, 0, 0, 0x01];
const ETHERNET_LEN = 14;

export async function replay(opts: ReplayOptions): Promise<ReplaySummary> {
  const senders: DatagramSender[] = [];
  for (let i = 0; i < (opts.sourcePortHash ? HASH_PORTS : 1); i++) senders.push(await openSender({ host: opts.host, port: opts.port, sendBufferBytes: 4 << 20 }));
  const gwlb = opts.gwlb ?? null;
  const template = gwlb === null ? null : gwlbTemplate(gwlb);
  // Bytes before the frame: the VXLAN header, and the GWLB's GENEVE + IPv4 + UDP around it.
  const head = VXLAN_HEADER_LEN + (gwlb === null ? 0 : GWLB_WRAP_LEN);
  const maxFrame = Math.min(opts.maxFrame ?? MAX_UDP_PAYLOAD - head, MAX_UDP_PAYLOAD - head);
  const q = new SendQueue(Math.max(SLAB_BYTES, 2 * (maxFrame + head)));
  const decoder = new Decoder();
  const link = new LinkLayer();
  const clock = new Pacer(opts.pace);
  let sent = 0;
  let bytes = 0;
  let skipped = 0;
  let cut = 0;
  const cutExamples: Array<{ record: number; bytes: number }> = [];
  try {
    for (let loop = 0; loop < opts.loops; loop++) {
      const reader = await CaptureReader.open(opts.path);
      let record = 0;
      try {
        const sink = (buf: Buffer, off: number, capLen: number, _orig: number, sec: number, nsec: number, linkType: number): void => {
          record++;
          const kind = locateNetworkLayer(linkType, buf, off, capLen, link);
          if (kind !== LINK_ETHERNET && !(kind === LINK_NETWORK && link.etherType !== 0)) {
            skipped++;
            return;
          }
          // Frames captured without an Ethernet header get a placeholder one: mirrors carry Ethernet.
          const l2 = kind === LINK_NETWORK ? ETHERNET_LEN : 0;
          const from = off + link.offset;
          const whole = l2 + capLen - link.offset;
          const len = Math.min(whole, maxFrame);
          if (whole > maxFrame) {
            cut++;
            if (loop === 0 && cutExamples.length < CUT_EXAMPLES) cutExamples.push({ record, bytes: whole });
          }
          const at = q.reserve(head + len);
          writeVxlanHeader(q.slab, at + head - VXLAN_HEADER_LEN, opts.vni);
          const p = at + head;
          if (l2 > 0) {
            q.slab.set(SYNTH_DST, p);
            q.slab.set(SYNTH_SRC, p + 6);
            q.slab.writeUInt16BE(link.etherType, p + 12);
          }
          buf.copy(q.slab, p + l2, from, from + len - l2);
          const hash = opts.sourcePortHash || gwlb !== null ? flowHash(decoder, q.slab, p, len) : 0;
          if (template !== null) writeGwlbWrap(q.slab, at, template, hash, VXLAN_HEADER_LEN + len);
          q.push(at, head + len, opts.sourcePortHash ? hash % HASH_PORTS : 0, clock.due(sec, nsec));
          bytes += len;
        };
        while (await reader.read(sink)) {
          sent += await q.drain(senders, clock);
        }
      } finally {
        await reader.close();
      }
      clock.endLoop();
    }
    sent += await q.drain(senders, clock);
  } finally {
    decoder.release();
    for (const s of senders) await s.close();
  }
  const seconds = clock.elapsedSeconds();
  return {
    sent,
    bytes,
    seconds,
    pps: seconds > 0 ? sent / seconds : sent,
    mbps: seconds > 0 ? (bytes * 8) / seconds / 1e6 : 0,
    loops: opts.loops,
    skipped,
    refused: senders.reduce((n, s) => n + s.refused, 0),
    cut,
    cutExamples,
    maxFrame,
    sourcePorts: senders.length,
    sender: senders[0]!.kind,
  };
}

/** GENEVE with the GWLB options, IPv4 20, UDP 8. */
export const GWLB_WRAP_LEN = GWLB_GENEVE_HEADER_LEN + 20 + 8;
/** The stand-in mirrored ENI and mirror target addresses inside the GENEVE (TEST-NET-1). */
const ENI_ADDR = [192, 0, 2, 1];
const TARGET_ADDR = [192, 0, 2, 2];

/** The GENEVE header with the GWLB options, written once; each datagram gets a copy and its flow cookie. */
export function gwlbTemplate(gwlb: Omit<GwlbOptions, 'flowCookie'>): Buffer {
  const t = Buffer.alloc(GWLB_GENEVE_HEADER_LEN);
  writeGeneveHeader(t, 0, GENEVE_PROTO_IPV4, 0, { ...gwlb, flowCookie: 0 });
  return t;
}

/** Writes GENEVE (GWLB options, the cookie last) + IPv4 + UDP to 4789 at `at`, around a VXLAN datagram of `vxlanLen` bytes. */
export function writeGwlbWrap(dst: Buffer, at: number, template: Buffer, cookie: number, vxlanLen: number): void {
  template.copy(dst, at);
  dst.writeUInt32BE(cookie >>> 0, at + GWLB_GENEVE_HEADER_LEN - 4);
  const ip = at + GWLB_GENEVE_HEADER_LEN;
  dst.fill(0, ip, ip + 28);
  dst[ip] = 0x45;
  dst.writeUInt16BE(28 + vxlanLen, ip + 2);
  dst[ip + 8] = 255; // TTL, as AWS's mirror packets have
  dst[ip + 9] = 17;
  dst.set(ENI_ADDR, ip + 12);
  dst.set(TARGET_ADDR, ip + 16);
  let sum = 0;
  for (let k = 0; k < 20; k += 2) sum += dst.readUInt16BE(ip + k);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  dst.writeUInt16BE(~sum & 0xffff, ip + 10);
  const udp = ip + 20;
  dst.writeUInt16BE(49152 + (cookie & 0x3fff), udp); // a source port per flow, as AWS picks one
  dst.writeUInt16BE(VXLAN_PORT, udp + 2);
  dst.writeUInt16BE(8 + vxlanLen, udp + 4);
}

/** FNV-1a over the inner 5-tuple (addresses, protocol, ports); frames without IP hash their EtherType. */
export function flowHash(d: Decoder, buf: Buffer, off: number, len: number): number {
  d.decode(buf, off, len);
  let h = 0x811c9dc5;
  const mix = (byte: number): void => {
    h = Math.imul(h ^ byte, 0x01000193);
  };
  if (d.addrLen === 0) {
    mix(d.etherType >> 8);
    mix(d.etherType & 0xff);
    return h >>> 0;
  }
  for (let i = 0; i < d.addrLen; i++) mix(buf[d.srcAddrOff + i]!);
  for (let i = 0; i < d.addrLen; i++) mix(buf[d.dstAddrOff + i]!);
  mix(d.ipProto);
  const sp = d.srcPort;
  const dp = d.dstPort;
  mix(sp >> 8);
  mix(sp & 0xff);
  mix(dp >> 8);
  mix(dp & 0xff);
  return h >>> 0;
}

/** When each datagram is due, in nanoseconds from the start of the replay. */
class Pacer {
  private readonly start = performance.now();
  private firstSec = -1;
  private firstNsec = 0;
  private loopOffset = 0;
  private lastDue = 0;
  private count = 0;

  constructor(private readonly pace: Pace) {}

  /** Nanoseconds after the start; a double holds them exactly for 104 days. */
  due(sec: number, nsec: number): number {
    const n = this.count++;
    switch (this.pace.kind) {
      case 'flat-out':
        return 0;
      case 'rate':
        return Math.round((n * 1e9) / this.pace.pps);
      case 'speed': {
        if (this.firstSec < 0) {
          this.firstSec = sec;
          this.firstNsec = nsec;
        }
        const since = (sec - this.firstSec) * 1e9 + (nsec - this.firstNsec);
        // A capture's clock may step back: never schedule before the previous packet.
        const due = Math.max(this.lastDue, this.loopOffset + Math.round(since / this.pace.factor));
        this.lastDue = due;
        return due;
      }
    }
  }

  /** The next loop of a capture starts where this one ended. */
  endLoop(): void {
    this.loopOffset = this.lastDue;
    this.firstSec = -1;
  }

  nowNs(): number {
    return (performance.now() - this.start) * 1e6;
  }

  elapsedSeconds(): number {
    return this.nowNs() / 1e9;
  }
}

/** Datagrams copied out of the reader's buffer, waiting to be sent in order. */
class SendQueue {
  readonly slab: Buffer;
  private used = 0;
  private n = 0;
  private offsets = new Uint32Array(4096);
  private lengths = new Uint32Array(4096);
  private senders = new Uint16Array(4096);
  private dues = new Float64Array(4096);

  constructor(bytes: number) {
    this.slab = Buffer.allocUnsafe(bytes);
  }

  /** Where a datagram of up to `len` bytes can be written. The caller drains when told to. */
  reserve(len: number): number {
    if (this.used + len > this.slab.length) throw codedError(ErrorCode.INVALID_STATE, 'replay send slab overflow');
    return this.used;
  }

  push(at: number, len: number, sender: number, due: number): void {
    if (this.n === this.offsets.length) this.grow();
    this.offsets[this.n] = at;
    this.lengths[this.n] = len;
    this.senders[this.n] = sender;
    this.dues[this.n] = due;
    this.n++;
    this.used = at + len;
  }

  /** Sends everything queued, paced; returns how many were sent. */
  async drain(senders: readonly DatagramSender[], clock: Pacer): Promise<number> {
    let sent = 0;
    let i = 0;
    while (i < this.n) {
      const due = this.dues[i]!;
      const waitMs = (due - clock.nowNs()) / 1e6;
      if (waitMs >= 1) await sleep(Math.floor(waitMs));
      let j = i + 1;
      while (j < this.n && j - i < SEND_BATCH && this.senders[j] === this.senders[i] && this.dues[j]! - due < WINDOW_NS) j++;
      const sender = senders[this.senders[i]!]!;
      let done = 0;
      while (done < j - i) {
        const k = await sender.send(this.slab, this.offsets, this.lengths, i + done, j - i - done);
        if (k === 0) await sleep(1); // socket buffer full: let it drain
        done += k;
      }
      sent += j - i;
      i = j;
    }
    this.n = 0;
    this.used = 0;
    return sent;
  }

  private grow(): void {
    const size = this.offsets.length * 2;
    const o = new Uint32Array(size);
    o.set(this.offsets);
    const l = new Uint32Array(size);
    l.set(this.lengths);
    const s = new Uint16Array(size);
    s.set(this.senders);
    const d = new Float64Array(size);
    d.set(this.dues);
    this.offsets = o;
    this.lengths = l;
    this.senders = s;
    this.dues = d;
  }
}
