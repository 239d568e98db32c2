/**
 * The VPC Flow Logs text format: the field names AWS defines, a custom format `${field} ...`,
 * the header line, and one line per record with the fields separated by one space and `-` where
 * a value is not known (docs/flows.md cites AWS's documentation for every rule here).
 *
 *   parseFlowFormat('${version} ${srcaddr} ...') ──▶ FlowFormat (field codes, version, header)
 *   FlowRenderer(format, session values)  ──▶ header() / flow(slots, s) / status(kind, start, end)
 *
 * What mirrorcap knows: the packet fields (addresses, ports, protocol, packets, bytes, times,
 * TCP flags, IP version) and, from the session's config, the values that describe the mirrored
 * interface (account, interface, VPC, subnet, instance, region, AZ, sublocation, ECS task).
 * What it cannot know is `-`: the AWS service of an address, the traffic path, a reject reason.
 */
import { isIP } from 'node:net';
import { formatAddr, parseAddr } from '../addr.js';
import type { FlowSlots } from '../session/flows.js';

/** Field names by the VPC Flow Logs version that introduced them, in AWS's table order. */
export const FLOW_FIELD_VERSIONS: ReadonlyArray<readonly [number, readonly string[]]> = [
  [2, ['version', 'account-id', 'interface-id', 'srcaddr', 'dstaddr', 'srcport', 'dstport', 'protocol', 'packets', 'bytes', 'start', 'end', 'action', 'log-status']],
  [3, ['vpc-id', 'subnet-id', 'instance-id', 'tcp-flags', 'type', 'pkt-srcaddr', 'pkt-dstaddr']],
  [4, ['region', 'az-id', 'sublocation-type', 'sublocation-id']],
  [5, ['pkt-src-aws-service', 'pkt-dst-aws-service', 'flow-direction', 'traffic-path']],
  [
    7,
    [
      'ecs-cluster-arn',
      'ecs-cluster-name',
      'ecs-container-instance-arn',
      'ecs-container-instance-id',
      'ecs-container-id',
      'ecs-second-container-id',
      'ecs-service-name',
      'ecs-task-definition-arn',
      'ecs-task-arn',
      'ecs-task-id',
    ],
  ],
  [8, ['reject-reason']],
];

const FIELD_VERSION = new Map<string, number>(FLOW_FIELD_VERSIONS.flatMap(([v, names]) => names.map((n) => [n, v] as const)));
export const FLOW_FIELDS: readonly string[] = [...FIELD_VERSION.keys()];

/** Values that describe the mirrored interface, not a flow: they come from the session's config. */
export const STATIC_FIELDS: readonly string[] = [
  'account-id',
  'interface-id',
  'vpc-id',
  'subnet-id',
  'instance-id',
  'region',
  'az-id',
  'sublocation-type',
  'sublocation-id',
  ...FLOW_FIELD_VERSIONS.find(([v]) => v === 7)![1],
];

/** The default format: the version 2 fields in order. */
export const DEFAULT_FLOW_FORMAT = FLOW_FIELD_VERSIONS[0]![1].map((f) => `\${${f}}`).join(' ');

export class FlowFormatError extends Error {
  readonly code = 'ERR_MIRRORCAP_FLOW_FORMAT';
  override readonly name = 'FlowFormatError';
}

export interface FlowFormat {
  /** Field names in record order. */
  readonly fields: readonly string[];
  /** The `version` field's value: the highest version among the fields. */
  readonly version: number;
  /** The first line of every file: the field names separated by one space. */
  readonly header: string;
}

