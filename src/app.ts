/**
 * The live appliance, the composition root: a source feeding the Recorder, and the control
 * plane reading it. Owns the start and close order. Data flows one way:
 * source → pipeline → sessions → writers → files; the control plane only reads.
 */
import { SESSION_SETTING_KEYS, type Config } from './config.js';
import { filesJson, sessionsJson } from './control/api.js';
import { flowsAnswer } from './control/flowquery.js';
import { ControlServer, tlsFiles, type Readiness } from './control/http.js';
import { QueryEndpoint } from './control/query.js';
import { PcapOverIpServer } from './control/pcap-over-ip.js';
import { StreamHub } from './control/streams.js';
import type { Logger } from './log.js';
import { createMetrics, type Metrics } from './control/metrics.js';
import { Recorder, type RecorderSummary } from './recorder.js';
import { VXLAN_HEADER_LEN } from './decode/vxlan.js';
import { createListeners, largestSnaplen, type Listener } from './source/select.js';
import type { Session } from './session/session.js';

/**
 * What a reload applies: the sessions and every per-session setting (rotation, ring, snaplen,
 * ...), strictness and the log level; every other option needs a restart (a new socket,
 * folder, pool...).
 */
const RELOADABLE: ReadonlySet<string> = new Set<keyof Config>([...SESSION_SETTING_KEYS, 'sessions', 'strict', 'logLevel', 'configFile']);

export class App {
  readonly recorder: Recorder;
  /** Every source: one socket per --listen address, then --geneve's; or one interface source for all. */
  readonly listeners: readonly Listener[];
  readonly metrics: Metrics;
  readonly control: ControlServer;
  readonly queries: QueryEndpoint;
  /** Live streams (HTTP and PCAP-over-IP) and the PCAP-over-IP listener (null without --pcap-over-ip). */
  readonly streams: StreamHub;
  readonly pcapOverIp: PcapOverIpServer | null;
  private timers: NodeJS.Timeout[] = [];
  private stopping: Promise<RecorderSummary> | null = null;
  private started = false;

  constructor(
    public config: Config,
    private readonly log: Logger,
    readonly version: string,
    /** Reads the configuration again (same flags and environment, the file re-read); for SIGHUP. */
    private readonly rereadConfig: () => Config = () => config,
  ) {
    const recorder = new Recorder(config, log, { guardDisk: true, clampTime: true, wallClock: true, ship: true, application: `mirrorcap ${version}` });
    this.recorder = recorder;
    this.listeners = createListeners(config, log);
    for (const l of this.listeners) if (l.source.slabRing) recorder.adoptRing(l.source.slabRing);
    this.queries = new QueryEndpoint(config.out, config.maxQueries, log, (path) => recorder.reindex(path));
    this.streams = new StreamHub({
      maxStreams: config.maxStreams,
      bufferBytes: config.streamBuffer,
      log,
      hasSession: (name) => recorder.sessions.some((s) => s.name === name),
    });
    recorder.pipeline.tap = this.streams;
    this.pcapOverIp = config.pcapOverIp === null ? null : new PcapOverIpServer(config.pcapOverIp, this.streams, log);
    this.metrics = createMetrics(
      {
        pipeline: recorder.pipeline,
        sessions: recorder.router.sessions,
        activeSessions: () => recorder.router.activeSessions,
        ready: async () => (await this.readiness()).ready,
        listeners: this.listeners,
        pool: recorder.pool,
        catalog: recorder.catalog,
        disk: recorder.disk,
        postRotate: recorder.postRotate,
        index: recorder.index,
        queries: this.queries,
        flowBudget: recorder.flowBudget,
        streams: this.streams,
        compress: recorder.compress,
        s3: recorder.s3,
        refresh: async () => {
          await Promise.all(this.listeners.map((l) => l.source.refresh?.()));
        },
      },
      version,
    );
    this.control = new ControlServer(
      config.http,
      {
        metricsContentType: this.metrics.register.contentType,
        metrics: () => this.metrics.scrape(),
        readiness: () => this.readiness(),
        sessions: () => sessionsJson(recorder.sessions, recorder.catalog),
        files: () => filesJson(recorder.catalog, recorder.s3),
        query: this.queries.handle,
        flows: (params) => flowsAnswer(recorder.flowRing, params),
        stream: (req, res, session) => this.streams.serveHttp(req, res, session),
      },
      config.httpToken,
      log,
      tlsFiles(config.httpTlsCert, config.httpTlsKey),
    );
  }

  async start(): Promise<void> {
    const { config, log, recorder } = this;
    await recorder.start();
    await this.control.start();
    await this.pcapOverIp?.start();
    this.streams.start();
    for (const l of this.listeners) await l.source.start(l.geneve ? recorder.pipeline.processGeneve : recorder.pipeline.process);
    // Every socket asks for the same buffer and the kernel caps them alike: said once.
    const granted = Math.min(...this.listeners.map((l) => l.source.recvBuffer));
    if (granted > 0 && granted < config.recvBuffer) {
      log.warn(
        { event: 'recv_buffer_capped', requested: config.recvBuffer, granted },
        `the kernel granted a ${granted}-byte receive buffer, less than the ${config.recvBuffer} asked for; raise it with: sysctl -w net.core.rmem_max=${config.recvBuffer}`,
      );
    }
    const vxlan = this.listeners.filter((l) => !l.geneve);
    const geneve = this.listeners.find((l) => l.geneve);
    this.timers.push(
      setInterval(() => recorder.flushAll(), config.flushInterval * 1000),
      setInterval(() => recorder.tick(Date.now() / 1000), 1000),
    );
    log.info(
      {
        event: 'start',
        version: this.version,
        source: this.listeners[0]!.source.kind,
        udpPort: vxlan[0]?.source.port ?? 0,
        udpPorts: vxlan.map((l) => l.source.port),
        ...(geneve ? { genevePort: geneve.source.port } : {}),
        listeners: this.listeners.map((l) => l.name()),
        httpPort: this.control.port,
        ...(this.pcapOverIp === null ? {} : { pcapOverIpPort: this.pcapOverIp.port }),
        recvBuffer: granted,
        minFreeBytes: recorder.disk.minFreeBytes,
        config: describeConfig(config),
      },
      'mirrorcap started',
    );
    this.started = true;
  }

