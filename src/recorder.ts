/**
 * Everything between a batch and the files: the pipeline, the sessions and their writers,
 * the catalog of finished files, the disk guard, the post-rotate hook, and each session's
 * flow log (flow table + VPC Flow Logs files under <out>/flows/, with --flows). The live
 * appliance (app.ts) feeds it from a socket or an interface, `mirrorcap decap` from a
 * capture file; both write exactly the same files for the same traffic.
 */
import { constants as fsConstants } from 'node:fs';
import { access } from 'node:fs/promises';
import { arch, hostname, release, type as osType } from 'node:os';
import { join } from 'node:path';
import { Catalog } from './capture/catalog.js';
import { ChunkPool } from './capture/chunks.js';
import { DiskGuard } from './capture/disk.js';
import { recoverFlowLogs, SessionFlowLog, type FlowFile } from './capture/flowlog.js';
import { FlowRing } from './capture/flowring.js';
import { makeFolder } from './capture/folder.js';
import { compressStep, type CompressStep } from './finish/compress-step.js';
import { Finisher, type FinishStep } from './finish/finisher.js';
import type { IndexEncoderOptions } from './finish/index-encoder.js';
import { IndexStep } from './finish/index-step.js';
import { PostRotate } from './finish/post-rotate.js';
import { s3Step, type S3Step } from './finish/s3-step.js';
import { recoverDirectory } from './capture/recover.js';
import { rotationOf } from './capture/rotation.js';
import { FINISH_OPS, SessionWriter, type CaptureFile, type WriterOptions as SessionWriterOptions } from './capture/writer.js';
import { loadNative } from './native/addon.js';
import { FLOWS_FOLDER, type Config, type SessionConfig } from './config.js';
import type { Logger } from './log.js';
import { DROP_REASONS, newDropCounters } from './drops.js';
import { Pipeline } from './session/pipeline.js';
import type { SlabRing } from './source/slab-ring.js';
import { VXLAN_PORT } from './decode/vxlan.js';
import { AllowList } from './session/allow.js';
import { FlowBudget, type FlowInterval } from './session/flows.js';
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
  /** Flow-log files and records written (all sessions). */
  readonly flowFiles: number;
  readonly flowRecords: number;
}

export interface RecorderOptions {
  /** Pause writing below min-free-bytes (live). Offline decapsulation has no one to pause for. */
  readonly guardDisk: boolean;
  /**
   * Keep each file's records in time order by clamping a step back (live: receive clocks).
   * Offline the capture's own timestamps are written as they are.
   */
  readonly clampTime: boolean;
  /**
   * Flow intervals follow the wall clock (live): quiet ones are closed by tick() (NODATA) and
   * the open one is written as partial at stop. Offline only the packets' own time moves the
   * flow intervals, and stop() writes the last one whole.
   */
  readonly wallClock: boolean;
  /** Upload finished files when --s3 is set (live); decap leaves that to the appliance. */
  readonly ship: boolean;
  /** What a pcapng file's section header names as the application writing it ("mirrorcap 1.2.0"). */
  readonly application: string;
  /** How the index step encodes sidecars (finish/index-encoder.ts); a test sends every one to the index thread. */
  readonly indexEncoder?: IndexEncoderOptions;
}

export class Recorder {
  readonly pool: ChunkPool;
  readonly catalog: Catalog;
  readonly disk: DiskGuard;
  readonly postRotate: PostRotate | null;
  readonly compress: CompressStep | null;
  readonly s3: S3Step | null;
  /** The sidecar index of every finished file (the first finish step). */
  readonly index: IndexStep;
  /** Runs each finished file's steps in order (index, compress, post-rotate, s3). */
  readonly finisher: Finisher;
  readonly router: Router;
  readonly pipeline: Pipeline;
  /** Flows held by all sessions' flow tables, against --max-flows. */
  readonly flowBudget: FlowBudget;
  /** The newest flow records, for /api/flows; null with --flow-ring 0. */
  readonly flowRing: FlowRing | null;
  /** Each session's flow log, made with it (its table idle while the session's flows are off). */
  private readonly flowLogs = new Map<Session, SessionFlowLog>();
  /** Each session's writer: the Recorder makes them, so only it drives them. */
  private readonly writers = new Map<Session, SessionWriter>();
  /** The writers' write-behind (--write-behind), when the addon that does it is built. */
  private readonly writeBehind: SessionWriterOptions['writeBehind'];
  /** The addon's vectored write of records held in receive memory, when it is built (see SlabRing). */
  private readonly writePieces: SessionWriterOptions['writePieces'];
  private readonly filters = new SessionFilters();
  /** The section header of pcapng files: the same for every file of this process. */
  private readonly section: { application: string; os: string; hardware: string };

