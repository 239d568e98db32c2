/**
 * GET /api/flows?since=&until=&filter=: the newest flow records (capture/flowring.ts) of a time
 * window as JSON lines, optionally those a pcap-filter expression matches.
 *
 *   ring.query(since, until) ──▶ records ──filter?──▶ header-only packet per record ──match()──▶ JSON lines
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
import type { FlowRing } from '../capture/flowring.js';
import { compileFilter, FilterError, LINKTYPE_RAW } from '../filter/index.js';
import type { FlowRecord } from '../session/flowrender.js';

export interface FlowsAnswer {
  readonly status: number;
  /** JSON lines (status 200) or one JSON error object. */
  readonly body: string;
  /** False when records of the window were overwritten in the ring before they were asked for. */
  readonly complete: boolean;
}

/** Transport protocols whose header starts with the two ports. */
const PORTED = new Set([6, 17, 33, 132, 136]);
const TCP = 6;
const IPV4_HEADER = 20;
const IPV6_HEADER = 40;
/** TCP's header without options; the others' first 8 bytes hold what a filter reads (ports). */
const TCP_HEADER = 20;
const PORTS_HEADER = 8;

/** A time bound: Unix seconds, or an ISO 8601 date; null when it is not one. */
function parseTime(text: string | null, missing: number): number | null {
  if (text === null || text === '') return missing;
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text);
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? null : ms / 1000;
}

export function flowsAnswer(ring: FlowRing | null, params: URLSearchParams): FlowsAnswer {
  const bad = (error: string): FlowsAnswer => ({ status: 400, body: `${JSON.stringify({ error })}\n`, complete: true });
  if (ring === null) return { status: 404, body: `${JSON.stringify({ error: 'no flow records kept: --flow-ring is 0' })}\n`, complete: true };
  const since = parseTime(params.get('since'), -Infinity);
  const until = parseTime(params.get('until'), Infinity);
  if (since === null || until === null) return bad('since and until are Unix seconds or ISO 8601 dates, e.g. since=1764460800 or since=2026-11-30T00:00:00Z');
  const filterText = params.get('filter');
  let match: ((r: FlowRecord) => boolean) | null = null;
  if (filterText !== null && filterText.trim() !== '') {
    try {
      const f = compileFilter(filterText, LINKTYPE_RAW);
      const packet = new Uint8Array(IPV6_HEADER + TCP_HEADER);
      match = (r) => {
        const len = describedPacket(r, packet);
        return len > 0 && f.match(packet, 0, len, len);
      };
    } catch (err) {
      if (err instanceof FilterError) return bad(`filter: ${err.message}`);
      throw err;
    }
  }
  const { records, complete } = ring.query(since, until);
  let body = '';
  for (const r of records) if (match === null || match(r)) body += `${JSON.stringify(r)}\n`;
  return { status: 200, body, complete };
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
