/**
 * Where and how finished files go to S3, validated once at start (every error a ConfigError
 * naming the option), and the object key of a file.
 *
 * Keys come from a template, default {prefix}/{host}/{session}/{yyyy}/{mm}/{dd}/{file}:
 *   {prefix}   the PREFIX of s3://BUCKET/PREFIX (may be empty)
 *   {host}     this instance's name: the host name unless one is given (two appliances must
 *              not share it: on EC2 the default ip-10-1-2-3.<region>.compute.internal is unique
 *              in a VPC; containers on one host share its name unless given their own)
 *   {session}  the session's name          {vni}  its VNI ("unknown" when not known)
 *   {yyyy} {mm} {dd} {hh}   the UTC date and hour the file starts
 *   {file}     the file's name (session, start time and sequence number: unique per session)
 * A template must hold {file} and {host} (so two instances never write the same key), and
 * {prefix} when the URL names one. Empty path segments (an empty prefix) are dropped, so keys
 * never start with "/" or hold "//". Flow-log files are not keyed by the template: they keep
 * AWS's delivery layout, {prefix}/AWSLogs/<account>/vpcflowlogs/<region>/<yyyy>/<mm>/<dd>/<file>.
 */
import { hostname } from 'node:os';
import { ConfigError } from '../config.js';
import { codedError, ErrorCode } from '../errors.js';

export type ServerSideEncryption = 'AES256' | 'aws:kms';

/** What the options table will hand over (flags, environment, file). */
export interface S3Options {
  /** s3://BUCKET or s3://BUCKET/PREFIX */
  readonly url: string;
  readonly keyTemplate?: string | null;
  /** An S3-compatible store's URL (MinIO, Ceph RGW...); null = AWS. */
  readonly endpoint?: string | null;
  /** Path-style addressing (http://host/bucket/key); default: on with an endpoint, off for AWS. */
  readonly pathStyle?: boolean | null;
  /** null = the SDK's (AWS_REGION, profile); us-east-1 for an endpoint when there is none. */
  readonly region?: string | null;
  readonly sse?: string | null;
  readonly kmsKeyId?: string | null;
  readonly storageClass?: string | null;
  /** Files uploaded at once; default 2. */
  readonly concurrency?: number | null;
  /** {host}; default the host name. */
  readonly host?: string | null;
}

export interface S3Settings {
  readonly bucket: string;
  readonly prefix: string;
  readonly keyTemplate: string;
  readonly endpoint: string | null;
  readonly pathStyle: boolean;
  readonly region: string | null;
  readonly sse: ServerSideEncryption | null;
  readonly kmsKeyId: string | null;
  readonly storageClass: string | null;
  readonly concurrency: number;
  readonly host: string;
}

/** What a key is made of, besides the settings. */
export interface KeyFields {
  readonly session: string;
  readonly vni: number | null;
  /** UTC second the file starts. */
  readonly start: number;
  /** The file's name (no folder). */
  readonly file: string;
}

export const DEFAULT_KEY_TEMPLATE = '{prefix}/{host}/{session}/{yyyy}/{mm}/{dd}/{file}';
export const DEFAULT_S3_CONCURRENCY = 2;
const PLACEHOLDERS = ['prefix', 'host', 'session', 'vni', 'yyyy', 'mm', 'dd', 'hh', 'file'] as const;
/** Storage classes S3 documents for PutObject; S3-compatible stores accept a subset. */
export const STORAGE_CLASSES = ['STANDARD', 'REDUCED_REDUNDANCY', 'STANDARD_IA', 'ONEZONE_IA', 'INTELLIGENT_TIERING', 'GLACIER', 'DEEP_ARCHIVE', 'OUTPOSTS', 'GLACIER_IR', 'SNOW', 'EXPRESS_ONEZONE'] as const;
/** Characters S3 calls safe in keys (its "object key naming guidelines"), and "/". */
const SAFE_KEY_TEXT = /^[A-Za-z0-9!_.*'()/-]*$/;
const MAX_KEY_BYTES = 1024;

export function s3Settings(opts: S3Options): S3Settings {
  const { bucket, prefix } = parseS3Url(opts.url);
  const keyTemplate = opts.keyTemplate ?? DEFAULT_KEY_TEMPLATE;
  checkKeyTemplate(keyTemplate, prefix);
  const endpoint = opts.endpoint ? checkEndpoint(opts.endpoint) : null;
  const region = opts.region ?? (endpoint !== null ? 'us-east-1' : null);
  if (region !== null && !/^[a-z0-9-]{1,64}$/.test(region)) throw new ConfigError(`invalid s3-region ${JSON.stringify(region)}: expected a region name such as eu-west-1`);
  let sse: ServerSideEncryption | null = null;
  if (opts.sse) {
    if (opts.sse !== 'AES256' && opts.sse !== 'aws:kms') throw new ConfigError(`invalid s3-sse ${JSON.stringify(opts.sse)}: expected AES256 or aws:kms`);
    sse = opts.sse;
  }
  const kmsKeyId = opts.kmsKeyId || null;
  if (kmsKeyId !== null && sse !== 'aws:kms') throw new ConfigError('s3-kms-key-id needs --s3-sse aws:kms');
  const storageClass = opts.storageClass || null;
  if (storageClass !== null && !(STORAGE_CLASSES as readonly string[]).includes(storageClass)) {
    throw new ConfigError(`invalid s3-storage-class ${JSON.stringify(storageClass)}: expected one of ${STORAGE_CLASSES.join(', ')}`);
  }
  const concurrency = opts.concurrency ?? DEFAULT_S3_CONCURRENCY;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64) throw new ConfigError(`invalid s3-concurrency ${concurrency}: expected 1-64`);
  const host = opts.host ?? hostname();
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/.test(host)) {
    throw new ConfigError(`the host name ${JSON.stringify(host)} cannot stand in an S3 key as {host}: letters, digits, ".", "_" and "-" only`);
  }
  return { bucket, prefix, keyTemplate, endpoint, pathStyle: opts.pathStyle ?? endpoint !== null, region, sse, kmsKeyId, storageClass, concurrency, host };
}

