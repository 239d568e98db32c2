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
import { Finisher, type FinishStep } from './finish/finisher.js';
import { PostRotate } from './finish/post-rotate.js';
import { recoverDirectory } from './capture/recover.js';
import { rotationOf } from './capture/rotation.js';
import { FINISH_OPS, SessionWriter, type CaptureFile, type WriterOptions as SessionWriterOptions } from './capture/writer.js';
import { loadNative } from './native/addon.js';
import type { Config, SessionConfig } from './config.js';
import type { Logger } from './log.js';
import { DROP_REASONS, newDropCounters } from './drops.js';
import { Pipeline } from './session/pipeline.js';
import { VXLAN_PORT } from './decode/vxlan.js';
import { AllowList } from './session/allow.js';
import { SessionFilters } from './session/filters.js';
import { Router } from './session/router.js';
import { Session, type GwlbIds } from './session/session.js';
import { LINKTYPE_ETHERNET, LINKTYPE_RAW } from './pcap/linktype.js';

/** The output folder cannot be made or written: nothing can be recorded (exit 1). */
export class OutputFolderError extends Error {
  readonly code = 'ERR_MIRRORCAP_OUTPUT_FOLDER';
  override readonly name = 'OutputFolderError';
}

export interface RecorderSummary {
  readonly datagrams: number;
  readonly packets: number;
  readonly writtenPackets: number;
  /** Packets the capture filters kept out of the files (not drops). */
  readonly filtered: number;
  readonly dropped: Readonly<Record<string, number>>;
  readonly sessions: number;
  readonly filesClosed: number;
  /** Files that could not be renamed (or closed) and stay .part until the next start recovers them. */
  readonly filesLeftPart: number;
  /** --post-rotate results (the numbers of mirrorcap_post_rotate_total) and commands still running; null without. */
  readonly postRotate: { readonly ok: number; readonly failed: number; readonly skipped: number; readonly running: number } | null;
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
  /** Runs each finished file's steps in order (index, compress, post-rotate, s3). */
  readonly finisher: Finisher;
  readonly router: Router;
  readonly pipeline: Pipeline;
  /** Each session's writer: the Recorder makes them, so only it drives them. */
  private readonly writers = new Map<Session, SessionWriter>();
  /** The writers' write-behind (--write-behind), when the addon that does it is built. */
  private readonly writeBehind: SessionWriterOptions['writeBehind'];
  private readonly filters = new SessionFilters();

  constructor(
    private readonly config: Config,
    private readonly log: Logger,
    private readonly opts: RecorderOptions,
  ) {
    // A bad filter is a bad configuration: ConfigError before anything is opened.
    this.filters.prepare(config);
    this.pool = new ChunkPool(config.maxBuffer);
    const native = config.writeBehind > 0 ? loadNative() : null;
    if (native?.ok === false) log.warn({ event: 'write_behind_off', reason: native.reason }, `--write-behind is off: ${native.reason}`);
    this.writeBehind = native?.ok ? { window: config.writeBehind, run: native.binding.writeBehind } : undefined;
    this.catalog = new Catalog(config.out, config.maxTotalBytes, {
      deleted: (file, reason) =>
        log.info(
          { event: 'file_deleted', path: file.path, reason, bytes: file.bytes, ...(file.artefacts.length > 1 ? { artefacts: file.artefacts } : {}) },
          'file deleted',
        ),
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
            skipped: (path, reason) =>
              log.error(
                { event: 'post_rotate_skipped', path, reason },
                reason === 'shutdown' ? 'stopping: post-rotate command not started in time, not run for this file' : 'post-rotate queue full: command not run for this file',
              ),
            stillRunning: (path) => log.warn({ event: 'post_rotate_running', path }, 'stopping: post-rotate command still running; it goes on by itself'),
          });
    const steps: FinishStep[] = [];
    if (this.postRotate !== null) steps.push(this.postRotate);
    this.finisher = new Finisher(steps, this.catalog, {
      // The post-rotate step reports its own skips; this is for the steps after it.
      skipped: (path, step) => {
        if (step !== this.postRotate?.name) log.warn({ event: 'finish_step_skipped', path, step }, 'stopping: step not run for this file; the next start resumes it');
      },
    });
    this.router = new Router(
      {
        sessionKey: config.sessionKey,
        strict: config.strict,
        maxSessions: config.maxSessions,
        configured: config.sessions,
        defaults: config,
      },
      (sc, gwlb) => this.createSession(sc, gwlb),
    );
    // VXLAN inside GENEVE is recognised by its UDP port: the standard one, and ours.
    this.pipeline = new Pipeline(this.router, config.allow.length > 0 ? new AllowList(config.allow) : null, [VXLAN_PORT, config.listen.port]);
  }

  get sessions(): readonly Session[] {
    return this.router.sessions;
  }

  /** Makes the output folder ready: writable, files left open by a killed process recovered, the catalog read. */
  async start(): Promise<void> {
    await makeFolder(this.config.out).catch((err: NodeJS.ErrnoException) => {
      throw new OutputFolderError(`cannot create output folder ${this.config.out}: ${err.message}`, { cause: err });
    });
    const unwritable = await this.outputProblem();
    if (unwritable !== null) throw new OutputFolderError(unwritable);
    await this.recoverPartFiles();
    await this.catalog.scan();
    await this.finisher.resume(this.catalog.all());
    this.catalog.keepBudget();
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
    for (const w of this.writers.values()) w.flush();
  }

