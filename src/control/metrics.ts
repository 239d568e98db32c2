/**
 * Prometheus metrics, pulled: components bump plain numbers, and every metric here reads
 * them in collect() at scrape time. Nothing on the packet path touches prom-client.
 */
import { collectDefaultMetrics, Counter, Gauge, Registry, type Metric } from 'prom-client';
import type { Catalog } from '../capture/catalog.js';
import type { ChunkPool } from '../capture/chunks.js';
import type { DiskGuard } from '../capture/disk.js';
import type { CompressStep } from '../finish/compress-step.js';
import type { PostRotate } from '../finish/post-rotate.js';
import type { S3Step } from '../finish/s3-step.js';
import type { IndexStep } from '../finish/index-step.js';
import type { QueryEndpoint } from './query.js';
import { DROP_REASONS, PIPELINE_DROPS } from '../drops.js';
import type { FlowBudget } from '../session/flows.js';
import type { Pipeline } from '../session/pipeline.js';
import type { FlowSnapshot, Session, SessionSnapshot } from '../session/session.js';
import type { StreamHub } from './streams.js';
import { eventLoopDelayGauges, PROM_CLIENT_IDLE_MS } from './event-loop-delay.js';
import type { Listener } from '../source/select.js';
import { BATCH_SIZE_BUCKETS, type Source, type WorkerStats } from '../source/source.js';

export interface MetricsView {
  readonly pipeline: Pipeline;
  readonly sessions: readonly Session[];
  readonly activeSessions: () => number;
  /** The check behind /readyz. */
  readonly ready: () => Promise<boolean>;
  /** Every source, each labelled `listener` by its address (or --source for an interface). */
  readonly listeners: readonly Listener[];
  readonly pool: ChunkPool;
  readonly catalog: Catalog;
  readonly disk: DiskGuard;
  readonly postRotate: PostRotate | null;
  readonly index: IndexStep;
  readonly queries: QueryEndpoint;
  readonly flowBudget: FlowBudget;
  readonly streams: StreamHub;
  readonly compress: CompressStep | null;
  readonly s3: S3Step | null;
  /** Refreshes counters that need I/O to read (e.g. /proc/net/udp). */
  readonly refresh: () => Promise<void>;
}

type Labels = Record<string, string>;
type Emit = (labels: Labels, value: number) => void;

const PREFIX = 'mirrorcap_';

export interface Metrics {
  readonly register: Registry;
  /** The text exposition, after refreshing what needs I/O to read. */
  scrape(): Promise<string>;
}

