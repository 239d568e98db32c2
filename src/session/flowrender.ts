/**
 * Renders flow records in a VPC Flow Logs format (flowformat.ts): one line per record, the fields
 * separated by one space and `-` where a value is not known, as AWS writes them; and the same
 * records as JSON objects for /api/flows.
 *
 *   FlowRenderer(format, session values) ──▶ header / flow(slots, s) / status(kind, start, end)
 *
 * What mirrorcap knows: the packet fields (addresses, ports, protocol, packets, bytes, times,
 * TCP flags, IP version) and, from the session's config, the values that describe the mirrored
 * interface (account, interface, VPC, subnet, instance, region, AZ, sublocation, ECS task).
 * What it cannot know is `-`: the AWS service of an address, the traffic path, a reject reason.
 */
import { EMPTY_FLOW_INFO, FLOW_FIELDS, STATIC_FIELDS, type FlowFormat, type FlowSessionInfo } from '../flowformat.js';
import type { FlowSlots } from './flows.js';

export type FlowStatus = 'NODATA' | 'SKIPDATA';

const F_VERSION = 0;
const F_STATIC = 1;
const F_SRCADDR = 2;
const F_DSTADDR = 3;
const F_SRCPORT = 4;
const F_DSTPORT = 5;
const F_PROTOCOL = 6;
const F_PACKETS = 7;
const F_BYTES = 8;
const F_START = 9;
const F_END = 10;
const F_ACTION = 11;
const F_LOG_STATUS = 12;
const F_TCP_FLAGS = 13;
const F_TYPE = 14;
const F_DIRECTION = 15;
/** Fields mirrorcap cannot know: pkt-*-aws-service, traffic-path, reject-reason. */
const F_UNKNOWN = 16;

const CODES: Readonly<Record<string, number>> = {
  version: F_VERSION,
  srcaddr: F_SRCADDR,
  'pkt-srcaddr': F_SRCADDR,
  dstaddr: F_DSTADDR,
  'pkt-dstaddr': F_DSTADDR,
  srcport: F_SRCPORT,
  dstport: F_DSTPORT,
  protocol: F_PROTOCOL,
  packets: F_PACKETS,
  bytes: F_BYTES,
  start: F_START,
  end: F_END,
  action: F_ACTION,
  'log-status': F_LOG_STATUS,
  'tcp-flags': F_TCP_FLAGS,
  type: F_TYPE,
  'flow-direction': F_DIRECTION,
};

/** One flow as the JSON view shows it: AWS field names, known values only, plus the session. */
export type FlowRecord = Record<string, string | number>;

/** Whether a record overlaps a window of Unix seconds (start <= until and end >= since): what /api/flows and query --flows select. */
export function inFlowWindow(r: FlowRecord, since: number, until: number): boolean {
  return Number(r.start) <= until && Number(r.end) >= since;
}

/** Fields whose values are numbers in a FlowRecord (the rest are text). */
const NUMERIC = new Set([F_SRCPORT, F_DSTPORT, F_PROTOCOL, F_PACKETS, F_BYTES, F_START, F_END, F_TCP_FLAGS]);

/**
 * A record read back from a flow-log file (`fields` from its header line, `values` one line split
 * on spaces) as the JSON view shows it: what record()/statusRecord() made when it was written.
 */
export function parseFlowRecord(session: string, fields: readonly string[], values: readonly string[]): FlowRecord {
  const r: FlowRecord = { session };
  fields.forEach((f, k) => {
    const v = values[k];
    if (v === undefined || v === '-' || f === 'version') return;
    r[f] = NUMERIC.has(codeOf(f)) && /^\d+$/.test(v) ? Number(v) : v;
  });
  return r;
}

/** A record in the text format `format` (one line, no newline): `-` for what it does not hold. */
export function formatFlowRecord(format: FlowFormat, r: FlowRecord): string {
  return format.fields.map((f) => (f === 'version' ? format.version : (r[f] ?? '-'))).join(' ');
}

