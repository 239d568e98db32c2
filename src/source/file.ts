/**
 * The offline source: a capture file of VXLAN traffic (tcpdump on the target, say), read
 * through one buffer and handed on as batches, with the capture's own timestamps. The
 * batch's slots point into the reader's buffer: nothing is copied.
 *
 *   capture file ──CaptureReader.read()──▶ records ──OuterParser──▶ Batch slots ──▶ sink
 *                     (one buffer-full)          (link, IP, UDP to port)   (≤ 1024 per call)
 *
 * A live source drops what the writers cannot take; a file has no one to drop for, so
 * between two buffer-fulls it waits as long as `pace` asks (the Recorder's writers to drain).
 * `finished` resolves at the end of the file, or at a corrupt record: `error` then says
 * where, and every record before it was delivered.
 */
import { CaptureError } from '../pcap/errors.js';
import { CaptureReader, type CaptureFormat } from '../pcap/reader.js';
import { Batch } from './batch.js';
import { OuterParser } from './outer.js';
import { countBatch, newBatchSizeCounts, newSourceStats, type BatchSink, type Source, type SourceStats } from './source.js';

const BATCH = 1024;

export interface FileSourceOptions {
  readonly path: string;
  /** UDP port of the VXLAN datagrams in the capture. */
  readonly port: number;
  /** UDP port of the GENEVE datagrams in the capture; 0 or absent = none. */
  readonly genevePort?: number;
  /** Called after each buffer-full; reading waits for the promise it returns, if any. */
  readonly pace?: () => Promise<void> | undefined;
}

export class FileSource implements Source {
  readonly kind = 'file';
  readonly recvBuffer = 0;
  readonly port = 0;
  readonly batchSizeCounts = newBatchSizeCounts();
  /** Records read from the file, VXLAN or not. */
  records = 0;
  /** Set when the capture ended in a corrupt or truncated record. */
  error: CaptureError | null = null;
  /** Resolves once every record was delivered (or the reading stopped at an error or stop()). */
  readonly finished: Promise<void>;
  private readonly parser: OuterParser;
  private readonly baseStats = newSourceStats();
  private reader: CaptureReader | null = null;
  private stopped = false;
  private finish!: () => void;
  private fail!: (err: unknown) => void;

  constructor(private readonly opts: FileSourceOptions) {
    this.parser = new OuterParser({ vxlan: [opts.port], geneve: opts.genevePort ?? 0 });
    this.finished = new Promise<void>((resolve, reject) => {
      this.finish = resolve;
      this.fail = reject;
    });
    // Nobody may be waiting yet: an I/O failure surfaces when finished is awaited.
    this.finished.catch(() => undefined);
  }

  get ready(): boolean {
    return this.reader !== null && !this.stopped;
  }

  get stats(): SourceStats {
    return { ...this.baseStats, skipped: this.parser.skippedByReason() };
  }

  /** Link types met that mirrorcap cannot read, and how many records had each. */
  get unsupportedLinkTypes(): ReadonlyMap<number, number> {
    return this.parser.unsupportedLinkTypes;
  }

  /** pcap or pcapng; valid once started. */
  get format(): CaptureFormat {
    return this.reader!.format;
  }

  /** Interfaces the capture described so far. */
  get interfaces(): number {
    return this.reader?.interfaces.length ?? 0;
  }

  /** Opens the capture (rejects with a CaptureError when it is not one) and starts reading. */
  async start(sink: BatchSink): Promise<void> {
    this.reader = await CaptureReader.open(this.opts.path);
    void this.readAll(sink).then(this.finish, this.fail);
  }

  /** Stops after the current buffer-full; idempotent. The file is closed once reading ends. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.reader === null) this.finish(); // never started: there is nothing to wait for
    await this.finished.catch(() => undefined);
  }

  private async readAll(sink: BatchSink): Promise<void> {
    const reader = this.reader!;
    const parser = this.parser;
    const batch = new Batch(BATCH, Buffer.alloc(0));
    const deliver = (): void => {
      if (batch.count === 0) return;
      countBatch(this.baseStats, this.batchSizeCounts, batch);
      sink(batch);
      batch.count = 0;
    };
    const onRecord = (buf: Buffer, off: number, capLen: number, origLen: number, sec: number, nsec: number, linkType: number): void => {
      this.records++;
      if (batch.slab !== buf) {
        deliver();
        batch.slab = buf;
      }
      parser.add(batch, buf, off, capLen, origLen, linkType, sec, nsec);
      if (batch.count === BATCH) deliver();
    };
    try {
      while (!this.stopped && (await reader.read(onRecord))) {
        deliver();
        const wait = this.opts.pace?.();
        if (wait !== undefined) await wait;
      }
    } catch (err) {
      if (!(err instanceof CaptureError)) throw err;
      this.error = err;
    } finally {
      deliver();
      parser.release();
      await reader.close();
    }
  }
}