/** Parses a format as AWS takes it (`${field}` tokens separated by spaces); throws FlowFormatError naming what is wrong. */
export function parseFlowFormat(text: string): FlowFormat {
  const tokens = text.trim().split(/\s+/).filter((t) => t !== '');
  if (tokens.length === 0) throw new FlowFormatError('flow format is empty: give at least one field, such as ${srcaddr}');
  const fields: string[] = [];
  for (const tok of tokens) {
    const m = /^\$\{([^}]*)\}$/.exec(tok);
    if (!m) throw new FlowFormatError(`flow format token ${JSON.stringify(tok)} is not of the form \${field-name}`);
    const name = m[1]!;
    if (!FIELD_VERSION.has(name)) {
      throw new FlowFormatError(`unknown flow log field ${JSON.stringify(name)}; known fields: ${FLOW_FIELDS.join(' ')}`);
    }
    if (fields.includes(name)) throw new FlowFormatError(`flow log field ${JSON.stringify(name)} appears twice`);
    fields.push(name);
  }
  return Object.freeze({
    fields: Object.freeze(fields),
    version: Math.max(...fields.map((f) => FIELD_VERSION.get(f)!)),
    header: fields.join(' '),
  });
}

/** A session's static values (by AWS field name) and the mirrored interface's own addresses. */
export interface FlowSessionInfo {
  readonly values: Readonly<Record<string, string>>;
  /** Addresses of the mirrored interface, canonical text: decide flow-direction. Empty = `-`. */
  readonly addresses: readonly string[];
}

export const EMPTY_FLOW_INFO: FlowSessionInfo = Object.freeze({ values: Object.freeze({}), addresses: Object.freeze([]) });

/**
 * Validates a session's `flow-fields` mapping (static AWS field name → value, plus `addresses`
 * for flow-direction) from a config file. `at` names it in errors. Values go into space-separated
 * records and into S3 paths, so no spaces or controls; account-id is 12 digits (a number in YAML
 * is padded back to 12, as YAML drops leading zeros); region is lower case, digits and dashes.
 */
export function resolveFlowSessionInfo(raw: unknown, at: string): FlowSessionInfo {
  if (raw === undefined || raw === null) return EMPTY_FLOW_INFO;
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new FlowFormatError(`${at} must be a mapping of flow log field names to values`);
  const values: Record<string, string> = {};
  let addresses: string[] = [];
  for (const [key, v] of Object.entries(raw as Record<string, unknown>)) {
    if (key === 'addresses') {
      const list = typeof v === 'string' ? v.split(',').map((s) => s.trim()) : v;
      if (!Array.isArray(list) || list.some((a) => typeof a !== 'string' || isIP(a) === 0)) {
        throw new FlowFormatError(`${at}.addresses must be a list of IP addresses of the mirrored interface`);
      }
      addresses = (list as string[]).map(canonicalAddr);
      continue;
    }
    if (!STATIC_FIELDS.includes(key)) {
      throw new FlowFormatError(`unknown key ${JSON.stringify(key)} in ${at}; it takes addresses and ${STATIC_FIELDS.join(', ')}`);
    }
    let text: string;
    if (key === 'account-id' && typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v < 1e12) text = String(v).padStart(12, '0');
    else if (typeof v === 'string') text = v.trim();
    else throw new FlowFormatError(`${at}.${key} must be a string, got ${JSON.stringify(v)}`);
    const ok =
      key === 'account-id' ? /^\d{12}$/.test(text) : key === 'region' ? /^[a-z0-9-]{1,32}$/.test(text) : /^[\x21-\x7e]{1,1024}$/.test(text);
    if (!ok) {
      const want =
        key === 'account-id' ? 'a 12-digit AWS account id' : key === 'region' ? 'a region name such as us-east-1' : 'printable characters without spaces';
      throw new FlowFormatError(`invalid ${at}.${key} ${JSON.stringify(v)}: expected ${want}`);
    }
    values[key] = text;
  }
  return Object.freeze({ values: Object.freeze(values), addresses: Object.freeze(addresses) });
}

function canonicalAddr(text: string): string {
  const b = new Uint8Array(16);
  parseAddr(text, b, 0);
  return formatAddr(b, 0);
}

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