export function createMetrics(view: MetricsView, version: string): Metrics {
  const register = new Registry();
  // The event loop's delay is sampled by eventLoopDelayGauges (every 100 ms, the interval not
  // counted as delay), not by prom-client's own histogram, which is told never to sample.
  collectDefaultMetrics({ register, eventLoopMonitoringPrecision: PROM_CLIENT_IDLE_MS });
  eventLoopDelayGauges(register);
  // Gauges named like counters; promtool flags them, and the same numbers are exported
  // without the suffix (nodejs_active_handles, ... by type).
  for (const misnamed of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
    register.removeSingleMetric(misnamed);
  }

  // One snapshot of every session per scrape, taken in scrape(): each metric below reads it.
  let snaps: SessionSnapshot[] = [];
  const sessionLabels = (s: SessionSnapshot): Labels => ({ session: s.name, vni: String(s.vni) });
  /** A metric whose samples are all re-read from the pipeline's numbers at every scrape. */
  const pulled = (type: 'counter' | 'gauge', name: string, help: string, labelNames: string[], fill: (emit: Emit) => void): void => {
    const common = { name: PREFIX + name, help, labelNames, registers: [register] };
    if (type === 'counter') {
      new Counter({ ...common, collect() { this.reset(); fill((labels, value) => this.inc(labels, value)); } });
    } else {
      new Gauge({ ...common, collect() { this.reset(); fill((labels, value) => this.set(labels, value)); } });
    }
  };
  const counter = (...args: [string, string, string[], (emit: Emit) => void]): void => pulled('counter', ...args);
  const gauge = (...args: [string, string, string[], (emit: Emit) => void]): void => pulled('gauge', ...args);
  const perSession = (read: (s: SessionSnapshot) => number) => (emit: Emit) => {
    for (const s of snaps) emit(sessionLabels(s), read(s));
  };

  gauge('build_info', 'Version of mirrorcap and Node.js running; always 1.', ['version', 'node'], (emit) => emit({ version, node: process.version }, 1));
  // Asked at every scrape, like /readyz, so an alert sees what the NLB health check sees.
  new Gauge({
    name: `${PREFIX}ready`,
    help: '1 when /readyz answers 200 (receiving, output writable, disk above min-free-bytes), else 0.',
    registers: [register],
    async collect() {
      this.set((await view.ready()) ? 1 : 0);
    },
  });
  counter('datagrams_total', 'UDP datagrams received.', [], (emit) => emit({}, view.pipeline.datagrams));
  counter('packets_total', 'VXLAN packets accepted into a session.', ['session', 'vni'], perSession((s) => s.packets));
  counter('bytes_total', 'Bytes of inner frames accepted into a session (original lengths).', ['session', 'vni'], perSession((s) => s.bytes));
  counter('written_packets_total', 'Packets written to pcap files.', ['session', 'vni'], perSession((s) => s.output.writtenPackets));
  counter('written_bytes_total', 'Bytes written to pcap files, file and record headers included.', ['session', 'vni'], perSession((s) => s.output.writtenBytes));
  counter('dropped_packets_total', 'Datagrams or packets not written, by reason.', ['reason', 'session', 'vni'], (emit) => {
    for (const r of PIPELINE_DROPS) emit({ reason: DROP_REASONS[r]! }, view.pipeline.drops[r]!);
    for (const s of snaps) {
      for (const [reason, n] of Object.entries(s.dropped)) emit({ reason, ...sessionLabels(s) }, n);
    }
  });
  counter('inner_packets_total', 'Inner frames by network and transport protocol.', ['session', 'vni', 'l3', 'l4'], (emit) => {
    for (const s of snaps) {
      for (const [l3, byL4] of Object.entries(s.protocols)) for (const [l4, n] of Object.entries(byL4)) emit({ ...sessionLabels(s), l3, l4 }, n);
    }
  });
  counter('decode_errors_total', 'Inner frames the decoder could not walk to the end, by the layer that stopped it.', ['session', 'vni', 'layer'], (emit) => {
    for (const s of snaps) for (const [layer, n] of Object.entries(s.decodeErrors)) emit({ ...sessionLabels(s), layer }, n);
  });
  counter('truncated_packets_total', 'Inner frames shorter than on the wire (AWS PacketLength or MTU truncation); orig_len keeps the real length.', ['session', 'vni'], perSession((s) => s.truncated));
  counter('deduplicated_packets_total', 'Frames not written as the copy of one seen within --dedup (both ends of a conversation mirrored).', ['session', 'vni'], perSession((s) => s.deduplicated));
  counter(
    'receive_truncated_packets_total',
    'Inner frames the receiver held only in part (a datagram larger than the receive slot, a libpcap or capture-file snaplen), so fewer bytes than the snaplen were written; orig_len keeps the real length.',
    ['session', 'vni'],
    perSession((s) => s.receiveTruncated),
  );
  counter('filtered_packets_total', 'Packets the capture filter (--filter, a session\'s filter) kept out of the files; not drops.', ['session', 'vni'], perSession((s) => s.filteredPackets));
  counter('files_rotated_total', 'Capture files closed and renamed to .pcap.', ['session', 'vni'], perSession((s) => s.output.filesClosed));
  counter('files_deleted_total', 'Finished files (captures, flow logs) deleted, by reason: ring (per session), budget (max-total-bytes) or uploaded (s3-delete-after-upload).', ['reason'], (emit) => {
    for (const [reason, n] of Object.entries(view.catalog.deleted)) emit({ reason }, n);
    if (view.s3 !== null) emit({ reason: 'uploaded' }, view.s3.deletedAfterUpload);
  });
  counter('write_errors_total', 'Failed capture file operations, by errno code.', ['session', 'vni', 'code'], (emit) => {
    for (const s of snaps) for (const [code, n] of Object.entries(s.writeErrors)) emit({ ...sessionLabels(s), code }, n);
  });
  counter('post_rotate_total', 'Post-rotate commands finished, by result.', ['result'], (emit) => {
    const p = view.postRotate;
    if (p === null) return;
    emit({ result: 'ok' }, p.ok);
    emit({ result: 'failed' }, p.failed);
    emit({ result: 'skipped' }, p.skipped);
  });
  finishMetrics(view, counter, gauge);
  counter('index_files_total', 'Capture files indexed by the index step, by result: built (sidecar written) or failed.', ['result'], (emit) => {
    emit({ result: 'built' }, view.index.built);
    emit({ result: 'failed' }, view.index.failed);
  });
  counter('index_bytes_total', 'Bytes of index sidecars written.', [], (emit) => emit({}, view.index.bytes));
  counter('index_read_back_total', 'Captures the index step read back to index (files of an earlier run, recovered, cut back by a write error) instead of using what their writer saw.', [], (emit) => emit({}, view.index.readBack));
  counter('index_encoded_total', 'Index sidecars encoded, by where: thread (the index thread, off the event loop) or loop (small ones, and those the thread failed).', ['where'], (emit) => {
    for (const [where, n] of Object.entries(view.index.encoding.encoded)) emit({ where }, n);
  });
  counter('index_thread_failures_total', 'Files the index thread could not encode (it did not start or died): their sidecar was encoded on the event loop, or the file read back; after 3 in a row the thread is not used again.', [], (emit) => emit({}, view.index.encoding.threadFailures));
  counter('queries_total', 'Queries (/api/query) by how they ended: ok, refused (429, max-queries), aborted (client went away), bad_request.', ['result'], (emit) => {
    for (const [result, n] of Object.entries(view.queries.ended)) emit({ result }, n);
  });
  counter('query_scans_total', 'Files a query scanned instead of reading through their index, by reason: missing, corrupt, version, stale index, or an open .part.', ['reason'], (emit) => {
    for (const [reason, n] of Object.entries(view.queries.scans)) emit({ reason }, n);
  });
  gauge('queries_running', 'Queries (/api/query) being answered now.', [], (emit) => emit({}, view.queries.running));
  /** One sample per source: the VXLAN sockets, the GENEVE one, or the interface. */
  const perListener = (read: (s: Source) => number) => (emit: Emit) => {
    for (const l of view.listeners) emit({ listener: l.name() }, read(l.source));
  };
  const byListener = ['listener'];
  counter('received_datagrams_total', 'UDP datagrams a source handed to the pipeline, by listener (each --listen address, --geneve, or the interface).', byListener, perListener((s) => s.stats.datagrams));
  counter('received_bytes_total', 'Bytes of those datagrams (UDP payloads as sent, VXLAN or GENEVE header included), by listener.', byListener, perListener((s) => s.stats.bytes));
  counter('receive_errors_total', 'Receive calls that failed for another reason than an empty socket (the native source; the log has the errno).', byListener, perListener((s) => s.stats.receiveErrors));
  counter('receive_truncated_total', 'Datagrams larger than the receive slot, kept cut to it (their real size stays in orig_len).', byListener, perListener((s) => s.stats.receiveTruncated));
  counter('capture_skipped_packets_total', 'Packets an interface source (--source pcap: or afpacket:) captured that were not VXLAN or GENEVE datagrams to our ports, by reason.', ['listener', 'reason'], (emit) => {
    for (const l of view.listeners) for (const [reason, n] of Object.entries(l.source.stats.skipped)) emit({ listener: l.name(), reason }, n);
  });
  counter('socket_drops_total', 'Datagrams the kernel dropped because the socket buffer was full, by listener.', byListener, perListener((s) => s.stats.kernelDrops));
  const workers = (read: (w: WorkerStats) => number) => (emit: Emit) => {
    for (const l of view.listeners) l.source.workerStats?.().forEach((w, i) => emit({ worker: String(i) }, read(w)));
  };
  counter('worker_received_packets_total', 'Datagrams each receive thread (--workers) received.', ['worker'], workers((w) => w.datagrams));
  counter('worker_socket_drops_total', 'Datagrams the kernel dropped at each receive thread\'s socket or ring.', ['worker'], workers((w) => w.kernelDrops));
  counter('worker_slab_waits_total', 'Times a receive thread rested because all its shared memory waited to be written (the kernel held what came meanwhile).', ['worker'], workers((w) => w.slabWaits));
  counter('worker_slab_drops_total', 'Frames a ring receive thread (afpacket) read but had no free shared memory for.', ['worker'], workers((w) => w.slabDrops));
  counter('worker_deaths_total', 'Receive threads that died (each is logged; /readyz fails from then on, until a restart).', [], (emit) =>
    emit({}, view.listeners.reduce((n, l) => n + (l.source.workerStats?.().filter((w) => w.died).length ?? 0), 0)),
  );
  gauge('current_file_bytes', 'Size of the file each session is writing (buffered bytes included).', ['session', 'vni'], perSession((s) => s.output.current?.bytes ?? 0));
  gauge('sessions', 'Sessions receiving (retired ones keep their counters but are not counted).', [], (emit) => emit({}, view.activeSessions()));
  gauge('session_packets_per_second', 'Packets per second over the last 10 s.', ['session', 'vni'], perSession((s) => s.packetsPerSecond));
  gauge('session_bits_per_second', 'Inner-frame bits per second over the last 10 s.', ['session', 'vni'], perSession((s) => s.bitsPerSecond));
  gauge('buffer_bytes', 'Memory holding records on their way to the disk.', [], (emit) =>
    emit({}, snaps.reduce((n, s) => n + s.output.heldBytes, 0)),
  );
  gauge('buffer_pool_bytes', 'Memory set aside for buffering: grows to the peak need, never past max-buffer.', [], (emit) => emit({}, view.pool.allocatedBytes));
  gauge('disk_free_bytes', 'Free space on the output filesystem (available to us).', [], (emit) => emit({}, view.disk.freeBytes));
  gauge('disk_min_free_bytes', 'Free space below which writing pauses (min-free-bytes).', [], (emit) => emit({}, view.disk.minFreeBytes));
  gauge('disk_used_bytes', 'Bytes of our capture files: finished, plus the open ones.', [], (emit) =>
    emit({}, view.catalog.totalBytes + snaps.reduce((n, s) => n + (s.output.current?.bytes ?? 0), 0)),
  );
  counter('receive_ring_waits_total', 'Times the native source rested because every region of its receive ring held records waiting to be written (zero-copy; the kernel held what came meanwhile), by listener.', byListener, perListener((s) => s.slabRing?.waits ?? 0));
  gauge('receive_buffer_bytes', 'Socket receive buffer the kernel granted (usable bytes; with --workers every receive thread socket together), by listener.', byListener, perListener((s) => s.recvBuffer));
  counter('receive_batches_total', 'Batches of datagrams handed to the pipeline (one recvmmsg, or one event-loop turn of node:dgram), by listener.', byListener, perListener((s) => s.stats.batches));
  flowMetrics(counter, gauge, (read) => (emit) => {
    for (const s of snaps) if (s.flows !== null) emit(sessionLabels(s), read(s.flows));
  }, view.flowBudget);
  gauge('streams', 'Live stream clients connected, by transport (http, pcap-over-ip).', ['transport'], (emit) => {
    for (const transport of ['http', 'pcap-over-ip']) emit({ transport }, view.streams.connected(transport));
  });
  counter('stream_packets_total', 'Packets queued for live stream clients (one per client that takes it).', [], (emit) => emit({}, view.streams.packets));
  counter('stream_dropped_packets_total', 'Packets a live stream client could not take (its buffer full); the files are not affected.', [], (emit) => emit({}, view.streams.dropped));
  counter('stream_refused_total', 'Live stream clients refused because max-streams were connected.', [], (emit) => emit({}, view.streams.refused));
  counter('stream_stalled_total', 'Live stream clients disconnected after 10 s with a full buffer.', [], (emit) => emit({}, view.streams.stalled));
  register.registerMetric(batchSizeHistogram(view));
  return {
    register,
    async scrape() {
      await view.refresh();
      snaps = view.sessions.map((s) => s.snapshot());
      return register.metrics();
    },
  };
}

