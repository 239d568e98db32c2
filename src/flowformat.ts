/**
 * The VPC Flow Logs text format's definition: the field names AWS defines, a custom format
 * `${field} ...`, the header line, and the values a session's config gives for the fields that
 * describe the mirrored interface (docs/flows.md cites AWS's documentation for every rule here).
 * It sits beside config.ts, which validates --flow-format and flow-fields with it;
 * session/flowrender.ts renders records in it.
 *
 *   parseFlowFormat('${version} ${srcaddr} ...') ──▶ FlowFormat (fields, version, header)
 */
import { isIP } from 'node:net';
import { canonicalAddr } from './addr.js';

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
