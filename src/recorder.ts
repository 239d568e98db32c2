/**
 * Everything between a batch and the files: the pipeline, the sessions and their writers,
 * the catalog of finished files, the disk guard and the post-rotate hook. The live
 * appliance (app.ts) feeds it from a socket or an interface, `mirrorcap decap` from a
 * capture file; both write exactly the same files for the same traffic.
 */
import { constants as fsConstants } from 'node:fs';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { Catalog } from './capture/catalog.js';
import { ChunkPool } from './capture/chunks.js';
import { DiskGuard } from './capture/disk.js';
import { makeFolder } from './capture/folder.js';
import { PART_SUFFIX } from './capture/naming.js';
import { PostRotate } from './capture/post-rotate.js';
import { recoverDirectory } from './capture/recover.js';
import { SessionWriter, type CaptureFile } from './capture/writer.js';
import type { Config, SessionConfig } from './config.js';
import type { Logger } from './control/log.js';
import { DROP_REASONS, newDropCounters } from './drops.js';
import { Pipeline } from './pipeline.js';
import { AllowList } from './session/allow.js';
import { Router } from './session/router.js';
import { Session } from './session/session.js';

/** At close, post-rotate commands get this long to finish before we go on anyway. */
const POST_ROTATE_GRACE_MS = 4_000;

/** The output folder cannot be made or written: nothing can be recorded (exit 1). */
export class OutputFolderError extends Error {
  readonly code = 'ERR_MIRRORCAP_OUTPUT_FOLDER';
  override readonly name = 'OutputFolderError';
}

export interface RecorderSummary {
  readonly datagrams: number;
  readonly packets: number;
  readonly writtenPackets: number;
  readonly dropped: Readonly<Record<string, number>>;
  readonly sessions: number;
  readonly filesClosed: number;
}

export interface RecorderOptions {
  /** Pause writing below min-free-bytes (live). Offline decapsulation has no one to pause for. */
  readonly guardDisk: boolean;
  /**
   * Keep each file's records in time order by clamping a step back (live: receive clocks).
   * Offline the capture's own timestamps are written as they are.
   */
  readonly clampTime: boolean;
}

export class Recorder {
  readonly pool: ChunkPool;
  readonly catalog: Catalog;
  readonly disk: DiskGuard;
  readonly postRotate: PostRotate | null;
  readonly router: Router;
  readonly pipeline: Pipeline;

  constructor(
    private readonly config: Config,
    private readonly log: Logger,
    private readonly opts: RecorderOptions,
  ) {
    this.pool = new ChunkPool(config.maxBuffer);
    this.catalog = new Catalog(config.out, config.maxTotalBytes, {
      deleted: (file, reason) => log.info({ event: 'file_deleted', path: file.path, reason, bytes: file.bytes }, 'file deleted'),
      deleteFailed: (file, err) => log.error({ event: 'delete_failed', path: file.path, code: err.code, err: err.message }, 'could not delete file'),
    });
    this.disk = new DiskGuard(config.out, config.minFreeBytes, {
      paused: (free, min) =>
        log.warn({ event: 'disk_full', freeBytes: free, minFreeBytes: min }, 'free disk space below min-free-bytes: writing paused, packets dropped as disk_full'),
      resumed: (free, min) => log.info({ event: 'disk_ok', freeBytes: free, minFreeBytes: min }, 'free disk space back above min-free-bytes: writing resumed'),
      failed: (err) => log.error({ event: 'disk_check_failed', code: err.code, err: err.message }, 'cannot read free space of the output folder'),
    });
    this.postRotate =
      config.postRotate === null
        ? null
        : new PostRotate(config.postRotate, {
            failed: (path, why) => log.error({ event: 'post_rotate_failed', path, why }, 'post-rotate command failed'),
            skipped: (path) => log.error({ event: 'post_rotate_skipped', path }, 'post-rotate queue full: command not run for this file'),
          });
    this.router = new Router(
      {
        sessionKey: config.sessionKey,
        strict: config.strict,
        maxSessions: config.maxSessions,
        configured: config.sessions,
        defaults: config,
      },
      (sc) => this.createSession(sc),
    );
    this.pipeline = new Pipeline(this.router, config.allow.length > 0 ? new AllowList(config.allow) : null);
  }

  get sessions(): readonly Session[] {
    return this.router.sessions;
  }

  /** Makes the output folder ready: writable, files left open by a killed process recovered, the catalog read. */
  async open(): Promise<void> {
    await makeFolder(this.config.out).catch((err: NodeJS.ErrnoException) => {
      throw new OutputFolderError(`cannot create output folder ${this.config.out}: ${err.message}`, { cause: err });
    });
    const unwritable = await this.outputProblem();
    if (unwritable !== null) throw new OutputFolderError(unwritable);
    await this.recoverPartFiles();
    await this.catalog.scan();
    if (this.opts.guardDisk) await this.disk.check();
  }

