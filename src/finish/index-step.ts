/**
 * The finish step 'index': every finished capture gets its sidecar X.pcap.idx, one file at a
 * time. A file this process wrote comes with the builder its writer fed while writing it
 * (tap(), handed over by tapped()): only the encoding is left. Any other is read back and
 * walked (building reads the whole capture: one at a time keeps that to one core's share, and
 * capture comes first): a file a write error cut back, files of an earlier run whose sidecar
 * is missing, of another version, stale or with a broken header, indexed at start (`needed`);
 * those recovered from .part files after a crash are among them, and compressed files
 * (X.pcap.gz, .zst) whose sidecar was not rebound by the compress step.
 * Either way the sidecar is encoded (key logs sorted, postings written: 100-400 ms for a
 * 64 MiB file of many flows) on the index thread (index-encoder.ts), not on the event loop
 * that receives the datagrams. If that thread fails, the file is encoded on the loop, or read
 * back when the thread took the builder's memory with it; at stop, an encoding still under
 * way at the deadline is abandoned (no sidecar: the next start indexes the file).
 *
 *   writer ─tap()─▶ IndexBuilder ─tapped(file)─┐
 *   finisher ─run(file)─▶ queue ─▶ writeBuiltIndex(file.path, builder) ─(index thread)─▶ X.pcap.idx  (ok / failed counted)
 *                                  └ none, or not the file as it is ─▶ buildIndex(file.path) (read back, counted)
 */
import type { FinishedFile } from '../capture/catalog.js';
import { isIndexablePath } from '../capture/naming.js';
import type { RecordTap } from '../capture/writer.js';
import { buildIndex, IndexBuilder, indexProblem, NotIndexable, writeBuiltIndex, type BuiltIndex } from './index-build.js';
import { EncodeClosed, EncodeLost, IndexEncoder, type IndexEncoderEvents, type IndexEncoderOptions } from './index-encoder.js';
import { untilDeadline, type FinishStep } from './finisher.js';

export interface IndexStepEvents extends IndexEncoderEvents {
  indexed(path: string, packets: number, bytes: number, ms: number): void;
  failed(path: string, why: string): void;
  /** Stopping: the encoding of `path`'s sidecar was under way at the deadline; the next start indexes it. */
  abandoned(path: string): void;
}


export class IndexStep implements FinishStep {
  readonly name = 'index';
  readonly capturesOnly = true;
  /** Sidecars written. */
  built = 0;
  /** Captures that could not be indexed (not classic pcap, unreadable, changed while read). */
  failed = 0;
  /** Bytes of the sidecars written. */
  bytes = 0;
  /** Sidecars built by reading the capture back (no builder fed while it was written, or not one that covered it). */
  readBack = 0;
  private tail: Promise<void> = Promise.resolve();
  private deadline = Infinity;
  /** Builders fed while each new file was written, until its step runs (weak: a file whose step never runs lets go of its builder). */
  private readonly fed = new WeakMap<FinishedFile, IndexBuilder>();

  private readonly encoder: IndexEncoder;

  constructor(
    private readonly events: IndexStepEvents,
    encoder: IndexEncoderOptions = {},
  ) {
    this.encoder = new IndexEncoder(events, encoder);
  }

  /** Sidecars encoded on the index thread and on the loop, and files the thread failed (encoded on the loop or read back instead): for the metrics. */
  get encoding(): Pick<IndexEncoder, 'encoded' | 'threadFailures'> {
    return this.encoder;
  }

  /** A new capture file's tap (the writer's option): the builder that sees its records as they are written. */
  readonly tap = (header: Buffer, linkType: number): RecordTap => new IndexBuilder(header, linkType);

  /** A file the writer finished, with the tap it had (null after a write error): its sidecar is made from that. */
  tapped(file: FinishedFile, tap: RecordTap | null | undefined): void {
    if (tap instanceof IndexBuilder) this.fed.set(file, tap);
  }

  run(file: FinishedFile): Promise<void> {
    const fed = this.fed.get(file);
    this.fed.delete(file);
    const p = this.tail.then(() => this.build(file.path, fed));
    this.tail = p;
    return p;
  }

  async needed(file: FinishedFile): Promise<boolean> {
    return isIndexablePath(file.path) && (await indexProblem(file.path)) !== null;
  }

  /** A build under way gives up at the deadline (its encoding abandoned); the file is indexed again at the next start. */
  async stop(deadline: number): Promise<void> {
    this.deadline = deadline;
    await untilDeadline(this.tail, deadline);
    await this.encoder.close();
    await this.tail;
  }

  private async build(path: string, fed: IndexBuilder | undefined): Promise<void> {
    if (Date.now() >= this.deadline) return;
    const t0 = Date.now();
    const aborted = (): boolean => Date.now() >= this.deadline;
    try {
      let r: BuiltIndex | null;
      try {
        r = fed === undefined ? null : await writeBuiltIndex(path, fed, this.encoder.encode);
        if (r === null) {
          this.readBack++;
          r = await buildIndex(path, { aborted, encode: this.encoder.encode });
        }
      } catch (err) {
        if (!(err instanceof EncodeLost)) throw err;
        // The thread died with the builder's memory: read the capture back, encoded on the loop.
        this.readBack++;
        r = await buildIndex(path, { aborted, encode: this.encoder.onLoop });
      }
      if (r === null) {
        if (Date.now() < this.deadline) this.fail(path, 'the capture changed while it was indexed');
        return;
      }
      this.built++;
      this.bytes += r.bytes;
      this.events.indexed(path, r.packets, r.bytes, Date.now() - t0);
    } catch (err) {
      if (err instanceof EncodeClosed) this.events.abandoned(path);
      else this.fail(path, err instanceof NotIndexable ? err.message : `${(err as NodeJS.ErrnoException).code ?? ''} ${(err as Error).message}`.trim());
    }
  }

  private fail(path: string, why: string): void {
    this.failed++;
    this.events.failed(path, why);
  }
}
