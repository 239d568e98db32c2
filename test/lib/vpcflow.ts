/**
 * A reader of VPC Flow Logs files written from AWS's documentation, independent of our writer
 * (it imports nothing from src/): "Publish flow logs to Amazon S3" for the folder layout, the
 * file name and "each file is compressed into a single Gzip file"; "Flow log records" for the
 * fields, their versions and values ("If a field is not applicable or could not be computed for
 * a specific record, the record displays a '-' symbol"); "Flow log record examples" for what a
 * NODATA or SKIPDATA record leaves as '-'. Amazon Athena's table for these files skips one
 * header line and splits fields on one space.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { gunzipSync } from 'node:zlib';

type Check = (v: string) => boolean;

const int = (lo: number, hi: number): Check => (v) => /^\d+$/.test(v) && Number(v) >= lo && Number(v) <= hi;
const any: Check = (v) => /^\S+$/.test(v);
const oneOf = (...values: string[]): Check => (v) => values.includes(v);
const ip: Check = (v) => isIP(v) !== 0;

/** Field → [version it appeared in, its values] from the table of available fields. */
const FIELDS: Record<string, [number, Check]> = {
  version: [2, int(2, 99)],
  'account-id': [2, (v) => /^\d{12}$/.test(v) || v === 'unknown'],
  'interface-id': [2, any],
  srcaddr: [2, ip],
  dstaddr: [2, ip],
  srcport: [2, int(0, 65535)],
  dstport: [2, int(0, 65535)],
  protocol: [2, int(0, 255)],
  packets: [2, int(1, Number.MAX_SAFE_INTEGER)],
  bytes: [2, int(0, Number.MAX_SAFE_INTEGER)],
  start: [2, int(0, 2 ** 32)],
  end: [2, int(0, 2 ** 32)],
  action: [2, oneOf('ACCEPT', 'REJECT')],
  'log-status': [2, oneOf('OK', 'NODATA', 'SKIPDATA')],
  'vpc-id': [3, any],
  'subnet-id': [3, any],
  'instance-id': [3, any],
  'tcp-flags': [3, int(0, 255)],
  type: [3, oneOf('IPv4', 'IPv6', 'EFA')],
  'pkt-srcaddr': [3, ip],
  'pkt-dstaddr': [3, ip],
  region: [4, any],
  'az-id': [4, any],
  'sublocation-type': [4, oneOf('wavelength', 'outpost', 'localzone')],
  'sublocation-id': [4, any],
  'pkt-src-aws-service': [5, any],
  'pkt-dst-aws-service': [5, any],
  'flow-direction': [5, oneOf('ingress', 'egress')],
  'traffic-path': [5, int(1, 8)],
  'ecs-cluster-arn': [7, any],
  'ecs-cluster-name': [7, any],
  'ecs-container-instance-arn': [7, any],
  'ecs-container-instance-id': [7, any],
  'ecs-container-id': [7, any],
  'ecs-second-container-id': [7, any],
  'ecs-service-name': [7, any],
  'ecs-task-definition-arn': [7, any],
  'ecs-task-arn': [7, any],
  'ecs-task-id': [7, any],
  'reject-reason': [8, any],
};

/** In a NODATA/SKIPDATA record these are '-' (AWS's examples); in an OK record they never are. */
const FLOW_VALUES = ['srcaddr', 'dstaddr', 'srcport', 'dstport', 'protocol', 'packets', 'bytes', 'action', 'tcp-flags', 'type', 'pkt-srcaddr', 'pkt-dstaddr'];
/** Set in every record, whatever its status. */
const ALWAYS = ['version', 'start', 'end', 'log-status'];

export interface ParsedFlowLog {
  readonly fields: string[];
  readonly records: Record<string, string>[];
}

/** Reads a .log.gz file; throws with the line and field on anything the documentation does not allow. */
export function readFlowLog(path: string): ParsedFlowLog {
  const gz = readFileSync(path);
  if (gz[0] !== 0x1f || gz[1] !== 0x8b) throw new Error(`${path}: not gzip`);
  const t = spawnSync('gzip', ['-t', path]);
  if (t.status !== 0) throw new Error(`${path}: gzip -t: ${t.stderr.toString()}`);
  const text = gunzipSync(gz).toString('utf8');
  if (!text.endsWith('\n')) throw new Error(`${path}: last line not terminated`);
  const lines = text.slice(0, -1).split('\n');
  const fields = lines[0]!.split(' ');
  for (const f of fields) if (!(f in FIELDS)) throw new Error(`${path}: header names unknown field ${JSON.stringify(f)}`);
  if (new Set(fields).size !== fields.length) throw new Error(`${path}: header repeats a field`);
  const version = Math.max(...fields.map((f) => FIELDS[f]![0]));
  const records = lines.slice(1).map((line, i) => {
    const at = `${path}:${i + 2}`;
    const values = line.split(' ');
    if (values.length !== fields.length) throw new Error(`${at}: ${values.length} fields, header has ${fields.length}: ${JSON.stringify(line)}`);
    const r: Record<string, string> = {};
    fields.forEach((f, k) => {
      const v = values[k]!;
      if (v !== '-' && !FIELDS[f]![1](v)) throw new Error(`${at}: ${f} ${JSON.stringify(v)} is not a value AWS documents`);
      r[f] = v;
    });
    if (r.version !== undefined && Number(r.version) !== version) throw new Error(`${at}: version ${r.version}, the fields' highest is ${version}`);
    for (const f of ALWAYS) if (r[f] === '-') throw new Error(`${at}: ${f} is '-'`);
    const status = r['log-status'];
    for (const f of FLOW_VALUES) {
      if (!(f in r)) continue;
      if (status !== undefined && status !== 'OK' && r[f] !== '-') throw new Error(`${at}: ${status} record with ${f} ${r[f]}`);
      if (status === 'OK' && r[f] === '-') throw new Error(`${at}: OK record without ${f}`);
    }
    if (r.start !== undefined && r.end !== undefined && Number(r.start) > Number(r.end)) throw new Error(`${at}: start after end`);
    return r;
  });
  return { fields, records };
}

/**
 * `AWSLogs/<account>/vpcflowlogs/<region>/<yyyy>/<mm>/<dd>/<account>_vpcflowlogs_<region>_<flow log id>_<YYYYMMDDTHHmmZ>_<hash>.log.gz`
 * relative to the bucket prefix; the folder's date is the name's. Null when `rel` is not of that form.
 */
export function parseFlowLogPath(rel: string): { account: string; region: string; id: string; stamp: string; hash: string } | null {
  const m = /^AWSLogs\/([^/]+)\/vpcflowlogs\/([^/]+)\/(\d{4})\/(\d{2})\/(\d{2})\/([^/_]+)_vpcflowlogs_([^/_]+)_(fl-[0-9a-f]+)_((\d{8})T\d{4}Z)_([0-9a-f]{8})\.log\.gz$/.exec(rel);
  if (!m || m[1] !== m[6] || m[2] !== m[7] || `${m[3]}${m[4]}${m[5]}` !== m[10]) return null;
  return { account: m[1]!, region: m[2]!, id: m[8]!, stamp: m[9]!, hash: m[11]! };
}
