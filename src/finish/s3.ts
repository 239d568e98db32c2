/**
 * The S3 step: uploads finished files, a few at a time, and never gives up on one the store
 * could take. Nothing here runs in the capture path: it is handed a finished file, works with
 * async I/O in small slices, and reports through the promise upload() returned.
 *
 *   upload(file) ─▶ marker says done? ──yes──▶ resolve 'already-uploaded'
 *        │ no
 *        ▼
 *     queue ──(≤ concurrency; 1 while the store is failing)──▶ hash the file (sha256; md5 +
 *        ▲                                                      sha256 per part)
 *        │ transient: back off 1 s, 2 s ... 60 s, jittered     ▼
 *        │ permanent: log the fix once, retry every 5 min    HEAD key: same object there? ─▶ marker, resolve
 *        └───────────────── failed ◀────────────────────────  PUT / multipart upload ─▶ marker, resolve
 *                                                      local file gone: reject (the caller decides)
 *
 * Integrity: every PUT and part carries Content-MD5 and x-amz-content-sha256 of its own bytes,
 * computed beforehand while reading the file (so signing does not hash on the event loop): S3
 * refuses a body that does not match either (BadDigest, XAmzContentSHA256Mismatch), which is
 * retried. The SDK's own CRC32 flexible checksums are off (requestChecksumCalculation
 * WHEN_REQUIRED): with them it streams aws-chunked bodies, which many S3-compatible stores refuse.
 * The whole file's sha256 travels as x-amz-meta-mirrorcap-sha256; after a restart HEAD compares it.
 *
 * Nothing is left half-written under a final key: a single PUT is atomic, and a multipart upload
 * that fails is aborted (a process killed mid-way leaves an incomplete multipart upload, which is
 * invisible and which a bucket lifecycle rule AbortIncompleteMultipartUpload removes).
 *
 * Credentials come from the SDK's default chain and never appear in what this module logs,
 * throws or exposes (see s3-errors.ts).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { HeadObjectCommand, S3Client, type PutObjectCommandInput } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { Logger } from 'pino';
import { ConfigError } from '../config.js';
import { codedError, ErrorCode } from '../errors.js';
import { classify, S3UploadError, type Failure } from './s3-errors.js';
import { readMarker, writeMarker } from './s3-marker.js';
import { flowLogObjectKey, objectKey, type S3Settings } from './s3-settings.js';

/** A finished file to upload: its path and what its key is made of. */
export interface UploadFile {
  readonly path: string;
  readonly session: string;
  readonly vni: number | null;
  /** UTC second the file starts (its key's date). */
  readonly start: number;
  /** A flow-log file: its path under <out>/flows, which is its key under the prefix (flowLogObjectKey), not the template's. */
  readonly flowLogPath?: string;
}

export type UploadOutcome = 'uploaded' | 'already-uploaded' | 'found-in-store';

export interface UploadResult {
  readonly path: string;
  readonly bucket: string;
  readonly key: string;
  readonly bytes: number;
  readonly sha256: string;
  /** uploaded now; already-uploaded (its marker said so); found-in-store (uploaded before a crash, found by HEAD). */
  readonly outcome: UploadOutcome;
}

export interface S3UploaderOptions {
  /** Transient failures back off from baseMs, doubling to maxMs (jittered); permanent ones wait permanentMs. */
  readonly retry?: { readonly baseMs?: number; readonly maxMs?: number; readonly permanentMs?: number };
  /** Files above it go up in parts of this size; default 8 MiB (S3's minimum is 5 MiB). */
  readonly partSize?: number;
}

const MiB = 1 << 20;
const DEFAULT_PART_SIZE = 8 * MiB;
const MIN_PART_SIZE = 5 * MiB;
const MAX_PARTS = 10_000;
/** Parts of one file in flight at once (memory: this many part buffers per upload). */
const PARTS_IN_FLIGHT = 2;
const HASH_CHUNK = 256 << 10;
/** Distinct failure codes counted; others count as "Other" (bounded metric labels). */
const MAX_FAILURE_CODES = 50;
const SHA256_META = 'mirrorcap-sha256';

interface PartDigest {
  /** base64, for Content-MD5. */
  readonly md5: string;
  /** hex, for x-amz-content-sha256. */
  readonly sha256: string;
}

interface Digests {
  readonly sha256: string;
  readonly parts: readonly PartDigest[];
}