  /** Null when the output folder is writable, else why not. */
  async outputProblem(): Promise<string | null> {
    try {
      await access(this.config.out, fsConstants.W_OK);
      return null;
    } catch (err) {
      return `output folder ${this.config.out} not writable: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
    }
  }

  /** Hands every partly filled chunk to the disk (the flush-interval timer). */
  flushAll(): void {
    for (const s of this.sessions) s.writer.flush();
  }

  /** Once a second: rates, time-based rotation of quiet sessions, free space. */
  tick(nowSec: number): void {
    for (const s of this.sessions) {
      s.sampleRates();
      s.writer.tick(nowSec);
    }
    if (this.opts.guardDisk) void this.disk.check();
  }

  /** Closes every session's current file now; the next packets start new ones. */
  rotateAll(): void {
    for (const s of this.sessions) s.writer.rotate();
  }

  /** New sessions and rotation settings, applied between two batches (SIGHUP). */
  reconfigure(next: Config): { updated: Session[]; retired: Session[] } {
    const result = this.router.reconfigure({ strict: next.strict, configured: next.sessions, defaults: next });
    for (const s of result.retired) s.writer.rotate();
    return result;
  }

  /** Writes every queued record, closes and renames every file, lets post-rotate commands finish. */
  async close(): Promise<void> {
    await Promise.all(this.sessions.map((s) => s.writer.close()));
    if (this.postRotate !== null && !(await this.postRotate.idle(POST_ROTATE_GRACE_MS))) {
      this.log.warn({ event: 'post_rotate_pending' }, 'post-rotate commands still running; they continue on their own');
    }
  }

  summary(): RecorderSummary {
    const dropped: Record<string, number> = {};
    DROP_REASONS.forEach((r, i) => {
      const n = this.pipeline.drops[i]! + this.sessions.reduce((sum, s) => sum + s.drops[i]!, 0);
      if (n > 0) dropped[r] = n;
    });
    return {
      datagrams: this.pipeline.datagrams,
      packets: this.sessions.reduce((n, s) => n + s.packets, 0),
      writtenPackets: this.sessions.reduce((n, s) => n + s.writer.writtenPackets, 0),
      dropped,
      sessions: this.sessions.length,
      filesClosed: this.sessions.reduce((n, s) => n + s.writer.filesClosed, 0),
    };
  }

  /**
   * .part files left by a process that was killed: each is cut to its last whole record and
   * renamed to .pcap (before the catalog is read, so they count in rings and budgets).
   */
  private async recoverPartFiles(): Promise<void> {
    for (const r of await recoverDirectory(this.config.out)) {
      const fields = { event: 'recovered', path: r.path, finalPath: r.finalPath, action: r.action, records: r.records, bytesCut: r.bytesCut, reason: r.reason };
      if (r.action === 'recovered') this.log.info(fields, `recovered ${r.records} records from a file left open (${r.bytesCut} bytes of a torn record cut)`);
      else if (r.action === 'failed') this.log.error({ ...fields, code: r.code }, 'could not recover a file left open; it stays .part and is tried again at the next start');
      else this.log.warn(fields, `a file left open had no usable pcap header: ${r.action}`);
    }
  }

  private createSession(sc: SessionConfig): Session {
    const drops = newDropCounters();
    const session: Session = new Session(
      sc,
      drops,
      new SessionWriter({
        session: sc.name,
        dir: join(this.config.out, sc.name),
        rotation: sc,
        queueSize: this.config.queueSize,
        nextSeq: () => this.catalog.nextSeq(sc.name),
        pool: this.pool,
        drops,
        disk: this.disk,
        clampTime: this.opts.clampTime,
        events: {
          fileClosed: (file) => this.fileClosed(session, file),
          writeError: (file, op, err) => {
            const code = err.code ?? 'UNKNOWN';
            session.writeErrors.set(code, (session.writeErrors.get(code) ?? 0) + 1);
            this.log.error(
              { event: 'write_error', session: sc.name, path: file.path + PART_SUFFIX, op, code, err: err.message },
              'capture file write failed; the file is closed at its last whole record',
            );
          },
        },
      }),
    );
    this.log.info({ event: 'session_created', session: sc.name, vni: sc.vni, source: sc.source }, 'session created');
    return session;
  }

  private fileClosed(session: Session, file: CaptureFile): void {
    this.catalog.add(file, session.config.ring);
    this.log.info(
      { event: 'file_rotated', session: session.name, path: file.path, packets: file.packets, bytes: file.bytes },
      'file rotated',
    );
    this.postRotate?.run(file.path);
  }
}
