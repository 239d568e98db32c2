/**
 * Live streams: every client (HTTP /api/stream, /api/sessions/<name>/stream, PCAP-over-IP)
 * gets a pcap stream of the packets the files get, as they arrive, through a bounded buffer
 * of its own. A client never slows capture: what it cannot take is dropped for it alone.
 *
 *   pipeline ──packet()──▶ StreamHub ──each client: its session? its filter? ──copy──▶ client's chunk
 *            ──flush()───▶ (once per batch; writes at most every FLUSH_MS) each client: sink.write(chunk[sent..used)) ──callback──▶ chunk reusable
 *
 *   one client's buffer (stream-buffer bytes = up to N chunks, allocated as needed, kept for reuse):
 *   ┌────────── chunk ──────────┐ ┌────────── chunk ──────────┐
 *   │ written, in flight │ new  │ │ free                      │   no free chunk for a record → dropped,
 *   └────────────────────┴──────┘ └───────────────────────────┘   counted (stream_dropped_packets_total)
 *                 sent ──┘  used ─┘
 *
 * A client whose buffer is full and that has taken nothing for STALL_MS is disconnected and
 * logged. Per packet: one loop over the clients, a filter call, one copy; nothing allocated,
 * no event. Writes (and their Buffer views) happen per batch and per chunk.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Worker } from 'node:worker_threads';
import { matcherOf, MAX_FILTER_LENGTH, type CompiledFilter } from '../filter/index.js';
import type { Logger } from '../log.js';
import { MAX_SNAPLEN, PCAP_MAGIC_NS, PCAP_MAGIC_US, RECORD_HEADER_LEN, writeFileHeader, writeRecord } from '../pcap/pcap.js';
import type { PacketTap } from '../session/pipeline.js';
import type { Session } from '../session/session.js';
import type { CompileReply } from './filter-worker.js';
import { sendJson } from './http.js';

/** A client that is full and has taken nothing for this long is disconnected. */
export const STALL_MS = 10_000;
/** One chunk holds the largest record (snaplen up to MAX_SNAPLEN). */
const CHUNK_BYTES = 257 * 1024;
/** Records wait at most this long in a client's buffer before they are written to it. */
export const FLUSH_MS = 10;
/** Stream filters compiled at once (each in a worker thread); more are answered 503. */
const MAX_COMPILING = 2;
/** A compile taking longer than this is abandoned (400). */
const COMPILE_TIMEOUT_MS = 10_000;

/** What a stream client filters with: the text (for the logs) and its match function. */
export type StreamFilter = Pick<CompiledFilter, 'text' | 'match'>;

/** The media type of a pcap stream (IANA, RFC 8024's registration of application/vnd.tcpdump.pcap). */
export const PCAP_CONTENT_TYPE = 'application/vnd.tcpdump.pcap';

/** Where a client's bytes go: an HTTP response or a TCP socket. */
export interface StreamSink {
  write(chunk: Uint8Array, cb: (err?: Error | null) => void): boolean;
  end(): void;
  destroy(): void;
  once(event: 'close', listener: () => void): unknown;
}

export interface StreamOptions {
  /** Only this session's packets; null = every session. */
  readonly session: string | null;
  readonly filter: StreamFilter | null;
  /** Nanosecond pcap (HTTP, like the files) or microsecond (PCAP-over-IP, the widest support). */
  readonly nanoseconds: boolean;
  /** For the logs: 'http' or 'pcap-over-ip', and the peer. */
  readonly transport: string;
  readonly peer: string;
}