interface Job {
  readonly file: UploadFile;
  readonly key: string;
  readonly bytes: number;
  /** The file's mtime: how long it has waited (oldest pending age). */
  readonly since: number;
  readonly partSize: number;
  digests: Digests | null;
  upload: Upload | null;
  readonly resolve: (r: UploadResult) => void;
  readonly reject: (e: S3UploadError) => void;
}

export class S3Uploader {
  /** Files the store took from us in this process, and their bytes. */
  uploadedFiles = 0;
  uploadedBytes = 0;
  /** Files found done without uploading (marker, or the object already in the store). */
  skippedFiles = 0;
  /** Attempts that failed and were scheduled again. */
  retries = 0;
  /** Failures by code (S3 error code, network code, ERR_MIRRORCAP_S3_*). */
  readonly failures = new Map<string, number>();

  private readonly client: S3Client;
  private readonly queue: Job[] = [];
  private readonly running = new Set<Job>();
  /** Jobs by path: a file handed over twice is uploaded once. */
  private readonly byPath = new Map<string, Promise<UploadResult>>();
  /** The admission of the file handed over last (see upload()). */
  private admissions: Promise<void> = Promise.resolve();
  /** Per-part digests of the uploads in flight, by key, for the checksum middleware. */
  private readonly digestsByKey = new Map<string, Digests>();
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly permanentMs: number;
  private readonly partSize: number;
  /** Consecutive failed attempts; > 0 means the store is failing (one attempt at a time). */
  private streak = 0;
  /** When the current streak of failures began (epoch ms). */
  private failingSince = 0;
  private blockedUntil = 0;
  private timer: NodeJS.Timeout | null = null;
  /** Permanent failure codes already logged since the last success. */
  private readonly reported = new Set<string>();
  private headAllowed = true;
  private closed = false;

  constructor(
    private readonly settings: S3Settings,
    private readonly log: Logger,
    options: S3UploaderOptions = {},
  ) {
    this.baseMs = options.retry?.baseMs ?? 1000;
    this.maxMs = options.retry?.maxMs ?? 60_000;
    this.permanentMs = options.retry?.permanentMs ?? 300_000;
    this.partSize = options.partSize ?? DEFAULT_PART_SIZE;
    if (!(this.partSize >= MIN_PART_SIZE)) throw codedError(ErrorCode.INVALID_ARGUMENT, `S3 part size must be at least ${MIN_PART_SIZE} bytes`, RangeError);
    this.client = new S3Client({
      ...(settings.region !== null && { region: settings.region }),
      ...(settings.endpoint !== null && { endpoint: settings.endpoint }),
      forcePathStyle: settings.pathStyle,
      followRegionRedirects: true,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 3,
      requestHandler: { connectionTimeout: 5000, requestTimeout: 60_000 },
    });
    this.client.middlewareStack.add(
      (next, context) => async (args) => {
        const name = context.commandName;
        if (name === 'PutObjectCommand' || name === 'UploadPartCommand') this.addPartDigests(args.input as { Key?: string; PartNumber?: number }, args.request);
        return next(args);
      },
      { step: 'build', name: 'mirrorcapPartDigests' },
    );
  }

  /** Checks what can only be checked with the SDK loaded: that it finds a region. Logs the target. */
  async start(): Promise<void> {
    let region: string;
    try {
      region = await this.client.config.region();
    } catch {
      throw new ConfigError('S3 uploads need a region: set --s3-region, or AWS_REGION, or a region in the AWS profile');
    }
    const s = this.settings;
    this.log.info(
      { event: 's3_ready', bucket: s.bucket, prefix: s.prefix, region, endpoint: s.endpoint, keyTemplate: s.keyTemplate, sse: s.sse, storageClass: s.storageClass, concurrency: s.concurrency },
      `finished files go to s3://${s.bucket}${s.prefix ? `/${s.prefix}` : ''}`,
    );
  }

  /** The key a file goes to. */
  keyFor(file: UploadFile): string {
    if (file.flowLogPath !== undefined) return flowLogObjectKey(this.settings, file.flowLogPath);
    return objectKey(this.settings, { session: file.session, vni: file.vni, start: file.start, file: basename(file.path) });
  }

  /**
   * Uploads the file, retrying for as long as it takes. Resolves once the object is in the store
   * and its marker written. Rejects (S3UploadError) only when the file itself cannot be uploaded
   * (gone, unreadable, another object under its key) or the uploader closes first.
   */
  upload(file: UploadFile): Promise<UploadResult> {
    const known = this.byPath.get(file.path);
    if (known !== undefined) return known;
    // Files are looked at one after the other, so they queue (and go up) in the order handed over.
    const admitted = this.admissions.then(() => this.admit(file));
    this.admissions = admitted.then(
      () => undefined,
      () => undefined,
    );
    const p = admitted.then((a) => a.done).finally(() => this.byPath.delete(file.path));
    this.byPath.set(file.path, p);
    return p;
  }