  /** Once a second: rates, time-based rotation of quiet sessions, free space. */
  tick(nowSec: number): void {
    for (const [s, w] of this.writers) {
      s.sampleRates();
      w.tick(nowSec);
    }
    if (this.opts.guardDisk) void this.disk.check();
  }

  /** Closes every session's current file now; the next packets start new ones. */
  rotateAll(): void {
    for (const w of this.writers.values()) w.rotate();
  }

  /**
   * New sessions, rotation settings and filters, applied between two batches (SIGHUP). Throws
   * ConfigError, changing nothing, when a filter does not compile.
   */
  reconfigure(next: Config): { updated: Session[]; retired: Session[] } {
    this.filters.prepare(next);
    const result = this.router.reconfigure({ strict: next.strict, configured: next.sessions, defaults: next });
    for (const s of result.retired) this.writers.get(s)!.rotate();
    return result;
  }

  /**
   * Writes every queued record, closes and renames every file, then gives the finished files'
   * steps until `deadline` (epoch ms; Infinity = as long as they take): steps not started by
   * then are skipped (logged, counted); post-rotate commands still running go on by themselves.
   * Resolves once the deletions the ring and the budget made meanwhile are done (and logged).
   */
  async stop(deadline = Infinity): Promise<void> {
    await Promise.all([...this.writers.values()].map((w) => w.stop()));
    await this.finisher.stop(deadline);
    await this.catalog.idle();
  }

  /** Whether the writers hold half of what they may: an offline reader should let them drain. */
  get backlogged(): boolean {
    let total = 0;
    for (const w of this.writers.values()) {
      const held = w.stats().heldBytes;
      if (held > this.config.queueSize / 2) return true;
      total += held;
    }
    return total > this.config.maxBuffer / 2;
  }

  /** Resolves once every writer has written what it was given so far. */
  async drained(): Promise<void> {
    await Promise.all([...this.writers.values()].map((w) => w.idle()));
  }

  summary(): RecorderSummary {
    const snaps = this.sessions.map((s) => s.snapshot());
    const p = this.postRotate;
    const dropped: Record<string, number> = {};
    DROP_REASONS.forEach((r, i) => {
      const n = this.pipeline.drops[i]! + snaps.reduce((sum, s) => sum + (s.dropped[r] ?? 0), 0);
      if (n > 0) dropped[r] = n;
    });
    return {
      datagrams: this.pipeline.datagrams,
      packets: snaps.reduce((n, s) => n + s.packets, 0),
      writtenPackets: snaps.reduce((n, s) => n + s.output.writtenPackets, 0),
      filtered: snaps.reduce((n, s) => n + s.filteredPackets, 0),
      dropped,
      sessions: snaps.length,
      filesClosed: snaps.reduce((n, s) => n + s.output.filesClosed, 0),
      filesLeftPart: snaps.reduce((n, s) => n + s.output.filesLeftPart, 0),
      postRotate: p === null ? null : { ok: p.ok, failed: p.failed, skipped: p.skipped, running: p.runningCount },
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

  private createSession(sc: SessionConfig, gwlb: GwlbIds | null): Session {
    const drops = newDropCounters();
    let session: Session | null = null;
    // GENEVE with an IP payload has no Ethernet header: none is invented.
    const linkType = sc.encap === 'gwlbe' || sc.encap === 'geneve-ip' ? LINKTYPE_RAW : LINKTYPE_ETHERNET;
    const writer = new SessionWriter({
      session: sc.name,
      dir: join(this.config.out, sc.name),
      rotation: rotationOf(sc),
      snaplen: sc.snaplen,
      linkType,
      queueSize: this.config.queueSize,
      nextSeq: () => this.catalog.nextSeq(sc.name),
      pool: this.pool,
      drops,
      disk: this.disk,
      clampTime: this.opts.clampTime,
      writeBehind: this.writeBehind,
      events: {
        fileClosed: (file) => this.fileClosed(session!, file),
        writeError: (_file, where, op, err) => {
          const code = err.code ?? 'UNKNOWN';
          session!.writeError(code);
          this.log.error(
            { event: 'write_error', session: sc.name, path: where, op, code, err: err.message },
            FINISH_OPS.has(op)
              ? `could not ${op} the finished capture file; it stays .part and the next start recovers it`
              : 'capture file write failed; the file is closed at its last whole record',
          );
        },
      },
    });
    session = new Session(sc, drops, writer, gwlb, (text) => this.filters.get(text, linkType));
    this.writers.set(session, writer);
    this.log.info(
      { event: 'session_created', session: sc.name, vni: sc.vni, source: sc.source, ...(sc.encap ? { encap: sc.encap } : {}), ...(gwlb ? { gwlb } : {}) },
      'session created',
    );
    return session;
  }

  /** A finished file joins the catalog busy with the steps it still needs; each step frees it when it ends. */
  private fileClosed(session: Session, file: CaptureFile): void {
    const entry = this.catalog.add(file, session.config.ring, this.finisher.names);
    this.log.info(
      { event: 'file_rotated', session: session.name, path: file.path, packets: file.packets, bytes: file.bytes },
      'file rotated',
    );
    this.finisher.add(entry);
  }
}