/** s3://BUCKET[/PREFIX] → bucket and prefix (no slash at either end). */
export function parseS3Url(url: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([^/]+)(?:\/(.*))?$/.exec(url);
  if (m === null) throw new ConfigError(`invalid s3 ${JSON.stringify(url)}: expected s3://BUCKET or s3://BUCKET/PREFIX`);
  const bucket = m[1]!;
  // S3's rules for new buckets, with "_" and capitals that S3-compatible stores allow.
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]$/.test(bucket)) {
    throw new ConfigError(`invalid s3 bucket ${JSON.stringify(bucket)}: 3-63 letters, digits, ".", "-" or "_", starting and ending with a letter or digit`);
  }
  const prefix = (m[2] ?? '').replace(/^\/+|\/+$/g, '');
  if (!SAFE_KEY_TEXT.test(prefix) || prefix.split('/').some((s) => s === '.' || s === '..')) {
    throw new ConfigError(`invalid s3 prefix ${JSON.stringify(prefix)}: letters, digits, "/" and !_.*'()- only, no "." or ".." segment`);
  }
  return { bucket, prefix };
}

function checkKeyTemplate(template: string, prefix: string): void {
  const found = new Set<string>();
  const literal = template.replace(/\{([^{}]*)\}/g, (_m, name: string) => {
    if (!(PLACEHOLDERS as readonly string[]).includes(name)) {
      throw new ConfigError(`invalid s3-key ${JSON.stringify(template)}: unknown placeholder {${name}}; known: ${PLACEHOLDERS.map((p) => `{${p}}`).join(' ')}`);
    }
    found.add(name);
    return '';
  });
  if (!SAFE_KEY_TEXT.test(literal)) throw new ConfigError(`invalid s3-key ${JSON.stringify(template)}: outside placeholders use letters, digits, "/" and !_.*'()- only`);
  if (!found.has('file')) throw new ConfigError(`invalid s3-key ${JSON.stringify(template)}: must hold {file}, or every file of a session would get the same key`);
  if (!found.has('host')) throw new ConfigError(`invalid s3-key ${JSON.stringify(template)}: must hold {host}, or two appliances writing to one bucket would overwrite each other's files`);
  if (prefix !== '' && !found.has('prefix')) throw new ConfigError(`invalid s3-key ${JSON.stringify(template)}: the s3 URL names prefix "${prefix}" but the template has no {prefix}`);
}

function checkEndpoint(endpoint: string): string {
  let u: URL;
  try {
    u = new URL(endpoint);
  } catch {
    throw new ConfigError(`invalid s3-endpoint ${JSON.stringify(endpoint)}: expected a URL such as https://minio.example:9000`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new ConfigError(`invalid s3-endpoint: ${u.protocol} is neither http: nor https:`);
  // Credentials in a URL would end up in logs; they come from the SDK's credential chain only.
  if (u.username !== '' || u.password !== '') throw new ConfigError('invalid s3-endpoint: it must not hold a user name or password; credentials come from the environment, a profile or an instance role');
  if (u.search !== '' || u.hash !== '') throw new ConfigError('invalid s3-endpoint: no query or fragment');
  return u.href.replace(/\/$/, '');
}

/** The object key of a file. Throws a RangeError for a key above S3's 1024 bytes. */
export function objectKey(settings: S3Settings, f: KeyFields): string {
  const d = new Date(f.start * 1000);
  const two = (n: number): string => String(n).padStart(2, '0');
  const values: Record<(typeof PLACEHOLDERS)[number], string> = {
    prefix: settings.prefix,
    host: settings.host,
    session: f.session,
    vni: f.vni === null ? 'unknown' : String(f.vni),
    yyyy: String(d.getUTCFullYear()),
    mm: two(d.getUTCMonth() + 1),
    dd: two(d.getUTCDate()),
    hh: two(d.getUTCHours()),
    file: f.file,
  };
  return joinedKey(settings.keyTemplate.replace(/\{([a-z]+)\}/g, (_m, name: string) => values[name as keyof typeof values]));
}

/**
 * The object key of a flow-log file: its path under <out>/flows (AWSLogs/<account>/vpcflowlogs/
 * <region>/<yyyy>/<mm>/<dd>/<file>, AWS's delivery layout, which Athena's VPC flow log table
 * reads) under the prefix, not the key template. Two appliances never share a key: the flow
 * log id in the file name is made from the node name (capture/flowlog.ts).
 */
export function flowLogObjectKey(settings: S3Settings, relativePath: string): string {
  const segments = relativePath.split(/[\\/]/);
  if (segments[0] !== 'AWSLogs' || segments.some((s) => s === '..')) throw codedError(ErrorCode.INVALID_ARGUMENT, `not a flow-log path under the flows folder: ${relativePath}`, RangeError);
  return joinedKey(`${settings.prefix}/${segments.join('/')}`);
}

/** Empty path segments dropped (an empty prefix); throws a RangeError for a key above S3's 1024 bytes. */
function joinedKey(path: string): string {
  const key = path
    .split('/')
    .filter((s) => s !== '')
    .join('/');
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) throw codedError(ErrorCode.INVALID_ARGUMENT, `S3 key of ${Buffer.byteLength(key)} bytes is above S3's ${MAX_KEY_BYTES}: ${key.slice(0, 80)}...`, RangeError);
  return key;
}