type Define = (name: string, help: string, labelNames: string[], fill: (emit: Emit) => void) => void;

/** Flow records (--flows, docs/flows.md): sessions whose flows were never on have no samples. */
function flowMetrics(counter: Define, gauge: Define, perSession: (read: (f: FlowSnapshot) => number) => (emit: Emit) => void, budget: FlowBudget): void {
  const labels = ['session', 'vni'];
  counter('flow_table_full_total', 'Packets of new flows not counted because --max-flows flows were held; their interval is written SKIPDATA.', labels, perSession((f) => f.tableFullPackets));
  counter('flow_records_total', 'Flow-log records written (flows, NODATA and SKIPDATA).', labels, perSession((f) => f.recordsWritten));
  counter('flow_files_total', 'Flow-log files written (one per session and interval).', labels, perSession((f) => f.filesWritten));
  counter('flow_write_errors_total', 'Flow intervals whose file could not be written (the log has the errno).', labels, perSession((f) => f.writeErrors));
  counter('flow_late_packets_total', 'Packets from before the open flow interval, counted in it at its start.', labels, perSession((f) => f.latePackets));
  counter('flow_clock_steps_total', 'Times the packet clock stepped back by more than a flow interval.', labels, perSession((f) => f.clockSteps));
  counter('flow_not_ip_packets_total', 'Inner frames without an IPv4/IPv6 header: no flow record.', labels, perSession((f) => f.notIpPackets));
  gauge('flows_active', 'Flows in the open interval.', labels, perSession((f) => f.active));
  gauge('flows_held', 'Flows held in memory by all sessions (counting, or written out), against --max-flows.', [], (emit) => emit({}, budget.used));
  gauge('flows_max', 'Most flows all sessions may hold (--max-flows).', [], (emit) => emit({}, budget.max));
}