/** A field's code: what value it takes (see FlowRenderer.value). */
function codeOf(field: string): number {
  return CODES[field] ?? (STATIC_FIELDS.includes(field) ? F_STATIC : F_UNKNOWN);
}

/** Fields of the JSON view: every field but the file format's version. */
const RECORD_FIELDS: ReadonlyArray<readonly [string, number]> = FLOW_FIELDS.filter((f) => f !== 'version').map((f) => [f, codeOf(f)] as const);

/**
 * Renders one session's records in a format. Every packet mirrorcap records passed the source's
 * security groups and network ACLs (AWS does not mirror what they drop), so `action` is ACCEPT.
 */
export class FlowRenderer {
  private readonly codes: Int8Array;
  private readonly local: ReadonlySet<string>;

  constructor(
    readonly format: FlowFormat,
    readonly info: FlowSessionInfo = EMPTY_FLOW_INFO,
  ) {
    this.codes = Int8Array.from(format.fields, codeOf);
    this.local = new Set(info.addresses);
  }

  get header(): string {
    return this.format.header;
  }

  /** The record of flow s, without the newline. */
  flow(t: FlowSlots, s: number): string {
    const { codes, format } = this;
    const src = t.srcAddr(s);
    const dst = t.dstAddr(s);
    let line = `${this.value(codes[0]!, format.fields[0]!, t, s, src, dst)}`;
    for (let k = 1; k < codes.length; k++) line = `${line} ${this.value(codes[k]!, format.fields[k]!, t, s, src, dst)}`;
    return line;
  }

  /**
   * A NODATA or SKIPDATA record as AWS writes them: version, the interface's own values and
   * the interval's start and end; every flow field and action `-`.
   */
  status(kind: FlowStatus, start: number, end: number): string {
    return this.format.fields
      .map((f) => {
        const c = codeOf(f);
        return c === F_VERSION ? this.format.version : c === F_STATIC ? (this.info.values[f] ?? '-') : c === F_START ? start : c === F_END ? end : c === F_LOG_STATUS ? kind : '-';
      })
      .join(' ');
  }

  /** Flow s as a JSON object: every field mirrorcap knows, whatever the file format holds. */
  record(session: string, t: FlowSlots, s: number): FlowRecord {
    const src = t.srcAddr(s);
    const dst = t.dstAddr(s);
    const r: FlowRecord = { session };
    for (const [f, c] of RECORD_FIELDS) {
      const v = this.value(c, f, t, s, src, dst);
      if (v !== '-') r[f] = v;
    }
    return r;
  }

  /** A NODATA/SKIPDATA record as a JSON object. */
  statusRecord(session: string, kind: FlowStatus, start: number, end: number): FlowRecord {
    return { session, ...this.info.values, start, end, 'log-status': kind };
  }

  /** Field `field` (of code `code`) of flow s; `-` where mirrorcap cannot know it. */
  private value(code: number, field: string, t: FlowSlots, s: number, src: string, dst: string): string | number {
    switch (code) {
      case F_VERSION:
        return this.format.version;
      case F_STATIC:
        return this.info.values[field] ?? '-';
      case F_SRCADDR:
        return src;
      case F_DSTADDR:
        return dst;
      case F_SRCPORT:
        return t.srcPort(s);
      case F_DSTPORT:
        return t.dstPort(s);
      case F_PROTOCOL:
        return t.protocol(s);
      case F_PACKETS:
        return t.packets(s);
      case F_BYTES:
        return t.bytes(s);
      case F_START:
        return t.firstSec(s);
      case F_END:
        return t.lastSec(s);
      case F_ACTION:
        return 'ACCEPT';
      case F_LOG_STATUS:
        return 'OK';
      case F_TCP_FLAGS:
        return t.awsTcpFlags(s);
      case F_TYPE:
        return t.ipVersion(s) === 4 ? 'IPv4' : 'IPv6';
      case F_DIRECTION:
        if (this.local.has(dst)) return 'ingress';
        return this.local.has(src) ? 'egress' : '-';
      default:
        return '-';
    }
  }
}
