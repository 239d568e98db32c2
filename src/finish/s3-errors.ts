/**
 * What an upload error means: a code for the failures counter, whether to retry soon
 * (throttling, 5xx, network), slowly (the store refuses us until someone fixes settings or
 * permissions) or not at all (the local file is gone or unreadable), and for the slow kind
 * what to fix.
 *
 * Secrets never leave this module: S3 error objects carry the access key id, the string to sign
 * and the signature as extra fields; only the code, the HTTP status and the message are read,
 * and the message is cut to one line with anything shaped like a key redacted.
 */
import type { S3Settings } from './s3-settings.js';

export type FailureKind = 'transient' | 'permanent' | 'local';

export interface Failure {
  /** S3 error code (NoSuchBucket), network code (ECONNREFUSED) or ours (ERR_MIRRORCAP_S3_*). */
  readonly code: string;
  readonly kind: FailureKind;
  readonly status: number | null;
  /** One line, secrets redacted. */
  readonly message: string;
  /** For permanent failures: what the operator must change. */
  readonly fix: string | null;
}

/** The caller's file cannot be uploaded at all; it stays where it is. */
export class S3UploadError extends Error {
  override readonly name = 'S3UploadError';
  constructor(
    readonly code: string,
    readonly path: string,
    message: string,
  ) {
    super(`${path}: ${message}`);
  }
}

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED', 'ENETDOWN', 'EHOSTDOWN', 'ERR_STREAM_PREMATURE_CLOSE', 'UND_ERR_SOCKET']);
/** 4xx answers that say "try again", not "you are wrong". */
const TRANSIENT_CODES = new Set(['SlowDown', 'Throttling', 'ThrottlingException', 'TooManyRequestsException', 'RequestTimeout', 'RequestTimeTooSkewed', 'BadDigest', 'XAmzContentSHA256Mismatch', 'IncompleteBody', 'OperationAborted', 'TimeoutError', 'RequestTimeoutException']);
/** Errors about the local file (Node fs errors carry the path they were about). */
const LOCAL_CODES = new Set(['ENOENT', 'EACCES', 'EPERM', 'EISDIR', 'EIO', 'EMFILE', 'ENFILE']);

const KEY_ID = /\b(?:AKIA|ASIA|AROA|AIDA|AGPA|ANPA|ANVA|AIPA)[A-Z0-9]{12,}\b/g;
/** A 40-character secret access key, or any long base64 run (session tokens, signatures). */
const SECRETISH = /[A-Za-z0-9/+=]{40,}/g;

export function redact(text: string): string {
  const line = text.split('\n')[0]!.replace(KEY_ID, '[redacted]').replace(SECRETISH, '[redacted]');
  return line.length > 300 ? `${line.slice(0, 300)}...` : line;
}

/** A label-safe code (metrics keep a bounded, printable set). */
function codeOf(err: Record<string, unknown>): string {
  for (const c of [err.Code, err.code, err.name]) {
    if (typeof c === 'string' && /^[A-Za-z][A-Za-z0-9._-]{0,63}$/.test(c) && c !== 'Error') return c;
  }
  return 'Unknown';
}

export function classify(error: unknown, settings: S3Settings, permanentRetrySeconds: number): Failure {
  const err = (typeof error === 'object' && error !== null ? error : { message: String(error) }) as Record<string, unknown>;
  const code = codeOf(err);
  const meta = err.$metadata as { httpStatusCode?: number } | undefined;
  const status = typeof meta?.httpStatusCode === 'number' ? meta.httpStatusCode : null;
  const message = redact(typeof err.message === 'string' ? err.message : code);
  const base = { code, status, message };
  if (LOCAL_CODES.has(code) && typeof err.path === 'string') return { ...base, kind: 'local', fix: null };
  if (code.startsWith('ERR_MIRRORCAP_S3_LOCAL')) return { ...base, kind: 'local', fix: null };
  if (NETWORK_CODES.has(code) || TRANSIENT_CODES.has(code)) return { ...base, kind: 'transient', fix: null };
  if (status !== null && (status >= 500 || status === 429 || status === 408)) return { ...base, kind: 'transient', fix: null };
  const fix = fixFor(code, status, message, settings, permanentRetrySeconds);
  return fix === null ? { ...base, kind: 'transient', fix: null } : { ...base, kind: 'permanent', fix };
}

/** What to change for an error that will not go away by itself; null if it may. */
function fixFor(code: string, status: number | null, message: string, s: S3Settings, every: number): string | null {
  const where = `s3://${s.bucket}${s.prefix ? `/${s.prefix}` : ''}${s.endpoint !== null ? ` at ${s.endpoint}` : ''}`;
  const retry = `; uploads are retried every ${every} s meanwhile and capture goes on`;
  switch (code) {
    case 'AccessDenied':
    case 'AllAccessDisabled':
      return `the credentials in use may not write ${where}: allow s3:PutObject${s.sse === 'aws:kms' ? ' and kms:GenerateDataKey on the KMS key' : ''} (and s3:GetObject so restarts can check what was uploaded) in the IAM or bucket policy${retry}`;
    case 'NoSuchBucket':
      return `bucket "${s.bucket}" does not exist${s.endpoint !== null ? ` at ${s.endpoint}` : ''}: create it or correct --s3${retry}`;
    case 'InvalidAccessKeyId':
      return `the store does not know the access key id in use: check AWS_ACCESS_KEY_ID, AWS_PROFILE or the instance role${retry}`;
    case 'SignatureDoesNotMatch':
      return `the secret access key does not belong to the access key id in use: check AWS_SECRET_ACCESS_KEY or the profile${retry}`;
    case 'CredentialsProviderError':
      return `no AWS credentials found (environment, profile, web identity, container or EC2 instance role): give the instance a role or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY${retry}`;
    case 'ExpiredToken':
    case 'TokenRefreshRequired':
    case 'InvalidToken':
      return `the session token in use expired or is invalid and was not renewed: use an instance role or a profile that refreshes itself${retry}`;
    case 'PermanentRedirect':
    case 'AuthorizationHeaderMalformed':
    case 'IllegalLocationConstraintException':
      return `bucket "${s.bucket}" is in another region than ${s.region ?? "the SDK's default"}: set --s3-region to the bucket's region${retry}`;
    case 'InvalidStorageClass':
      return `the store does not accept storage class ${s.storageClass ?? 'STANDARD'}: change --s3-storage-class${retry}`;
    case 'InvalidBucketName':
      return `the store rejects the bucket name "${s.bucket}": correct --s3${retry}`;
    case 'AccountProblem':
      return `the AWS account of these credentials is blocked from S3: see the account's billing and support pages${retry}`;
    default:
      if (code.startsWith('KMS.') || /kms/i.test(message)) {
        return `server-side encryption with KMS failed (${code}): check --s3-kms-key-id and that the credentials may use the key (kms:GenerateDataKey)${retry}`;
      }
      if (code === 'InvalidArgument' || code === 'InvalidRequest' || code === 'NotImplemented') {
        return `the store refused the request (${code}: ${message}): check --s3-sse, --s3-kms-key-id and --s3-storage-class against what it supports${retry}`;
      }
      if (status !== null && status >= 400 && status < 500) return `the store refuses uploads with ${status} ${code} (${message}): correct the S3 settings or permissions${retry}`;
      return null;
  }
}