/** --compress and --s3: like post_rotate_total, the series appear only when the step is on. */
function finishMetrics(view: MetricsView, counter: Define, gauge: Define): void {
  const compress = (read: (c: CompressStep['stats']) => number) => (emit: Emit) => {
    if (view.compress !== null) emit({}, read(view.compress.stats));
  };
  counter('compressed_files_total', 'Finished files compressed (--compress), by format.', ['format'], (emit) => {
    if (view.compress !== null) emit({ format: view.compress.stats.format }, view.compress.stats.files);
  });
  counter('compress_input_bytes_total', 'Bytes of the files compressed, before compression.', [], compress((c) => c.rawBytes));
  counter('compress_output_bytes_total', 'Bytes of the compressed files they became.', [], compress((c) => c.packedBytes));
  counter('compress_seconds_total', 'Time the compression threads spent compressing.', [], compress((c) => c.busyMs / 1000));
  counter('compress_failures_total', 'Files that could not be compressed (kept uncompressed), by error code.', ['code'], (emit) => {
    for (const [code, n] of view.compress?.stats.failures ?? []) emit({ code }, n);
  });
  gauge('compress_pending_files', 'Files waiting for or under compression.', [], compress((c) => c.pending));
  const s3 = (read: (s: S3Step) => number) => (emit: Emit) => {
    if (view.s3 !== null) emit({}, read(view.s3));
  };
  counter('s3_uploaded_files_total', 'Files (captures, sidecars, flow-log files) the store took from us.', [], s3((s) => s.uploader.uploadedFiles));
  counter('s3_uploaded_bytes_total', 'Bytes of the files the store took from us.', [], s3((s) => s.uploader.uploadedBytes));
  counter('s3_failures_total', 'Failed upload attempts, by S3 error or network code (retried unless the file itself is the problem).', ['code'], (emit) => {
    for (const [code, n] of view.s3?.uploader.failures ?? []) emit({ code }, n);
  });
  counter('s3_deleted_before_upload_total', 'Files deleted by the disk budget or the ring before they were uploaded.', [], s3((s) => s.deletedBeforeUpload));
  gauge('s3_pending_files', 'Files waiting for or under upload.', [], s3((s) => s.uploader.pending));
  gauge('s3_oldest_pending_seconds', 'Age of the oldest file waiting for its upload (0 when none).', [], s3((s) => s.uploader.oldestPendingSeconds()));
}

