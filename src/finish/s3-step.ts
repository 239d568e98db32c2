/**
 * The s3 step (--s3 s3://BUCKET/PREFIX), last of a file's steps: every artefact of the finished
 * capture (X.pcap or X.pcap.gz, its index sidecar, ...) goes to the store through the
 * S3Uploader, each getting its upload marker (X.pcap.gz.s3) once the store has it. A flow-log
 * file goes the same way, to its AWS delivery-layout key (<prefix>/AWSLogs/...: its path under
 * <out>/flows) instead of the key template's.
 *
 *   file ──each artefact without a marker──▶ S3Uploader (retries until it is stored) ──▶ marker
 *     ▲                                                                                    │
 *     └─ held busy meanwhile: the ring and the budget pass over it ◀───────────────────────┘
 *        --s3-delete-after-upload: every artefact (marker first) deleted once all are stored
 *
 * While S3 is down the file stays busy, so the ring keeps it; only the disk budget may take a
 * file still waiting for its upload (the recorder logs that as an error and counts it). At
 * shutdown what is not stored stays without a marker; `needed` finds it at the next start.
 */
import { join, relative } from 'node:path';
import type { FinishedFile } from '../capture/catalog.js';
import { ConfigError, FLOWS_FOLDER, OPTIONS, type Config, type SessionConfig } from '../config.js';
import { codedError, ErrorCode } from '../errors.js';
import type { Logger } from '../log.js';
import type { FinishStep } from './finisher.js';
import type { S3Uploader, S3UploaderOptions, UploadFile } from './s3.js';
import { MARKER_SUFFIX, deleteWithMarker } from './s3-marker.js';
import { s3Settings, type S3Settings } from './s3-settings.js';

export interface S3StepOptions {
  readonly deleteAfterUpload: boolean;
  /** The configured sessions, for the {vni} of a file (automatic sessions carry it in their name). */
  readonly sessions: readonly SessionConfig[];
  /** <out>/flows: a flow-log file's path under it is its key under the prefix (AWS's layout). */
  readonly flowsRoot: string;
}

/** The step --s3 asks for; null without it. Throws a ConfigError naming a bad or orphaned s3 option. */
export function s3Step(config: Config, log: Logger): S3Step | null {
  if (config.s3 === null) {
    const set = OPTIONS.filter((o) => o.name.startsWith('s3-') && String(config[o.key!] ?? '') !== o.default);
    if (set.length > 0) throw new ConfigError(`${set.map((o) => `--${o.name}`).join(', ')} set, but --s3 is not: nothing is uploaded without --s3 s3://BUCKET/PREFIX`);
    return null;
  }
  const settings = s3Settings({
    url: config.s3,
    keyTemplate: config.s3Key,
    endpoint: config.s3Endpoint,
    region: config.s3Region,
    sse: config.s3Sse === 'none' ? null : config.s3Sse,
    kmsKeyId: config.s3KmsKeyId,
    storageClass: config.s3StorageClass,
    concurrency: config.s3Concurrency,
    host: config.s3Host,
  });
  return new S3Step({ deleteAfterUpload: config.s3DeleteAfterUpload, sessions: config.sessions, flowsRoot: join(config.out, FLOWS_FOLDER) }, log, settings);
}

export class S3Step implements FinishStep {
  readonly name = 's3';
  private up: S3Uploader | null = null;
  /** Files deleted after their upload (--s3-delete-after-upload). */
  deletedAfterUpload = 0;
  /** Files the disk budget deleted before they were uploaded. */
  deletedBeforeUpload = 0;

  constructor(
    private readonly options: S3StepOptions,
    private readonly log: Logger,
    private readonly settings: S3Settings,
    private readonly uploaderOptions: S3UploaderOptions = {},
  ) {}

  /**
   * Loads the AWS SDK (only now: a run without --s3 never pays for it), checks the region and
   * logs where files go; rejects with a ConfigError.
   */
  async start(): Promise<void> {
    const { S3Uploader } = await import('./s3.js');
    this.up = new S3Uploader(this.settings, this.log, this.uploaderOptions);
    await this.up.start();
  }

  /** Its counters, for the metrics. Valid once start() resolved. */
  get uploader(): S3Uploader {
    if (this.up === null) throw codedError(ErrorCode.INVALID_STATE, 'the S3 step is not started');
    return this.up;
  }

  /** Some artefact of the file has no upload marker. */
  async needed(file: FinishedFile): Promise<boolean> {
    return !this.uploaded(file);
  }

  /** Whether every artefact of the file has its marker (what the budget asks before deleting it). */
  uploaded(file: FinishedFile): boolean {
    return !shippable(file).some((path) => !file.artefacts.includes(path + MARKER_SUFFIX));
  }

  async run(file: FinishedFile): Promise<void> {
    const paths = shippable(file);
    const vni = file.kind === 'capture' ? this.vniOf(file.session) : null;
    const upload = (path: string): UploadFile => ({ path, session: file.session, vni, start: file.start, ...(file.kind === 'flow-log' && { flowLogPath: relative(this.options.flowsRoot, path) }) });
    // Each artefact is queued at once (the uploader bounds how many go up together); the file is done when all are.
    const results = await Promise.allSettled(paths.map((path) => this.uploader.upload(upload(path))));
    // A rejection has been logged and counted by the uploader (or is the shutdown): the file stays, without its marker.
    if (!this.options.deleteAfterUpload || results.some((r) => r.status === 'rejected')) return;
    try {
      for (const path of paths) await deleteWithMarker(path);
      this.deletedAfterUpload++;
      this.log.info({ event: 'file_deleted', path: file.path, reason: 'uploaded', artefacts: paths }, 'file deleted: uploaded to S3');
    } catch (err) {
      this.log.error({ event: 'delete_failed', path: file.path, code: (err as NodeJS.ErrnoException).code, err: (err as Error).message }, 'uploaded, but could not delete the file');
    }
  }

  async stop(deadline: number): Promise<void> {
    if (this.up === null) return;
    const pending = this.up.pending;
    await this.up.close(Math.max(0, deadline - Date.now()));
    if (pending > 0) this.log.warn({ event: 's3_stopped', pending }, 'stopping: files not uploaded yet stay on disk; the next start uploads them');
  }

  private vniOf(session: string): number | null {
    const configured = this.options.sessions.find((s) => s.name === session);
    if (configured !== undefined) return configured.vni;
    // Automatic sessions are vni-<n> or vni-<n>-<source> (config.ts refuses other sessions so named).
    const m = /^vni-(\d+)(?:-|$)/.exec(session);
    return m === null ? null : Number(m[1]);
  }
}

/** What of a file goes to the store: every artefact but the upload markers. */
function shippable(file: FinishedFile): string[] {
  return file.artefacts.filter((path) => !path.endsWith(MARKER_SUFFIX));
}