  /** Closes every session's current file now; the next packets start new ones (SIGUSR1). */
  rotateAll(): void {
    this.recorder.rotateAll();
    this.log.info({ event: 'rotate_all', sessions: this.recorder.sessions.length }, 'closed every current file on request');
  }

  /**
   * SIGHUP: re-reads the config file and applies its sessions and rotation settings between
   * two batches, so no packet is lost. An invalid file changes nothing. Options that need a
   * new socket or folder (listen, http, out, ...) are reported as needing a restart.
   */
  reload(): void {
    let next: Config;
    let result: { updated: Session[]; retired: Session[] };
    try {
      next = this.rereadConfig();
      result = this.recorder.reconfigure(next);
    } catch (err) {
      this.log.error({ event: 'reload_failed', err: (err as Error).message }, 'config reload failed; keeping the running configuration');
      return;
    }
    const { updated, retired } = result;
    this.control.reloadTls();
    this.warnIfSlotsTooSmall(next);
    const restartNeeded = (Object.keys(next) as Array<keyof Config>).filter(
      (k) => !RELOADABLE.has(k) && JSON.stringify(next[k]) !== JSON.stringify(this.config[k]),
    );
    this.log.level = next.logLevel;
    this.config = { ...next, ...Object.fromEntries(restartNeeded.map((k) => [k, this.config[k]])) } as Config;
    this.log.info(
      { event: 'reload', sessions: next.sessions.length, updated: updated.map((s) => s.name), retired: retired.map((s) => s.name), restartNeeded },
      restartNeeded.length > 0 ? `config reloaded; ${restartNeeded.join(', ')} take effect after a restart` : 'config reloaded',
    );
  }

  /**
   * The native source's receive slots are sized at start from the largest snaplen; a reload
   * cannot resize them under a running receiver. Frames longer than a slot are cut there
   * (counted as receive_truncated) until a restart: say so once, now.
   */
  private warnIfSlotsTooSmall(next: Config): void {
    const slotBytes = this.listeners.find((l) => l.source.maxDatagram !== undefined)?.source.maxDatagram;
    const snaplen = largestSnaplen(next);
    if (slotBytes === undefined || snaplen + VXLAN_HEADER_LEN <= slotBytes) return;
    const maxFrame = slotBytes - VXLAN_HEADER_LEN;
    this.log.warn(
      { event: 'snaplen_above_receive_slot', snaplen, slotBytes, maxFrame },
      `snaplen ${snaplen} is larger than the receive slots sized at start: frames are cut to ${maxFrame} bytes (mirrorcap_receive_truncated_packets_total) until a restart`,
    );
  }

  /**
   * Stops receiving, writes every queued record, closes and renames every file; post-rotate
   * commands get until `deadline` (epoch ms). Idempotent (the first call's deadline holds).
   */
  stop(deadline = Infinity): Promise<RecorderSummary> {
    this.stopping ??= this.doStop(deadline);
    return this.stopping;
  }

  private async doStop(deadline: number): Promise<RecorderSummary> {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    // Datagrams the kernel already holds for us reached the box: they go in the files too.
    for (const l of this.listeners) l.source.drain?.();
    for (const l of this.listeners) await l.source.stop();
    await this.recorder.stop(deadline);
    // Stream clients get what they were sent before the files closed, then the end of their stream.
    await this.streams.close();
    await this.pcapOverIp?.stop();
    await this.control.stop();
    const summary = this.recorder.summary();
    if (this.started) {
      const left = summary.filesLeftPart;
      if (left === 0) this.log.info({ event: 'shutdown', ...summary }, 'mirrorcap stopped');
      else this.log.warn({ event: 'shutdown', ...summary }, `mirrorcap stopped; ${left} file${left === 1 ? '' : 's'} left as .part (see write_error), recovered at the next start`);
    }
    return summary;
  }

  /** Asked live on every /readyz: the NLB should stop sending the moment we cannot write. */
  async readiness(): Promise<Readiness> {
    const reasons: string[] = [];
    for (const l of this.listeners) if (!l.source.ready) reasons.push(`source ${l.name()} not receiving`);
    const output = await this.recorder.outputProblem();
    if (output !== null) reasons.push(output);
    const disk = this.recorder.disk;
    if (disk.full) reasons.push(`disk free ${disk.freeBytes} bytes is below min-free-bytes ${disk.minFreeBytes}`);
    return { ready: reasons.length === 0, reasons };
  }
}

/** The config as logged: secrets out, prefixes as text. */
function describeConfig(config: Config): Record<string, unknown> {
  return { ...config, allow: config.allow.map((c) => c.text), httpToken: config.httpToken === null ? null : '[redacted]' };
}