/**
 * Datagrams per batch, from the source's bucket counts. prom-client's Histogram only
 * observes; this one is read whole at scrape time, like every other metric here.
 */
function batchSizeHistogram(view: MetricsView): Metric {
  const name = `${PREFIX}receive_batch_size`;
  const help = 'Datagrams per receive batch, by listener.';
  return {
    name,
    help,
    type: 'histogram',
    aggregator: 'sum',
    get() {
      const values: Array<{ metricName: string; labels: Labels; value: number }> = [];
      for (const l of view.listeners) {
        const src = l.source;
        const listener = l.name();
        let cumulative = 0;
        BATCH_SIZE_BUCKETS.forEach((le, i) => {
          cumulative += src.batchSizeCounts[i]!;
          values.push({ metricName: `${name}_bucket`, labels: { listener, le: String(le) }, value: cumulative });
        });
        values.push({ metricName: `${name}_bucket`, labels: { listener, le: '+Inf' }, value: cumulative });
        values.push({ metricName: `${name}_sum`, labels: { listener }, value: src.stats.datagrams });
        values.push({ metricName: `${name}_count`, labels: { listener }, value: src.stats.batches });
      }
      return { name, help, type: 'histogram', aggregator: 'sum', values };
    },
  } as unknown as Metric;
}