  /** Files waiting or being uploaded. */
  get pending(): number {
    return this.queue.length + this.running.size;
  }

  /** Age in seconds of the oldest file waiting or being uploaded (by its mtime); 0 when none. */
  oldestPendingSeconds(now = Date.now()): number {
    let oldest = Infinity;
    for (const j of this.queue) oldest = Math.min(oldest, j.since);
    for (const j of this.running) oldest = Math.min(oldest, j.since);
    return oldest === Infinity ? 0 : Math.max(0, (now - oldest) / 1000);
  }

  /**
   * Stops. Waiting files are rejected (ERR_MIRRORCAP_S3_CLOSED; their markers are absent, so the
   * next start uploads them); uploads in flight get `graceMs`, then are aborted. Idempotent.
   */
  async close(graceMs = 0): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    for (const job of this.queue.splice(0)) job.reject(new S3UploadError('ERR_MIRRORCAP_S3_CLOSED', job.file.path, 'not uploaded: stopping (the next start uploads it)'));
    await this.settle(graceMs);
    for (const job of this.running) void job.upload?.abort();
    await this.settle(10_000);
    this.client.destroy();
  }

  private async settle(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (this.running.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  }

  /** Looks at the file and queues it; `done` settles when it is uploaded (wrapped: not awaited here). */
  private async admit(file: UploadFile): Promise<{ done: Promise<UploadResult> }> {
    if (this.closed) throw new S3UploadError('ERR_MIRRORCAP_S3_CLOSED', file.path, 'not uploaded: the uploader is closed');
    let st;
    try {
      st = await stat(file.path);
    } catch (err) {
      throw this.localFailure(file.path, classify(err, this.settings, this.permanentMs / 1000));
    }
    const key = this.keyFor(file);
    const s = this.settings;
    const marker = await readMarker(file.path);
    if (marker !== null && marker.bucket === s.bucket && marker.key === key && marker.bytes === st.size) {
      this.skippedFiles++;
      return { done: Promise.resolve({ path: file.path, bucket: s.bucket, key, bytes: st.size, sha256: marker.sha256, outcome: 'already-uploaded' }) };
    }
    // close() may have come while we looked at the file: it has emptied the queue for good.
    if (this.closed) throw new S3UploadError('ERR_MIRRORCAP_S3_CLOSED', file.path, 'not uploaded: the uploader is closed');
    const done = new Promise<UploadResult>((resolve, reject) => {
      this.queue.push({
        file,
        key,
        bytes: st.size,
        since: st.mtimeMs,
        partSize: Math.max(this.partSize, Math.ceil(st.size / MAX_PARTS / MiB) * MiB),
        digests: null,
        upload: null,
        resolve,
        reject,
      });
    });
    this.tick();
    return { done };
  }

  private tick(): void {
    if (this.closed) return;
    const wait = this.blockedUntil - Date.now();
    if (wait > 0) {
      this.timer ??= setTimeout(() => {
        this.timer = null;
        this.tick();
      }, wait);
      return;
    }
    // While the store fails, one attempt at a time probes it; the rest wait their turn.
    const limit = this.streak > 0 ? 1 : this.settings.concurrency;
    while (this.running.size < limit && this.queue.length > 0) void this.attempt(this.queue.shift()!);
  }

  private async attempt(job: Job): Promise<void> {
    this.running.add(job);
    const started = Date.now();
    try {
      job.digests ??= await digestFile(job.file.path, job.bytes, job.partSize);
      let outcome: UploadOutcome = 'uploaded';
      const there = await this.inStore(job, job.digests);
      if (there === 'same') outcome = 'found-in-store';
      else if (there === 'other') {
        throw new S3UploadError('ERR_MIRRORCAP_S3_KEY_EXISTS', job.file.path, `another object already has key ${job.key} (different size or checksum): two appliances share {host} "${this.settings.host}"? Give each its own host name in the key; this file stays on disk`);
      } else {
        await this.put(job, job.digests);
        if (there === 'denied') this.noHead();
      }
      await this.done(job, job.digests, outcome, started);
    } catch (err) {
      this.failed(job, err);
    } finally {
      this.running.delete(job);
      this.tick();
    }
  }

  /** Whether the key already holds this file (same size and sha256), another object, nothing, or HEAD is not allowed. */
  private async inStore(job: Job, digests: Digests): Promise<'same' | 'other' | 'absent' | 'denied'> {
    if (!this.headAllowed) return 'absent';
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.settings.bucket, Key: job.key }));
      return head.ContentLength === job.bytes && head.Metadata?.[SHA256_META] === digests.sha256 ? 'same' : 'other';
    } catch (err) {
      const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      if (status === 404) return 'absent';
      if (status === 403) return 'denied'; // s3:GetObject not granted (or no access at all: the PUT will tell)
      throw err;
    }
  }

  /** HEAD was refused but PUT allowed: stop asking, and say what that costs once. */
  private noHead(): void {
    if (!this.headAllowed) return;
    this.headAllowed = false;
    this.log.warn(
      { event: 's3_no_head', bucket: this.settings.bucket },
      'the credentials may upload but not read objects (HEAD gives 403): a file uploaded just before a crash is uploaded again after it (same key, same bytes); allow s3:GetObject to avoid that',
    );
  }

  private async put(job: Job, digests: Digests): Promise<void> {
    const s = this.settings;
    const params: PutObjectCommandInput = {
      Bucket: s.bucket,
      Key: job.key,
      Body: createReadStream(job.file.path, { highWaterMark: MiB }),
      ContentLength: job.bytes,
      ContentType: contentType(job.file.path),
      Metadata: { [SHA256_META]: digests.sha256 },
      ...(s.sse !== null && { ServerSideEncryption: s.sse }),
      ...(s.kmsKeyId !== null && { SSEKMSKeyId: s.kmsKeyId }),
      ...(s.storageClass !== null && { StorageClass: s.storageClass as PutObjectCommandInput['StorageClass'] }),
    };
    const upload = new Upload({ client: this.client, params, partSize: job.partSize, queueSize: PARTS_IN_FLIGHT, leavePartsOnError: false });
    job.upload = upload;
    this.digestsByKey.set(job.key, digests);
    try {
      await upload.done();
    } finally {
      this.digestsByKey.delete(job.key);
      job.upload = null;
    }
  }

  /** Checksum headers of one PUT or part, from the digests computed beforehand. */
  private addPartDigests(input: { Key?: string; PartNumber?: number }, request: unknown): void {
    const digests = input.Key === undefined ? undefined : this.digestsByKey.get(input.Key);
    if (digests === undefined || typeof request !== 'object' || request === null || !('headers' in request)) return;
    const part = digests.parts[(input.PartNumber ?? 1) - 1];
    if (part === undefined) throw Object.assign(new Error(`part ${input.PartNumber} is beyond the file as it was hashed: the file changed`), { code: 'ERR_MIRRORCAP_S3_LOCAL_CHANGED', path: input.Key });
    const headers = (request as { headers: Record<string, string> }).headers;
    headers['content-md5'] = part.md5;
    // The signer takes this header as the payload hash instead of hashing the body itself.
    headers['x-amz-content-sha256'] = part.sha256;
  }

  private async done(job: Job, digests: Digests, outcome: UploadOutcome, started: number): Promise<void> {
    const ms = Date.now() - started;
    const s = this.settings;
    try {
      await writeMarker(job.file.path, { bucket: s.bucket, key: job.key, bytes: job.bytes, sha256: digests.sha256, uploaded: new Date().toISOString() });
    } catch (err) {
      // The object is safely stored; without a marker the next start finds it by HEAD.
      this.log.warn({ event: 's3_marker_failed', path: job.file.path, code: (err as NodeJS.ErrnoException).code }, 'uploaded, but could not record it beside the file');
    }
    if (outcome === 'uploaded') {
      this.uploadedFiles++;
      this.uploadedBytes += job.bytes;
    } else {
      this.skippedFiles++;
    }
    // An attempt begun before the failures did says nothing about the store now (it may have
    // been answered just before the store went down): only a newer one ends the outage.
    if (started >= this.failingSince) {
      if (this.streak > 0) this.log.info({ event: 's3_recovered', failedAttempts: this.streak }, 'S3 uploads work again');
      this.streak = 0;
      this.blockedUntil = 0;
      this.reported.clear();
    }
    this.log.info({ event: 's3_uploaded', path: job.file.path, bucket: s.bucket, key: job.key, bytes: job.bytes, outcome, ms }, outcome === 'uploaded' ? 'file uploaded' : 'file was already in the store');
    job.resolve({ path: job.file.path, bucket: s.bucket, key: job.key, bytes: job.bytes, sha256: digests.sha256, outcome });
  }

  private failed(job: Job, err: unknown): void {
    if (err instanceof S3UploadError) {
      this.count(err.code);
      this.log.error({ event: 's3_upload_failed', path: job.file.path, code: err.code }, err.message);
      job.reject(err);
      return;
    }
    const f = classify(err, this.settings, this.permanentMs / 1000);
    if (f.kind === 'local') {
      job.reject(this.localFailure(job.file.path, f));
      return;
    }
    this.count(f.code);
    if (this.closed) {
      job.reject(new S3UploadError('ERR_MIRRORCAP_S3_CLOSED', job.file.path, 'not uploaded: stopped mid-upload (the next start uploads it)'));
      return;
    }
    this.retries++;
    // Back in front: files go up oldest first.
    this.queue.unshift(job);
    if (this.streak++ === 0) this.failingSince = Date.now();
    let delay: number;
    if (f.kind === 'permanent') {
      delay = this.permanentMs * (0.9 + 0.2 * Math.random());
      if (!this.reported.has(f.code)) {
        this.reported.add(f.code);
        this.log.error({ event: 's3_refused', code: f.code, status: f.status, bucket: this.settings.bucket, retryInMs: Math.round(delay) }, f.fix!);
      }
    } else {
      const ceiling = Math.min(this.maxMs, this.baseMs * 2 ** Math.min(this.streak - 1, 30));
      delay = ceiling / 2 + (Math.random() * ceiling) / 2;
      if (this.streak === 1) {
        this.log.warn({ event: 's3_retrying', code: f.code, status: f.status, why: f.message, retryInMs: Math.round(delay) }, 'S3 upload failed; retrying with backoff (capture goes on)');
      }
    }
    this.log.debug({ event: 's3_attempt_failed', path: job.file.path, code: f.code, status: f.status, retryInMs: Math.round(delay) }, 'upload attempt failed');
    this.blockedUntil = Date.now() + delay;
  }

  private localFailure(path: string, f: Failure): S3UploadError {
    this.count(f.code);
    this.log.error({ event: 's3_upload_failed', path, code: f.code }, `cannot upload: ${f.message}`);
    return new S3UploadError(f.code, path, `cannot upload: ${f.message}`);
  }

  private count(code: string): void {
    const key = this.failures.has(code) || this.failures.size < MAX_FAILURE_CODES ? code : 'Other';
    this.failures.set(key, (this.failures.get(key) ?? 0) + 1);
  }
}

