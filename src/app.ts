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
import { PART_SUFFIX } from './capture/naming.js';
import { DIR_MODE, SessionWriter, type CaptureFile } from './capture/writer.js';
import type { Config, SessionConfig } from './config.js';
import { ControlServer, type Readiness } from './control/http.js';
import type { Logger } from './control/log.js';
import { createMetrics, type Metrics } from './control/metrics.js';
import { DROP_REASONS, newDropCounters, SESSION_DROPS } from './drops.js';
import { Pipeline } from './pipeline.js';
import { Router } from './session/router.js';
import { Session } from './session/session.js';
import { DgramSource } from './source/dgram.js';
import type { Source } from './source/source.js';

export interface AppSummary {
  readonly datagrams: number;
  readonly packets: number;
  readonly writtenPackets: number;
  readonly dropped: Readonly<Record<string, number>>;
  readonly sessions: number;
  readonly filesClosed: number;
}

export class App {
  readonly pool: ChunkPool;
  readonly catalog: Catalog;
  readonly router: Router;
  readonly pipeline: Pipeline;
  readonly source: Source & { grantedRecvBuffer?: number; port?: number; refreshKernelDrops?: () => Promise<void> };
  readonly metrics: Metrics;
  readonly control: ControlServer;
  private readonly sessionsByName = new Map<string, Session>();
  private timers: NodeJS.Timeout[] = [];
  private closing: Promise<AppSummary> | null = null;

  constructor(
    readonly config: Config,
    private readonly log: Logger,
    readonly version: string,
  ) {
    this.pool = new ChunkPool(DEFAULT_CHUNK_SIZE, config.maxBuffer);
    this.catalog = new Catalog(config.out, {
      deleted: (file, reason) => log.info({ event: 'file_deleted', path: file.path, reason, bytes: file.bytes }, 'file deleted'),
      deleteFailed: (file, err) => log.error({ event: 'delete_failed', path: file.path, code: err.code, err: err.message }, 'could not delete file'),
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
    this.pipeline = new Pipeline(this.router);
    this.source = new DgramSource({ host: config.listen.host, port: config.listen.port, recvBuffer: config.recvBuffer });
    this.metrics = createMetrics(
      {
        pipeline: this.pipeline,
        sessions: this.router.sessions,
        source: this.source,
        pool: this.pool,
        deletedFiles: () => this.catalog.deletedFiles,
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
        config,
      },
      'mirrorcap started',
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
    return { ready: reasons.length === 0, reasons };
  }

  private createSession(sc: SessionConfig): Session {
    const dir = join(this.config.out, sc.name);
    const drops = newDropCounters();
    const session: Session = new Session(
      sc,
      drops,
      new SessionWriter({
        session: sc.name,
        dir,
        rotation: sc,
        queueSize: this.config.queueSize,
        nextSeq: () => this.catalog.nextSeq(sc.name),
        pool: this.pool,
        drops,
        events: {
          fileClosed: (file) => this.fileClosed(session, file),
          writeError: (file, op, err) =>
            this.log.error({ event: 'write_error', session: sc.name, path: file.path + PART_SUFFIX, op, code: err.code, err: err.message }, 'capture file write failed'),
        },
      }),
    );
    this.sessionsByName.set(sc.name, session);
    this.log.info({ event: 'session_created', session: sc.name, vni: sc.vni, source: sc.source, dir }, 'session created');
    return session;
  }

  private fileClosed(session: Session, file: CaptureFile): void {
    this.catalog.add(file, session.config.ring);
    this.log.info(
      { event: 'file_rotated', session: session.name, path: file.path, packets: file.packets, bytes: file.bytes },
      'file rotated',
    );
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
        bufferedBytes: s.writer.heldBytes,
        currentFile: cur === null ? null : { path: cur.path + PART_SUFFIX, bytes: cur.bytes, packets: cur.packets, first: isoNs(cur.firstSec, cur.firstNsec) },
        finishedFiles: this.catalog.filesOf(s.name).length,
      };
    });
  }
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