export class StreamHub implements PacketTap {
  /** Packets queued for clients, dropped for full clients, clients refused (max-streams), disconnected as stalled. */
  packets = 0;
  dropped = 0;
  refused = 0;
  stalled = 0;
  /** The connected clients; replaced (not mutated) on connect and disconnect, so packet() loops over a stable array. */
  private clients: StreamClient[] = [];
  private timer: NodeJS.Timeout | null = null;
  private compiling = 0;
  /** When the clients were last handed their records (performance.now()), and the timer that will if no batch does. */
  private lastFlush = 0;
  private flushTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly opts: {
      readonly maxStreams: number;
      readonly bufferBytes: number;
      readonly log: Logger;
      /** Whether a session of that name exists (a session stream of an unknown name is a 404). */
      readonly hasSession: (name: string) => boolean;
    },
  ) {}

  get active(): boolean {
    return this.clients.length > 0;
  }

  /** Clients connected, by transport. */
  connected(transport: string): number {
    return this.clients.filter((c) => c.opts.transport === transport).length;
  }

  packet(session: Session, buf: Buffer, off: number, capLen: number, origLen: number, sec: number, nsec: number): void {
    const clients = this.clients;
    for (let i = 0; i < clients.length; i++) {
      const c = clients[i]!;
      if (c.session !== null && c.session !== session.name) continue;
      if (c.match !== null && !c.match(buf, off, capLen, origLen)) continue;
      if (c.append(buf, off, capLen, origLen, sec, nsec)) this.packets++;
      else this.dropped++;
    }
  }

  /**
   * Once per batch. Hands buffered records to the clients at most every FLUSH_MS: the
   * receiver takes a batch every millisecond or so, and a socket write per client per batch
   * cost more than the copies (four clients at 150k packets/s: 4,000 writes a second). What
   * a batch leaves buffered goes out when FLUSH_MS is up, by a timer if no batch comes.
   */
  flush(): void {
    const now = performance.now();
    if (now - this.lastFlush >= FLUSH_MS) this.flushNow(now);
    else if (this.flushTimer === null) this.flushTimer = setTimeout(this.flushLater, FLUSH_MS - (now - this.lastFlush)).unref();
  }

  private readonly flushLater = (): void => {
    this.flushTimer = null;
    this.flushNow(performance.now());
  };

  private flushNow(now: number): void {
    this.lastFlush = now;
    if (this.flushTimer !== null) clearTimeout(this.flushTimer);
    this.flushTimer = null;
    const clients = this.clients;
    for (let i = 0; i < clients.length; i++) clients[i]!.flush();
  }

  start(): void {
    this.timer = setInterval(() => this.tick(Date.now()), 1000);
    this.timer.unref();
  }

  /**
   * Attaches a client: its pcap header goes out at once. Null when max-streams clients are
   * already connected (the caller refuses it).
   */
  attach(sink: StreamSink, opts: StreamOptions): StreamClient | null {
    if (this.clients.length >= this.opts.maxStreams) {
      this.refused++;
      return null;
    }
    const client = new StreamClient(sink, opts, Math.max(2, Math.floor(this.opts.bufferBytes / CHUNK_BYTES)));
    this.clients = [...this.clients, client];
    const fields = { transport: opts.transport, peer: opts.peer, session: opts.session, filter: opts.filter?.text ?? null };
    this.opts.log.info({ event: 'stream_opened', ...fields, streams: this.clients.length }, 'live stream opened');
    sink.once('close', () => {
      this.clients = this.clients.filter((c) => c !== client);
      client.release();
      this.opts.log.info({ event: 'stream_closed', ...fields, packets: client.packets, dropped: client.dropped, streams: this.clients.length }, 'live stream closed');
    });
    return client;
  }

  /**
   * GET /api/stream and /api/sessions/<name>/stream[?filter=EXPR]: 200 and a pcap stream, 400
   * for a filter that does not compile (reason, position, word), 404 for an unknown session,
   * 503 beyond max-streams.
   */
  async serveHttp(req: IncomingMessage, res: ServerResponse, session: string | null): Promise<void> {
    const text = new URL(req.url ?? '/', 'http://localhost').searchParams.get('filter');
    if (session !== null && !this.opts.hasSession(session)) return sendJson(res, 404, { error: 'no such session', session });
    if (this.clients.length >= this.opts.maxStreams) return this.refuse(res, session, `too many live streams (max-streams ${this.opts.maxStreams})`);
    let filter: StreamFilter | null = null;
    if (text !== null && text.trim() !== '') {
      if (this.compiling >= MAX_COMPILING) return this.refuse(res, session, 'too many stream filters being compiled; try again');
      this.compiling++;
      const reply = await compileInWorker(text).finally(() => this.compiling--);
      if (!reply.ok) return sendJson(res, 400, { error: `invalid filter: ${reply.message}`, reason: reply.reason, position: reply.position, word: reply.word });
      filter = { text, match: matcherOf(reply.program as CompiledFilter['program']) };
      // The client may have gone, or others taken the slots, while it compiled.
      if (res.destroyed) return;
      if (this.clients.length >= this.opts.maxStreams) return this.refuse(res, session, `too many live streams (max-streams ${this.opts.maxStreams})`);
    }
    res.writeHead(200, { 'Content-Type': PCAP_CONTENT_TYPE, 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff' });
    if (req.method === 'HEAD') return void res.end();
    const peer = `${req.socket.remoteAddress ?? ''}:${req.socket.remotePort ?? ''}`;
    this.attach(res, { session, filter, nanoseconds: true, transport: 'http', peer })!.flush();
  }

  private refuse(res: ServerResponse, session: string | null, why: string): void {
    this.refused++;
    this.opts.log.warn({ event: 'stream_refused', transport: 'http', session, why }, `live stream refused: ${why}`);
    sendJson(res, 503, { error: why });
  }

  /** Sends what every client has buffered and ends its stream; resolves when all are closed or by `deadline` (epoch ms), destroying the rest. */
  async close(deadline = Date.now() + 1000): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    if (this.flushTimer !== null) clearTimeout(this.flushTimer);
    this.flushTimer = null;
    const closing = this.clients.map((c) => new Promise<void>((resolve) => {
      c.sink.once('close', resolve);
      c.flush();
      c.sink.end();
    }));
    let timeout: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(closing), new Promise((r) => (timeout = setTimeout(r, Math.max(0, deadline - Date.now()))))]);
    clearTimeout(timeout);
    for (const c of this.clients) c.sink.destroy();
  }

  /** Once a second: disconnects clients stalled for STALL_MS (`now` epoch ms). */
  tick(now: number): void {
    for (const c of this.clients) {
      if (c.droppedSinceProgress > 0 && now - c.lastProgress >= STALL_MS) {
        this.stalled++;
        this.opts.log.warn(
          { event: 'stream_stalled', transport: c.opts.transport, peer: c.opts.peer, session: c.opts.session, dropped: c.dropped, seconds: STALL_MS / 1000 },
          `live stream client took nothing for ${STALL_MS / 1000} s with its buffer full: disconnected`,
        );
        c.sink.destroy();
      }
    }
  }
}

