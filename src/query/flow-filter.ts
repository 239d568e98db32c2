/**
 * Which flow records a pcap-filter expression and a time window select: the one rule behind
 * GET /api/flows and `mirrorcap query --flows` (records from the ring, or read back from the
 * flow-log files).
 *
 *   record ──▶ header-only packet it describes ──compileFilter(EXPR).match()──▶ kept or not
 *
 * A flow record is not a packet, so the filter is matched against the packet the record
 * describes: an IPv4 or IPv6 header with its addresses and protocol, and for TCP, UDP, SCTP,
 * DCCP and UDP-Lite a transport header with its ports (TCP with the record's tcp-flags). Address,
 * protocol, port and flag expressions answer as they would for the flow's packets; expressions
 * about lengths or payload see that header-only packet. NODATA and SKIPDATA records describe
 * no packet: a filter leaves them out.
 */
import { isIP } from 'node:net';
import { parseAddr } from '../addr.js';
import { compileFilter, LINKTYPE_RAW } from '../filter/index.js';
import type { FlowRecord } from '../session/flowrender.js';

/** Transport protocols whose header starts with the two ports. */
const PORTED = new Set([6, 17, 33, 132, 136]);
const TCP = 6;
const IPV4_HEADER = 20;
const IPV6_HEADER = 40;
/** TCP's header without options; the others' first 8 bytes hold what a filter reads (ports). */
const TCP_HEADER = 20;
const PORTS_HEADER = 8;

/** The records `text` selects; null for an empty expression (all). Throws FilterError. */
export function flowMatcher(text: string | null): ((r: FlowRecord) => boolean) | null {
  if (text === null || text.trim() === '') return null;
  const f = compileFilter(text, LINKTYPE_RAW);
  const packet = new Uint8Array(IPV6_HEADER + TCP_HEADER);
  return (r) => {
    const len = describedPacket(r, packet);
    return len > 0 && f.match(packet, 0, len, len);
  };
}

/** Writes the header-only packet record `r` describes into `out`; its length, or 0 for a record without addresses. */
export function describedPacket(r: FlowRecord, out: Uint8Array): number {
  const src = r.srcaddr;
  const dst = r.dstaddr;
  if (typeof src !== 'string' || typeof dst !== 'string') return 0;
  const v6 = isIP(src) === 6;
  const proto = Number(r.protocol ?? 0);
  const l4 = proto === TCP ? TCP_HEADER : PORTED.has(proto) ? PORTS_HEADER : 0;
  const ipLen = v6 ? IPV6_HEADER : IPV4_HEADER;
  const len = ipLen + l4;
  out.fill(0, 0, len);
  const dv = new DataView(out.buffer, out.byteOffset, len);
  if (v6) {
    out[0] = 0x60;
    dv.setUint16(4, l4);
    out[6] = proto;
    out[7] = 64;
    parseAddr(src, out, 8);
    parseAddr(dst, out, 24);
  } else {
    out[0] = 0x45;
    dv.setUint16(2, len);
    out[8] = 64;
    out[9] = proto;
    // parseAddr writes the IPv4-mapped 16-byte form: the address is its last 4 bytes.
    const a = new Uint8Array(16);
    parseAddr(src, a, 0);
    out.set(a.subarray(12), 12);
    parseAddr(dst, a, 0);
    out.set(a.subarray(12), 16);
  }
  if (l4 > 0) {
    dv.setUint16(ipLen, Number(r.srcport ?? 0));
    dv.setUint16(ipLen + 2, Number(r.dstport ?? 0));
    if (proto === TCP) {
      out[ipLen + 12] = (TCP_HEADER / 4) << 4;
      out[ipLen + 13] = Number(r['tcp-flags'] ?? 0) & 0xff;
    } else if (proto === 17) dv.setUint16(ipLen + 4, PORTS_HEADER);
  }
  return len;
}