/** sha256 of the whole file, md5 and sha256 of each part; read in 256 KiB slices. */
async function digestFile(path: string, bytes: number, partSize: number): Promise<Digests> {
  const whole = createHash('sha256');
  const parts: PartDigest[] = [];
  let md5 = createHash('md5');
  let sha = createHash('sha256');
  let inPart = 0;
  let total = 0;
  const endPart = (): void => {
    parts.push({ md5: md5.digest('base64'), sha256: sha.digest('hex') });
    md5 = createHash('md5');
    sha = createHash('sha256');
    inPart = 0;
  };
  for await (const chunk of createReadStream(path, { highWaterMark: HASH_CHUNK }) as AsyncIterable<Buffer>) {
    whole.update(chunk);
    for (let off = 0; off < chunk.length; ) {
      const take = Math.min(chunk.length - off, partSize - inPart);
      const piece = chunk.subarray(off, off + take);
      md5.update(piece);
      sha.update(piece);
      inPart += take;
      off += take;
      if (inPart === partSize) endPart();
    }
    total += chunk.length;
  }
  if (inPart > 0 || parts.length === 0) endPart();
  if (total !== bytes) throw Object.assign(new Error(`file changed before upload: ${bytes} bytes when queued, ${total} now`), { code: 'ERR_MIRRORCAP_S3_LOCAL_CHANGED', path });
  return { sha256: whole.digest('hex'), parts };
}

function contentType(path: string): string {
  if (path.endsWith('.pcap')) return 'application/vnd.tcpdump.pcap';
  if (path.endsWith('.pcapng')) return 'application/x-pcapng';
  if (path.endsWith('.gz')) return 'application/gzip';
  if (path.endsWith('.zst')) return 'application/zstd';
  if (path.endsWith('.json')) return 'application/json';
  return 'application/octet-stream';
}
