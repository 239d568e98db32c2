/**
 * The composition root: builds every part from the frozen Config and owns the start and
 * close order. Data flows one way: source → pipeline → sessions → writers → files;
 * the control plane only reads.
 */
import { constants as fsConstants } from 'node:fs';
import { access, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Catalog, type FinishedFile } from './capture/catalog.js';
import { ChunkPool, DEFAULT_CHUNK_SIZE } from './capture/chunks.js';
import { DiskGuard } from './capture/disk.js';
import { PART_SUFFIX } from './capture/naming.js';
import { PostRotate } from './capture/post-rotate.js';
import { DIR_MODE, SessionWriter, type CaptureFile } from './capture/writer.js';
import type { Config, SessionConfig } from './config.js';
import { ControlServer, type Readiness } from './control/http.js';
import type { Logger } from './control/log.js';
import { createMetrics, type Metrics } from './control/metrics.js';
import { DROP_REASONS, newDropCounters, SESSION_DROPS } from './drops.js';
import { Pipeline } from './pipeline.js';
import { AllowList } from './session/allow.js';
import { Router } from './session/router.js';
import { Session } from './session/session.js';
import { DgramSource } from './source/dgram.js';
import type { Source } from './source/source.js';

/** Options a reload cannot apply to a running appliance. */
const RESTART_KEYS = [
  'listen', 'http', 'out', 'sessionKey', 'recvBuffer', 'flushInterval', 'queueSize', 'maxBuffer', 'maxSessions',
  'allow', 'maxTotalBytes', 'minFreeBytes', 'httpToken', 'postRotate',
] as const satisfies ReadonlyArray<keyof Config>;

/** At shutdown, post-rotate commands get this long to finish before we exit anyway. */
const POST_ROTATE_GRACE_MS = 4_000;

export interface AppSummary {
  readonly datagrams: number;
  readonly packets: number;
  readonly writtenPackets: number;
  readonly dropped: Readonly<Record<string, number>>;
  readonly sessions: number;
  readonly filesClosed: number;
}

/** A source as the app sees it: the common interface plus what some kinds can tell. */
export type AppSource = Source & { grantedRecvBuffer?: number; port?: number; refreshKernelDrops?: () => Promise<void> };

export class App {
  readonly pool: ChunkPool;
  readonly catalog: Catalog;
  readonly disk: DiskGuard;
  readonly router: Router;
  readonly pipeline: Pipeline;
  readonly source: AppSource;
  readonly postRotate: PostRotate | null;
  readonly metrics: Metrics;
  readonly control: ControlServer;
  private timers: NodeJS.Timeout[] = [];
  private closing: Promise<AppSummary> | null = null;

  constructor(
    public config: Config,
    private readonly log: Logger,
    readonly version: string,
    /** Reads the configuration again (same flags and environment, the file re-read); for SIGHUP. */
    private readonly rereadConfig: () => Config = () => config,
  ) {
    this.pool = new ChunkPool(DEFAULT_CHUNK_SIZE, config.maxBuffer);
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
    this.source = new DgramSource({ host: config.listen.host, port: config.listen.port, recvBuffer: config.recvBuffer });
    this.metrics = createMetrics(
      {
        pipeline: this.pipeline,
        sessions: this.router.sessions,
        activeSessions: () => this.router.activeSessions,
        ready: async () => (await this.readiness()).ready,
        source: this.source,
        pool: this.pool,
        catalog: this.catalog,
        disk: this.disk,
        postRotate: this.postRotate,
        recvBufferBytes: () => this.source.grantedRecvBuffer ?? 0,
        refresh: async () => this.source.refreshKernelDrops?.(),
      },
      version,
    );
    this.control = new ControlServer(
      config.http,
      {
        metricsContentType: this.metrics.register.contentType,
        metrics: () => this.metrics.scrape(),
        readiness: () => this.readiness(),
        sessions: () => this.sessionsJson(),
        files: () => this.catalog.all().map(fileJson),
      },
      config.httpToken,
      log,
    );
  }

  get sessions(): readonly Session[] {
    return this.router.sessions;
  }

  async start(): Promise<void> {
    const { config, log } = this;
    await mkdir(config.out, { recursive: true, mode: DIR_MODE });
    const unwritable = await this.outputProblem();
    if (unwritable !== null) throw new Error(unwritable);
    await this.catalog.scan();
    await this.disk.check();
    await this.control.start();
    await this.source.start(this.pipeline.process);
    const granted = this.source.grantedRecvBuffer ?? 0;
    if (granted > 0 && granted < config.recvBuffer) {
      log.warn(
        { event: 'recv_buffer_capped', requested: config.recvBuffer, granted },
        `the kernel granted a ${granted}-byte receive buffer, less than the ${config.recvBuffer} asked for; raise it with: sysctl -w net.core.rmem_max=${config.recvBuffer}`,
      );
    }
    this.timers.push(
      setInterval(() => this.flushAll(), config.flushInterval * 1000),
      setInterval(() => this.housekeeping(), 1000),
    );
    log.info(
      {
        event: 'start',
        version: this.version,
        source: this.source.kind,
        udpPort: this.source.port,
        httpPort: this.control.port,
        recvBuffer: granted,
        minFreeBytes: this.disk.minFreeBytes,
        config: describeConfig(config),
      },
      'mirrorcap started',
    );
  }