  constructor(
    private readonly config: Config,
    private readonly log: Logger,
    private readonly opts: RecorderOptions,
  ) {
    // A bad filter is a bad configuration: ConfigError before anything is opened.
    this.filters.prepare(config);
    this.section = { application: opts.application, os: `${osType()} ${release()}`, hardware: arch() };
    this.pool = new ChunkPool(config.maxBuffer);
    const native = config.writeBehind > 0 ? loadNative() : null;
    if (native?.ok === false) log.warn({ event: 'write_behind_off', reason: native.reason }, `--write-behind is off: ${native.reason}`);
    this.writeBehind = native?.ok ? { window: config.writeBehind, run: native.binding.writeBehind } : undefined;
    const addon = loadNative();
    this.writePieces = addon.ok ? addon.binding.writePieces : undefined;
    this.compress = compressStep(config, log);
    this.s3 = opts.ship ? s3Step(config, log) : null;
    const s3 = this.s3;
    this.catalog = new Catalog(
      config.out,
      config.maxTotalBytes,
      {
        deleted: (file, reason) => {
          const fields = { event: 'file_deleted', path: file.path, reason, bytes: file.bytes, ...(file.artefacts.length > 1 ? { artefacts: file.artefacts } : {}) };
          if (s3 === null || s3.uploaded(file)) log.info(fields, 'file deleted');
          else {
            s3.deletedBeforeUpload++;
            log.error({ ...fields, uploaded: false }, `file deleted by the ${reason === 'budget' ? 'disk budget (max-total-bytes)' : 'ring'} before it was uploaded to S3`);
          }
        },
        deleteFailed: (file, err) => log.error({ event: 'delete_failed', path: file.path, code: err.code, err: err.message }, 'could not delete file'),
      },
      new Set(s3 === null ? [] : [s3.name]),
    );
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
    this.index = new IndexStep({
      indexed: (path, packets, bytes, ms) => log.debug({ event: 'indexed', path, packets, bytes, ms }, 'index written'),
      failed: (path, why) => log.warn({ event: 'index_failed', path, why }, 'could not index the file; queries scan it'),
      abandoned: (path) => log.warn({ event: 'index_abandoned', path }, 'stopping: index not written in time; the next start builds it'),
      threadFailed: (why, givenUp) =>
        log.error(
          { event: 'index_thread_failed', why, givenUp },
          givenUp ? 'index thread failed again: sidecars are encoded on the event loop from now on' : 'index thread failed: this sidecar is made without it (on the event loop, or by reading the file back)',
        ),
    }, opts.indexEncoder);
    // The index first: with --compress it is built from X.pcap, then rebound to X.pcap.gz/.zst
    // by the compress step (its offsets are offsets in the uncompressed bytes either way).
    const steps: FinishStep[] = [];
    if (config.index) steps.push(this.index);
    if (this.compress !== null) steps.push(this.compress);
    if (this.postRotate !== null) steps.push(this.postRotate);
    if (this.s3 !== null) steps.push(this.s3);
    this.finisher = new Finisher(steps, this.catalog, {
      // The post-rotate step reports its own skips; this is for the steps after it.
      skipped: (path, step) => {
        if (step !== this.postRotate?.name) log.warn({ event: 'finish_step_skipped', path, step }, 'stopping: step not run for this file; the next start resumes it');
      },
    });
    // Before the router: it makes the configured sessions, and their flow logs, at once.
    this.flowBudget = new FlowBudget(config.maxFlows);
    this.flowRing = config.flowRing > 0 ? new FlowRing(config.flowRing) : null;
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
    this.pipeline = new Pipeline(this.router, config.allow.length > 0 ? new AllowList(config.allow) : null, [VXLAN_PORT, ...config.listen.map((ep) => ep.port)]);
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
    await this.recoverFlowFiles();
    await this.s3?.start();
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

  /**
   * A query could not trust this finished file's index (its CRC failed): index it again,
   * held from the ring and the budget meanwhile. Once per file at a time.
   */
  reindex(path: string): void {
    const file = this.catalog.all().find((f) => f.path === path);
    if (file === undefined || file.pending.length > 0) return;
    this.catalog.hold(file, [this.index.name]);
    void this.index.run(file).then(() => this.catalog.done(file, this.index.name));
  }

  /** Hands every partly filled chunk to the disk (the flush-interval timer). */
  flushAll(): void {
    for (const w of this.writers.values()) w.flush();
  }

  /**
   * A source's ring of receive memory that records wait in until written (zero-copy): its
   * bytes come out of the write budget (--max-buffer), and when it runs low the writers copy
   * what they still gather out of it, so quiet sessions never pin it.
   */
  adoptRing(ring: SlabRing): void {
    this.pool.reserve(ring.bytes);
    ring.onLow = () => {
      for (const w of this.writers.values()) w.unpin();
    };
  }

  /** Once a second: rates, time-based rotation of quiet sessions, free space. */
  tick(nowSec: number): void {
    for (const [s, w] of this.writers) {
      s.sampleRates();
      w.tick(nowSec);
    }
    if (this.opts.wallClock) for (const f of this.flowLogs.values()) f.tick(nowSec);
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
    // A retired session's open flow interval is written now (a revived one opens a new one).
    for (const s of result.retired) this.flowLogs.get(s)!.table.flush(Math.floor(Date.now() / 1000));
    return result;
  }

  /**
   * Writes every queued record, closes and renames every file, then gives the finished files'
   * steps until `deadline` (epoch ms; Infinity = as long as they take): steps not started by
   * then are skipped (logged, counted); post-rotate commands still running go on by themselves.
   * Resolves once the deletions the ring and the budget made meanwhile are done (and logged).
   */
  async stop(deadline = Infinity): Promise<void> {
    const flowsEnd = this.opts.wallClock ? Date.now() / 1000 : Infinity;
    await Promise.all([...this.writers.values()].map((w) => w.stop()));
    await Promise.all([...this.flowLogs.values()].map((f) => f.close(flowsEnd)));
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
      flowFiles: snaps.reduce((n, s) => n + (s.flows?.filesWritten ?? 0), 0),
      flowRecords: snaps.reduce((n, s) => n + (s.flows?.recordsWritten ?? 0), 0),
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

  /** Flow-log files a killed process left half-written: their whole records are kept under a final name. */
  private async recoverFlowFiles(): Promise<void> {
    for (const r of await recoverFlowLogs(join(this.config.out, FLOWS_FOLDER))) {
      const fields = { event: 'flow_log_recovered', path: r.path, finalPath: r.finalPath, action: r.action, records: r.records, reason: r.reason };
      if (r.action === 'failed') this.log.error(fields, 'could not recover a flow-log file left open; it stays .part and is tried again at the next start');
      else if (r.action === 'quarantined') this.log.warn(fields, 'a flow-log file left open is not readable: set aside as .corrupt');
      else this.log.info(fields, `flow-log file left open: ${r.action} (${r.records} records)`);
    }
  }

  private createFlowLog(sc: SessionConfig, drops: Float64Array): SessionFlowLog {
    const flowLog: SessionFlowLog = new SessionFlowLog({
      root: join(this.config.out, FLOWS_FOLDER),
      session: sc.name,
      node: this.config.nodeName ?? hostname(),
      format: this.config.flowFormat,
      settings: sc,
      intervalSec: this.config.flowInterval,
      budget: this.flowBudget,
      drops,
      ring: this.flowRing,
      fileClosed: (file) => this.flowFileClosed(flowLog.writer.id, file),
      writeError: (err, iv) => this.flowWriteError(sc.name, err, iv),
    });
    return flowLog;
  }

  /** A flow-log file joins the catalog busy with its steps (post-rotate, s3), as a capture does. */
  private flowFileClosed(id: string, file: FlowFile): void {
    const entry = this.catalog.addFlowLog(id, file.path, file.start, file.bytes, this.finisher.namesFor('flow-log'));
    this.log.info(
      {
        event: 'flow_log_written',
        session: file.session,
        path: file.path,
        start: file.start,
        end: file.end,
        flows: file.flows,
        bytes: file.bytes,
        ...(file.partial ? { partial: true, closedAt: file.closedAt } : {}),
        ...(file.noData ? { noData: true } : {}),
        ...(file.skipData ? { skipData: true } : {}),
      },
      'flow-log file written',
    );
    this.finisher.add(entry);
  }

  private flowWriteError(session: string, err: NodeJS.ErrnoException, iv: FlowInterval): void {
    this.log.error(
      { event: 'flow_log_write_error', session, start: iv.start, end: iv.end, flows: iv.count, code: err.code ?? 'UNKNOWN', err: err.message },
      'could not write a flow-log file; what reached the disk is recovered at the next start',
    );
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
      format: sc.format,
      filter: sc.filter,
      pcapng: {
        section: this.section,
        describe: describeSession(sc, gwlb),
        counters: {
          get received() {
            return session!.receivedPackets;
          },
          get filtered() {
            return session!.filteredPackets;
          },
        },
      },
      queueSize: this.config.queueSize,
      nextSeq: () => this.catalog.nextSeq(sc.name),
      pool: this.pool,
      drops,
      disk: this.disk,
      clampTime: this.opts.clampTime,
      writeBehind: this.writeBehind,
      // Each file's index is built as its records are written (see finish/index-build.ts).
      tap: this.config.index ? this.index.tap : undefined,
      writePieces: this.writePieces,
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
    const flowLog = this.createFlowLog(sc, drops);
    session = new Session(sc, drops, writer, gwlb, (text) => this.filters.get(text, linkType), flowLog);
    this.writers.set(session, writer);
    this.flowLogs.set(session, flowLog);
    this.log.info(
      { event: 'session_created', session: sc.name, vni: sc.vni, source: sc.source, ...(sc.encap ? { encap: sc.encap } : {}), ...(gwlb ? { gwlb } : {}) },
      'session created',
    );
    return session;
  }

  /** A finished file joins the catalog busy with the steps it still needs; each step frees it when it ends. */
  private fileClosed(session: Session, file: CaptureFile): void {
    const entry = this.catalog.add(file, session.config.ring, this.finisher.names);
    this.index.tapped(entry, file.tap);
    this.log.info(
      { event: 'file_rotated', session: session.name, path: file.path, packets: file.packets, bytes: file.bytes },
      'file rotated',
    );
    this.finisher.add(entry);
  }
}

/** What a pcapng file's interface description says of its session, besides its filter. */
function describeSession(sc: SessionConfig, gwlb: GwlbIds | null): string {
  const tunnel = { vxlan: `VXLAN VNI ${sc.vni}`, geneve: `GENEVE VNI ${sc.vni}`, 'geneve-ip': `GENEVE (raw IP) VNI ${sc.vni}`, gwlbe: 'GENEVE (raw IP)' }[sc.encap ?? 'vxlan'];
  const from = gwlb === null ? `outer source ${sc.source ?? 'any'}` : `GWLB endpoint ${gwlb.endpointId}${gwlb.attachmentId === null ? '' : `, attachment ${gwlb.attachmentId}`}`;
  return `${tunnel}, ${from}`;
}