/** Compiles `text` in a worker thread (see filter-worker.ts); a compile past COMPILE_TIMEOUT_MS is abandoned as a 400. */
function compileInWorker(text: string): Promise<CompileReply> {
  if (text.length > MAX_FILTER_LENGTH) {
    return Promise.resolve({ ok: false, message: `filter longer than ${MAX_FILTER_LENGTH} characters`, reason: 'unsupported', position: MAX_FILTER_LENGTH, word: '' });
  }
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./filter-worker.js', import.meta.url), { workerData: { text } });
    const timeout = setTimeout(() => {
      void worker.terminate();
      resolve({ ok: false, message: `filter took more than ${COMPILE_TIMEOUT_MS / 1000} s to compile`, reason: 'unsupported', position: 0, word: text });
    }, COMPILE_TIMEOUT_MS);
    worker.once('message', (reply: CompileReply) => {
      clearTimeout(timeout);
      resolve(reply);
      void worker.terminate();
    });
    worker.once('error', (err) => {
      clearTimeout(timeout);
      reject(err);
    });
  });
}

/** One client: its chunks, what it has been sent, what it dropped. */
export class StreamClient {
  readonly session: string | null;
  readonly match: CompiledFilter['match'] | null;
  packets = 0;
  dropped = 0;
  /** Packets dropped since a write last completed, and when that was (epoch ms). */
  droppedSinceProgress = 0;
  lastProgress = Date.now();
  private readonly chunks: Buffer[] = [];
  /** Writes in flight per chunk, and the callback each chunk's writes use (made once per chunk). */
  private readonly pending: number[] = [];
  private readonly done: Array<(err?: Error | null) => void> = [];
  private readonly free: number[] = [];
  /** The chunk being filled, and its bytes handed to the sink / filled. */
  private cur = -1;
  private sent = 0;
  private used = 0;
  private closed = false;
  private readonly toUnit: number;

  constructor(
    readonly sink: StreamSink,
    readonly opts: StreamOptions,
    private readonly maxChunks: number,
  ) {
    this.session = opts.session;
    this.match = opts.filter?.match ?? null;
    this.toUnit = opts.nanoseconds ? 1 : 1000;
    this.cur = this.newChunk();
    this.used = writeFileHeader(this.chunks[this.cur]!, 0, MAX_SNAPLEN, undefined, opts.nanoseconds ? PCAP_MAGIC_NS : PCAP_MAGIC_US);
    this.sent = 0;
  }

  /** Copies one record into the buffer; false when the buffer is full (the packet is dropped for this client). */
  append(buf: Buffer, off: number, capLen: number, origLen: number, sec: number, nsec: number): boolean {
    if (this.closed) return false;
    const need = RECORD_HEADER_LEN + capLen;
    if (this.used + need > CHUNK_BYTES) {
      this.flush();
      const next = this.free.length > 0 ? this.free.pop()! : this.chunks.length < this.maxChunks ? this.newChunk() : -1;
      if (next < 0) {
        this.dropped++;
        this.droppedSinceProgress++;
        return false;
      }
      if (this.pending[this.cur] === 0) this.free.push(this.cur);
      this.cur = next;
      this.sent = 0;
      this.used = 0;
    }
    const unit = this.toUnit;
    this.used = writeRecord(this.chunks[this.cur]!, this.used, buf, off, capLen, origLen, sec, unit === 1 ? nsec : Math.floor(nsec / unit));
    this.packets++;
    return true;
  }

  /** Hands the bytes filled since the last flush to the sink. */
  flush(): void {
    if (this.closed || this.used === this.sent) return;
    const i = this.cur;
    this.pending[i]!++;
    this.sink.write(this.chunks[i]!.subarray(this.sent, this.used), this.done[i]!);
    this.sent = this.used;
  }

  /** The sink closed: nothing more is written; the chunks go with the client. */
  release(): void {
    this.closed = true;
    this.chunks.length = 0;
    this.free.length = 0;
  }

  private newChunk(): number {
    const i = this.chunks.length;
    this.chunks.push(Buffer.allocUnsafeSlow(CHUNK_BYTES));
    this.pending.push(0);
    this.done.push((err) => this.written(i, err));
    return i;
  }

  private written(i: number, err?: Error | null): void {
    if (this.closed || err) return;
    this.pending[i]!--;
    this.lastProgress = Date.now();
    this.droppedSinceProgress = 0;
    if (this.pending[i] !== 0) return;
    if (i === this.cur) {
      // Everything of the current chunk is out: fill it again from the start.
      if (this.sent === this.used) this.sent = this.used = 0;
    } else this.free.push(i);
  }
}