  /** Closes every session's current file now; the next packets start new ones (SIGUSR1). */
  rotateAll(): void {
    for (const s of this.sessions) s.writer.rotate();
    this.log.info({ event: 'rotate_all', sessions: this.sessions.length }, 'closed every current file on request');
  }

  /**
   * SIGHUP: re-reads the config file and applies its sessions and rotation settings between
   * two batches, so no packet is lost. An invalid file changes nothing. Options that need a
   * new socket or folder (listen, http, out, ...) are reported as needing a restart.
   */
  reload(): void {
    let next: Config;
    try {
      next = this.rereadConfig();
    } catch (err) {
      this.log.error({ event: 'reload_failed', err: (err as Error).message }, 'config reload failed; keeping the running configuration');
      return;
    }
    const { updated, retired } = this.router.reconfigure({ strict: next.strict, configured: next.sessions, defaults: next });
    for (const s of retired) s.writer.rotate();
    const restartNeeded = RESTART_KEYS.filter((k) => JSON.stringify(next[k]) !== JSON.stringify(this.config[k]));
    this.log.level = next.logLevel;
    this.config = { ...next, ...Object.fromEntries(restartNeeded.map((k) => [k, this.config[k]])) } as Config;
    this.log.info(
      { event: 'reload', sessions: next.sessions.length, updated: updated.map((s) => s.name), retired: retired.map((s) => s.name), restartNeeded },
      restartNeeded.length > 0 ? `config reloaded; ${restartNeeded.join(', ')} take effect after a restart` : 'config reloaded',
    );
  }

  /** Stops receiving, writes every queued record, closes and renames every file. Idempotent. */
  close(): Promise<AppSummary> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<AppSummary> {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    await this.source.close();
    await Promise.all(this.sessions.map((s) => s.writer.close()));
    if (this.postRotate !== null && !(await this.postRotate.idle(POST_ROTATE_GRACE_MS))) {
      this.log.warn({ event: 'post_rotate_pending' }, 'post-rotate commands still running at exit; they continue on their own');
    }
    await this.control.close();
    const summary = this.summary();
    this.log.info({ event: 'shutdown', ...summary }, 'mirrorcap stopped');
    return summary;
  }

  summary(): AppSummary {
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

  /** Asked live on every /readyz: the NLB should stop sending the moment we cannot write. */
  async readiness(): Promise<Readiness> {
    const reasons: string[] = [];
    if (!this.source.ready) reasons.push('source not receiving');
    const output = await this.outputProblem();
    if (output !== null) reasons.push(output);
    if (this.disk.full) reasons.push(`disk free ${this.disk.freeBytes} bytes is below min-free-bytes ${this.disk.minFreeBytes}`);
    return { ready: reasons.length === 0, reasons };
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

  private flushAll(): void {
    for (const s of this.sessions) s.writer.flush();
  }

  private housekeeping(): void {
    const now = Date.now() / 1000;
    for (const s of this.sessions) {
      s.sampleRates();
      s.writer.tick(now);
    }
    void this.disk.check();
  }

  private async outputProblem(): Promise<string | null> {
    try {
      await access(this.config.out, fsConstants.W_OK);
      return null;
    } catch (err) {
      return `output folder ${this.config.out} not writable: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
    }
  }

  private sessionsJson(): unknown {
    return this.sessions.map((s) => {
      const cur = s.writer.current;
      const dropped: Record<string, number> = {};
      for (const r of SESSION_DROPS) dropped[DROP_REASONS[r]!] = s.drops[r]!;
      return {
        name: s.name,
        vni: s.vni,
        source: s.config.source,
        packets: s.packets,
        bytes: s.bytes,
        packetsPerSecond: s.packetsPerSecond,
        bitsPerSecond: s.bitsPerSecond,
        writtenPackets: s.writer.writtenPackets,
        writtenBytes: s.writer.writtenBytes,
        dropped,
        writeErrors: Object.fromEntries(s.writeErrors),
        bufferedBytes: s.writer.heldBytes,
        currentFile: cur === null ? null : { path: cur.path + PART_SUFFIX, bytes: cur.bytes, packets: cur.packets, first: isoNs(cur.firstSec, cur.firstNsec) },
        finishedFiles: this.catalog.filesOf(s.name).length,
      };
    });
  }
}

/** The config as logged: secrets out, prefixes as text. */
function describeConfig(config: Config): Record<string, unknown> {
  return { ...config, allow: config.allow.map((c) => c.text), httpToken: config.httpToken === null ? null : '[redacted]' };
}

function isoNs(sec: number, nsec: number): string {
  return `${new Date(sec * 1000).toISOString().slice(0, 19)}.${String(nsec).padStart(9, '0')}Z`;
}

function fileJson(f: FinishedFile): unknown {
  return {
    session: f.session,
    path: f.path,
    bytes: f.bytes,
    packets: f.packets,
    first: f.first && isoNs(f.first[0], f.first[1]),
    last: f.last && isoNs(f.last[0], f.last[1]),
  };
}
